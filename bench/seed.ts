/**
 * Bench data in the private Redis. Small sets go through the same Redis functions the CLI uses (so the sidecar
 * reads what production writes); the 100,000-key memory set is written with pipelined HSET/SET/SADD of records
 * serialised by the same code.
 */
import bcrypt from 'bcrypt';
import type Redis from 'ioredis';
import { KEY_PREFIX, USER_KEYS_PREFIX, USER_PREFIX } from '../src/adapters/redis/record-store';
import { serializeKeyRecord, serializeUserRecord } from '../src/core/records';
import { formatToken } from '../src/core/token';
import { BENCH_VAULT, randomBase62 } from './envoy-request';

const YEAR_MS = 365 * 24 * 60 * 60 * 1000;

/** The CLI's default cost (FORTARY_BCRYPT_COST): what a production key costs to verify. */
export const PRODUCTION_COST = 10;

export interface BenchKey {
  keyId: string;
  token: string;
}

export async function putUser(redis: Redis, id: string): Promise<void> {
  const record = serializeUserRecord({
    id,
    active: true,
    developerVaults: [BENCH_VAULT],
    updatedAt: Date.now(),
  });
  await redis.call('FCALL', 'fortary_put_user', '1', id, record);
}

/** A bench key's record: read on the bench vault, valid for a year (no expiry warning), no IP restriction. */
export function keyRecord(keyId: string, userId: string, secretHash: string): string {
  const now = Date.now();
  return serializeKeyRecord({
    id: keyId,
    userId,
    secretHash,
    scopes: ['vault:read'],
    vaults: [BENCH_VAULT],
    ipAllowlist: [],
    expiresAt: now + YEAR_MS,
    label: 'bench',
    createdAt: now,
    updatedAt: now,
  });
}

/** Runs `fn` over `items` with at most `limit` in flight. */
export async function pool<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Keys with their own bcrypt hash of their own token, created through `fortary_put_key`. */
export async function createKeys(
  redis: Redis,
  userId: string,
  count: number,
  cost: number,
): Promise<BenchKey[]> {
  const specs = Array.from({ length: count }, () => {
    const keyId = randomBase62(12);
    return { keyId, token: formatToken(keyId, randomBase62(43)) };
  });
  const hashes = await pool(specs, 8, (k) => bcrypt.hash(k.token, cost));
  for (let i = 0; i < specs.length; i += 500) {
    const batch = redis.pipeline();
    for (let j = i; j < Math.min(i + 500, specs.length); j++) {
      const k = specs[j] as BenchKey;
      batch.call(
        'FCALL',
        'fortary_put_key',
        '1',
        k.keyId,
        keyRecord(k.keyId, userId, hashes[j] as string),
        'create',
      );
    }
    const results = await batch.exec();
    const failed = results?.find(([error]) => error !== null);
    if (failed) throw failed[0] as Error;
  }
  return specs;
}

/**
 * Keys whose right token is never presented (flood targets): they may share one hash, since every token sent for
 * them is wrong anyway and a mismatch costs bcrypt exactly as much whichever hash it is compared with.
 */
export async function createFloodKeys(
  redis: Redis,
  userId: string,
  count: number,
  cost: number,
): Promise<string[]> {
  const sharedHash = await bcrypt.hash(formatToken(randomBase62(12), randomBase62(43)), cost);
  const ids = Array.from({ length: count }, () => randomBase62(12));
  const batch = redis.pipeline();
  for (const keyId of ids) {
    batch.call('FCALL', 'fortary_put_key', '1', keyId, keyRecord(keyId, userId, sharedHash), 'create');
  }
  await batch.exec();
  return ids;
}

export async function revoke(redis: Redis, keyId: string): Promise<void> {
  await redis.call('FCALL', 'fortary_revoke', '1', keyId);
}

/**
 * The memory scenario's keys: `count` keys over `users` users, each key with its own bcrypt hash (cost 4, the
 * minimum: the hash cost does not change what the caches hold), written straight into the Redis layout.
 */
export async function seedMany(
  redis: Redis,
  count: number,
  users: number,
  cost: number,
  progress: (done: number) => void,
): Promise<BenchKey[]> {
  const now = Date.now();
  const userIds = Array.from({ length: users }, (_, i) => `bench-mem-${i}`);
  const userBatch = redis.pipeline();
  for (const id of userIds) {
    userBatch.set(
      USER_PREFIX + id,
      serializeUserRecord({ id, active: true, developerVaults: [BENCH_VAULT], updatedAt: now }),
    );
  }
  await userBatch.exec();
  const keys: BenchKey[] = Array.from({ length: count }, () => {
    const keyId = randomBase62(12);
    return { keyId, token: formatToken(keyId, randomBase62(43)) };
  });
  const chunk = 1000;
  for (let i = 0; i < count; i += chunk) {
    const slice = keys.slice(i, i + chunk);
    const hashes = await pool(slice, 8, (k) => bcrypt.hash(k.token, cost));
    const batch = redis.pipeline();
    slice.forEach((k, j) => {
      const userId = userIds[(i + j) % users] as string;
      batch.hset(KEY_PREFIX + k.keyId, 'record', keyRecord(k.keyId, userId, hashes[j] as string));
      batch.sadd(USER_KEYS_PREFIX + userId, k.keyId);
    });
    await batch.exec();
    progress(Math.min(i + chunk, count));
  }
  return keys;
}
