/**
 * Records that break docs/redis-contract.md, written straight into Redis as another system or a tired operator
 * would: missing fields, wrong types, unparseable JSON, an invalid CIDR, an unknown scope, an expiry that is not a
 * date, a user record that is not a user record, a Redis value of the wrong type (WRONGTYPE), a huge record.
 * For each: that key (or the keys of that user) gets the generic 401 with reason `record_invalid`, before any bcrypt
 * work for a corrupt key; one error line is logged per record version however many requests hit it, and one more
 * when the record is rewritten to another corrupt version; a good key keeps being allowed in between, concurrently;
 * and the sidecar ends healthy with no internal error.
 */
import bcrypt from 'bcrypt';
import type Redis from 'ioredis';
import { envoyRequest, metadataOf } from '../support/check-client';
import { createKey, putUser, waitFor, type CreatedKey } from '../support/fixtures';
import { startHarness, verdict, type Harness } from '../support/sidecar-harness';

let h: Harness;
let good: CreatedKey;
let users = 0;
const CORRUPT_LOG = 'corrupt record in redis: denying it';

beforeAll(async () => {
  h = await startHarness();
  await putUser(h.admin, { id: 'alice', developerVaults: ['alpha'] });
  good = await createKey(h.admin, { userId: 'alice', vaults: ['alpha'] });
  // Verified once here, so a bcrypt call during a row can only be the corrupt key's.
  expect(await decide(good.token)).toMatchObject({ allow: true });
});

afterAll(async () => {
  await h.stop();
});

const keyHash = (keyId: string) => `fortary:key:${keyId}`;

/** A fresh user with a fresh key; the user is the key's alone, so user corruptions do not leak across rows. */
async function freshKey(): Promise<CreatedKey & { userId: string }> {
  const userId = `user${++users}`;
  await putUser(h.admin, { id: userId, developerVaults: ['alpha'] });
  return { ...(await createKey(h.admin, { userId, vaults: ['alpha'] })), userId };
}

async function recordOf(keyId: string): Promise<Record<string, unknown>> {
  return JSON.parse((await h.admin.hget(keyHash(keyId), 'record')) as string) as Record<string, unknown>;
}

/** A direct write announced as the contract asks of writers that bypass the functions (rule 1). */
async function announce(type: 'key.updated' | 'user.updated', id: string): Promise<void> {
  const seq = await h.admin.incr('fortary:events:seq');
  await h.admin.publish('fortary:events', JSON.stringify({ seq, type, id, at: Date.now() }));
}

function corruptLogs(kind: 'key' | 'user', id: string): Array<Record<string, unknown>> {
  return h.logs.filter((l) => l.msg === CORRUPT_LOG && l.kind === kind && l.id === id);
}

async function decide(token: string) {
  const response = await h.client(
    envoyRequest({ authorization: `Bearer ${token}`, path: '/v1/vaults/alpha/x' }),
  );
  return { ...verdict(response), reason: metadataOf(response).reason };
}

/** Asks with `token` until `done()` holds: events reach the sidecar asynchronously. */
async function askUntil(token: string, done: () => boolean, timeoutMs = 5000): Promise<void> {
  await waitFor(async () => {
    await decide(token);
    return done();
  }, timeoutMs);
}

/** `n` requests with the corrupt key and `n` with the good key, all in flight together. */
async function hammer(token: string, n = 25): Promise<void> {
  const answers = await Promise.all(
    Array.from({ length: 2 * n }, (_, i) =>
      decide(i % 2 === 0 ? token : good.token).then((a) => [i % 2, a] as const),
    ),
  );
  for (const [isGood, answer] of answers) {
    if (isGood === 1) expect(answer).toMatchObject({ allow: true, reason: 'allowed' });
    else expect(answer).toMatchObject({ allow: false, grpc: 16, http: 401, reason: 'record_invalid' });
  }
}

type Corrupt = (
  r: Redis,
  key: CreatedKey & { userId: string },
  record: Record<string, unknown>,
) => Promise<unknown>;

