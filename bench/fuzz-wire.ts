/**
 * The fuzzer's wire writer: a case to CheckRequest bytes field by field (so it can hold what protobufjs cannot
 * express), byte-level mutations, and the per-case seeds that make a case replayable. Part of the fuzzer run by
 * bench/fuzz.ts and test/fuzz/check.fuzz.test.ts (docs/hardening.md).
 */
import fc from 'fast-check';
import {
  utf8,
  type ExtraField,
  type FuzzCase,
  type HeaderLine,
  type Level,
  type Mutation,
} from './fuzz-case-types';

export function varint(n: number): number[] {
  const out: number[] = [];
  let v = n;
  while (v >= 0x80) {
    out.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

export const cat = (parts: Array<Uint8Array | number[]>): Uint8Array => {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};
export const ld = (field: number, payload: Uint8Array | string): Uint8Array => {
  const bytes = typeof payload === 'string' ? utf8(payload) : payload;
  return cat([varint(field * 8 + 2), varint(bytes.length), bytes]);
};

export function encodeExtra(x: ExtraField): Uint8Array {
  const tag = varint(x.field * 8 + x.wire);
  switch (x.wire) {
    case 0:
      return cat([tag, varint(x.payload.reduce((n, b) => (n * 7 + b) % 2 ** 40, 0))]);
    case 1:
      return cat([tag, Array.from({ length: 8 }, (_, i) => x.payload[i] ?? 0)]);
    case 5:
      return cat([tag, Array.from({ length: 4 }, (_, i) => x.payload[i] ?? 0)]);
    default:
      return cat([tag, varint(x.payload.length), x.payload]);
  }
}

export function encodeLines(c: FuzzCase, lines: HeaderLine[], extrasOf: (level: Level) => Uint8Array[]) {
  const mapEntry = (l: HeaderLine) => ld(3, cat([ld(1, l.name), ld(2, l.value), ...extrasOf('line')]));
  const headerValue = (l: HeaderLine) => {
    const parts = [ld(1, l.name)];
    if (c.shape === 'header_map-value') parts.push(ld(2, l.value));
    else if (c.shape === 'header_map-both') parts.push(ld(2, utf8('decoy')), ld(3, l.value));
    else parts.push(ld(3, l.value));
    return ld(1, cat([...parts, ...extrasOf('line')]));
  };
  let map: Uint8Array[] = [];
  let headerMap: Uint8Array | null = null;
  if (c.shape === 'headers') map = lines.map(mapEntry);
  else if (c.shape === 'headers-envoy') {
    // Envoy's default: lowercase names, one entry per name, repeated lines joined with ','.
    const merged = new Map<string, Uint8Array>();
    for (const l of lines) {
      const name = l.name.toLowerCase();
      const prev = merged.get(name);
      merged.set(name, prev === undefined ? l.value : cat([prev, [0x2c], l.value]));
    }
    map = [...merged].map(([name, value]) => mapEntry({ name, value }));
  } else if (c.shape === 'both') {
    // Both shapes at once, with different content: header_map (non-empty) is the one that counts.
    map = c.altLines.map(mapEntry);
    headerMap = ld(13, cat([...lines.map(headerValue), ...extrasOf('header_map')]));
  } else headerMap = ld(13, cat([...lines.map(headerValue), ...extrasOf('header_map')]));
  return { map, headerMap };
}

/** The CheckRequest bytes of a case (mutations applied). */
export function encodeCase(c: FuzzCase): Buffer {
  if (c.garbage !== null) return Buffer.from(c.garbage);
  const extrasOf = (level: Level) => c.extras.filter((x) => x.level === level).map(encodeExtra);
  const http = (lines: HeaderLine[]) => {
    const { map, headerMap } = encodeLines(c, lines, extrasOf);
    const fields: Uint8Array[] = [];
    if (c.method !== null) fields.push(ld(2, c.method));
    fields.push(...map);
    if (c.path !== null) fields.push(ld(4, c.path));
    if (headerMap !== null) {
      fields.push(headerMap);
      if (c.duplicate === 'header_map')
        fields.push(encodeLines(c, c.altLines, extrasOf).headerMap ?? headerMap);
    }
    fields.push(...extrasOf('http'));
    if (c.reversed) fields.reverse();
    return cat(fields);
  };
  const request = (lines: HeaderLine[]) =>
    cat([
      ld(2, http(lines)),
      ...(c.duplicate === 'http' ? [ld(2, http(c.altLines))] : []),
      ...extrasOf('request'),
    ]);
  const socket = (ip: string, port: boolean) =>
    cat([ld(2, ip), ...(port ? [cat([[0x18], varint(51234)])] : []), ...extrasOf('socket')]);
  const s = c.source;
  let address: Uint8Array | null;
  switch (s.kind) {
    case 'socket':
      address = cat([ld(1, socket(s.ip, s.port)), ...extrasOf('address')]);
      break;
    case 'socket-and-pipe':
      address = cat([ld(1, socket(s.ip, false)), ld(2, ld(1, '/run/envoy.sock')), ...extrasOf('address')]);
      break;
    case 'pipe':
      address = cat([ld(2, ld(1, '/run/envoy.sock')), ...extrasOf('address')]);
      break;
    case 'internal':
      address = cat([ld(3, ld(1, 'internal_listener')), ...extrasOf('address')]);
      break;
    case 'empty-address':
      address = cat([...extrasOf('address')]);
      break;
    default:
      address = null;
  }
  const peerParts = address === null ? [] : [ld(1, address)];
  if (c.duplicate === 'address' && address !== null)
    peerParts.push(ld(1, cat([ld(1, socket('198.51.100.20', false))])));
  const peer = cat([...peerParts, ...extrasOf('peer')]);
  const attributes = (lines: HeaderLine[]) =>
    cat([
      ld(1, peer),
      ...(c.duplicate === 'source' ? [ld(1, ld(1, ld(1, ld(2, '10.200.0.5'))))] : []),
      ld(2, ld(1, ld(1, ld(2, '10.0.4.12')))),
      ld(4, request(lines)),
      ...(c.duplicate === 'request' ? [ld(4, request(c.altLines))] : []),
      ...extrasOf('attributes'),
    ]);
  let bytes = cat([
    ld(1, attributes(c.lines)),
    ...(c.duplicate === 'attributes' ? [ld(1, attributes(c.altLines))] : []),
    ...extrasOf('top'),
  ]);
  for (const m of c.mutations) bytes = mutate(bytes, m);
  return Buffer.from(bytes);
}

export function mutate(bytes: Uint8Array, m: Mutation): Uint8Array {
  const at = Math.floor(m.at * bytes.length);
  const head = bytes.subarray(0, at);
  const tail = bytes.subarray(at);
  switch (m.op) {
    case 'flip': {
      if (bytes.length === 0) return bytes;
      const out = bytes.slice();
      out[at] = (out[at] as number) ^ (1 << ((m.bytes[0] as number) % 8));
      return out;
    }
    case 'set': {
      if (bytes.length === 0) return bytes;
      const out = bytes.slice();
      out[at] = m.bytes[0] as number;
      return out;
    }
    case 'insert':
      return cat([head, m.bytes, tail]);
    case 'delete':
      return cat([head, tail.subarray(m.length)]);
    case 'duplicate':
      return cat([head, tail.subarray(0, m.length * 8), tail]);
    case 'truncate':
      return head;
    case 'huge-length':
      return cat([head, [0xff, 0xff, 0xff, 0xff, 0x0f], tail]);
    default:
      return cat([bytes, m.bytes]);
  }
}

/** Case `k` of a run with `seed`: each case has its own seed, so any case replays alone. */
export function caseSeed(seed: number, k: number): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = (h + Math.imul(k + 1, 0xc2b2ae35)) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0x27d4eb2f) >>> 0;
  return (h ^ (h >>> 16)) | 0;
}

export function generateCase(arbitrary: fc.Arbitrary<FuzzCase>, seed: number, k: number): FuzzCase {
  return fc.sample(arbitrary, { seed: caseSeed(seed, k), numRuns: 1 })[0] as FuzzCase;
}
