/**
 * The CheckRequest wire walker must read exactly what a full protobufjs decode reads (plus the extraction rules,
 * written out plainly in `oracle` below), whatever the field order, unknown fields or header shape, and must
 * turn malformed input into CheckRequestDecodeError and nothing else. Where it deliberately differs from
 * protobufjs (duplicated singular messages, duplicated map keys), the difference is a refusal, never an allow.
 */
import fc from 'fast-check';
import { Field, Type } from 'protobufjs';
import {
  CheckRequestDecodeError,
  decodeCheckRequest,
} from '../../../src/adapters/grpc/check-request-decoder';
import type { AuthzRequest, PeerAddress } from '../../../src/core/types';
import { CheckRequestType, checkRequestBytes, envoyRequest, loadEnvoyRoot } from '../../support/check-client';

const SEED = 20260131;

// ---------------------------------------------------------------------------------------------------------------
// Oracle: a full protobufjs decode, plus a wire-compatible "list view" of HttpRequest.headers that keeps every
// map entry (map<string,string> is `repeated Entry {string key = 1; string value = 2}` on the wire).

const listRoot = loadEnvoyRoot();
const listHttp = listRoot.lookupType('envoy.service.auth.v3.AttributeContext.HttpRequest');
listHttp.remove(listHttp.fields.headers as Field);
listHttp.add(new Type('HeaderLine').add(new Field('key', 1, 'string')).add(new Field('value', 2, 'string')));
listHttp.add(new Field('headers', 3, 'HeaderLine', 'repeated'));
listRoot.resolveAll();
/** CheckRequest whose `headers` is a list of entries: decodes every entry and encodes duplicate keys. */
const ListCheckRequest = listRoot.lookupType('envoy.service.auth.v3.CheckRequest');

function listBytes(object: Record<string, unknown>): Buffer {
  const problem = ListCheckRequest.verify(object);
  if (problem !== null) throw new Error(problem);
  return Buffer.from(ListCheckRequest.encode(ListCheckRequest.fromObject(object)).finish());
}

function oracle(bytes: Buffer): AuthzRequest {
  const full = CheckRequestType.toObject(CheckRequestType.decode(bytes), {
    defaults: false,
    oneofs: true,
  }) as any;
  const listed = ListCheckRequest.toObject(ListCheckRequest.decode(bytes), { defaults: false }) as any;
  const http = full.attributes?.request?.http;
  const entries: Array<{ key?: string; value?: string }> = listed.attributes?.request?.http?.headers ?? [];
  // Sanity of the list view: collapsed with last-wins it is the protobufjs map.
  const collapsed = new Map(entries.map((e) => [e.key ?? '', e.value ?? '']));
  expect(collapsed).toEqual(new Map(Object.entries(http?.headers ?? {})));

  const headerMap: any[] = http?.header_map?.headers ?? [];
  const lines: Array<[string, string]> =
    headerMap.length > 0
      ? headerMap.map((h) => [
          h.key ?? '',
          h.raw_value !== undefined && h.raw_value.length > 0
            ? Buffer.from(h.raw_value).toString('utf8')
            : (h.value ?? ''),
        ])
      : entries.map((e) => [e.key ?? '', e.value ?? '']);
  const valuesOf = (name: string): string[] =>
    lines.filter(([k]) => k.toLowerCase() === name).map(([, v]) => v);
  const forwardedFor = valuesOf('x-forwarded-for');

  const address = full.attributes?.source?.address;
  let source: PeerAddress;
  if (address?.socket_address !== undefined)
    source = { kind: 'ip', ip: address.socket_address.address ?? '' };
  else if (address?.pipe !== undefined) source = { kind: 'none', detail: 'unix socket peer' };
  else if (address?.envoy_internal_address !== undefined)
    source = { kind: 'none', detail: 'internal listener peer' };
  else source = { kind: 'none', detail: 'no source address' };

  return {
    method: http?.method ?? '',
    path: http?.path ?? '',
    authorization: valuesOf('authorization'),
    apiKeyHeader: valuesOf('x-api-key').length > 0,
    forwardedFor: forwardedFor.length > 0 ? forwardedFor.join(',') : undefined,
    source,
    fortaryHeaders: [
      ...new Set(lines.map(([k]) => k.toLowerCase()).filter((k) => k.startsWith('x-fortary-'))),
    ],
    requestId: valuesOf('x-request-id')[0],
  };
}

function expectAgreement(bytes: Buffer): AuthzRequest {
  const decoded = decodeCheckRequest(bytes);
  expect(decoded).toEqual(oracle(bytes));
  return decoded;
}

