/**
 * Propagation of changes to a running sidecar (issue 3), against a real redis-server and the real sidecar:
 * - revocation is immediate (≤ 100 ms after the revoke command returns) and durable (new sidecars, edits and
 *   direct record rewrites never bring a key back);
 * - edits and role changes announced by an event land within one second;
 * - a role change or deactivation written without an event lands within FORTARY_ROLE_MAX_STALENESS_S, and it is
 *   that bound (not something else) that makes it land;
 * - the event stream's own failure signals (a gap, a sequence going backwards, an unparseable message) flush the
 *   cache, so a change the sidecar was never told about cannot outlive them;
 * - the emergency `redis-cli FCALL fortary_revoke` command line works against a live sidecar.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type Redis from 'ioredis';
import { readConfig } from '../../src/config';
import { serializeUserRecord } from '../../src/core/records';
import type { UserRecord } from '../../src/core/types';
import {
  createKey,
  DAY_MS,
  editKey,
  putUser,
  revokeKey,
  waitFor,
  type CreatedKey,
} from '../support/fixtures';
import { checkToken, EVENT_BOUND_MS, firstDenial, logEntries, REVOKE_BOUND_MS } from '../support/faults';
import { startRedis, type RedisInstance } from '../support/redis-server';
import { startHarness, type Harness } from '../support/sidecar-harness';

const exec = promisify(execFile);

let redis: RedisInstance;
let h: Harness;
let admin: Redis;

beforeAll(async () => {
  redis = await startRedis();
  h = await startHarness({ redis });
  admin = h.admin;
  await putUser(admin, { id: 'alice', developerVaults: ['alpha'] });
});

afterAll(async () => {
  await h.stop();
  await redis.stop();
});

/** A key of alice's that the sidecar has already verified and cached (two allowed checks in a row). */
async function cachedKey(spec: Parameters<typeof createKey>[1] = { userId: 'alice' }): Promise<CreatedKey> {
  const key = await createKey(admin, { vaults: ['alpha'], ...spec });
  for (let i = 0; i < 2; i++) {
    const answer = await checkToken(h.client, key.token);
    expect(answer.reason).toBe('allowed');
  }
  return key;
}

async function reasonOf(token: string, harness: Harness = h, request = {}): Promise<string> {
  return (await checkToken(harness.client, token, '', request)).reason;
}

/** Whole-cache flushes so far, any cause. */
async function flushCount(harness: Harness): Promise<number> {
  const { values } = await harness.sidecar.metrics.cacheFlushes.get();
  return values.reduce((sum, v) => sum + v.value, 0);
}

async function sequence(): Promise<number> {
  return Number((await admin.get('fortary:events:seq')) ?? 0);
}

describe('revocation is immediate', () => {
  it('denies each of 10 cached keys within 100 ms of fortary_revoke returning', async () => {
    const keys: CreatedKey[] = [];
    for (let i = 0; i < 10; i++) keys.push(await cachedKey());
    const latencies: number[] = [];
    for (const key of keys) {
      expect(await reasonOf(key.token)).toBe('allowed');
      const receivers = await revokeKey(admin, key.keyId);
      const returned = Date.now();
      expect(receivers).toBeGreaterThanOrEqual(1);
      const { afterMs } = await firstDenial(h.client, key.token, returned, REVOKE_BOUND_MS, ['key_revoked']);
      latencies.push(afterMs);
    }
    expect(Math.max(...latencies)).toBeLessThanOrEqual(REVOKE_BOUND_MS);
  });

  it('the README emergency command line (redis-cli … FCALL fortary_revoke 1 <keyId>) prints the receivers and the key is denied right after', async () => {
    const key = await cachedKey();
    const { stdout } = await exec('redis-cli', ['-u', redis.url, 'FCALL', 'fortary_revoke', '1', key.keyId]);
    const returned = Date.now();
    expect(stdout.trim()).toMatch(/^\d+$/);
    expect(Number(stdout.trim())).toBeGreaterThanOrEqual(1);
    await firstDenial(h.client, key.token, returned, REVOKE_BOUND_MS, ['key_revoked']);
  });
});

