/**
 * Bench requests: the CheckRequest Envoy sends for a public API call (a dozen headers, ~600 bytes), encoded with
 * protobufjs from the vendored protos, independently of the sidecar's own codec. Mirrors `envoyRequest()` in
 * test/support/check-client.ts without importing test code (the bench is built by tsconfig.build.json alone).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Root, type Type } from 'protobufjs';
import { base62FromBytes, formatToken } from '../src/core/token';

export function repoRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'proto', 'envoy'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('repository root (with proto/envoy) not found');
    dir = parent;
  }
  return dir;
}

export const PROTO_DIR = path.join(repoRoot(), 'proto');

let checkRequestType: Type | null = null;

export function checkRequest(): Type {
  if (checkRequestType === null) {
    const root = new Root();
    root.resolvePath = (_origin, target) => path.resolve(PROTO_DIR, target);
    root.loadSync('envoy/service/auth/v3/external_auth.proto', { keepCase: true });
    root.resolveAll();
    checkRequestType = root.lookupType('envoy.service.auth.v3.CheckRequest');
  }
  return checkRequestType;
}

/** The path the bench keys are allowed on (vault `v1`, read). */
export const BENCH_PATH = '/v1/vaults/v1/secrets/db-password?version=3';
export const BENCH_VAULT = 'v1';

export interface RequestOptions {
  authorization?: string;
  path?: string;
  requestId?: string;
}

/** The CheckRequest object (keepCase) Envoy sends with its default `headers` map. */
export function envoyRequestObject(options: RequestOptions = {}): Record<string, unknown> {
  const reqPath = options.path ?? BENCH_PATH;
  const sourceIp = '203.0.113.7';
  const headers: Record<string, string> = {
    ':authority': 'api.fortary.example',
    ':path': reqPath,
    ':method': 'GET',
    ':scheme': 'https',
    'user-agent': 'fortary-cli/2.4.1 (linux; x64) node/20.15.0',
    accept: 'application/json',
    'accept-encoding': 'gzip, deflate, br',
  };
  if (options.authorization !== undefined) headers.authorization = options.authorization;
  headers['x-forwarded-for'] = sourceIp;
  headers['x-forwarded-proto'] = 'https';
  headers['x-envoy-external-address'] = sourceIp;
  headers['x-request-id'] = options.requestId ?? '5f0c7a1e-8d0b-4a44-9c3e-0d6f2f6f9b11';
  return {
    attributes: {
      source: { address: { socket_address: { address: sourceIp, port_value: 51234 } } },
      destination: { address: { socket_address: { address: '10.0.4.12', port_value: 8080 } } },
      request: {
        time: { seconds: 1767225600, nanos: 123456789 },
        http: {
          id: '13094755870423849234',
          method: 'GET',
          headers,
          path: reqPath,
          host: 'api.fortary.example',
          scheme: 'https',
          protocol: 'HTTP/1.1',
        },
      },
    },
  };
}

/** Encoded CheckRequest bytes (no gRPC framing). */
export function checkRequestBytes(options: RequestOptions = {}): Buffer {
  const type = checkRequest();
  const object = envoyRequestObject(options);
  const problem = type.verify(object);
  if (problem !== null) throw new Error(`invalid CheckRequest: ${problem}`);
  const bytes = type.encode(type.fromObject(object)).finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** gRPC length-prefixed message: 1 byte compression flag (0), 4-byte big-endian length, the message. */
export function grpcFrame(message: Buffer): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt8(0, 0);
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, 5);
  return frame;
}

export function randomBase62(length: number): string {
  for (;;) {
    const text = base62FromBytes(randomBytes(length * 2), length);
    if (text !== null) return text;
  }
}

/** A well-formed token (right checksum) for `keyId` with a fresh random secret. */
export function randomTokenFor(keyId: string): string {
  return formatToken(keyId, randomBase62(43));
}

/** Kinds of request bodies the paced client can generate, one per request. */
export type BodySpec =
  | { kind: 'fixed'; authorization: string }
  /** The same token list, cycled. */
  | { kind: 'tokens'; tokens: string[] }
  /** A random secret with a correct checksum for each request, key ids cycled. */
  | { kind: 'random-secret'; keyIds: string[] }
  /** A random, unknown key id with a correct checksum for each request. */
  | { kind: 'unknown-key' }
  /** Not a fortary token at all. */
  | { kind: 'malformed' }
  /** A well-formed token with its last checksum character changed. */
  | { kind: 'bad-checksum'; keyIds: string[] };

/** The Authorization value of request `i` of a stream. */
export function authorizationFor(spec: BodySpec, i: number): string {
  switch (spec.kind) {
    case 'fixed':
      return spec.authorization;
    case 'tokens':
      return `Bearer ${spec.tokens[i % spec.tokens.length] as string}`;
    case 'random-secret':
      return `Bearer ${randomTokenFor(spec.keyIds[i % spec.keyIds.length] as string)}`;
    case 'unknown-key':
      return `Bearer ${randomTokenFor(randomBase62(12))}`;
    case 'malformed':
      return `Bearer fty_${randomBase62(20)}`;
    case 'bad-checksum': {
      const token = randomTokenFor(spec.keyIds[i % spec.keyIds.length] as string);
      const last = token[token.length - 1] === 'A' ? 'B' : 'A';
      return `Bearer ${token.slice(0, -1)}${last}`;
    }
  }
}
