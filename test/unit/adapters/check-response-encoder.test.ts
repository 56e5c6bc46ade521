/**
 * The CheckResponse encoder, asserted on the bytes it emits: decoded with protobufjs (and with a stock
 * proto-loader definition, as another ext_authz client would), every field Envoy acts on is checked for the
 * allow and for every deny reason. Above all: a response always carries `status`, and a denial never carries
 * code 0 (docs/envoy-ext-authz.md §7.1, §8.5, §8.6).
 */
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import fc from 'fast-check';
import {
  encodeAllow,
  encodeDeny,
  EXPIRES_AT_HEADER,
  KEY_ID_HEADER,
  USER_ID_HEADER,
  guardCheckResponse,
} from '../../../src/adapters/grpc/check-response-encoder';
import { authorizationService, CHECK_METHOD_PATH } from '../../../src/adapters/grpc/service-definition';
import { DENY_REASONS, GrpcCode, outcomeFor, type DenyReason } from '../../../src/core/outcome';
import type { AuthzRequest } from '../../../src/core/types';
import {
  CheckResponseType,
  decodeCheckResponse,
  envoyRequest,
  makeCheckClient,
  metadataOf,
  PROTO_DIR,
  RESPONSE_OBJECT_OPTIONS,
  type DecodedCheckResponse,
} from '../../support/check-client';

const SEED = 20260131;

/** The invariants that keep Envoy from allowing by accident, on any response we emit. */
function expectSafeShape(bytes: Buffer, expectAllow: boolean): DecodedCheckResponse {
  expect(bytes[0]).toBe(0x0a); // field 1 (status), length-delimited, first on the wire
  const decoded = decodeCheckResponse(bytes);
  expect(decoded.status).toBeDefined();
  const code = decoded.status.code ?? 0;
  if (expectAllow) {
    expect(code).toBe(0);
    expect(decoded.http_response).toBe('ok_response');
    expect(decoded.denied_response).toBeUndefined();
    expect(decoded.error_response).toBeUndefined();
  } else {
    expect(code).not.toBe(0);
    expect(decoded.http_response).toBe('denied_response');
    expect(decoded.ok_response).toBeUndefined();
  }
  return decoded;
}

/** Full protobufjs encoding of an object: the memoised/concatenated bytes must be exactly this. */
function referenceBytes(object: Record<string, unknown>): Buffer {
  const problem = CheckResponseType.verify(object);
  if (problem !== null) throw new Error(problem);
  return Buffer.from(CheckResponseType.encode(CheckResponseType.fromObject(object)).finish());
}

const s = (value: string): { stringValue: string } => ({ stringValue: value });