describe('revocation is durable', () => {
  let revoked: CreatedKey;

  beforeAll(async () => {
    revoked = await cachedKey();
    await revokeKey(admin, revoked.keyId);
    await firstDenial(h.client, revoked.token, Date.now(), EVENT_BOUND_MS, ['key_revoked']);
  });

  it('a sidecar started after the revocation denies the key', async () => {
    const late = await startHarness({ redis });
    try {
      expect(await reasonOf(revoked.token, late)).toBe('key_revoked');
    } finally {
      await late.stop();
    }
  });

  it('fortary_put_key … edit refuses a revoked key and changes nothing', async () => {
    const hash = `fortary:key:${revoked.keyId}`;
    const before = await admin.hgetall(hash);
    const seq = await sequence();
    await expect(
      editKey(admin, revoked.keyId, (record) => {
        record.label = 'reinstated?';
      }),
    ).rejects.toThrow(/key is revoked/);
    expect(await admin.hgetall(hash)).toEqual(before);
    expect(await sequence()).toBe(seq);
    expect(await reasonOf(revoked.token)).toBe('key_revoked');
  });

  it('a portal-style direct HSET of the record keeps revokedAt, and neither the live nor a new sidecar allows the key', async () => {
    const hash = `fortary:key:${revoked.keyId}`;
    const revokedAt = await admin.hget(hash, 'revokedAt');
    expect(revokedAt).toMatch(/^\d+$/);
    const record = JSON.parse((await admin.hget(hash, 'record')) as string) as Record<string, unknown>;
    record.label = 'rewritten by the portal';
    record.updatedAt = Date.now();
    delete record.revokedAt;
    // Contract rule 1: a direct write announces itself in the same transaction.
    const seq = (await sequence()) + 1;
    await admin
      .multi()
      .hset(hash, 'record', JSON.stringify(record))
      .incr('fortary:events:seq')
      .publish(
        'fortary:events',
        JSON.stringify({ seq, type: 'key.updated', id: revoked.keyId, at: Date.now() }),
      )
      .exec();
    expect(await admin.hget(hash, 'revokedAt')).toBe(revokedAt);
    await waitFor(async () => (await admin.hget(hash, 'record'))?.includes('rewritten') === true);
    // The event made the sidecar re-read the record; it must still be revoked, now and a second later.
    expect(await reasonOf(revoked.token)).toBe('key_revoked');
    const late = await startHarness({ redis });
    try {
      expect(await reasonOf(revoked.token, late)).toBe('key_revoked');
    } finally {
      await late.stop();
    }
  });
});

describe('edits land within one second through their event', () => {
  it('a vault removed from the key', async () => {
    await putUser(admin, { id: 'alice', developerVaults: ['alpha', 'beta'] });
    const key = await cachedKey({ userId: 'alice', vaults: ['alpha', 'beta'] });
    await editKey(admin, key.keyId, (record) => {
      record.vaults = ['beta'];
    });
    await firstDenial(h.client, key.token, Date.now(), EVENT_BOUND_MS, ['vault_not_allowed']);
  });

  it('the IP allowlist changed: the old network is refused and the new one allowed', async () => {
    const oldNet = { sourceIp: '203.0.113.7' };
    const newNet = { sourceIp: '198.51.100.9' };
    const key = await cachedKey({ userId: 'alice', ipAllowlist: ['203.0.113.0/24'] });
    expect(await reasonOf(key.token, h, newNet)).toBe('ip_not_allowed');
    await editKey(admin, key.keyId, (record) => {
      record.ipAllowlist = ['198.51.100.0/24'];
    });
    const edited = Date.now();
    await waitFor(async () => (await reasonOf(key.token, h, oldNet)) === 'ip_not_allowed', EVENT_BOUND_MS, 5);
    expect(await reasonOf(key.token, h, newNet)).toBe('allowed');
    expect(Date.now() - edited).toBeLessThan(EVENT_BOUND_MS + 200);
  });

  it('the expiry shortened to the past', async () => {
    const key = await cachedKey({ userId: 'alice', expiresAt: Date.now() + 30 * DAY_MS });
    await editKey(admin, key.keyId, (record) => {
      record.expiresAt = Date.now() - 1000;
    });
    await firstDenial(h.client, key.token, Date.now(), EVENT_BOUND_MS, ['key_expired']);
  });

  it('the expiry cleared on an expired key', async () => {
    const key = await createKey(admin, { userId: 'alice', vaults: ['alpha'], expiresAt: Date.now() - 1000 });
    expect(await reasonOf(key.token)).toBe('key_expired');
    expect(await reasonOf(key.token)).toBe('key_expired');
    await editKey(admin, key.keyId, (record) => {
      record.expiresAt = null;
    });
    const edited = Date.now();
    await waitFor(async () => (await reasonOf(key.token)) === 'allowed', EVENT_BOUND_MS, 5);
    expect(Date.now() - edited).toBeLessThan(EVENT_BOUND_MS + 200);
  });
});