/** Decodes, expecting CheckRequestDecodeError or a result; anything else fails the test. */
function decodeOrRefuse(bytes: Buffer): AuthzRequest | CheckRequestDecodeError {
  try {
    return decodeCheckRequest(bytes);
  } catch (error) {
    if (error instanceof CheckRequestDecodeError) return error;
    throw new Error(`decoder threw something other than CheckRequestDecodeError: ${String(error)}`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Wire-format helpers for hand-made bytes.

function varint(value: number | bigint): Buffer {
  let v = BigInt(value);
  const out: number[] = [];
  do {
    const byte = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v > 0n ? byte | 0x80 : byte);
  } while (v > 0n);
  return Buffer.from(out);
}
const tag = (field: number, wireType: number): Buffer => varint((BigInt(field) << 3n) | BigInt(wireType));
const ld = (field: number, ...parts: Array<Buffer | string>): Buffer => {
  const payload = Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : p)));
  return Buffer.concat([tag(field, 2), varint(payload.length), payload]);
};
const vint = (field: number, value: number | bigint): Buffer => Buffer.concat([tag(field, 0), varint(value)]);
const fixed32 = (field: number): Buffer => Buffer.concat([tag(field, 5), Buffer.from([1, 2, 3, 4])]);
const fixed64 = (field: number): Buffer =>
  Buffer.concat([tag(field, 1), Buffer.from([1, 2, 3, 4, 5, 6, 7, 8])]);

/** CheckRequest{attributes{request{http{...httpFields}}}} from raw HttpRequest field bytes. */
const withHttp = (...httpFields: Buffer[]): Buffer => ld(1, ld(4, ld(2, ...httpFields)));
/** CheckRequest{attributes{source{address{...addressFields}}}}. */
const withAddress = (...addressFields: Buffer[]): Buffer => ld(1, ld(1, ld(1, ...addressFields)));
const entry = (key: string, value: string): Buffer => ld(3, ld(1, key), ld(2, value));

// ---------------------------------------------------------------------------------------------------------------
// Schema-driven rewriting of encoded messages: every nesting level can get unknown fields and a shuffled order.

interface WireField {
  field: number;
  wireType: number;
  /** Payload without tag: the varint / fixed bytes, or the content of a length-delimited field. */
  payload: Buffer;
  children?: WireField[];
  /** The message type of `children` (undefined for map entries). */
  type?: Type;
}

function readVarint(bytes: Buffer, at: number): [bigint, number] {
  let value = 0n;
  let shift = 0n;
  for (;;) {
    const b = bytes[at++] as number;
    value |= BigInt(b & 0x7f) << shift;
    if (b < 0x80) return [value, at];
    shift += 7n;
  }
}

function parseWire(bytes: Buffer, type: Type | undefined): WireField[] {
  const out: WireField[] = [];
  let at = 0;
  while (at < bytes.length) {
    const [t, afterTag] = readVarint(bytes, at);
    const field = Number(t >> 3n);
    const wireType = Number(t & 7n);
    at = afterTag;
    if (wireType === 0) {
      const [, end] = readVarint(bytes, at);
      out.push({ field, wireType, payload: bytes.subarray(at, end) });
      at = end;
    } else if (wireType === 1 || wireType === 5) {
      const n = wireType === 1 ? 8 : 4;
      out.push({ field, wireType, payload: bytes.subarray(at, at + n) });
      at += n;
    } else {
      const [length, start] = readVarint(bytes, at);
      const payload = bytes.subarray(start, start + Number(length));
      at = start + Number(length);
      const known = type?.fieldsById[field];
      const node: WireField = { field, wireType, payload };
      if (known !== undefined && known.map) node.children = parseWire(payload, undefined);
      else if (known !== undefined && known.resolvedType instanceof Type) {
        node.type = known.resolvedType;
        node.children = parseWire(payload, known.resolvedType);
      }
      out.push(node);
    }
  }
  return out;
}

function writeWire(fields: WireField[]): Buffer {
  return Buffer.concat(
    fields.map((f) => {
      const payload = f.children !== undefined ? writeWire(f.children) : f.payload;
      return f.wireType === 2
        ? Buffer.concat([tag(f.field, 2), varint(payload.length), payload])
        : Buffer.concat([tag(f.field, f.wireType), payload]);
    }),
  );
}

/** A small deterministic PRNG (mulberry32) so a fast-check integer can drive a whole rewrite. */
function prng(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
}

function unknownField(type: Type | undefined, rnd: (n: number) => number): WireField {
  const candidates = [5, 6, 7, 9, 14, 15, 16, 17, 31, 32, 100, 2047, 2048, 262143, 536870911];
  const unknown = candidates.filter((n) => (type === undefined ? n > 2 : type.fieldsById[n] === undefined));
  const field = unknown[rnd(unknown.length)] as number;
  switch (rnd(5)) {
    case 0:
      return { field, wireType: 0, payload: varint(BigInt(rnd(1000)) ** BigInt(1 + rnd(6))) };
    case 1:
      return {
        field,
        wireType: 0,
        payload: Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
      };
    case 2:
      return { field, wireType: 1, payload: Buffer.from([9, 8, 7, 6, 5, 4, 3, 2]) };
    case 3:
      return { field, wireType: 5, payload: Buffer.from([0x80, 0x80, 0x80, 0x80]) };
    default: {
      // Garbage that is not a valid message: unknown fields are never looked into.
      const junk = Buffer.alloc(rnd(40));
      for (let i = 0; i < junk.length; i++) junk[i] = rnd(256);
      return { field, wireType: 2, payload: junk };
    }
  }
}

/**
 * Inserts unknown fields (probability `inject` per position) and shuffles each message's fields, keeping the
 * relative order of fields with the same number (repeated elements, last-wins scalars), so the meaning is kept.
 */