/** Rewrites the key record JSON with `change` applied. */
const keyRecord =
  (change: (record: Record<string, unknown>) => unknown): Corrupt =>
  (r, key, record) => {
    const changed = change(record);
    return r.hset(
      keyHash(key.keyId),
      'record',
      typeof changed === 'string' ? changed : JSON.stringify(record),
    );
  };
const without = (name: string) => keyRecord((record) => void delete record[name]);
const set = (name: string, value: unknown) => keyRecord((record) => void (record[name] = value));

const keyCorruptions: Array<[string, Corrupt]> = [
  ['unparseable JSON', keyRecord(() => '{"v":1,"id":')],
  ['JSON that is an array', keyRecord(() => '[]')],
  ['JSON null', keyRecord(() => 'null')],
  ['an empty string', keyRecord(() => '')],
  ['missing secretHash', without('secretHash')],
  ['missing scopes', without('scopes')],
  ['missing userId', without('userId')],
  ['missing expiresAt', without('expiresAt')],
  ['userId is a number', set('userId', 42)],
  ['v is 2', set('v', 2)],
  ['v is "1"', set('v', '1')],
  ['id names another key', set('id', 'ZZZZZZZZZZZZ')],
  ['secretHash is not bcrypt', set('secretHash', 'plaintext-secret')],
  ['an unknown scope', set('scopes', ['vault:read', 'vault:write'])],
  ['no scopes', set('scopes', [])],
  ['vaults is a string', set('vaults', 'alpha')],
  ['a vault id with a dot segment', set('vaults', ['alpha', '../beta'])],
  ['an invalid CIDR: prefix 33', set('ipAllowlist', ['10.0.0.0/33'])],
  ['an invalid CIDR: not an address', set('ipAllowlist', ['intranet/8'])],
  ['an invalid CIDR: no prefix', set('ipAllowlist', ['10.0.0.1'])],
  ['an invalid CIDR: octal', set('ipAllowlist', ['010.0.0.0/8'])],
  // Issue 12: host bits would silently widen 10.0.0.1 to all of 10/8; the key is denied instead, never widened.
  ['an invalid CIDR: host bits set', set('ipAllowlist', ['10.0.0.1/8'])],
  ['an invalid CIDR: zero-padded prefix', set('ipAllowlist', ['10.0.0.0/08'])],
  ['an expiry that is a date string', set('expiresAt', '2027-01-01T00:00:00Z')],
  ['an expiry with a fraction', set('expiresAt', 1_800_000_000_000.5)],
  ['a negative expiry', set('expiresAt', -1)],
  ['an expiry beyond 2^53', set('expiresAt', 1e300)],
  ['a label over 200 characters', set('label', 'x'.repeat(201))],
  ['createdAt is a string', set('createdAt', 'yesterday')],
  ['a revokedAt field in the record that is not a number', set('revokedAt', 'now')],
  [
    'a revokedAt hash field that is not epoch ms',
    (r, key) => r.hset(keyHash(key.keyId), 'revokedAt', 'yesterday'),
  ],
  [
    'a hash with revokedAt but no record',
    async (r, key) => {
      await r.hset(keyHash(key.keyId), 'revokedAt', '1767225600000');
      await r.hdel(keyHash(key.keyId), 'record');
    },
  ],
  [
    '1001 vaults',
    set(
      'vaults',
      Array.from({ length: 1001 }, (_, i) => `v${i}`),
    ),
  ],
  ['a huge record (4 MiB label)', set('label', 'x'.repeat(4 * 1024 * 1024))],
  [
    'a huge record (300 000 vaults)',
    set(
      'vaults',
      Array.from({ length: 300_000 }, (_, i) => `vault-${i}`),
    ),
  ],
  [
    'WRONGTYPE: a string where the hash belongs',
    async (r, key, record) => {
      await r.del(keyHash(key.keyId));
      await r.set(keyHash(key.keyId), JSON.stringify(record));
    },
  ],
  [
    'WRONGTYPE: a list where the hash belongs',
    async (r, key, record) => {
      await r.del(keyHash(key.keyId));
      await r.rpush(keyHash(key.keyId), JSON.stringify(record));
    },
  ],
];