describe('role changes and deactivation', () => {
  it('with an event: a lost Developer role lands within one second', async () => {
    await putUser(admin, { id: 'bob', developerVaults: ['alpha'] });
    const key = await cachedKey({ userId: 'bob' });
    await putUser(admin, { id: 'bob', developerVaults: ['beta'] });
    await firstDenial(h.client, key.token, Date.now(), EVENT_BOUND_MS, ['role_missing']);
  });

  it('with an event: deactivation lands within one second, and reactivating the user does not bring the keys back', async () => {
    await putUser(admin, { id: 'carl', developerVaults: ['alpha'] });
    const keys = [await cachedKey({ userId: 'carl' }), await cachedKey({ userId: 'carl' })];
    const receivers = (await admin.call('FCALL', 'fortary_deactivate_user', '1', 'carl')) as number;
    expect(receivers).toBeGreaterThanOrEqual(1);
    const returned = Date.now();
    for (const key of keys) {
      await firstDenial(h.client, key.token, returned, EVENT_BOUND_MS, ['key_revoked', 'owner_inactive']);
    }
    await putUser(admin, { id: 'carl', developerVaults: ['alpha'] });
    const fresh = await createKey(admin, { userId: 'carl', vaults: ['alpha'] });
    // Once the new key works, the reactivation has reached the sidecar; the old keys stay revoked.
    await waitFor(async () => (await reasonOf(fresh.token)) === 'allowed', EVENT_BOUND_MS, 5);
    for (const key of keys) expect(await reasonOf(key.token)).toBe('key_revoked');
    const late = await startHarness({ redis });
    try {
      for (const key of keys) expect(await reasonOf(key.token, late)).toBe('key_revoked');
      expect(await reasonOf(fresh.token, late)).toBe('allowed');
    } finally {
      await late.stop();
    }
  });

  describe('without any event, within FORTARY_ROLE_MAX_STALENESS_S (1 s here) and not before the cache entry ages out', () => {
    let short: Harness;
    beforeAll(async () => {
      short = await startHarness({ redis, env: { FORTARY_ROLE_MAX_STALENESS_S: '1' } });
    });
    afterAll(async () => {
      await short.stop();
    });

    async function landsThroughTheBound(userId: string, rewrite: Partial<UserRecord>, reason: string) {
      await putUser(admin, { id: userId, developerVaults: ['alpha'] });
      const key = await createKey(admin, { userId, vaults: ['alpha'] });
      await waitFor(async () => (await reasonOf(key.token, short)) === 'allowed', EVENT_BOUND_MS, 5);
      // Every entry the sidecar caches from here on was read after this instant, so expires no sooner than +1 s.
      const loadedAfter = Date.now();
      await putUser(admin, { id: userId, developerVaults: ['alpha'] }); // user.updated: drops the cached owner
      expect(await reasonOf(key.token, short)).toBe('allowed');
      const logsBefore = short.logs.length;
      const flushesBefore = await flushCount(short);
      // The portal rewrites the owner record directly: no sequence change, no event.
      const seq = await sequence();
      await admin.set(
        `fortary:user:${userId}`,
        serializeUserRecord({
          id: userId,
          active: true,
          developerVaults: ['alpha'],
          updatedAt: Date.now(),
          ...rewrite,
        }),
      );
      const rewritten = Date.now();
      expect(await sequence()).toBe(seq);
      // Not instantly: the cached owner still decides.
      expect(await reasonOf(key.token, short)).toBe('allowed');
      const { answer } = await firstDenial(short.client, key.token, rewritten, 1000 + 1000, [reason]);
      // The denial came from the entry ageing out, not from a flush or an event.
      expect(answer.doneAt - loadedAfter).toBeGreaterThanOrEqual(1000 - 20);
      expect(logEntries(short, 'cache not trusted', {}, logsBefore)).toEqual([]);
      expect(await flushCount(short)).toBe(flushesBefore);
    }

    it('a lost Developer role (portal SET of fortary:user:<id>)', async () => {
      await landsThroughTheBound('dana', { developerVaults: [] }, 'role_missing');
    });

    it('a deactivation (portal SET with active: false)', async () => {
      await landsThroughTheBound('erin', { active: false }, 'owner_inactive');
    });
  });

  it('FORTARY_ROLE_MAX_STALENESS_S above 300 is refused at startup; 300 is the largest bound', () => {
    const refused = readConfig({ FORTARY_ROLE_MAX_STALENESS_S: '301' });
    expect(refused.ok).toBe(false);
    expect(refused.ok ? [] : refused.problems).toEqual([
      'FORTARY_ROLE_MAX_STALENESS_S must be between 1 and 300, got 301',
    ]);
    const largest = readConfig({ FORTARY_ROLE_MAX_STALENESS_S: '300' });
    expect(largest.ok && largest.config.roleMaxStalenessMs).toBe(300_000);
    const fallback = readConfig({});
    expect(fallback.ok && fallback.config.roleMaxStalenessMs).toBe(60_000);
  });
});

