/**
 * Revocation under faults (issue 3, Jepsen-lite): real redis-server processes on private ports, the real sidecar
 * (in process, or as its own process where it must be frozen or isolated from the test's event loop), real
 * gRPC clients. Every test asserts that no request carrying a revoked key is allowed after the resync point, and
 * that the sidecar heals by itself.
 *
 * The resync point is where the sidecar has noticed the fault (a 'cache not trusted' log or metric): from there
 * on it serves nothing from cache that it has not re-validated against Redis.
 */
import type Redis from 'ioredis';
import { CacheFreshness } from '../../src/app/freshness';
import { silentEvents, type RecordStore } from '../../src/app/ports';
import { RecordCache } from '../../src/app/record-cache';
import { createRedis } from '../../src/adapters/redis/connections';
import { EventSubscriber } from '../../src/adapters/redis/event-subscriber';
import { EVENTS_CHANNEL, RedisRecordStore } from '../../src/adapters/redis/record-store';
import type { ChangeEvent } from '../../src/core/events';
import { makeCheckClient, type CheckClient } from '../support/check-client';
import { createKey, putUser, revokeKey, waitFor, type CreatedKey } from '../support/fixtures';
import {
  checkToken,
  cleanupRegistry,
  RECOVERY_BOUND_MS,
  REVOKE_BOUND_MS,
  firstDenial,
  logEntries,
  metricValue,
  RedisProxy,
  scrapeMetric,
  sleep,
  startCheckLoop,
  subscriberIds,
  tally,
  type Answer,
} from '../support/faults';
import { startRedis, type RedisInstance } from '../support/redis-server';
import { spawnSidecar, waitForServing, type SidecarProcess } from '../support/sidecar-process';
import { startHarness, testConfig, type Harness } from '../support/sidecar-harness';

const cleanups = cleanupRegistry();

async function redisServer(args: string[] = []): Promise<RedisInstance> {
  const server = await startRedis(args);
  cleanups.push(() => server.stop());
  return server;
}

async function harness(redis: RedisInstance, env: Record<string, string> = {}): Promise<Harness> {
  const h = await startHarness({ redis, env });
  cleanups.push(() => h.stop());
  return h;
}

async function sidecarProcess(env: Record<string, string>): Promise<SidecarProcess> {
  const sidecar = await spawnSidecar({ FORTARY_LOG_LEVEL: 'warn', FORTARY_HEARTBEAT_MS: '200', ...env });
  cleanups.push(() => sidecar.stop('SIGKILL'));
  await waitForServing(sidecar);
  return sidecar;
}

function client(port: number): CheckClient {
  const c = makeCheckClient(`127.0.0.1:${port}`);
  cleanups.push(() => c.close());
  return c;
}

/** Keys of one user, each already verified and cached by the sidecar behind `c`. */
async function cachedKeys(admin: Redis, c: CheckClient, count: number): Promise<CreatedKey[]> {
  if ((await admin.exists('fortary:user:alice')) === 0) {
    await putUser(admin, { id: 'alice', developerVaults: ['alpha'] });
  }
  const keys: CreatedKey[] = [];
  for (let i = 0; i < count; i++) keys.push(await createKey(admin, { userId: 'alice', vaults: ['alpha'] }));
  for (const key of keys) {
    await waitFor(async () => (await checkToken(c, key.token)).allow, 2000);
    expect((await checkToken(c, key.token)).reason).toBe('allowed');
  }
  return keys;
}

/** Allowed answers for `label` sent at or after `from` (epoch ms). */
function allowedSince(answers: readonly Answer[], label: string, from: number): Answer[] {
  return answers.filter((a) => a.label === label && a.allow && a.sentAt >= from);
}