function rewrite(bytes: Buffer, seed: number, options: { inject: number; shuffle: boolean }): Buffer {
  const rnd = prng(seed);
  const walk = (fields: WireField[], type: Type | undefined): WireField[] => {
    for (const f of fields) if (f.children !== undefined) f.children = walk(f.children, f.type);
    let out = [...fields];
    if (options.shuffle) {
      const byField = new Map<number, WireField[]>();
      for (const f of out) byField.set(f.field, [...(byField.get(f.field) ?? []), f]);
      const order = out.map((f) => f.field);
      for (let i = order.length - 1; i > 0; i--) {
        const j = rnd(i + 1);
        [order[i], order[j]] = [order[j] as number, order[i] as number];
      }
      out = order.map((n) => (byField.get(n) as WireField[]).shift() as WireField);
    }
    const injected: WireField[] = [];
    for (let i = 0; i <= out.length; i++) {
      while (rnd(1000) < options.inject * 1000) injected.push(unknownField(type, rnd));
      if (i < out.length) injected.push(out[i] as WireField);
    }
    return injected;
  };
  return writeWire(walk(parseWire(bytes, CheckRequestType), CheckRequestType));
}

// ---------------------------------------------------------------------------------------------------------------

const TOKEN = 'Bearer fty_k7Qm2xVb9TnP4sLd_Zr8eWc3YuHa6JfNq1GtKoXp5BvMi0Ds7Ly2';

describe('realistic Envoy requests', () => {
  test.each([false, true])('rawHeaders=%s: every field Check reads', (rawHeaders) => {
    const bytes = checkRequestBytes(envoyRequest({ authorization: TOKEN, rawHeaders }));
    expect(bytes.length).toBeGreaterThan(550);
    const decoded = expectAgreement(bytes);
    expect(decoded).toEqual({
      method: 'GET',
      path: '/v1/vaults/v1/secrets/db-password?version=3',
      authorization: [TOKEN],
      apiKeyHeader: false,
      forwardedFor: '203.0.113.7',
      source: { kind: 'ip', ip: '203.0.113.7' },
      fortaryHeaders: [],
      requestId: '5f0c7a1e-8d0b-4a44-9c3e-0d6f2f6f9b11',
    });
  });

  test('both header shapes give the same answer (doc §8.18)', () => {
    const options = {
      authorization: TOKEN,
      forwardedFor: '198.51.100.1, 203.0.113.7',
      extraHeaders: [
        ['x-fortary-key-id', 'spoofed'],
        ['X-Fortary-Debug', '1'],
      ] as const,
    };
    expect(decodeCheckRequest(checkRequestBytes(envoyRequest({ ...options, rawHeaders: true })))).toEqual(
      decodeCheckRequest(checkRequestBytes(envoyRequest(options))),
    );
  });

  test('method and path come from HttpRequest, not from the pseudo-headers', () => {
    const request = envoyRequest({ method: 'GET', path: '/v1/vaults/a' }) as any;
    request.attributes.request.http.headers[':method'] = 'DELETE';
    request.attributes.request.http.headers[':path'] = '/admin';
    const decoded = expectAgreement(checkRequestBytes(request));
    expect([decoded.method, decoded.path]).toEqual(['GET', '/v1/vaults/a']);
  });

  test('no authorization, x-api-key, client-sent x-fortary-* names deduplicated and lowercased', () => {
    const decoded = expectAgreement(
      listBytes({
        attributes: {
          request: {
            http: {
              method: 'POST',
              headers: [
                { key: 'X-Fortary-Key-Id', value: 'a' },
                { key: 'x-fortary-key-id', value: 'b' },
                { key: 'x-fortary-x', value: '' },
                { key: 'X-API-KEY', value: 'fty_secret' },
                { key: 'x-fortary', value: 'not the prefix' },
              ],
            },
          },
        },
      }),
    );
    expect(decoded.authorization).toEqual([]);
    expect(decoded.apiKeyHeader).toBe(true);
    expect(decoded.fortaryHeaders).toEqual(['x-fortary-key-id', 'x-fortary-x']);
  });

  test('IPv6, IPv4-mapped and zone-id source addresses are passed through as text', () => {
    for (const ip of ['2001:db8::1', '::ffff:203.0.113.7', 'fe80::1%eth0', '']) {
      const decoded = expectAgreement(checkRequestBytes(envoyRequest({ sourceIp: ip })));
      expect(decoded.source).toEqual({ kind: 'ip', ip });
    }
  });

  test.each([
    [{ pipe: { path: '/run/envoy.sock', mode: 0o600 } }, { kind: 'none', detail: 'unix socket peer' }],
    [
      { envoy_internal_address: { server_listener_name: 'internal' } },
      { kind: 'none', detail: 'internal listener peer' },
    ],
    [{}, { kind: 'none', detail: 'no source address' }],
    [null, { kind: 'none', detail: 'no source address' }],
    [{ socket_address: { port_value: 5 } }, { kind: 'ip', ip: '' }],
  ])('source %j', (address, expected) => {
    expect(expectAgreement(checkRequestBytes(envoyRequest({ address }))).source).toEqual(expected);
  });

  test('no source at all, and empty messages everywhere', () => {
    const empty: AuthzRequest = {
      method: '',
      path: '',
      authorization: [],
      apiKeyHeader: false,
      forwardedFor: undefined,
      source: { kind: 'none', detail: 'no source address' },
      fortaryHeaders: [],
      requestId: undefined,
    };
    for (const bytes of [
      Buffer.alloc(0),
      ld(1),
      ld(1, ld(1)),
      ld(1, ld(1, ld(1))),
      ld(1, ld(4)),
      withHttp(),
      withHttp(ld(13)),
      withHttp(ld(13), ld(3)),
      withHttp(ld(13, ld(1))), // one empty HeaderValue: header_map is non-empty, with a nameless header
      checkRequestBytes({}),
      checkRequestBytes({ attributes: {} }),
      checkRequestBytes({ attributes: { request: { http: {} } } }),
    ]) {
      expect(decodeCheckRequest(bytes)).toEqual(empty);
      expect(oracle(bytes)).toEqual(empty);
    }
  });

  test('one result cannot alter another: arrays are fresh, or frozen when shared', () => {
    const bytes = checkRequestBytes(envoyRequest({ authorization: TOKEN }));
    const a = decodeCheckRequest(bytes);
    (a.authorization as string[]).push('x');
    // The empty x-fortary-* list is shared by every request without such headers, so it must refuse writes.
    expect(() => (a.fortaryHeaders as string[]).push('y')).toThrow(TypeError);
    expect(decodeCheckRequest(bytes).authorization).toEqual([TOKEN]);
    expect(decodeCheckRequest(bytes).fortaryHeaders).toEqual([]);
  });
});

