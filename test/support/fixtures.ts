/**
 * Seeds users and keys through the same Redis functions the CLI and the portal use, so the sidecar under test
 * reads exactly what production writes.
 */
import { randomBytes } from 'node:crypto';
import bcrypt from 'bcrypt';
import type Redis from 'ioredis';
import { ensureFunctionLibrary } from '../../src/adapters/redis/function-library';
import { serializeKeyRecord, serializeUserRecord } from '../../src/core/records';
import { base62FromBytes, formatToken } from '../../src/core/token';

export const DAY_MS = 24 * 60 * 60 * 1000;

export function randomBase62(length: number): string {
  for (;;) {
    const text = base62FromBytes(randomBytes(length * 2), length);
    if (text !== null) return text;
  }
}

export async function putUser(
  redis: Redis,
  user: { id: string; active?: boolean; developerVaults?: string[] },
): Promise<void> {
  await ensureFunctionLibrary(redis);
  const record = serializeUserRecord({
    id: user.id,
    active: user.active ?? true,
    developerVaults: user.developerVaults ?? [],
    updatedAt: Date.now(),
  });
  await redis.call('FCALL', 'fortary_put_user', '1', user.id, record);
}

export interface KeySpec {
  userId: string;
  vaults?: string[];
  ipAllowlist?: string[];
  expiresAt?: number | null;
  label?: string;
  keyId?: string;
  /** bcrypt cost of the stored hash (default 4, to keep suites fast). */
  cost?: number;
}

export interface CreatedKey {
  keyId: string;
  token: string;
  secretHash: string;
}

/** bcrypt cost 4 keeps the suite fast; the sidecar accepts any cost. */
export async function createKey(redis: Redis, spec: KeySpec): Promise<CreatedKey> {
  await ensureFunctionLibrary(redis);
  const keyId = spec.keyId ?? randomBase62(12);
  const token = formatToken(keyId, randomBase62(43));
  const secretHash = await bcrypt.hash(token, spec.cost ?? 4);
  const now = Date.now();
  const record = serializeKeyRecord({
    id: keyId,
    userId: spec.userId,
    secretHash,
    scopes: ['vault:read'],
    vaults: spec.vaults ?? ['alpha'],
    ipAllowlist: spec.ipAllowlist ?? [],
    expiresAt: spec.expiresAt === undefined ? now + 365 * DAY_MS : spec.expiresAt,
    label: spec.label ?? 'test',
    createdAt: now,
    updatedAt: now,
  });
  await redis.call('FCALL', 'fortary_put_key', '1', keyId, record, 'create');
  return { keyId, token, secretHash };
}

export async function editKey(
  redis: Redis,
  keyId: string,
  change: (record: Record<string, unknown>) => void,
) {
  const text = await redis.hget(`fortary:key:${keyId}`, 'record');
  if (text === null) throw new Error(`no key ${keyId}`);
  const record = JSON.parse(text) as Record<string, unknown>;
  change(record);
  record.updatedAt = Date.now();
  await redis.call('FCALL', 'fortary_put_key', '1', keyId, JSON.stringify(record), 'edit');
}

export async function revokeKey(redis: Redis, keyId: string): Promise<number> {
  return (await redis.call('FCALL', 'fortary_revoke', '1', keyId)) as number;
}

export async function waitFor(condition: () => Promise<boolean> | boolean, timeoutMs = 5000, stepMs = 10) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
