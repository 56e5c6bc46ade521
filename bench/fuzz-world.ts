/**
 * The fuzzer's seeded world: keys and users written to Redis from a seed, and what the oracle knows about them
 * (computed from what was written, not from the sidecar). Part of the fuzzer run by bench/fuzz.ts and
 * test/fuzz/check.fuzz.test.ts (docs/hardening.md).
 */
import bcrypt from 'bcrypt';
import Redis from 'ioredis';
import { ensureFunctionLibrary } from '../src/adapters/redis/function-library';
import { serializeKeyRecord, serializeUserRecord } from '../src/core/records';
import { base62FromBytes, formatToken } from '../src/core/token';

export interface SeededKey {
  name: string;
  keyId: string;
  userId: string;
  token: string;
  /** Vaults a request may reach with this key (key allowlist ∩ owner's Developer vaults); empty when never allowed. */
  reachable: readonly string[];
  /** IP allowlist as written; empty means any address. */
  ipAllowlist: readonly string[];
}

export interface World {
  keys: readonly SeededKey[];
  /** CIDRs the sidecar under test is configured with in FORTARY_TRUSTED_PROXIES. */
  trustedProxies: readonly string[];
  /** Well-formed tokens with the right key id and a wrong secret (a few per key, so bcrypt runs once each). */
  wrongSecrets: readonly string[];
  /** Well-formed tokens whose key id does not exist. */
  unknownTokens: readonly string[];
}

export const TRUSTED_PROXIES = ['10.200.0.0/16'];

/** Base62 text from a seeded generator (mulberry32): the same seed gives the same key ids and tokens. */
export function base62Source(seed: number): (length: number) => string {
  let state = seed >>> 0;
  const byte = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) & 0xff;
  };
  return (length) => randomBase62(length, byte);
}

export function randomBase62(length: number, byte: () => number): string {
  for (;;) {
    const bytes = new Uint8Array(length * 2);
    for (let i = 0; i < bytes.length; i++) bytes[i] = byte();
    const text = base62FromBytes(bytes, length);
    if (text !== null) return text;
  }
}

/** Writes users and keys through the function library (as the portal does), plus the corruptions the contract forbids. */
export async function seedWorld(redis: Redis, seed = 1): Promise<World> {
  const randomBase62 = base62Source(seed);
  await ensureFunctionLibrary(redis);
  const now = Date.now();
  const users: Record<string, { active: boolean; developerVaults: string[] }> = {
    alice: { active: true, developerVaults: ['alpha', 'gamma'] },
    bob: { active: true, developerVaults: ['delta'] },
    carol: { active: true, developerVaults: ['alpha'] },
    dave: { active: true, developerVaults: [] },
    ghost: { active: true, developerVaults: ['alpha'] },
  };
  for (const [id, user] of Object.entries(users)) {
    const record = serializeUserRecord({ id, ...user, updatedAt: now });
    await redis.call('FCALL', 'fortary_put_user', '1', id, record);
  }
  const specs: Array<{
    name: string;
    userId: string;
    vaults: string[];
    ipAllowlist: string[];
    expiresAt: number | null;
  }> = [
    { name: 'open', userId: 'alice', vaults: ['alpha', 'beta'], ipAllowlist: [], expiresAt: null },
    {
      name: 'ip4',
      userId: 'alice',
      vaults: ['alpha'],
      ipAllowlist: ['198.51.100.0/24'],
      expiresAt: now + 86_400_000,
    },
    {
      name: 'ip6',
      userId: 'bob',
      vaults: ['delta', 'alpha'],
      ipAllowlist: ['2001:db8::/32', '192.0.2.0/28'],
      expiresAt: null,
    },
    { name: 'revoked', userId: 'alice', vaults: ['alpha'], ipAllowlist: [], expiresAt: null },
    { name: 'expired', userId: 'alice', vaults: ['alpha'], ipAllowlist: [], expiresAt: now - 1000 },
    { name: 'inactive', userId: 'carol', vaults: ['alpha'], ipAllowlist: [], expiresAt: null },
    { name: 'noRole', userId: 'dave', vaults: ['alpha'], ipAllowlist: [], expiresAt: null },
    { name: 'orphan', userId: 'ghost', vaults: ['alpha'], ipAllowlist: [], expiresAt: null },
    { name: 'corrupt', userId: 'alice', vaults: ['alpha'], ipAllowlist: [], expiresAt: null },
  ];
  const keys: SeededKey[] = [];
  const wrongSecrets: string[] = [];
  for (const spec of specs) {
    const keyId = randomBase62(12);
    const token = formatToken(keyId, randomBase62(43));
    const record = serializeKeyRecord({
      id: keyId,
      userId: spec.userId,
      secretHash: await bcrypt.hash(token, 4),
      scopes: ['vault:read'],
      vaults: spec.vaults,
      ipAllowlist: spec.ipAllowlist,
      expiresAt: spec.expiresAt,
      label: spec.name,
      createdAt: now,
      updatedAt: now,
    });
    await redis.call('FCALL', 'fortary_put_key', '1', keyId, record, 'create');
    const owner = users[spec.userId] as { developerVaults: string[] };
    const allowable = ['open', 'ip4', 'ip6'].includes(spec.name);
    keys.push({
      name: spec.name,
      keyId,
      userId: spec.userId,
      token,
      reachable: allowable ? spec.vaults.filter((v) => owner.developerVaults.includes(v)) : [],
      ipAllowlist: spec.ipAllowlist,
    });
    for (let i = 0; i < 2; i++) wrongSecrets.push(formatToken(keyId, randomBase62(43)));
  }
  const byName = (name: string) => keys.find((k) => k.name === name) as SeededKey;
  await redis.call('FCALL', 'fortary_revoke', '1', byName('revoked').keyId);
  // Behind the functions' back, as a tired operator would: an inactive owner with a live key, a deleted owner,
  // a corrupt key record. Announced with an event like any direct write should be.
  await redis.set(
    'fortary:user:carol',
    serializeUserRecord({ id: 'carol', active: false, developerVaults: ['alpha'], updatedAt: now }),
  );
  await redis.del('fortary:user:ghost');
  await redis.hset(`fortary:key:${byName('corrupt').keyId}`, 'record', '{"v":1,"id":');
  const seq = await redis.incr('fortary:events:seq');
  await redis.publish('fortary:events', JSON.stringify({ seq, type: 'user.updated', id: 'carol' }));
  const unknownTokens = Array.from({ length: 8 }, () => formatToken(randomBase62(12), randomBase62(43)));
  return { keys, trustedProxies: TRUSTED_PROXIES, wrongSecrets, unknownTokens };
}
