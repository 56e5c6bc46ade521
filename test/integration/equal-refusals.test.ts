/**
 * Every refusal of a presented key looks the same to the client: unknown key, wrong secret, malformed token,
 * revoked key, expired key (and a deactivated owner, a corrupt or missing owner record) all get byte-for-byte the
 * same CheckResponse `status` and `denied_response` (HTTP status, headers, body), on both header shapes, and the
 * RPC itself succeeds. Only `dynamic_metadata` (Envoy-internal: access logs) differs, and the precise reason is
 * told only there, in the decision log and in the metrics.
 */
import { formatToken } from '../../src/core/token';
import { envoyRequest, metadataOf, decodeCheckResponse, checkRequestBytes } from '../support/check-client';
import { createKey, putUser, randomBase62, revokeKey, type CreatedKey } from '../support/fixtures';
import { startHarness, type Harness } from '../support/sidecar-harness';

let h: Harness;
const keys: Record<string, CreatedKey> = {};
const token = (name: string) => (keys[name] as CreatedKey).token;

beforeAll(async () => {
  h = await startHarness();
  const r = h.admin;
  await putUser(r, { id: 'alice', developerVaults: ['alpha'] });
  await putUser(r, { id: 'carol', developerVaults: ['alpha'] });
  await putUser(r, { id: 'ghost', developerVaults: ['alpha'] });
  keys.good = await createKey(r, { userId: 'alice' });
  keys.revoked = await createKey(r, { userId: 'alice' });
  await revokeKey(r, keys.revoked.keyId);
  keys.expired = await createKey(r, { userId: 'alice', expiresAt: Date.now() - 1 });
  keys.inactive = await createKey(r, { userId: 'carol' });
  // Deactivation through the function would also revoke the key; this owner is inactive with the key not revoked.
  await r.set(
    'fortary:user:carol',
    JSON.stringify({ v: 1, id: 'carol', active: false, developerVaults: ['alpha'], updatedAt: Date.now() }),
  );
  // Key whose record is corrupt, and key whose owner record is gone (both written behind the functions' back).
  keys.corrupt = await createKey(r, { userId: 'alice' });
  await r.hset(`fortary:key:${keys.corrupt.keyId}`, 'record', '{"v":1,"id":"nope"}');
  keys.orphan = await createKey(r, { userId: 'ghost' });
  await r.del('fortary:user:ghost');
});

afterAll(async () => {
  await h.stop();
});

/** The top-level fields of an encoded message: field number -> raw payloads in order (wire type 2 only here). */
function topLevelFields(bytes: Buffer): Map<number, Buffer[]> {
  const fields = new Map<number, Buffer[]>();
  let pos = 0;
  const varint = (): number => {
    let value = 0;
    let scale = 1;
    for (;;) {
      const b = bytes[pos++] as number;
      value += (b & 0x7f) * scale;
      if (b < 0x80) return value;
      scale *= 128;
    }
  };
  while (pos < bytes.length) {
    const tag = varint();
    if ((tag & 7) !== 2) throw new Error(`unexpected wire type ${tag & 7} in a CheckResponse`);
    const length = varint();
    const list = fields.get(tag >>> 3) ?? [];
    list.push(bytes.subarray(pos, pos + length));
    fields.set(tag >>> 3, list);
    pos += length;
  }
  return fields;
}

interface Refusal {
  name: string;
  reason: string;
  authorization: () => string;
}

const wrongSecret = () => `Bearer ${formatToken((keys.good as CreatedKey).keyId, randomBase62(43))}`;
const flipLast = (t: string) => t.slice(0, -1) + (t.endsWith('A') ? 'B' : 'A');

const refusals: Refusal[] = [
  {
    name: 'unknown key',
    reason: 'key_unknown',
    authorization: () => `Bearer ${formatToken(randomBase62(12), randomBase62(43))}`,
  },
  { name: 'wrong secret', reason: 'secret_mismatch', authorization: wrongSecret },
  { name: 'malformed: too short', reason: 'token_malformed', authorization: () => 'Bearer fty_abc' },
  {
    name: 'malformed: bad checksum',
    reason: 'token_malformed',
    authorization: () => `Bearer ${flipLast(token('good'))}`,
  },
  {
    name: 'malformed: other prefix',
    reason: 'token_malformed',
    authorization: () => `Bearer ghp${token('good').slice(3)}`,
  },
  {
    name: 'malformed: not base62',
    reason: 'token_malformed',
    authorization: () => `Bearer ${token('good').replace(/_(.)/, '_-')}`,
  },
  {
    name: 'malformed: a JWT',
    reason: 'token_malformed',
    authorization: () => 'Bearer eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo',
  },
  { name: 'revoked key', reason: 'key_revoked', authorization: () => `Bearer ${token('revoked')}` },
  { name: 'expired key', reason: 'key_expired', authorization: () => `Bearer ${token('expired')}` },
  { name: 'deactivated owner', reason: 'owner_inactive', authorization: () => `Bearer ${token('inactive')}` },
  { name: 'corrupt key record', reason: 'record_invalid', authorization: () => `Bearer ${token('corrupt')}` },
  {
    name: 'owner record missing',
    reason: 'record_invalid',
    authorization: () => `Bearer ${token('orphan')}`,
  },
];