const userRecord =
  (text: (userId: string) => string): Corrupt =>
  (r, key) =>
    r.set(`fortary:user:${key.userId}`, text(key.userId));
const userJson = (change: (user: Record<string, unknown>) => void) =>
  userRecord((userId) => {
    const user: Record<string, unknown> = {
      v: 1,
      id: userId,
      active: true,
      developerVaults: ['alpha'],
      updatedAt: 1,
    };
    change(user);
    return JSON.stringify(user);
  });

const userCorruptions: Array<[string, Corrupt]> = [
  ['unparseable JSON', userRecord(() => '{"v":1')],
  ['a JSON string', userRecord(() => '"alice"')],
  ['active is "yes"', userJson((u) => (u.active = 'yes'))],
  ['active is missing', userJson((u) => delete u.active)],
  ['developerVaults is a string', userJson((u) => (u.developerVaults = 'alpha'))],
  ['developerVaults holds a non-id', userJson((u) => (u.developerVaults = ['alpha', 'al pha']))],
  ['id names another user', userJson((u) => (u.id = 'alice'))],
  ['v is missing', userJson((u) => delete u.v)],
  ['updatedAt is a date string', userJson((u) => (u.updatedAt = '2026-01-01'))],
  ['a key record where a user record belongs', userRecord(() => '{"v":1,"id":"x","userId":"y","scopes":[]}')],
  [
    'a huge record (5000 developer vaults)',
    userJson((u) => (u.developerVaults = Array.from({ length: 5000 }, (_, i) => `v${i}`))),
  ],
  [
    'WRONGTYPE: a hash where the string belongs',
    async (r, key) => {
      await r.del(`fortary:user:${key.userId}`);
      await r.hset(`fortary:user:${key.userId}`, 'record', '{}');
    },
  ],
];

describe('a corrupt key record', () => {
  test.each(keyCorruptions)(
    '%s: 401 record_invalid without bcrypt, one error line, good keys unaffected',
    async (_n, corrupt) => {
      const key = await freshKey();
      const record = await recordOf(key.keyId);
      await corrupt(h.admin, key, record);
      const bcryptBefore = h.bcryptCalls();
      await hammer(key.token);
      expect(h.bcryptCalls()).toBe(bcryptBefore);
      const lines = corruptLogs('key', key.keyId);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({ level: 'error', error: expect.any(String) });
      // The log names the problem, never the record's content.
      expect(JSON.stringify(lines[0])).not.toContain(key.secretHash);
      expect(JSON.stringify(lines[0]).length).toBeLessThan(2000);
    },
  );
});

describe("a corrupt owner record: the owner's keys are refused", () => {
  test.each(userCorruptions)(
    '%s: 401 record_invalid, one error line, good keys unaffected',
    async (_n, corrupt) => {
      const key = await freshKey();
      await corrupt(h.admin, key, {});
      await hammer(key.token);
      expect(corruptLogs('user', key.userId)).toHaveLength(1);
      expect(corruptLogs('key', key.keyId)).toHaveLength(0);
    },
  );
});