describe('header selection', () => {
  test('header_map, when non-empty, wins over headers; raw_value wins over value when non-empty', () => {
    const bytes = withHttp(
      entry('authorization', 'Bearer from-headers'),
      ld(
        13,
        ld(1, ld(1, 'authorization'), ld(3, 'Bearer raw')),
        ld(1, ld(1, 'x-request-id'), ld(2, 'from-value')),
        ld(1, ld(1, 'x-forwarded-for'), ld(2, 'ignored'), ld(3, '10.0.0.1')),
        ld(1, ld(1, 'x-forwarded-for'), ld(3), ld(2, '10.0.0.2')),
      ),
      entry('x-api-key', 'only in headers'),
    );
    const decoded = expectAgreement(bytes);
    expect(decoded.authorization).toEqual(['Bearer raw']);
    expect(decoded.requestId).toBe('from-value');
    expect(decoded.forwardedFor).toBe('10.0.0.1,10.0.0.2');
    expect(decoded.apiKeyHeader).toBe(false);
  });

  test('an empty header_map (present, no entries) falls back to headers', () => {
    const decoded = expectAgreement(withHttp(ld(13), entry('authorization', 'Bearer a')));
    expect(decoded.authorization).toEqual(['Bearer a']);
  });

  test('a header_map entry with no value at all is an empty value', () => {
    expect(expectAgreement(withHttp(ld(13, ld(1, ld(1, 'authorization'))))).authorization).toEqual(['']);
  });

  test('two Authorization lines are both reported, in both shapes (doc §7.4, §8.12)', () => {
    expect(
      decodeCheckRequest(
        checkRequestBytes(envoyRequest({ authorization: ['Bearer a', 'Bearer b'], rawHeaders: true })),
      ).authorization,
    ).toEqual(['Bearer a', 'Bearer b']);
    // Envoy's default shape joins them with ','; the credentials rule refuses the comma.
    expect(
      decodeCheckRequest(checkRequestBytes(envoyRequest({ authorization: ['Bearer a', 'Bearer b'] })))
        .authorization,
    ).toEqual(['Bearer a,Bearer b']);
  });

  test('the same map key twice on the wire: both values are reported (protobufjs would keep the last)', () => {
    const bytes = withHttp(entry('authorization', 'Bearer first'), entry('authorization', 'Bearer second'));
    expect(decodeCheckRequest(bytes).authorization).toEqual(['Bearer first', 'Bearer second']);
    const protobufjs = CheckRequestType.toObject(CheckRequestType.decode(bytes)) as any;
    expect(protobufjs.attributes.request.http.headers).toEqual({ authorization: 'Bearer second' });
    expect(oracle(bytes).authorization).toEqual(['Bearer first', 'Bearer second']);
  });

  test('names compare case-insensitively; case variants in the map are separate entries, all reported', () => {
    const decoded = expectAgreement(
      withHttp(
        entry('Authorization', 'Bearer A'),
        entry('authorization', 'Bearer b'),
        entry('X-Forwarded-For', '1.1.1.1'),
        entry('x-forwarded-for', '2.2.2.2'),
        entry('X-REQUEST-ID', 'first'),
        entry('x-request-id', 'second'),
        entry('x-Api-Key', 'k'),
      ),
    );
    expect(decoded.authorization).toEqual(['Bearer A', 'Bearer b']);
    expect(decoded.forwardedFor).toBe('1.1.1.1,2.2.2.2');
    expect(decoded.requestId).toBe('first');
    expect(decoded.apiKeyHeader).toBe(true);
  });

  test('near-miss names are not matched', () => {
    const decoded = expectAgreement(
      withHttp(
        entry('authorizations', 'x'),
        entry('authorizatio', 'x'),
        entry(' authorization', 'x'),
        entry('authorization\0', 'x'),
        entry('x-api-keys', 'x'),
        entry('x_api_key', 'x'),
        entry('x-forwarded-for2', 'x'),
        entry('x-request-ids', 'x'),
        entry('x-fortary', 'x'),
        entry('x_fortary-a', 'x'),
        entry('AUTHORIZATION\r', 'x'),
      ),
    );
    expect(decoded).toMatchObject({
      authorization: [],
      apiKeyHeader: false,
      forwardedFor: undefined,
      requestId: undefined,
    });
    expect(decoded.fortaryHeaders).toEqual([]);
  });

  test('non-ASCII names follow String#toLowerCase (U+212A KELVIN SIGN lowercases to k)', () => {
    const decoded = expectAgreement(
      withHttp(
        entry('x-api-\u212Aey', 'k'),
        entry('X-FORTARY-\u00C9T\u00C9', '1'),
        entry('\u0130x-request-id', 'no'),
        entry('authorizat\u0130on', 'no'),
        entry('\u00e9authorization', 'no'),
      ),
    );
    expect(decoded.apiKeyHeader).toBe(true);
    expect(decoded.fortaryHeaders).toEqual(['x-fortary-\u00e9t\u00e9']);
    expect(decoded.requestId).toBeUndefined();
    expect(decoded.authorization).toEqual([]);
  });

  test('the fast path rests on a Unicode fact: only U+0130 and U+212A lowercase to something with ASCII', () => {
    const found: number[] = [];
    for (let cp = 0x80; cp <= 0x10ffff; cp++) {
      if (cp >= 0xd800 && cp <= 0xdfff) continue;
      if ([...String.fromCodePoint(cp).toLowerCase()].some((c) => c.charCodeAt(0) < 0x80)) found.push(cp);
    }
    expect(found).toEqual([0x130, 0x212a]);
  });

  test('invalid UTF-8 becomes U+FFFD, as protobufjs decodes it', () => {
    const bad = Buffer.from([0x42, 0x65, 0xff, 0xc3, 0x28, 0xed, 0xa0, 0x80]);
    const decoded = expectAgreement(
      withHttp(ld(2, bad), ld(4, bad), entry('authorization', 'x'), ld(3, ld(1, 'x-request-id'), ld(2, bad))),
    );
    expect(decoded.method).toContain('\ufffd');
    expect(decoded.requestId).toContain('\ufffd');
    const raw = expectAgreement(withHttp(ld(13, ld(1, ld(1, 'authorization'), ld(3, bad)))));
    expect(raw.authorization[0]).toContain('\ufffd');
    expect(expectAgreement(withHttp(ld(3, ld(1, Buffer.from([0xff])), ld(2, 'v')))).authorization).toEqual(
      [],
    );
  });
});