interface Seen {
  name: string;
  shape: string;
  status: Buffer;
  denied: Buffer;
  reason: string;
  requestId: string;
}

async function refuse(refusal: Refusal, rawHeaders: boolean): Promise<Seen> {
  const requestId = `eq-${randomBase62(10)}`;
  const bytes = await h.client.raw(
    checkRequestBytes(
      envoyRequest({
        authorization: refusal.authorization(),
        path: '/v1/vaults/alpha/x',
        rawHeaders,
        requestId,
      }),
    ),
  );
  const fields = topLevelFields(bytes);
  // status (1), denied_response (2) and dynamic_metadata (4), each exactly once: no ok_response, no error_response.
  expect([...fields.keys()].sort()).toEqual([1, 2, 4]);
  expect([...fields.values()].every((list) => list.length === 1)).toBe(true);
  return {
    name: refusal.name,
    shape: rawHeaders ? 'header_map' : 'headers',
    status: (fields.get(1) as Buffer[])[0] as Buffer,
    denied: (fields.get(2) as Buffer[])[0] as Buffer,
    reason: metadataOf(decodeCheckResponse(bytes)).reason as string,
    requestId,
  };
}

describe('what the client sees', () => {
  let seen: Seen[] = [];

  beforeAll(async () => {
    for (const rawHeaders of [false, true]) {
      for (const refusal of refusals) seen.push(await refuse(refusal, rawHeaders));
    }
  });

  afterAll(() => {
    seen = [];
  });

  test('each refusal reached the reason it was built for (so the comparison compares different paths)', () => {
    for (const s of seen) {
      expect([s.name, s.reason]).toEqual([
        s.name,
        (refusals.find((r) => r.name === s.name) as Refusal).reason,
      ]);
    }
    expect(new Set(seen.map((s) => s.reason)).size).toBe(7);
  });

  test('status and denied_response are byte-for-byte identical for every refusal and both header shapes', () => {
    const first = seen[0] as Seen;
    for (const s of seen) {
      expect({ name: s.name, shape: s.shape, status: s.status.toString('hex') }).toEqual({
        name: s.name,
        shape: s.shape,
        status: first.status.toString('hex'),
      });
      expect({ name: s.name, shape: s.shape, denied: s.denied.toString('hex') }).toEqual({
        name: s.name,
        shape: s.shape,
        denied: first.denied.toString('hex'),
      });
    }
  });

  test('that one answer is a 401 with a generic challenge and body that name no reason', async () => {
    const response = decodeCheckResponse(
      await h.client.raw(checkRequestBytes(envoyRequest({ authorization: wrongSecret() }))),
    );
    expect(response.status).toEqual({ code: 16, message: 'unauthenticated' });
    const denied = response.denied_response;
    expect(denied.status.code).toBe(401);
    expect(
      (denied.headers as Array<Record<string, any>>).map((x) => [
        x.header.key,
        x.header.value,
        x.append?.value,
      ]),
    ).toEqual([
      ['content-type', 'application/json', false],
      ['cache-control', 'no-store', false],
      ['www-authenticate', 'Bearer realm="fortary", error="invalid_token"', false],
    ]);
    const visible = JSON.stringify(denied) + JSON.stringify(response.status);
    expect(visible).not.toMatch(
      /revoked|expired|unknown|secret|malformed|checksum|inactive|corrupt|record|owner/i,
    );
  });

  test('the reason is told in the decision log, one line per request', () => {
    for (const s of seen) {
      const lines = h.logs.filter((l) => l.requestId === s.requestId);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({ msg: 'check', decision: 'deny', reason: s.reason });
    }
  });
});

test('the reason is counted in the metrics, per reason', async () => {
  const metric = h.sidecar.metrics.registry.getSingleMetric('fortary_authz_decisions_total');
  const count = async (reason: string) =>
    (await metric?.get())?.values.find((v) => v.labels.reason === reason)?.value ?? 0;
  for (const refusal of refusals) {
    const before = await count(refusal.reason);
    await refuse(refusal, false);
    expect([refusal.name, (await count(refusal.reason)) - before]).toEqual([refusal.name, 1]);
  }
});

test('no credential and a credential in the wrong place differ only in the RFC 6750 error attribute', async () => {
  const denied = async (options: Parameters<typeof envoyRequest>[0]) =>
    decodeCheckResponse(await h.client.raw(checkRequestBytes(envoyRequest(options)))).denied_response;
  const common = await denied({ authorization: wrongSecret() });
  const challenge = (d: Record<string, any>) =>
    (d.headers as Array<Record<string, any>>).find((x) => x.header.key === 'www-authenticate')?.header.value;
  const withoutChallenge = (d: Record<string, any>) => ({
    ...d,
    headers: (d.headers as Array<Record<string, any>>).filter((x) => x.header.key !== 'www-authenticate'),
  });
  const missing = await denied({});
  const misplaced = await denied({ extraHeaders: [['x-api-key', token('good')]] });
  expect(challenge(missing)).toBe('Bearer realm="fortary"');
  expect(challenge(misplaced)).toBe('Bearer realm="fortary", error="invalid_request"');
  expect(withoutChallenge(missing)).toEqual(withoutChallenge(common));
  expect(withoutChallenge(misplaced)).toEqual(withoutChallenge(common));
});
