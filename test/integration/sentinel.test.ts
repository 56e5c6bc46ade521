/**
 * Redis HA: the sidecar configured with REDIS_SENTINELS / REDIS_SENTINEL_NAME against a real master, replica and
 * sentinels. Revocations are issued before, during and after a failover; afterwards the sidecar must be connected
 * to the new master, serve, and deny every key whose revocation the new master holds.
 *
 * A revocation acknowledged by the old master after the replica was promoted can be lost with it (asynchronous
 * replication, see docs/propagation.md); the guarantee is about what the new master acknowledged.
 */
import type Redis from 'ioredis';
import { createKey, putUser, revokeKey, waitFor, type CreatedKey } from '../support/fixtures';
import {
  checkToken,
  cleanupRegistry,
  RECOVERY_BOUND_MS,
  REVOKE_BOUND_MS,
  clientList,
  firstDenial,
  sleep,
  startCheckLoop,
  subscriberIds,
  tally,
  type Answer,
  type CheckLoop,
} from '../support/faults';
import { MASTER_NAME, startSentinels, type SentinelDeployment } from '../support/sentinel';
import { startHarness, type Harness } from '../support/sidecar-harness';

const cleanups = cleanupRegistry();

interface Scenario {
  dep: SentinelDeployment;
  h: Harness;
  writer: Redis;
  before: CreatedKey[];
  during: CreatedKey[];
  after: CreatedKey[];
  valid: CreatedKey;
}

async function scenario(sentinels: 1 | 3): Promise<Scenario> {
  const dep = await startSentinels(sentinels);
  cleanups.push(() => dep.stop());
  const h = await startHarness({
    redis: dep.master,
    env: { REDIS_SENTINELS: dep.sentinelsEnv, REDIS_SENTINEL_NAME: MASTER_NAME, REDIS_URL: dep.master.url },
  });
  cleanups.push(() => h.stop());
  const writer = dep.client();
  await putUser(writer, { id: 'alice', developerVaults: ['alpha'] });
  const make = async (n: number) => {
    const keys: CreatedKey[] = [];
    for (let i = 0; i < n; i++) keys.push(await createKey(writer, { userId: 'alice', vaults: ['alpha'] }));
    return keys;
  };
  const [before, during, after, [valid]] = [await make(3), await make(12), await make(3), await make(1)];
  for (const key of [...before, ...during, ...after, valid as CreatedKey]) {
    expect((await checkToken(h.client, key.token)).reason).toBe('allowed');
  }
  // Before: revoked, denied at once, and replicated.
  for (const key of before) {
    await revokeKey(writer, key.keyId);
    await firstDenial(h.client, key.token, Date.now(), REVOKE_BOUND_MS, ['key_revoked']);
  }
  expect(await writer.call('WAIT', '1', '2000')).toBe(1);
  return { dep, h, writer, before, during, after, valid: valid as CreatedKey };
}

/** Revokes through Sentinel, retrying while the client follows a failover; resolves when a master acknowledged. */
async function revokeAcknowledged(writer: Redis, keyId: string, timeoutMs = 5000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await revokeKey(writer, keyId);
      return Date.now();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(25);
    }
  }
}

/** Revokes the keys one by one through Sentinel, retrying each until some master acknowledges it. */
function revokeThroughout(writer: Redis, keys: CreatedKey[], acked: Map<string, number>): Promise<void> {
  const deadline = Date.now() + 15_000;
  return (async () => {
    for (const key of keys) {
      while (Date.now() < deadline) {
        try {
          await revokeKey(writer, key.keyId);
          acked.set(key.keyId, Date.now());
          break;
        } catch {
          await sleep(25);
        }
      }
      await sleep(100);
    }
  })();
}

/** Resolves when both sidecar connections are on `node` (the subscriber subscribed) and returns that instant. */
async function sidecarOn(node: Redis, timeoutMs: number): Promise<number> {
  await waitFor(
    async () =>
      (await clientList(node)).some((c) => c.name === 'fortary-authz-command') &&
      (await subscriberIds(node)).length === 1,
    timeoutMs,
    20,
  );
  return Date.now();
}

/**
 * Every key whose revocation the new master holds is denied now, and was never allowed by a check sent after
 * the later of its acknowledgement and the resync point (plus the 100 ms bound). Returns how many acknowledged
 * revocations the new master does not hold (lost with the old master).
 */
async function assertRevocationsHeld(
  s: Scenario,
  newMaster: Redis,
  answers: readonly Answer[],
  acked: Map<string, number>,
  resyncedAt: number,
): Promise<number> {
  let lost = 0;
  for (const key of [...s.before, ...s.during, ...s.after]) {
    const held = (await newMaster.hexists(`fortary:key:${key.keyId}`, 'revokedAt')) === 1;
    if (!held) {
      if (acked.has(key.keyId)) lost++;
      continue;
    }
    expect({ key: key.keyId, reason: (await checkToken(s.h.client, key.token)).reason }).toEqual({
      key: key.keyId,
      reason: 'key_revoked',
    });
    const from = Math.max(acked.get(key.keyId) ?? 0, resyncedAt) + REVOKE_BOUND_MS;
    expect(answers.filter((a) => a.label === key.keyId && a.allow && a.sentAt >= from)).toEqual([]);
  }
  for (const key of [...s.before, ...s.after]) {
    expect(await newMaster.hexists(`fortary:key:${key.keyId}`, 'revokedAt')).toBe(1);
  }
  return lost;
}