describe('one error line per record version', () => {
  test('a key record rewritten to other corrupt versions: one more line each time, none for repeats', async () => {
    const key = await freshKey();
    const versions = ['{"v":1,"id":', '{"v":1,"id":"x"}', '[]'];
    for (const [i, version] of versions.entries()) {
      await h.admin.hset(keyHash(key.keyId), 'record', version);
      await announce('key.updated', key.keyId);
      // The event reaches the sidecar asynchronously: ask until the new version has been read.
      await askUntil(key.token, () => corruptLogs('key', key.keyId).length === i + 1);
      await hammer(key.token);
      expect(corruptLogs('key', key.keyId)).toHaveLength(i + 1);
      // Announcing the same version again re-reads it without logging again.
      await announce('key.updated', key.keyId);
      await hammer(key.token);
      expect(corruptLogs('key', key.keyId)).toHaveLength(i + 1);
    }
  });

  test('corrupt JSON, then a string where the hash belongs: one line each', async () => {
    const key = await freshKey();
    await h.admin.hset(keyHash(key.keyId), 'record', 'not json');
    await hammer(key.token);
    expect(corruptLogs('key', key.keyId)).toHaveLength(1);
    await h.admin.del(keyHash(key.keyId));
    await h.admin.set(keyHash(key.keyId), 'not a hash');
    await announce('key.updated', key.keyId);
    await askUntil(key.token, () => corruptLogs('key', key.keyId).length === 2);
    await hammer(key.token);
    expect(corruptLogs('key', key.keyId)).toHaveLength(2);
  });

  test('a user record rewritten to another corrupt version: one more line', async () => {
    const key = await freshKey();
    await h.admin.set(`fortary:user:${key.userId}`, '{"v":1}');
    await hammer(key.token);
    expect(corruptLogs('user', key.userId)).toHaveLength(1);
    await h.admin.set(`fortary:user:${key.userId}`, '{"v":2}');
    await announce('user.updated', key.userId);
    await askUntil(key.token, () => corruptLogs('user', key.userId).length === 2);
    await hammer(key.token);
    expect(corruptLogs('user', key.userId)).toHaveLength(2);
  });

  // Reported defect, fixed: every WRONGTYPE value of an id had the same fingerprint, so a second, different
  // wrong-type value was never logged; the fingerprint now carries the Redis type.
  test('a wrong-type value rewritten to another wrong-type value: one more line', async () => {
    const key = await freshKey();
    await h.admin.del(keyHash(key.keyId));
    await h.admin.set(keyHash(key.keyId), 'a string');
    await hammer(key.token, 5);
    expect(corruptLogs('key', key.keyId)).toHaveLength(1);
    await h.admin.del(keyHash(key.keyId));
    await h.admin.rpush(keyHash(key.keyId), 'a list');
    await announce('key.updated', key.keyId);
    await askUntil(key.token, () => corruptLogs('key', key.keyId).length === 2, 2000);
  });

  test('a corrupt record that is repaired is allowed again at once (with its event)', async () => {
    const key = await freshKey();
    const record = await recordOf(key.keyId);
    await h.admin.hset(keyHash(key.keyId), 'record', '{}');
    await hammer(key.token, 5);
    await h.admin.hset(keyHash(key.keyId), 'record', JSON.stringify(record));
    await announce('key.updated', key.keyId);
    await waitFor(async () => (await decide(key.token)).allow);
  });

  test('corrupted, repaired, then corrupted again into the same bytes: logged again', async () => {
    const key = await freshKey();
    const record = await recordOf(key.keyId);
    await h.admin.hset(keyHash(key.keyId), 'record', '{}');
    await hammer(key.token, 5);
    expect(corruptLogs('key', key.keyId)).toHaveLength(1);
    await h.admin.hset(keyHash(key.keyId), 'record', JSON.stringify(record));
    await announce('key.updated', key.keyId);
    await waitFor(async () => (await decide(key.token)).allow);
    await h.admin.hset(keyHash(key.keyId), 'record', '{}');
    await announce('key.updated', key.keyId);
    await askUntil(key.token, () => corruptLogs('key', key.keyId).length === 2);
  });
});

test('the sidecar is unaffected: still serving, no internal error, every error line is a corrupt-record line', async () => {
  expect(h.sidecar.health.serving).toBe(true);
  expect(await decide(good.token)).toMatchObject({ allow: true });
  const decisions = await h.sidecar.metrics.registry.getSingleMetric('fortary_authz_decisions_total')?.get();
  const internal = decisions?.values.find((v) => v.labels.reason === 'internal_error')?.value ?? 0;
  expect(internal).toBe(0);
  const errors = h.logs.filter((l) => l.level === 'error' || l.level === 'fatal');
  expect(errors.length).toBeGreaterThan(keyCorruptions.length);
  expect(errors.every((l) => l.msg === CORRUPT_LOG)).toBe(true);
  // A valid hash written by hand is still a valid record: the refusals above were about the records, not the path.
  const handmade = await freshKey();
  const record = await recordOf(handmade.keyId);
  record.secretHash = await bcrypt.hash(handmade.token, 4);
  await h.admin.hset(keyHash(handmade.keyId), 'record', JSON.stringify(record));
  expect(await decide(handmade.token)).toMatchObject({ allow: true });
});
