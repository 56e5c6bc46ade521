/**
 * What one fuzz case is: a structured CheckRequest (header lines, sources, extra and duplicated fields, shape),
 * optional byte mutations, or garbage. Part of the fuzzer run by bench/fuzz.ts and test/fuzz/check.fuzz.test.ts
 * (docs/hardening.md).
 */
import type fc from 'fast-check';

/** Header values and paths are bytes on the wire; most cases spell them as text. */
export const utf8 = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'utf8'));

/** Each dimension of a case has values that keep a request valid and values that attack it. */
export interface Dimension<T> {
  good: fc.Arbitrary<T>;
  bad: fc.Arbitrary<T>;
}

export interface HeaderLine {
  name: string;
  value: Uint8Array;
}

export type Source =
  | { kind: 'socket'; ip: string; port: boolean }
  | { kind: 'pipe' }
  | { kind: 'internal' }
  | { kind: 'no-address' }
  | { kind: 'empty-address' }
  | { kind: 'socket-and-pipe'; ip: string };

/** Levels where unknown (or known but unread) fields are inserted. */
export const LEVELS = [
  'top',
  'attributes',
  'peer',
  'address',
  'socket',
  'request',
  'http',
  'line',
  'header_map',
] as const;
export type Level = (typeof LEVELS)[number];

export interface ExtraField {
  level: Level;
  field: number;
  wire: 0 | 1 | 2 | 5;
  payload: Uint8Array;
}

export type Shape =
  'headers' | 'headers-envoy' | 'header_map' | 'header_map-value' | 'header_map-both' | 'both';
export type Duplicate = 'none' | 'attributes' | 'source' | 'address' | 'request' | 'http' | 'header_map';

export interface Mutation {
  op: 'flip' | 'set' | 'insert' | 'delete' | 'duplicate' | 'truncate' | 'huge-length' | 'append';
  /** Position as a fraction of the current length, so a mutation survives shrinking of the request. */
  at: number;
  length: number;
  bytes: Uint8Array;
}

export interface FuzzCase {
  garbage: Uint8Array | null;
  method: Uint8Array | null;
  path: Uint8Array | null;
  source: Source;
  lines: HeaderLine[];
  /** Header lines of the second copy when a message is duplicated (a different reading of the same request). */
  altLines: HeaderLine[];
  shape: Shape;
  duplicate: Duplicate;
  extras: ExtraField[];
  reversed: boolean;
  mutations: Mutation[];
}
