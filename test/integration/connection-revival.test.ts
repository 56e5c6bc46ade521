/**
 * ioredis ends a connection for good when a disconnect lands during a connect (Sentinel's +switch-master does
 * this mid-failover, redis/ioredis#1683). Reproduced here on a real redis-server with the same call ioredis' own
 * failover detector makes, and the sidecar's connections must come back by themselves.
 */
import type Redis from 'ioredis';
import { createRedis, reviveAfterEnd } from '../../src/adapters/redis/connections';
import { waitFor } from '../support/fixtures';
import { sleep } from '../support/faults';
import { startRedis, type RedisInstance } from '../support/redis-server';
import { testConfig } from '../support/sidecar-harness';

let server: RedisInstance;
const opened: Redis[] = [];
const guards: Array<() => void> = [];

/** The guard under test, stopped in afterAll before the connections close (as the sidecar's close() does). */
function guard(redis: Redis, revived: () => void = () => undefined): () => void {
  const stop = reviveAfterEnd(redis, revived, 50);
  guards.push(stop);
  return stop;
}

beforeAll(async () => {
  server = await startRedis();
});
afterAll(async () => {
  for (const stop of guards) stop();
  for (const redis of opened) if (redis.status !== 'end') redis.disconnect();
  await server.stop();
});

/** A sidecar connection, and every status it passes through. */
function connection(role: 'command' | 'subscriber') {
  const redis = createRedis(testConfig(server.url).redis, role);
  redis.on('error', () => {});
  opened.push(redis);
  const statuses: string[] = [];
  for (const status of ['end', 'ready'] as const) redis.on(status, () => statuses.push(status));
  return { redis, statuses };
}

/** Disconnects while ioredis is connecting, the way the failover detector does it. */
function raceDisconnectIntoConnect(redis: Redis): void {
  redis.connect().catch(() => undefined);
  redis.disconnect(true);
}

describe('a connection ioredis gave up on', () => {
  test.each(['command', 'subscriber'] as const)(
    '%s connection: ends, then reconnects by itself and answers',
    async (role) => {
      const { redis, statuses } = connection(role);
      let revived = 0;
      guard(redis, () => revived++);
      raceDisconnectIntoConnect(redis);
      await waitFor(() => redis.status === 'ready', 3000);
      expect(statuses).toEqual(['end', 'ready']);
      expect(revived).toBe(1);
      expect(await redis.ping()).toBe('PONG');
    },
  );

  test('without the guard the same race leaves it ended (why the guard exists)', async () => {
    const { redis } = connection('command');
    raceDisconnectIntoConnect(redis);
    await sleep(500);
    expect(redis.status).toBe('end');
    await expect(redis.ping()).rejects.toThrow('Connection is closed');
  });

  test('after stop (close), an end stays an end: shutdown is not undone', async () => {
    const { redis } = connection('command');
    let revived = 0;
    const stop = guard(redis, () => revived++);
    await redis.connect();
    stop();
    redis.disconnect();
    await sleep(300);
    expect(redis.status).toBe('end');
    expect(revived).toBe(0);
  });

  test('an end while the server is away keeps retrying until it returns', async () => {
    const away = await startRedis();
    const redis = createRedis(testConfig(away.url).redis, 'command');
    redis.on('error', () => {});
    opened.push(redis);
    const stop = guard(redis);
    await redis.connect();
    await away.kill();
    raceDisconnectIntoConnect(redis);
    await sleep(400);
    expect(redis.status).not.toBe('ready');
    try {
      await away.restart();
      await waitFor(() => redis.status === 'ready', 5000);
      expect(await redis.ping()).toBe('PONG');
    } finally {
      stop();
      redis.disconnect();
      await away.stop();
    }
  });
});