describe('lost and missed events', () => {
  it('CLIENT KILL TYPE pubsub during a stream of revocations: every revocation is denied within 100 ms and stays denied', async () => {
    const redis = await redisServer();
    const h = await harness(redis);
    const keys = await cachedKeys(h.admin, h.client, 24);
    const tokens = Object.fromEntries(keys.map((k) => [k.keyId, k.token]));
    const loop = startCheckLoop(h.client, tokens, { pauseMs: 5 });
    cleanups.push(() => loop.stop());
    const revokedAt = new Map<string, number>();
    let kills = 0;
    for (const [i, key] of keys.entries()) {
      if (i % 4 === 0) {
        // Kill a subscriber that is back and subscribed, so each kill really cuts the stream.
        await waitFor(async () => (await subscriberIds(h.admin)).length === 1, RECOVERY_BOUND_MS);
        kills += Number(await h.admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub'));
      }
      await revokeKey(h.admin, key.keyId);
      const acked = Date.now();
      revokedAt.set(key.keyId, acked);
      await firstDenial(h.client, key.token, acked, REVOKE_BOUND_MS, ['key_revoked']);
      await sleep(20);
    }
    await sleep(300);
    const answers = await loop.stop();
    expect(kills).toBe(6);
    for (const key of keys) {
      // After the bound, never allowed again (a stale read must not be cached over the revocation).
      expect(
        allowedSince(answers, key.keyId, (revokedAt.get(key.keyId) as number) + REVOKE_BOUND_MS),
      ).toEqual([]);
    }
    // The sidecar noticed the kills and re-subscribed by itself each time.
    expect(logEntries(h, 'cache not trusted').length).toBeGreaterThanOrEqual(1);
    await waitFor(async () => (await subscriberIds(h.admin)).length === 1, RECOVERY_BOUND_MS);
    expect(await revokeKey(h.admin, (keys[0] as CreatedKey).keyId)).toBe(1);
  });

  it('a revocation published while the subscriber is disconnected (0 receivers) is caught by the reconcile', async () => {
    const redis = await redisServer();
    const h = await harness(redis);
    const [key, valid] = (await cachedKeys(h.admin, h.client, 2)) as [CreatedKey, CreatedKey];
    const logsBefore = h.logs.length;
    // Atomically: drop the subscriber, then revoke, so the event certainly reaches no one.
    const replies = (await h.admin
      .multi()
      .call('CLIENT', 'KILL', 'TYPE', 'pubsub')
      .call('FCALL', 'fortary_revoke', '1', key.keyId)
      .exec()) as Array<[Error | null, unknown]>;
    const acked = Date.now();
    expect(replies.map(([, value]) => value)).toEqual([1, 0]);
    await firstDenial(h.client, key.token, acked, REVOKE_BOUND_MS, ['key_revoked']);
    expect((await checkToken(h.client, valid.token)).reason).toBe('allowed');
    // The subscriber came back, re-subscribed and reconciled (the sequence had moved: flush).
    await waitFor(
      () => logEntries(h, 'cache trusted', { cause: 'resubscribe' }, logsBefore).length > 0,
      RECOVERY_BOUND_MS,
    );
    expect(await subscriberIds(h.admin)).toHaveLength(1);
    const flushes = await h.sidecar.metrics.cacheFlushes.get();
    expect(
      flushes.values.find((v) => v.labels.cause === 'resubscribe' || v.labels.cause === 'untrusted'),
    ).toBeDefined();
  });

  it('a half-open subscriber (peer frozen, no FIN) is noticed within a few seconds; meanwhile requests re-validate and a revocation it missed is denied; it reconnects by itself', async () => {
    const redis = await redisServer();
    const proxy = await RedisProxy.start(redis.port);
    cleanups.push(() => proxy.close());
    // Production heartbeat (1 s): "a few seconds" is measured with the default.
    const h = await harness(redis, { REDIS_URL: proxy.url, FORTARY_HEARTBEAT_MS: '1000' });
    const [missed, later, valid] = (await cachedKeys(h.admin, h.client, 3)) as [
      CreatedKey,
      CreatedKey,
      CreatedKey,
    ];
    const logsBefore = h.logs.length;
    const loop = startCheckLoop(h.client, { missed: missed.token, valid: valid.token }, { pauseMs: 10 });
    cleanups.push(() => loop.stop());

    const frozenAt = Date.now();
    expect(proxy.freeze('fortary-authz-subscriber')).toBe(1);
    // Redis still counts the frozen connection as a receiver; the message never arrives.
    expect(await revokeKey(h.admin, missed.keyId)).toBe(1);

    await waitFor(
      () => logEntries(h, 'cache not trusted', { cause: 'heartbeat timeout' }, logsBefore).length > 0,
      5000,
    );
    const noticedAt = (
      logEntries(h, 'cache not trusted', { cause: 'heartbeat timeout' }, logsBefore)[0] as {
        at: number;
      }
    ).at;
    expect(noticedAt - frozenAt).toBeLessThanOrEqual(3000);
    const denied = await firstDenial(h.client, missed.token, noticedAt, REVOKE_BOUND_MS, ['key_revoked']);
    expect(denied.answer.reason).toBe('key_revoked');

    // A new subscriber connection replaces the dead one (the frozen one is never answered again).
    await waitFor(
      () => logEntries(h, 'cache trusted', { cause: 'resubscribe' }, logsBefore).length > 0,
      6000,
      20,
    );
    const answers = await loop.stop();
    expect(allowedSince(answers, 'missed', noticedAt)).toEqual([]);
    // The command connection never failed: the valid key was allowed throughout, never a 503.
    expect(tally(answers).valid).toEqual({ allowed: expect.any(Number) });
    // Events flow again over the new connection.
    expect(await revokeKey(h.admin, later.keyId)).toBe(2);
    await firstDenial(h.client, later.token, Date.now(), REVOKE_BOUND_MS, ['key_revoked']);
    expect(await metricValue(h, 'fortary_authz_subscriber_connected')).toBe(1);
  });

  it('a half-open command connection (subscriber healthy): 503 only for what needs Redis, a revoked key is never allowed, and the connection is replaced by itself', async () => {
    const redis = await redisServer();
    const proxy = await RedisProxy.start(redis.port);
    cleanups.push(() => proxy.close());
    const h = await harness(redis, { REDIS_URL: proxy.url });
    // Subscribed and reconciled before seeding, so no startup resync flushes the keys cached below.
    await waitFor(async () => (await metricValue(h, 'fortary_authz_subscriber_connected')) === 1, 2000);
    const [cached, revoked] = (await cachedKeys(h.admin, h.client, 2)) as [CreatedKey, CreatedKey];
    const uncached = await createKey(h.admin, { userId: 'alice', vaults: ['alpha'] });

    const frozenAt = Date.now();
    expect(proxy.freeze('fortary-authz-command')).toBe(1);
    const loop = startCheckLoop(
      h.client,
      { cached: cached.token, revoked: revoked.token, uncached: uncached.token },
      { pauseMs: 10 },
    );
    cleanups.push(() => loop.stop());
    // The event still arrives; re-reading the key needs the dead connection.
    await revokeKey(h.admin, revoked.keyId);
    const revokedAt = Date.now();
    await waitFor(async () => (await checkToken(h.client, uncached.token)).allow, 6000, 20);
    const healedAfter = Date.now() - frozenAt;
    await firstDenial(h.client, revoked.token, Date.now(), RECOVERY_BOUND_MS, ['key_revoked']);
    await sleep(200);
    const answers = await loop.stop();
    expect(allowedSince(answers, 'revoked', revokedAt + REVOKE_BOUND_MS)).toEqual([]);
    // The cached key never needed Redis: allowed throughout.
    expect(tally(answers).cached).toEqual({ allowed: expect.any(Number) });
    expect(new Set(answers.filter((a) => a.label === 'uncached').map((a) => a.reason))).toEqual(
      new Set(['store_unavailable', 'allowed']),
    );
    expect(healedAfter).toBeLessThanOrEqual(5000);
  });

  it('the subscriber drops and comes back while a reconcile is in flight: it is re-subscribed before the cache is trusted again', async () => {
    const redis = await redisServer();
    const admin = redis.client();
    const config = testConfig(redis.url);
    const command = createRedis(config.redis, 'command');
    const subscriberRedis = createRedis(config.redis, 'subscriber');
    await command.connect();
    // getSequence answers only when the gate is open: a slow reply to the reconcile's GET.
    let gate: Promise<void> | null = null;
    let openGate = () => {};
    let gatedReads = 0;
    const real = new RedisRecordStore(command);
    const store: RecordStore = {
      getKey: (id) => real.getKey(id),
      getUser: (id) => real.getUser(id),
      async getSequence() {
        const seq = await real.getSequence();
        if (gate !== null) {
          gatedReads++;
          await gate;
        }
        return seq;
      },
    };
    const cache = new RecordCache(store, silentEvents, {
      maxKeys: 100,
      maxUsers: 100,
      maxStalenessMs: 60_000,
    });
    const applied: ChangeEvent[] = [];
    const freshness = new CacheFreshness(store, cache, {
      trustChanged: () => {},
      eventApplied: (event) => applied.push(event),
      stalled: () => {},
    });
    const subscriber = new EventSubscriber(
      subscriberRedis,
      freshness,
      { connected: () => {}, event: () => {}, warn: () => {}, failure: () => {} },
      { heartbeatMs: 200 },
    );
    cleanups.push(() => command.quit().catch(() => command.disconnect()));
    cleanups.push(() => subscriber.close());
    subscriber.start();
    await waitFor(() => freshness.trusted, 2000);

    gate = new Promise<void>((resolve) => (openGate = resolve));
    await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    await waitFor(() => gatedReads === 1, 2000); // reconnected, subscribed, reconcile waiting for its GET
    await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    await waitFor(() => subscriberRedis.status !== 'ready', 1000, 1);
    await waitFor(() => subscriberRedis.status === 'ready', 2000, 1); // the third connection is up
    gate = null;
    openGate();

    // From here on the cache may be trusted only while the live connection is subscribed.
    const deadline = Date.now() + 3000;
    let healthy = false;
    while (Date.now() < deadline && !healthy) {
      const before = freshness.trusted;
      const subscribers = Number(
        ((await admin.call('PUBSUB', 'NUMSUB', EVENTS_CHANNEL)) as [string, number])[1],
      );
      const after = freshness.trusted;
      expect({ trusted: before && after, subscribers }).not.toEqual({ trusted: true, subscribers: 0 });
      healthy = after && subscribers === 1;
      await sleep(10);
    }
    expect(healthy).toBe(true);
    await admin.incr('fortary:events:seq');
    const seq = Number(await admin.get('fortary:events:seq'));
    expect(
      await admin.publish(EVENTS_CHANNEL, JSON.stringify({ seq, type: 'key.revoked', id: 'AAAAAAAAAAAA' })),
    ).toBe(1);
    await waitFor(() => applied.some((e) => e.seq === seq), 1000);
  });
});

describe('startup order', () => {
  /** A subscriber whose reconcile reads through a command connection that is not connected yet. */
  async function startupRace() {
    const redis = await redisServer();
    const config = testConfig(redis.url);
    const command = createRedis(config.redis, 'command');
    const subscriberRedis = createRedis(config.redis, 'subscriber');
    command.on('error', () => {});
    const store = new RedisRecordStore(command);
    const cache = new RecordCache(store, silentEvents, { maxKeys: 10, maxUsers: 10, maxStalenessMs: 60_000 });
    const freshness = new CacheFreshness(store, cache, {
      trustChanged: () => {},
      eventApplied: () => {},
      stalled: () => {},
    });
    const warnings: string[] = [];
    const subscriber = new EventSubscriber(
      subscriberRedis,
      freshness,
      {
        connected: () => {},
        event: () => {},
        warn: (message) => warnings.push(message),
        failure: (message) => warnings.push(message),
      },
      // A heartbeat far longer than the test: only storeReady() can bring the retry forward.
      { heartbeatMs: 60_000 },
    );
    cleanups.push(() => command.quit().catch(() => command.disconnect()));
    cleanups.push(() => subscriber.close());
    subscriber.start();
    // The subscriber's first reconcile fails: the command connection is not up yet.
    await waitFor(() => subscriberRedis.status === 'ready', 2000);
    await sleep(100);
    expect(freshness.trusted).toBe(false);
    // (The failed GET itself started the lazy command connection, as the sidecar's own connect() would.)
    if (command.status === 'wait') await command.connect();
    await waitFor(() => command.status === 'ready', 2000);
    return { subscriber, freshness, warnings };
  }

  it('the first reconcile failing because the command connection is not up yet is retried as soon as it is, without a warning', async () => {
    const { subscriber, freshness, warnings } = await startupRace();
    subscriber.storeReady();
    await waitFor(() => freshness.trusted, 1000);
    expect(warnings).toEqual([]);
  });

  it('without that nudge the cache would stay untrusted until the next heartbeat', async () => {
    const { freshness } = await startupRace();
    await sleep(500);
    expect(freshness.trusted).toBe(false);
  });
});

describe('Redis outages', () => {
  it('Redis killed under load and restarted (AOF keeps the data): 503 meanwhile, never a revoked key, healed ≤ 2 s after the restart', async () => {
    const redis = await redisServer(['--appendonly', 'yes', '--appendfsync', 'always']);
    const h = await harness(redis);
    const [revoked, valid, later] = (await cachedKeys(h.admin, h.client, 3)) as [
      CreatedKey,
      CreatedKey,
      CreatedKey,
    ];
    await revokeKey(h.admin, revoked.keyId);
    await firstDenial(h.client, revoked.token, Date.now(), REVOKE_BOUND_MS, ['key_revoked']);
    const loop = startCheckLoop(h.client, { revoked: revoked.token, valid: valid.token });
    cleanups.push(() => loop.stop());
    await sleep(200);
    await redis.kill(true);
    const killedAt = Date.now();
    await sleep(1000);
    await redis.restart();
    const restartedAt = Date.now();
    await waitFor(async () => (await checkToken(h.client, valid.token)).allow, RECOVERY_BOUND_MS, 10);
    const healedAfter = Date.now() - restartedAt;
    await sleep(300);
    const answers = await loop.stop();

    expect(answers.filter((a) => a.label === 'revoked' && a.allow)).toEqual([]);
    const counts = tally(answers);
    expect(Object.keys(counts.valid ?? {}).sort()).toEqual(['allowed', 'store_unavailable']);
    expect(Object.keys(counts.revoked ?? {}).sort()).toEqual(['key_revoked', 'store_unavailable']);
    // The outage was seen (503) only between the kill and the recovery.
    const unavailable = answers.filter((a) => a.reason === 'store_unavailable');
    expect(Math.min(...unavailable.map((a) => a.doneAt))).toBeGreaterThanOrEqual(killedAt - 50);
    expect(healedAfter).toBeLessThanOrEqual(RECOVERY_BOUND_MS);
    expect(h.sidecar.health.serving).toBe(true);
    // Events flow again: a new revocation is immediate.
    await waitFor(async () => (await subscriberIds(h.admin)).length === 1, RECOVERY_BOUND_MS);
    await revokeKey(h.admin, later.keyId);
    await firstDenial(h.client, later.token, Date.now(), REVOKE_BOUND_MS, ['key_revoked']);
  });

  it('a restart that loses all data: the sequence is back to 0 and the sidecar stops allowing its cached keys', async () => {
    const redis = await redisServer();
    const h = await harness(redis);
    const [valid] = (await cachedKeys(h.admin, h.client, 1)) as [CreatedKey];
    const loop = startCheckLoop(h.client, { valid: valid.token });
    cleanups.push(() => loop.stop());
    await sleep(100);
    await redis.kill(true);
    const killedAt = Date.now();
    await sleep(500);
    await redis.restart();
    const restartedAt = Date.now();
    expect(await h.admin.get('fortary:events:seq')).toBeNull();
    const gone = await firstDenial(h.client, valid.token, restartedAt, RECOVERY_BOUND_MS, ['key_unknown']);
    expect(gone.afterMs).toBeLessThanOrEqual(RECOVERY_BOUND_MS);
    await sleep(200);
    const answers = await loop.stop();
    expect(allowedSince(answers, 'valid', killedAt)).toEqual([]);
    const after = answers.filter((a) => a.sentAt >= killedAt).map((a) => a.reason);
    expect(new Set(after)).toEqual(new Set(['store_unavailable', 'key_unknown']));
  });

  it('DEBUG SLEEP: cached answers only until the heartbeat notices, then 503, nothing revoked before the pause ever allowed, healed ≤ 2 s after', async () => {
    const redis = await redisServer(['--enable-debug-command', 'local']);
    const h = await harness(redis); // heartbeat 200 ms
    const [revoked, valid] = (await cachedKeys(h.admin, h.client, 2)) as [CreatedKey, CreatedKey];
    await revokeKey(h.admin, revoked.keyId);
    await firstDenial(h.client, revoked.token, Date.now(), REVOKE_BOUND_MS, ['key_revoked']);
    const logsBefore = h.logs.length;
    const loop = startCheckLoop(h.client, { revoked: revoked.token, valid: valid.token });
    cleanups.push(() => loop.stop());
    await sleep(100);
    const sleeper = redis.client();
    const pausedAt = Date.now();
    await sleeper.call('DEBUG', 'SLEEP', '3');
    const resumedAt = Date.now();
    await waitFor(async () => (await checkToken(h.client, valid.token)).allow, RECOVERY_BOUND_MS, 10);
    const healedAfter = Date.now() - resumedAt;
    await sleep(200);
    const answers = await loop.stop();

    // Usually the heartbeat times out first; under CI load a failed PING or the connection's own error can be the
    // first to tell. What matters is that something noticed within two heartbeats and nothing was allowed after.
    const noticed = logEntries(h, 'cache not trusted', {}, logsBefore)[0];
    expect(noticed).toBeDefined();
    const noticedAt = (noticed as { at: number }).at;
    expect(noticedAt - pausedAt).toBeLessThanOrEqual(1000); // two heartbeats of 200 ms, with slack
    expect(answers.filter((a) => a.label === 'revoked' && a.allow)).toEqual([]);
    // During the pause: allowed only if sent before the sidecar noticed; afterwards 503 until Redis is back.
    // While Redis slept (it woke no sooner than pausedAt + 3 s), an allow could only come from the cache, and the
    // cache may only answer until the heartbeat noticed; from then on 503 until Redis answers again.
    const asleep = answers.filter(
      (a) => a.label === 'valid' && a.sentAt >= pausedAt && a.doneAt < pausedAt + 3000,
    );
    expect(asleep.filter((a) => a.allow && a.sentAt > noticedAt)).toEqual([]);
    expect(new Set(asleep.filter((a) => !a.allow).map((a) => a.reason))).toEqual(
      new Set(['store_unavailable']),
    );
    expect(healedAfter).toBeLessThanOrEqual(RECOVERY_BOUND_MS);
    // The subscriber that was disconnected on the heartbeat timeout re-subscribed and reconciled.
    await waitFor(
      () => logEntries(h, 'cache trusted', { cause: 'resubscribe' }, logsBefore).length > 0,
      5000,
    );
  });

  it('a failover behind one address that lost the last event and reused its sequence number: the new server’s revocation is denied', async () => {
    const primary = await redisServer(['--repl-diskless-sync-delay', '0']);
    const replica = await redisServer(['--replicaof', '127.0.0.1', String(primary.port)]);
    const onReplica = replica.client();
    await waitFor(async () => (await onReplica.info('replication')).includes('master_link_status:up'), 5000);
    const proxy = await RedisProxy.start(primary.port);
    cleanups.push(() => proxy.close());
    const h = await harness(primary, { REDIS_URL: proxy.url });
    const [lostRevoke, newRevoke, valid] = (await cachedKeys(h.admin, h.client, 3)) as [
      CreatedKey,
      CreatedKey,
      CreatedKey,
    ];
    expect(await h.admin.call('WAIT', '1', '2000')).toBe(1);
    // The replica is promoted before the last write reaches it.
    await onReplica.call('REPLICAOF', 'NO', 'ONE');
    await revokeKey(h.admin, lostRevoke.keyId); // acknowledged by the old primary only
    await firstDenial(h.client, lostRevoke.token, Date.now(), REVOKE_BOUND_MS, ['key_revoked']);
    const seqOld = Number(await h.admin.get('fortary:events:seq'));
    await revokeKey(onReplica, newRevoke.keyId); // acknowledged by the new primary, with the same number
    expect(Number(await onReplica.get('fortary:events:seq'))).toBe(seqOld);

    const loop = startCheckLoop(h.client, { newRevoke: newRevoke.token, valid: valid.token }, { pauseMs: 5 });
    cleanups.push(() => loop.stop());
    proxy.retarget(replica.port);
    await primary.kill(true);
    proxy.dropAll();
    const switchedAt = Date.now();
    const denied = await firstDenial(h.client, newRevoke.token, switchedAt, RECOVERY_BOUND_MS, [
      'key_revoked',
    ]);
    await waitFor(async () => (await checkToken(h.client, valid.token)).allow, RECOVERY_BOUND_MS);
    await sleep(200);
    const answers = await loop.stop();
    expect(allowedSince(answers, 'newRevoke', denied.answer.sentAt)).toEqual([]);
    // The valid key was never refused for anything but the outage itself.
    expect(
      Object.keys(tally(answers).valid ?? {}).filter((r) => r !== 'allowed' && r !== 'store_unavailable'),
    ).toEqual([]);
  });
});

describe('publish floods', () => {
  /** The record JSON of a key, for repeated `fortary_put_key … edit` (each publishes key.updated). */
  async function recordOf(admin: Redis, keyId: string): Promise<string> {
    return (await admin.hget(`fortary:key:${keyId}`, 'record')) as string;
  }

  it('thousands of key.updated for other keys with revocations interleaved: every revocation lands', async () => {
    const redis = await redisServer();
    const sidecar = await sidecarProcess({ REDIS_URL: redis.url });
    const c = client(sidecar.grpcPort);
    const admin = redis.client();
    const targets = await cachedKeys(admin, c, 12);
    const others = await cachedKeys(admin, c, 4);
    const records = await Promise.all(others.map((k) => recordOf(admin, k.keyId)));
    const loop = startCheckLoop(c, Object.fromEntries(targets.map((k) => [k.keyId, k.token])), {
      pauseMs: 5,
    });
    cleanups.push(() => loop.stop());
    const acked = new Map<string, number>();
    let revoked = 0;
    const writes: Array<Promise<unknown>> = [];
    for (let i = 0; i < 6000; i++) {
      const n = i % others.length;
      writes.push(
        admin.call(
          'FCALL',
          'fortary_put_key',
          '1',
          (others[n] as CreatedKey).keyId,
          records[n] as string,
          'edit',
        ),
      );
      if (i % 500 === 250) {
        const key = targets[revoked++] as CreatedKey;
        writes.push(revokeKey(admin, key.keyId).then(() => acked.set(key.keyId, Date.now())));
      }
      if (i % 1000 === 999) await Promise.all(writes.splice(0));
    }
    await Promise.all(writes);
    await sleep(300);
    const answers = await loop.stop();
    expect(acked.size).toBe(12);
    for (const key of targets) {
      expect((await checkToken(c, key.token)).reason).toBe('key_revoked');
      // The flood may delay an event behind thousands of others, but not by a second.
      expect(allowedSince(answers, key.keyId, (acked.get(key.keyId) as number) + 1000)).toEqual([]);
    }
    expect(await scrapeMetric(sidecar.adminPort, 'fortary_authz_cache_flushes_total', { cause: 'gap' })).toBe(
      0,
    );
  });

  it('a frozen sidecar overruns client-output-buffer-limit pubsub: Redis drops the subscriber; on resuming the sidecar reconciles and denies every revocation it missed', async () => {
    const redis = await redisServer(['--client-output-buffer-limit', 'pubsub 64kb 32kb 1']);
    const sidecar = await sidecarProcess({ REDIS_URL: redis.url });
    const c = client(sidecar.grpcPort);
    const admin = redis.client();
    const targets = await cachedKeys(admin, c, 8);
    const [other, valid] = (await cachedKeys(admin, c, 2)) as [CreatedKey, CreatedKey];
    const record = await recordOf(admin, other.keyId);
    const [subscriberBefore] = await subscriberIds(admin);
    expect(subscriberBefore).toBeDefined();
    const flushesBefore = await scrapeMetric(sidecar.adminPort, 'fortary_authz_cache_flushes_total');

    sidecar.proc.kill('SIGSTOP');
    let revoked = 0;
    let dropped = false;
    // Flood until Redis has dropped the subscriber (bounded), revoking a target every 2000 events.
    for (let chunk = 0; chunk < 40 && (!dropped || revoked < targets.length); chunk++) {
      const writes: Array<Promise<unknown>> = [];
      for (let i = 0; i < 1000; i++) {
        writes.push(admin.call('FCALL', 'fortary_put_key', '1', other.keyId, record, 'edit'));
      }
      if (chunk % 2 === 1 && revoked < targets.length) {
        writes.push(revokeKey(admin, (targets[revoked++] as CreatedKey).keyId));
      }
      await Promise.all(writes);
      dropped = !(await subscriberIds(admin)).includes(subscriberBefore as string);
    }
    expect(dropped).toBe(true);
    expect(revoked).toBe(targets.length);

    sidecar.proc.kill('SIGCONT');
    const resumedAt = Date.now();
    const loop = startCheckLoop(c, {
      ...Object.fromEntries(targets.map((k) => [k.keyId, k.token])),
      valid: valid.token,
    });
    cleanups.push(() => loop.stop());
    // Resync point: the sidecar re-subscribed on a new connection and flushed.
    await waitFor(
      async () => {
        const ids = await subscriberIds(admin);
        return ids.length === 1 && ids[0] !== subscriberBefore;
      },
      RECOVERY_BOUND_MS,
      20,
    );
    await waitFor(
      async () =>
        (await scrapeMetric(sidecar.adminPort, 'fortary_authz_subscriber_connected')) === 1 &&
        (await scrapeMetric(sidecar.adminPort, 'fortary_authz_cache_flushes_total')) > flushesBefore,
      RECOVERY_BOUND_MS,
      20,
    );
    const resyncedAt = Date.now();
    await sleep(300);
    const answers = await loop.stop();
    for (const key of targets) {
      expect(allowedSince(answers, key.keyId, resyncedAt)).toEqual([]);
      expect((await checkToken(c, key.token)).reason).toBe('key_revoked');
    }
    expect(allowedSince(answers, 'valid', resyncedAt).length).toBeGreaterThan(0);
    expect(resyncedAt - resumedAt).toBeLessThanOrEqual(2 * RECOVERY_BOUND_MS);
  });
});
