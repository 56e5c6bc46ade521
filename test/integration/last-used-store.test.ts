/**
 * The last-use store against a real Redis: a flush larger than one pipeline is sent as several, none longer than
 * WRITES_PER_PIPELINE (a single 10,000-command pipeline held ~21 MiB of the sidecar's heap), and every use is
 * written. A connection that fails midway names what was not written, so exactly that is retried.
 */
import type Redis from 'ioredis';
import type { LastUse } from '../../src/app/last-used';
import { ensureFunctionLibrary } from '../../src/adapters/redis/function-library';
import { RedisLastUseStore, WRITES_PER_PIPELINE } from '../../src/adapters/redis/last-used-store';
import { randomBase62 } from '../support/fixtures';
import { startRedis, type RedisInstance } from '../support/redis-server';

let server: RedisInstance;
let redis: Redis;

beforeAll(async () => {
  server = await startRedis();
  redis = server.client();
  await ensureFunctionLibrary(redis);
});

afterAll(async () => {
  await server.stop();
});

afterEach(() => {
  jest.restoreAllMocks();
});

const uses = (count: number, at: number): LastUse[] =>
  Array.from({ length: count }, () => ({ keyId: randomBase62(12), at, ip: '192.0.2.7', vault: 'alpha' }));

/** The length of every pipeline the store executes; `failAt` makes that pipeline's exec reject (0-based). */
function watchPipelines(failAt?: number): number[] {
  const lengths: number[] = [];
  const original = redis.pipeline.bind(redis);
  jest.spyOn(redis, 'pipeline').mockImplementation((...args: Parameters<Redis['pipeline']>) => {
    const pipeline = original(...args);
    const exec = pipeline.exec.bind(pipeline);
    pipeline.exec = () => {
      lengths.push(pipeline.length);
      if (lengths.length - 1 === failAt) return Promise.reject(new Error('connection lost'));
      return exec();
    };
    return pipeline;
  });
  return lengths;
}

test('a large flush goes out as pipelines of at most WRITES_PER_PIPELINE, and every use is written', async () => {
  const lengths = watchPipelines();
  const errors: unknown[] = [];
  const store = new RedisLastUseStore(redis, (error) => errors.push(error));
  const batch = uses(2 * WRITES_PER_PIPELINE + 17, 1_700_000_000_000);
  const refused: string[] = [];
  expect(await store.write(batch, (keyId) => refused.push(keyId))).toBe(0);
  expect(lengths).toEqual([WRITES_PER_PIPELINE, WRITES_PER_PIPELINE, 17]);
  expect(refused).toEqual([]);
  expect(errors).toEqual([]);
  for (const use of [batch[0], batch[WRITES_PER_PIPELINE], batch[batch.length - 1]] as LastUse[]) {
    expect(await redis.hgetall(`fortary:last-used:${use.keyId}`)).toEqual({
      at: String(use.at),
      ip: '192.0.2.7',
      vault: 'alpha',
    });
  }
});

test('a pipeline that fails midway: the uses not written are named, those written are not', async () => {
  const lengths = watchPipelines(1);
  const errors: unknown[] = [];
  const store = new RedisLastUseStore(redis, (error) => errors.push(error));
  const batch = uses(3 * WRITES_PER_PIPELINE, 1_700_000_000_000);
  const refused: string[] = [];
  const failed = await store.write(batch, (keyId) => refused.push(keyId));
  // The second pipeline failed; the third was not sent on a connection that had just failed.
  expect(lengths).toEqual([WRITES_PER_PIPELINE, WRITES_PER_PIPELINE]);
  expect(failed).toBe(2 * WRITES_PER_PIPELINE);
  expect(refused).toEqual(batch.slice(WRITES_PER_PIPELINE).map((use) => use.keyId));
  expect(errors).toHaveLength(1);
  expect(await redis.exists(`fortary:last-used:${(batch[0] as LastUse).keyId}`)).toBe(1);
  expect(await redis.exists(`fortary:last-used:${(batch[WRITES_PER_PIPELINE] as LastUse).keyId}`)).toBe(0);
});

test('a first pipeline that fails throws (nothing written: the recorder retries the whole batch)', async () => {
  watchPipelines(0);
  const store = new RedisLastUseStore(redis, () => undefined);
  const refused: string[] = [];
  await expect(store.write(uses(10, 1_700_000_000_000), (keyId) => refused.push(keyId))).rejects.toThrow(
    'connection lost',
  );
  expect(refused).toEqual([]);
});

test('an empty batch sends nothing', async () => {
  const lengths = watchPipelines();
  expect(await new RedisLastUseStore(redis, () => undefined).write([], () => undefined)).toBe(0);
  expect(lengths).toEqual([]);
});