describe('protobuf structure', () => {
  const realistic = [false, true].map((rawHeaders) =>
    checkRequestBytes(
      envoyRequest({
        authorization: TOKEN,
        rawHeaders,
        extraHeaders: [
          ['x-fortary-user-id', 'u'],
          ['x-api-key', 'k'],
        ],
      }),
    ),
  );

  test.each([0, 1])('unknown fields of every wire type at every nesting level (shape %i)', (shape) => {
    const bytes = realistic[shape] as Buffer;
    const baseline = decodeCheckRequest(bytes);
    for (let seed = 1; seed <= 200; seed++) {
      const rewritten = rewrite(bytes, seed, { inject: 0.3, shuffle: false });
      expect(rewritten.length).toBeGreaterThan(bytes.length);
      expect(decodeCheckRequest(rewritten)).toEqual(baseline);
      expect(oracle(rewritten)).toEqual(baseline);
    }
  });

  test.each([0, 1])('fields in any order (shape %i)', (shape) => {
    const bytes = realistic[shape] as Buffer;
    const baseline = decodeCheckRequest(bytes);
    for (let seed = 1; seed <= 200; seed++) {
      const rewritten = rewrite(bytes, seed, { inject: 0, shuffle: true });
      expect(decodeCheckRequest(rewritten)).toEqual(baseline);
      expect(oracle(rewritten)).toEqual(baseline);
    }
  });

  test('an unknown field between every pair of fields, with multi-byte tags', () => {
    const base = withHttp(ld(2, 'GET'), ld(4, '/p'), entry('authorization', 'Bearer x'));
    const junk = Buffer.concat([
      vint(536870911, 2n ** 64n - 1n),
      ld(100, Buffer.from([0xff, 0xff])),
      fixed32(31),
      fixed64(16),
    ]);
    const bytes = ld(
      1,
      junk,
      ld(1, junk, ld(1, junk, ld(1, junk, ld(2, '10.1.2.3'), junk), junk), junk),
      junk,
      ld(
        4,
        junk,
        ld(
          2,
          junk,
          ld(2, 'GET'),
          junk,
          ld(4, '/p'),
          junk,
          ld(3, junk, ld(1, 'authorization'), junk, ld(2, 'Bearer x'), junk),
          junk,
        ),
        junk,
      ),
      junk,
    );
    expect(base.length).toBeLessThan(bytes.length);
    expect(expectAgreement(bytes)).toMatchObject({
      method: 'GET',
      path: '/p',
      authorization: ['Bearer x'],
      source: { kind: 'ip', ip: '10.1.2.3' },
    });
  });

  test('known fields we skip (destination, time, id, host, size, body, context_extensions...) are skipped', () => {
    const bytes = checkRequestBytes({
      attributes: {
        destination: { address: { socket_address: { address: '10.9.9.9' } }, principal: 'spiffe://x' },
        context_extensions: { authorization: 'Bearer not-a-header' },
        metadata_context: { filter_metadata: { a: { fields: { authorization: { stringValue: 'x' } } } } },
        tls_session: { sni: 'api.fortary.example' },
        request: {
          time: { seconds: 1, nanos: 2 },
          http: {
            id: '1',
            host: 'h',
            scheme: 's',
            query: 'q',
            size: 12345678901,
            body: 'authorization',
            raw_body: Buffer.from('x'),
          },
        },
      },
    });
    expect(expectAgreement(bytes)).toMatchObject({ authorization: [], source: { kind: 'none' } });
  });

  test('repeated singular scalars: the last one wins, as in protobufjs', () => {
    const bytes = Buffer.concat([withHttp(ld(2, 'GET'), ld(4, '/first'), ld(2, 'DELETE'), ld(4, '/second'))]);
    expect(expectAgreement(bytes)).toMatchObject({ method: 'DELETE', path: '/second' });
    const ip = withAddress(ld(1, ld(2, '10.0.0.1'), ld(2, '10.0.0.2')));
    expect(expectAgreement(ip).source).toEqual({ kind: 'ip', ip: '10.0.0.2' });
    const entryTwice = withHttp(
      ld(3, ld(1, 'x-request-id'), ld(2, 'a'), ld(1, 'authorization'), ld(2, 'Bearer z')),
    );
    expect(expectAgreement(entryTwice)).toMatchObject({ authorization: ['Bearer z'], requestId: undefined });
    const rawTwice = withHttp(ld(13, ld(1, ld(1, 'authorization'), ld(3, 'Bearer a'), ld(3, 'Bearer b'))));
    expect(expectAgreement(rawTwice).authorization).toEqual(['Bearer b']);
    const rawThenEmpty = withHttp(
      ld(13, ld(1, ld(1, 'authorization'), ld(2, 'v'), ld(3, 'Bearer a'), ld(3))),
    );
    expect(expectAgreement(rawThenEmpty).authorization).toEqual(['v']);
  });

  test.each([
    ['CheckRequest.attributes', Buffer.concat([ld(1, ld(4)), ld(1, ld(1))])],
    ['AttributeContext.source', ld(1, ld(1), ld(1))],
    ['AttributeContext.request', ld(1, ld(4, ld(2, ld(2, 'GET'))), ld(4))],
    ['Peer.address', ld(1, ld(1, ld(1, ld(1, ld(2, '10.0.0.1'))), ld(1)))],
    ['Address.socket_address twice', withAddress(ld(1, ld(2, '10.0.0.1')), ld(1, ld(3, ld(1))))],
    ['Address socket_address then pipe', withAddress(ld(1, ld(2, '10.0.0.1')), ld(2))],
    ['Address pipe then socket_address', withAddress(ld(2), ld(1, ld(2, '10.0.0.1')))],
    ['Address internal then socket_address', withAddress(ld(3), ld(1, ld(2, '10.0.0.1')))],
    ['Request.http', ld(1, ld(4, ld(2, entry('authorization', 'Bearer a')), ld(2, ld(2, 'GET'))))],
    ['HttpRequest.header_map', withHttp(ld(13, ld(1, ld(1, 'authorization'), ld(3, 'Bearer a'))), ld(13))],
  ])('a repeated singular message is refused: %s', (_name, bytes) => {
    expect(() => decodeCheckRequest(bytes)).toThrow(CheckRequestDecodeError);
    // protobufjs accepts these bytes and keeps only the last occurrence, where the protobuf spec merges.
    expect(() => CheckRequestType.decode(bytes)).not.toThrow();
  });

  test('why: protobufjs (replace) and the protobuf spec (merge) disagree on what a split attributes says', () => {
    const bytes = Buffer.concat([ld(1, ld(4, ld(2, entry('authorization', TOKEN)))), ld(1, ld(1))]);
    const protobufjs = CheckRequestType.toObject(CheckRequestType.decode(bytes)) as any;
    expect(protobufjs.attributes.request).toBeUndefined(); // a merge would keep the token
    expect(() => decodeCheckRequest(bytes)).toThrow(/attributes appears more than once/);
  });
});