describe('encodeAllow', () => {
  test('status 0 is on the wire, identity headers overwrite, authorization is removed, metadata says who', () => {
    const bytes = encodeAllow('key_1', 'user_1', []);
    expect(bytes.subarray(0, 4)).toEqual(Buffer.from([0x0a, 0x02, 0x08, 0x00])); // status {code: 0}
    const decoded = expectSafeShape(bytes, true);
    expect(decoded.status).toEqual({ code: 0 });
    expect(decoded.ok_response).toEqual({
      headers: [
        { header: { key: KEY_ID_HEADER, value: 'key_1' }, append: { value: false }, append_action: 2 },
        { header: { key: USER_ID_HEADER, value: 'user_1' }, append: { value: false }, append_action: 2 },
      ],
      headers_to_remove: ['authorization'],
    });
    expect(metadataOf(decoded)).toEqual({
      decision: 'allow',
      reason: 'allowed',
      key_id: 'key_1',
      user_id: 'user_1',
    });
    // The value Envoy reads is `value`, never raw_value (doc §2.1).
    expect(decoded.ok_response.headers[0].header.raw_value).toBeUndefined();
  });

  test('the bytes are exactly a protobufjs encoding of the intended object', () => {
    const expected = {
      status: { code: 0 },
      ok_response: {
        headers: [
          { header: { key: KEY_ID_HEADER, value: 'k' }, append: { value: false }, append_action: 2 },
          { header: { key: USER_ID_HEADER, value: 'u' }, append: { value: false }, append_action: 2 },
        ],
        headers_to_remove: ['authorization', 'x-fortary-debug'],
      },
      dynamic_metadata: {
        fields: { decision: s('allow'), reason: s('allowed'), key_id: s('k'), user_id: s('u') },
      },
    };
    expect(encodeAllow('k', 'u', ['x-fortary-debug'])).toEqual(referenceBytes(expected));
    expected.ok_response.headers_to_remove = ['authorization'];
    expect(encodeAllow('k', 'u', [])).toEqual(referenceBytes(expected));
  });

  test('an expiry warning is response_headers_to_add (field 6), exactly as protobufjs encodes it', () => {
    const at = '2027-01-31T12:00:00.000Z';
    const header = (key: string, value: string) => ({
      header: { key, value },
      append: { value: false },
      append_action: 2,
    });
    const expected = {
      status: { code: 0 },
      ok_response: {
        headers: [header(KEY_ID_HEADER, 'k'), header(USER_ID_HEADER, 'u')],
        headers_to_remove: ['authorization'],
        response_headers_to_add: [header(EXPIRES_AT_HEADER, at)],
      },
      dynamic_metadata: {
        fields: { decision: s('allow'), reason: s('allowed'), key_id: s('k'), user_id: s('u') },
      },
    };
    const bytes = encodeAllow('k', 'u', [], at);
    expect(bytes).toEqual(referenceBytes(expected));
    expect(expectSafeShape(bytes, true).ok_response.response_headers_to_add).toEqual([
      header(EXPIRES_AT_HEADER, at),
    ]);
    expected.ok_response.headers_to_remove = ['authorization', 'x-api-key'];
    expect(encodeAllow('k', 'u', ['x-api-key'], at)).toEqual(referenceBytes(expected));
    // Not memoised with the header, and the memoised answer of the same key never carries it.
    expect(encodeAllow('k', 'u', []).includes(Buffer.from(EXPIRES_AT_HEADER))).toBe(false);
    expect(encodeAllow('k', 'u', [], at)).not.toBe(encodeAllow('k', 'u', [], at));
  });

  test('removeHeaders: lowercased, deduplicated, after authorization, never the two headers we set', () => {
    const decoded = expectSafeShape(
      encodeAllow('k', 'u', [
        'x-fortary-debug',
        'X-Fortary-Debug',
        'x-fortary-key-id',
        'X-FORTARY-USER-ID',
        'x-api-key',
        'authorization',
        'Authorization',
        '',
        'x-fortary-trace',
      ]),
      true,
    );
    expect(decoded.ok_response.headers_to_remove).toEqual([
      'authorization',
      'x-fortary-debug',
      'x-api-key',
      'x-fortary-trace',
    ]);
    expect(decoded.ok_response.headers.map((h: { header: { key: string } }) => h.header.key)).toEqual([
      KEY_ID_HEADER,
      USER_ID_HEADER,
    ]);
  });

  test('only recently used keys keep their answer (bounded), and a different owner never gets it', () => {
    const first = encodeAllow('key_memo', 'user_memo', []);
    expect(encodeAllow('key_memo', 'user_memo', [])).toBe(first);
    // Kept answers have their own exact-size ArrayBuffer (no pinned pool slab).
    expect(first.byteOffset).toBe(0);
    expect(first.buffer.byteLength).toBe(first.length);
    const other = expectSafeShape(encodeAllow('key_memo', 'user_other', []), true);
    expect(metadataOf(other).user_id).toBe('user_other');
    expect(other.ok_response.headers[1].header.value).toBe('user_other');
    // With removeHeaders the answer is written fresh.
    expect(encodeAllow('key_memo', 'user_other', ['x-api-key'])).not.toBe(
      encodeAllow('key_memo', 'user_other', []),
    );
    // 2,000 other keys later the first is no longer kept: the memo does not grow with the number of keys.
    const again = encodeAllow('key_memo', 'user_memo', []);
    for (let i = 0; i < 2000; i++) encodeAllow(`key_${i}`, 'user_memo', []);
    const later = encodeAllow('key_memo', 'user_memo', []);
    expect(later).not.toBe(again);
    expect(later).toEqual(again);
  });

  test('an allow without ids is refused: Envoy would drop an empty identity header and keep a spoofed one', () => {
    expect(() => encodeAllow('', 'u', [])).toThrow(/without a key id/);
    expect(() => encodeAllow('k', '', ['x-api-key'])).toThrow(/without a key id/);
  });

  test('any ids and removeHeaders: safe shape, and exactly the protobufjs encoding (fast-check)', () => {
    const name = fc.oneof(
      fc.string({ maxLength: 20 }),
      fc.constantFrom('x-fortary-key-id', 'x-api-key', 'X-Fortary-Z'),
    );
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', minLength: 1, maxLength: 30 }),
        fc.string({ unit: 'binary', minLength: 1, maxLength: 30 }),
        fc.array(name, { maxLength: 6 }),
        fc.option(fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }), { nil: undefined }),
        (keyId, userId, remove, expiresAt) => {
          const bytes = encodeAllow(keyId, userId, remove, expiresAt);
          const decoded = expectSafeShape(bytes, true);
          const added = decoded.ok_response.response_headers_to_add;
          if (expiresAt === undefined) expect(added).toBeUndefined();
          else
            expect(added).toEqual([
              expect.objectContaining({ header: { key: EXPIRES_AT_HEADER, value: expiresAt } }),
            ]);
          // Byte for byte what protobufjs writes for the object it decoded to.
          expect(bytes).toEqual(referenceBytes(decoded));
          expect(decoded.ok_response.headers[0].header.value).toBe(keyId);
          expect(decoded.ok_response.headers[1].header.value).toBe(userId);
          const removed: string[] = decoded.ok_response.headers_to_remove;
          expect(removed[0]).toBe('authorization');
          expect(new Set(removed).size).toBe(removed.length);
          expect(removed).not.toContain(KEY_ID_HEADER);
          expect(removed).not.toContain(USER_ID_HEADER);
          for (const n of remove) {
            const lower = n.toLowerCase();
            if (lower !== '' && lower !== KEY_ID_HEADER && lower !== USER_ID_HEADER)
              expect(removed).toContain(lower);
          }
        },
      ),
      { seed: SEED, numRuns: 300 },
    );
  });
});