describe('the event stream’s failure signals flush the cache', () => {
  /**
   * A key whose record was rewritten directly without any event (vault removed): the sidecar still allows it
   * from its cache, so only a flush can make it read the new record.
   */
  async function silentlyNarrowedKey(): Promise<CreatedKey> {
    await putUser(admin, { id: 'alice', developerVaults: ['alpha', 'beta'] });
    const key = await cachedKey({ userId: 'alice', vaults: ['alpha', 'beta'] });
    const hash = `fortary:key:${key.keyId}`;
    const record = JSON.parse((await admin.hget(hash, 'record')) as string) as Record<string, unknown>;
    record.vaults = ['beta'];
    await admin.hset(hash, 'record', JSON.stringify(record));
    expect(await reasonOf(key.token)).toBe('allowed');
    return key;
  }

  const unrelatedId = 'ZZZZZZZZZZZZ';

  it('a gap in seq (an event lost on the way) flushes everything', async () => {
    const key = await silentlyNarrowedKey();
    const seq = await sequence();
    // Emulates a lost message: the sequence advanced twice, only the second event arrived.
    await admin
      .multi()
      .incr('fortary:events:seq')
      .incr('fortary:events:seq')
      .publish(
        'fortary:events',
        JSON.stringify({ seq: seq + 2, type: 'key.updated', id: unrelatedId, at: Date.now() }),
      )
      .exec();
    await firstDenial(h.client, key.token, Date.now(), EVENT_BOUND_MS, ['vault_not_allowed']);
    expect(await h.sidecar.metrics.cacheFlushes.get()).toMatchObject({
      values: expect.arrayContaining([expect.objectContaining({ labels: { cause: 'gap' } })]),
    });
  });

  it('an unparseable message flushes everything', async () => {
    const key = await silentlyNarrowedKey();
    await admin.publish('fortary:events', 'this is not an event');
    await firstDenial(h.client, key.token, Date.now(), EVENT_BOUND_MS, ['vault_not_allowed']);
  });

  it('a message without seq (the documented no-scripting emergency revoke) flushes and revokes', async () => {
    const key = await cachedKey();
    await admin
      .multi()
      .hsetnx(`fortary:key:${key.keyId}`, 'revokedAt', String(Date.now()))
      .incr('fortary:events:seq')
      .publish('fortary:events', JSON.stringify({ type: 'key.revoked', id: key.keyId }))
      .exec();
    await firstDenial(h.client, key.token, Date.now(), REVOKE_BOUND_MS, ['key_revoked']);
  });

  it('a sequence that goes backwards (the store was reset under the sidecar) flushes everything', async () => {
    const key = await silentlyNarrowedKey();
    const seq = await sequence();
    await admin.publish(
      'fortary:events',
      JSON.stringify({ seq: seq - 1, type: 'key.updated', id: unrelatedId, at: Date.now() }),
    );
    await firstDenial(h.client, key.token, Date.now(), EVENT_BOUND_MS, ['vault_not_allowed']);
  });
});