describe('generated requests (fast-check)', () => {
  const interesting = [
    'authorization',
    'x-api-key',
    'x-forwarded-for',
    'x-request-id',
    'x-fortary-key-id',
    'x-fortary-user-id',
    'x-fortary-',
    'x-fortary-debug',
    'x-fortary',
    'authorizations',
    'x-api-keys',
    ':authority',
    ':path',
    ':method',
    'user-agent',
    'accept',
    'accept-encoding',
    'x-forwarded-proto',
    'x-envoy-external-address',
    'x-api-\u212Aey',
    'x-request-\u0130d',
    'X-FORTARY-\u00C9',
    '',
  ];
  const headerName = fc.oneof(
    { weight: 4, arbitrary: fc.mixedCase(fc.constantFrom(...interesting)) },
    { weight: 1, arbitrary: fc.string({ maxLength: 20 }) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }) },
  );
  const text = fc.oneof(
    fc.string({ maxLength: 30 }),
    fc.string({ unit: 'binary', maxLength: 20 }),
    fc.constantFrom(TOKEN, 'Bearer a,Bearer b', '10.0.0.1, 10.0.0.2', ''),
  );
  const rawBytes = fc.oneof(
    text.map((s) => Buffer.from(s, 'utf8')),
    fc.uint8Array({ maxLength: 20 }).map((a) => Buffer.from(a)),
  );
  const headerValue = fc.record({ key: headerName, value: text, raw_value: rawBytes }, { requiredKeys: [] });
  const ip = fc.oneof(fc.ipV4(), fc.ipV6(), fc.string({ maxLength: 16 }));
  const address = fc.oneof(
    fc.record({
      socket_address: fc.record(
        { address: ip, port_value: fc.integer({ min: 0, max: 65535 }) },
        { requiredKeys: [] },
      ),
    }),
    fc.record({ pipe: fc.record({ path: fc.string({ maxLength: 10 }) }, { requiredKeys: [] }) }),
    fc.record({ envoy_internal_address: fc.record({ server_listener_name: fc.string({ maxLength: 10 }) }) }),
    fc.constant({}),
  );
  const http = fc.record(
    {
      id: fc.string({ maxLength: 20 }),
      method: fc.oneof(
        fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'get'),
        text,
      ),
      path: text,
      host: fc.string({ maxLength: 10 }),
      size: fc.integer({ min: 0 }),
      protocol: fc.constantFrom('HTTP/1.1', 'HTTP/2'),
      headers: fc.array(fc.record({ key: headerName, value: text }, { requiredKeys: [] }), { maxLength: 12 }),
      header_map: fc.record({ headers: fc.array(headerValue, { maxLength: 12 }) }, { requiredKeys: [] }),
    },
    { requiredKeys: [] },
  );
  const checkRequest = fc.record(
    {
      attributes: fc.record(
        {
          source: fc.record({ address, principal: fc.string({ maxLength: 8 }) }, { requiredKeys: [] }),
          destination: fc.record({ address }, { requiredKeys: [] }),
          request: fc.record(
            { time: fc.record({ seconds: fc.nat(), nanos: fc.nat() }), http },
            { requiredKeys: [] },
          ),
          context_extensions: fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }), {
            maxKeys: 3,
          }),
        },
        { requiredKeys: [] },
      ),
    },
    { requiredKeys: [] },
  );

  test('the walker agrees with protobufjs + the extraction rules, with unknown fields and shuffled order', () => {
    fc.assert(
      fc.property(
        checkRequest,
        fc.integer(),
        fc.constantFrom(0, 0.1, 0.4),
        fc.boolean(),
        (object, seed, inject, shuffle) => {
          const bytes = listBytes(object);
          expectAgreement(bytes);
          expectAgreement(rewrite(bytes, seed, { inject, shuffle }));
        },
      ),
      { seed: SEED, numRuns: 500 },
    );
  });
});