describe('encodeDeny', () => {
  test.each(DENY_REASONS.map((r) => [r]))(
    '%s: status, HTTP status, headers, body, metadata',
    (reason: DenyReason) => {
      const outcome = outcomeFor(reason);
      const bytes = encodeDeny(reason);
      const decoded = expectSafeShape(bytes, false);

      expect(decoded.status).toEqual({ code: outcome.grpcCode, message: outcome.publicCode });
      expect(outcome.grpcCode).not.toBe(GrpcCode.OK);
      expect(decoded.denied_response.status).toEqual({ code: outcome.httpStatus });

      const headers = decoded.denied_response.headers as Array<{
        header: { key: string; value: string };
        append?: unknown;
      }>;
      for (const h of headers) {
        expect(h.append).toEqual({ value: false }); // never append: true on denied headers (doc §4.5)
        expect(h).not.toHaveProperty('append_action');
      }
      const byName = Object.fromEntries(headers.map((h) => [h.header.key, h.header.value]));
      expect(headers).toHaveLength(Object.keys(byName).length);
      expect(byName['content-type']).toBe('application/json');
      expect(byName['cache-control']).toBe('no-store');
      if (outcome.bearerError === undefined) {
        expect(byName).not.toHaveProperty('www-authenticate');
        expect(headers).toHaveLength(2);
      } else {
        expect(byName['www-authenticate']).toBe(
          outcome.bearerError === ''
            ? 'Bearer realm="fortary"'
            : `Bearer realm="fortary", error="${outcome.bearerError}"`,
        );
      }

      expect(JSON.parse(decoded.denied_response.body)).toEqual({
        error: { code: outcome.publicCode, message: outcome.publicMessage },
      });
      expect(metadataOf(decoded)).toEqual({ decision: outcome.httpStatus >= 500 ? 'error' : 'deny', reason });

      expect(encodeDeny(reason)).toBe(bytes); // memoised
      expect(encodeDeny(reason, {})).toBe(bytes);
      expect(encodeDeny(reason, { keyId: undefined, userId: '' })).toBe(bytes);
    },
  );

  test.each(DENY_REASONS.map((r) => [r]))(
    '%s with ids: metadata carries them; bytes are the full encoding',
    (reason) => {
      const outcome = outcomeFor(reason);
      const bytes = encodeDeny(reason, { keyId: 'key_9', userId: 'user_9' });
      const decoded = expectSafeShape(bytes, false);
      expect(metadataOf(decoded)).toEqual({
        decision: outcome.httpStatus >= 500 ? 'error' : 'deny',
        reason,
        key_id: 'key_9',
        user_id: 'user_9',
      });
      const { dynamic_metadata: _ignored, ...rest } = decodeCheckResponse(encodeDeny(reason));
      expect(bytes).toEqual(
        referenceBytes({
          ...CheckResponseType.toObject(CheckResponseType.fromObject(rest), { enums: Number }),
          dynamic_metadata: {
            fields: {
              decision: s(outcome.httpStatus >= 500 ? 'error' : 'deny'),
              reason: s(reason),
              key_id: s('key_9'),
              user_id: s('user_9'),
            },
          },
        }),
      );
      expect(metadataOf(expectSafeShape(encodeDeny(reason, { keyId: 'only_key' }), false))).toEqual({
        decision: outcome.httpStatus >= 500 ? 'error' : 'deny',
        reason,
        key_id: 'only_key',
      });
    },
  );

  test('any ids, any reason: exactly the protobufjs encoding (fast-check)', () => {
    const id = fc.option(fc.string({ unit: 'binary', maxLength: 30 }), { nil: undefined });
    fc.assert(
      fc.property(fc.constantFrom(...DENY_REASONS), id, id, (reason, keyId, userId) => {
        const outcome = outcomeFor(reason);
        const bytes = encodeDeny(reason, { keyId, userId });
        const decoded = expectSafeShape(bytes, false);
        const fields: Record<string, { stringValue: string }> = {
          decision: s(outcome.httpStatus >= 500 ? 'error' : 'deny'),
          reason: s(reason),
        };
        if (keyId !== undefined && keyId !== '') fields.key_id = s(keyId);
        if (userId !== undefined && userId !== '') fields.user_id = s(userId);
        const { dynamic_metadata: _ignored, ...rest } = decoded;
        expect(bytes).toEqual(
          referenceBytes({
            ...CheckResponseType.toObject(CheckResponseType.fromObject(rest), { enums: Number }),
            dynamic_metadata: { fields },
          }),
        );
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  test('ids that are not valid UTF-16 are written as valid UTF-8 (U+FFFD), never as broken bytes', () => {
    const bytes = encodeDeny('ip_not_allowed', { keyId: 'ключ-🔑', userId: 'u\ud800x' });
    expect(metadataOf(decodeCheckResponse(bytes))).toMatchObject({ key_id: 'ключ-🔑', user_id: 'u\ufffdx' });
    expect(bytes.includes(Buffer.from([0xef, 0xbf, 0xbd]))).toBe(true);
    const allow = decodeCheckResponse(encodeAllow('k\udc00', 'u', ['x-fortary-\ud83d']));
    expect(allow.ok_response.headers[0].header.value).toBe('k\ufffd');
    expect(allow.ok_response.headers_to_remove).toEqual(['authorization', 'x-fortary-\ufffd']);
  });

  test('WWW-Authenticate only on the 401s and on insufficient_scope', () => {
    const withChallenge = DENY_REASONS.filter((reason) =>
      (
        decodeCheckResponse(encodeDeny(reason)).denied_response.headers as Array<{ header: { key: string } }>
      ).some((h) => h.header.key === 'www-authenticate'),
    );
    const expected = DENY_REASONS.filter(
      (r) => outcomeFor(r).httpStatus === 401 || r === 'scope_insufficient',
    );
    expect(withChallenge).toEqual(expected);
    expect(expected).toContain('credentials_missing');
    expect(expected).toContain('scope_insufficient');
  });

  test('every denial is a 4xx/5xx with a non-zero gRPC code, and the 5xx ones are marked error', () => {
    for (const reason of DENY_REASONS) {
      const decoded = decodeCheckResponse(encodeDeny(reason));
      expect(decoded.status.code).toBeGreaterThan(0);
      expect(decoded.denied_response.status.code).toBeGreaterThanOrEqual(400);
      expect(decoded.denied_response.status.code).toBeLessThan(600);
    }
    expect(metadataOf(decodeCheckResponse(encodeDeny('store_unavailable'))).decision).toBe('error');
    expect(metadataOf(decodeCheckResponse(encodeDeny('internal_error'))).decision).toBe('error');
    expect(metadataOf(decodeCheckResponse(encodeDeny('key_unknown'))).decision).toBe('deny');
  });

  test('an unknown reason is an error, not a response', () => {
    expect(() => encodeDeny('no_such_reason' as DenyReason)).toThrow(/unknown deny reason/);
  });
});

describe('a standard proto-loader client reads our bytes the same way', () => {
  const packageDefinition = protoLoader.loadSync('envoy/service/auth/v3/external_auth.proto', {
    keepCase: true,
    includeDirs: [PROTO_DIR],
    ...RESPONSE_OBJECT_OPTIONS,
  });
  const check = (packageDefinition['envoy.service.auth.v3.Authorization'] as protoLoader.ServiceDefinition)
    .Check;

  test('the method path is the same as ours', () => {
    expect(check?.path).toBe(CHECK_METHOD_PATH);
    expect(authorizationService.Check.path).toBe('/envoy.service.auth.v3.Authorization/Check');
  });

  test.each([
    ['allow', encodeAllow('key_1', 'user_1', [])],
    ['allow with removals', encodeAllow('key_1', 'user_1', ['x-api-key'])],
    ...DENY_REASONS.map((r) => [r, encodeDeny(r)] as [string, Buffer]),
    ['deny with ids', encodeDeny('ip_not_allowed', { keyId: 'key_1', userId: 'user_1' })],
  ])('%s', (_name, bytes) => {
    const viaLoader = check?.responseDeserialize(bytes) as DecodedCheckResponse;
    expect(viaLoader).toEqual(decodeCheckResponse(bytes));
    expect(viaLoader.status).toBeDefined();
    // Struct values come from protobufjs' bundled types: camelCase even with keepCase.
    expect(Object.values(viaLoader.dynamic_metadata.fields)[0]).toHaveProperty('stringValue');
  });

  test('pitfall pinned: a snake_case string_value is silently dropped by proto-loader with keepCase', () => {
    const bytes = check?.responseSerialize({
      dynamic_metadata: { fields: { a: { string_value: 'x' } } },
    }) as Buffer;
    expect(decodeCheckResponse(bytes).dynamic_metadata.fields.a).toEqual({});
  });
});

describe('over a real grpc-js channel with the service definition', () => {
  let server: grpc.Server;
  let client: ReturnType<typeof makeCheckClient>;
  const seen: AuthzRequest[] = [];

  beforeAll(async () => {
    server = new grpc.Server();
    server.addService(authorizationService, {
      Check: (call: grpc.ServerUnaryCall<AuthzRequest, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        seen.push(call.request);
        const req = call.request;
        callback(
          null,
          req.authorization.length === 0 ? encodeDeny('credentials_missing') : encodeAllow('k1', 'u1', []),
        );
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, p) =>
        error ? reject(error) : resolve(p),
      ),
    );
    client = makeCheckClient(`127.0.0.1:${port}`);
  });

  afterAll(async () => {
    client.close();
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
  });

  test('the server decodes with the walker and answers with our bytes', async () => {
    const denied = await client(envoyRequest({ rawHeaders: true }));
    expect(denied.status.code).toBe(GrpcCode.UNAUTHENTICATED);
    expect(denied.denied_response.status.code).toBe(401);

    const allowed = await client(envoyRequest({ authorization: 'Bearer t' }));
    expect(allowed.status).toEqual({ code: 0 });
    expect(allowed.ok_response.headers_to_remove).toEqual(['authorization']);
    expect(seen.at(-1)).toMatchObject({
      method: 'GET',
      authorization: ['Bearer t'],
      source: { ip: '203.0.113.7' },
    });
  });

  test('malformed request bytes fail the call (INTERNAL), they are never answered with an allow', async () => {
    await expect(client.raw(Buffer.from([0x0a, 0x05, 0x00]))).rejects.toMatchObject({
      code: grpc.status.INTERNAL,
    });
  });

  test('the client sees the exact bytes the encoder produced', async () => {
    const raw = await client.raw(Buffer.alloc(0));
    expect(raw).toEqual(encodeDeny('credentials_missing'));
  });
});

test('the proto root resolves the bundled well-known types', () => {
  for (const name of [
    'google.protobuf.Struct',
    'google.protobuf.BoolValue',
    'google.protobuf.Any',
    'google.protobuf.Timestamp',
  ]) {
    expect(CheckResponseType.root.lookupType(name).fullName).toBe(`.${name}`);
  }
  expect(path.basename(PROTO_DIR)).toBe('proto');
});

describe('the emit guard (the last check before any answer leaves)', () => {
  const status = (code: number) => Buffer.from([0x0a, 0x02, 0x08, code]);
  const denied = Buffer.from([0x12, 0x00]);
  const ok = Buffer.from([0x1a, 0x00]);

  it('passes what the encoder emits', () => {
    for (const reason of DENY_REASONS)
      expect(guardCheckResponse(encodeDeny(reason, { keyId: 'k' }), false)).toBeDefined();
    expect(guardCheckResponse(encodeAllow('k', 'u', ['x-a']), true)).toBeDefined();
  });

  it.each([
    ['an empty answer', Buffer.alloc(0), true],
    ['an allow without status', ok, true],
    ['an allow whose status is not first', Buffer.concat([ok, status(0)]), true],
    ['an allow with a non-zero code', Buffer.concat([status(7), ok]), true],
    ['an allow that says denied_response', Buffer.concat([status(0), denied]), true],
    ['an allow whose last http_response is denied', Buffer.concat([status(0), ok, denied]), true],
    ['a denial with code 0', Buffer.concat([status(0), denied]), false],
    ['a denial whose status is empty (code 0)', Buffer.concat([Buffer.from([0x0a, 0x00]), denied]), false],
    ['a denial whose last status says 0', Buffer.concat([status(7), status(0), denied]), false],
    ['a denial with ok_response', Buffer.concat([status(7), ok]), false],
    ['a denial without http_response', status(7), false],
    ['a truncated field', Buffer.concat([status(7), Buffer.from([0x12, 0x05, 0x00])]), false],
    ['a varint top-level field', Buffer.concat([status(7), denied, Buffer.from([0x28, 0x01])]), false],
    ['an unterminated varint', Buffer.concat([status(7), denied, Buffer.from([0x22, 0xff])]), false],
  ])('refuses %s', (_name, bytes, expectAllow) => {
    expect(() => guardCheckResponse(bytes, expectAllow)).toThrow(/CheckResponse/);
  });
});