/**
 * After Sentinel has switched to `newMaster`: the sidecar must follow within the recovery bound, the revocations
 * issued meanwhile must land, and each key of `s.after` must be denied within the revoke bound of its
 * acknowledgement. Returns the resync point and every answer the check loop saw.
 */
async function afterSwitch(
  s: Scenario,
  newMaster: Redis,
  loop: CheckLoop,
  revoking: Promise<void>,
  acked: Map<string, number>,
): Promise<{ resyncedAt: number; answers: Answer[] }> {
  const switchedAt = Date.now();
  const resyncedAt = await sidecarOn(newMaster, 5000);
  expect(resyncedAt - switchedAt).toBeLessThanOrEqual(RECOVERY_BOUND_MS);
  await revoking;
  for (const key of s.after) {
    const ackedAt = await revokeAcknowledged(s.writer, key.keyId);
    acked.set(key.keyId, ackedAt);
    await firstDenial(s.h.client, key.token, ackedAt, REVOKE_BOUND_MS, ['key_revoked']);
  }
  await sleep(200);
  return { resyncedAt, answers: await loop.stop() };
}

describe('Redis Sentinel failover', () => {
  it('SENTINEL FAILOVER with revocations before, during and after: the sidecar follows the new master within 2 s and denies every revocation it holds', async () => {
    const s = await scenario(1);
    const newMaster = s.dep.replica.client();
    const labels = Object.fromEntries(
      [...s.during, ...s.after, s.valid].map((k) => [k.keyId, k.token] as const),
    );
    const loop = startCheckLoop(s.h.client, labels, { pauseMs: 10 });
    cleanups.push(() => loop.stop());
    const acked = new Map<string, number>();
    const revoking = revokeThroughout(s.writer, s.during, acked);
    await sleep(300);

    await s.dep.sentinel().call('SENTINEL', 'FAILOVER', MASTER_NAME);
    await s.dep.waitForMaster(s.dep.replica.port, 10_000);
    const { resyncedAt, answers } = await afterSwitch(s, newMaster, loop, revoking, acked);
    await assertRevocationsHeld(s, newMaster, answers, acked, resyncedAt);
    expect((await checkToken(s.h.client, s.valid.token)).reason).toBe('allowed');
    expect(
      Object.keys(tally(answers)[s.valid.keyId] ?? {}).filter(
        (r) => r !== 'allowed' && r !== 'store_unavailable',
      ),
    ).toEqual([]);

    // Closing the sidecar also closes its two failover-detector subscriptions on the sentinel.
    const sentinel = s.dep.sentinel();
    const detectors = async () => (await clientList(sentinel)).filter((c) => c.cmd === 'subscribe').length;
    const open = await detectors();
    await s.h.stop();
    await waitFor(async () => (await detectors()) === open - 2, 2000);
  });

  it('the master is killed (three sentinels): 503 meanwhile, the sidecar reaches the promoted replica by itself and denies every revocation it holds', async () => {
    const s = await scenario(3);
    const newMaster = s.dep.replica.client();
    const labels = Object.fromEntries(
      [...s.before, ...s.during, ...s.after, s.valid].map((k) => [k.keyId, k.token] as const),
    );
    const loop = startCheckLoop(s.h.client, labels, { pauseMs: 10 });
    cleanups.push(() => loop.stop());
    const acked = new Map<string, number>();
    await sleep(100);
    await s.dep.master.kill(true);
    const killedAt = Date.now();
    const revoking = revokeThroughout(s.writer, s.during, acked);

    await s.dep.waitForMaster(s.dep.replica.port, 15_000);
    const { resyncedAt, answers } = await afterSwitch(s, newMaster, loop, revoking, acked);

    // Every revocation during the outage was acknowledged by the new master: none may be lost.
    expect(await assertRevocationsHeld(s, newMaster, answers, acked, resyncedAt)).toBe(0);
    const valid = answers.filter((a) => a.label === s.valid.keyId);
    expect(new Set(valid.map((a) => a.reason))).toEqual(new Set(['allowed', 'store_unavailable']));
    expect(valid.filter((a) => a.reason === 'store_unavailable').every((a) => a.doneAt >= killedAt)).toBe(
      true,
    );
    // Revoked before the kill: never allowed at any moment.
    for (const key of s.before) {
      expect(answers.filter((a) => a.label === key.keyId && a.allow)).toEqual([]);
    }
    expect((await checkToken(s.h.client, s.valid.token)).reason).toBe('allowed');
  });
});