describe('malformed input', () => {
  const realistic = [false, true].map((rawHeaders) =>
    checkRequestBytes(envoyRequest({ authorization: TOKEN, rawHeaders, extraHeaders: [['x-api-key', 'k']] })),
  );

  test.each([0, 1])(
    'truncated at every offset: refused or decoded, never a longer Authorization (shape %i)',
    (shape) => {
      const bytes = realistic[shape] as Buffer;
      let refused = 0;
      for (let n = 0; n < bytes.length; n++) {
        const result = decodeOrRefuse(bytes.subarray(0, n));
        if (result instanceof CheckRequestDecodeError) {
          refused++;
          expect(result.offset).toBeGreaterThanOrEqual(0);
          expect(result.offset).toBeLessThanOrEqual(n);
          continue;
        }
        for (const value of result.authorization)
          expect(TOKEN.startsWith(value) && value.length <= TOKEN.length).toBe(true);
      }
      // Everything is inside attributes (field 1), so only the empty prefix decodes.
      expect(refused).toBe(bytes.length - 1);
      expect(decodeCheckRequest(bytes.subarray(0, 0)).authorization).toEqual([]);
    },
  );

  test('random bytes: refused or decoded, nothing else (fast-check)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        decodeOrRefuse(Buffer.from(bytes));
      }),
      { seed: SEED, numRuns: 2000 },
    );
  });

  test('random byte mutations of a real request: refused or decoded; a decode never invents Authorization', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(0, 1),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
        (shape, edits) => {
          const bytes = Buffer.from(realistic[shape] as Buffer);
          for (const [at, value] of edits) bytes[at % bytes.length] = value;
          const result = decodeOrRefuse(bytes);
          if (!(result instanceof CheckRequestDecodeError)) {
            for (const value of result.authorization) expect(value.length).toBeLessThanOrEqual(bytes.length);
          }
        },
      ),
      { seed: SEED, numRuns: 2000 },
    );
  });

  const refusals: Array<[string, Buffer]> = [
    ['truncated tag varint', Buffer.from([0x80])],
    ['truncated length', Buffer.from([0x0a, 0x80])],
    ['length past the end', Buffer.from([0x0a, 0x05, 0x00])],
    ['length past the enclosing message', ld(1, Buffer.from([0x22, 0x7f]))],
    ['tag varint of 11 bytes', Buffer.from([...Array(10).fill(0x80), 0x01])],
    ['length varint of 11 bytes', Buffer.from([0x0a, ...Array(10).fill(0x80), 0x00])],
    ['unknown varint of 11 bytes', Buffer.from([0x08, ...Array(10).fill(0xff), 0x01])],
    ['length 2^32', Buffer.concat([tag(1, 2), varint(2n ** 32n)])],
    ['length 2^53 + 1', Buffer.concat([tag(1, 2), varint(2n ** 53n + 1n)])],
    ['length 2^64 - 1', Buffer.concat([tag(1, 2), varint(2n ** 64n - 1n)])],
    ['unknown length 2^31 inside http', withHttp(Buffer.concat([tag(99, 2), varint(2n ** 31n)]))],
    ['tag above 32 bits', Buffer.concat([varint(2n ** 35n + 2n), Buffer.from([0])])],
    ['field number 0', Buffer.from([0x00, 0x00])],
    ['field number 0, length-delimited', Buffer.from([0x02, 0x00])],
    ['start group at the top', Buffer.from([0x0b, 0x0c])],
    ['end group at the top', Buffer.from([0x0c])],
    ['group inside http', withHttp(Buffer.from([0x7b, 0x7c]))],
    ['group inside a header entry', withHttp(ld(3, Buffer.from([0x1b, 0x1c])))],
    ['wire type 6', Buffer.from([0x0e, 0x00])],
    ['wire type 7 inside HeaderValue', withHttp(ld(13, ld(1, Buffer.from([0x27]))))],
    ['truncated fixed32', Buffer.from([0x0d, 1, 2, 3])],
    ['truncated fixed64', ld(1, Buffer.from([0x11, 1, 2, 3, 4, 5, 6, 7]))],
    ['attributes as a varint', Buffer.from([0x08 | 0, 0x01])],
    ['method as a varint', withHttp(vint(2, 3))],
    ['path as fixed32', withHttp(fixed32(4))],
    ['header entry key as a varint', withHttp(ld(3, vint(1, 5)))],
    ['header_map as fixed64', withHttp(fixed64(13))],
    ['socket address as a varint', withAddress(ld(1, vint(2, 1)))],
    ['garbage where the http message should be', withHttp(Buffer.from([0xff, 0xff, 0xff]))],
    ['garbage inside a HeaderValue', withHttp(ld(13, ld(1, Buffer.from([0x0a, 0x09, 0x41]))))],
  ];
  test.each(refusals)('refused: %s', (_name, bytes) => {
    expect(() => decodeCheckRequest(bytes)).toThrow(CheckRequestDecodeError);
  });

  test('a 10-byte varint (padded, or the largest 64-bit value) is fine', () => {
    const paddedLength = Buffer.from([0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00]);
    expect(decodeCheckRequest(paddedLength).method).toBe('');
    const paddedTag = Buffer.from([0x8a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x00]);
    expect(decodeCheckRequest(paddedTag).method).toBe('');
    expect(decodeCheckRequest(vint(15, 2n ** 64n - 1n)).method).toBe('');
  });

  test('the error says where', () => {
    try {
      decodeCheckRequest(withHttp(vint(2, 3)));
      throw new Error('not refused');
    } catch (error) {
      expect(error).toBeInstanceOf(CheckRequestDecodeError);
      expect((error as CheckRequestDecodeError).message).toMatch(
        /^malformed CheckRequest: field 2 .* at byte \d+$/,
      );
      expect((error as CheckRequestDecodeError).name).toBe('CheckRequestDecodeError');
    }
  });
});

describe('bounded work', () => {
  test('a megabyte of headers decodes in linear time, every value counted', () => {
    const lines: Buffer[] = [];
    for (let i = 0; i < 20_000; i++)
      lines.push(entry(i % 2 === 0 ? 'x-forwarded-for' : `x-fortary-h${i}`, '10.0.0.1'));
    const bytes = withHttp(...lines);
    expect(bytes.length).toBeGreaterThan(500_000);
    const started = performance.now();
    const decoded = decodeCheckRequest(bytes);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(decoded.forwardedFor?.split(',')).toHaveLength(10_000);
    expect(decoded.fortaryHeaders).toHaveLength(10_000);
  });

  test('a megabyte of the same x-fortary name, and of deep unknown nesting, is quick', () => {
    const same = withHttp(...Array.from({ length: 40_000 }, () => entry('X-Fortary-A', 'v')));
    expect(decodeCheckRequest(same).fortaryHeaders).toEqual(['x-fortary-a']);
    let nested: Buffer = Buffer.from('x');
    for (let i = 0; i < 5_000; i++) nested = ld(7, nested); // never descended into
    const started = performance.now();
    expect(decodeCheckRequest(ld(1, nested, ld(4, ld(2, ld(2, 'GET'))))).method).toBe('GET');
    expect(performance.now() - started).toBeLessThan(200);
  });
});
