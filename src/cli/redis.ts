/**
 * The CLI's Redis connection: one attempt, a short deadline, no retries and no offline queue, so an unreachable
 * Redis is reported within about three seconds instead of hanging. Plus the reads and function calls the commands
 * share, each mapping Redis' refusals to operator messages.
 */
import Redis from 'ioredis';
import { ensureFunctionLibrary } from '../adapters/redis/function-library';
import { keyHash, lastUsedHash, userString } from '../adapters/redis/keyspace';
import { parseKeyRecord, parseUserRecord } from '../core/records';
import type { KeyRecord, UserRecord } from '../core/types';
import { CliError, UsageError, oneLine } from './errors';

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';
const CONNECT_DEADLINE_MS = 3000;
const COMMAND_TIMEOUT_MS = 5000;

/** The Redis URL from `--redis`, else REDIS_URL, else the default; refused when it is not a redis(s) URL. */
export function redisUrl(flag: string | undefined, env: Record<string, string | undefined>): string {
  const url = flag ?? (env.REDIS_URL || DEFAULT_REDIS_URL);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`${redact(url)} is not a Redis URL (redis://host:port or rediss://…)`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new UsageError(`${redact(url)} is not a Redis URL (redis://host:port or rediss://…)`);
  }
  return url;
}

/** The URL without its password, for messages. */
export function redact(url: string): string {
  return url.replace(/\/\/[^@/\s]*@/, '//***@');
}

/** Opens a connection, runs `fn`, and always closes the connection. */
export async function withRedis<T>(url: string, fn: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(url, {
    lazyConnect: true,
    connectTimeout: CONNECT_DEADLINE_MS - 500,
    commandTimeout: COMMAND_TIMEOUT_MS,
    maxRetriesPerRequest: 1,
    retryStrategy: () => null,
    reconnectOnError: () => false,
    enableOfflineQueue: false,
    // The ready check runs INFO, which an operator ACL need not allow, and ioredis would print a warning.
    enableReadyCheck: false,
    connectionName: 'fortary-authz-cli',
  });
  // Without a listener ioredis prints connection errors itself; the CLI reports them once, as one line. The
  // socket's own error (ECONNREFUSED, ENOTFOUND, WRONGPASS…) says more than ioredis' "Connection is closed".
  let socketError: unknown;
  redis.on('error', (error: unknown) => {
    socketError ??= error;
  });
  try {
    await connect(redis, url, () => socketError);
    try {
      return await fn(redis);
    } catch (error) {
      if (error instanceof CliError) throw error;
      // A Redis error reply, a dropped connection, a command timeout: one line naming the Redis.
      throw new CliError(`Redis at ${redact(url)}: ${redact(oneLine(error))}`);
    }
  } finally {
    // Disconnecting an ended client would arm ioredis' close timer on a socket that never closes again.
    if (redis.status !== 'end') redis.disconnect();
  }
}

async function connect(redis: Redis, url: string, cause: () => unknown): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no answer within ${CONNECT_DEADLINE_MS} ms`)),
      CONNECT_DEADLINE_MS,
    );
  });
  try {
    await Promise.race([redis.connect(), deadline]);
  } catch (error) {
    throw new CliError(`cannot connect to Redis at ${redact(url)}: ${redact(oneLine(cause() ?? error))}`);
  } finally {
    clearTimeout(timer);
  }
}

/** Loads the function library if needed; an ACL without FUNCTION or a Redis without functions is one clear line. */
export async function ensureLibrary(redis: Redis): Promise<'loaded' | 'current' | 'newer'> {
  try {
    return await ensureFunctionLibrary(redis);
  } catch (error) {
    const message = oneLine(error);
    if (/NOPERM/i.test(message)) {
      throw new CliError(
        `cannot load the Redis function library: ${message} (let an admin run 'fortary-authz setup', or grant +function|load)`,
      );
    }
    if (/unknown command/i.test(message)) {
      throw new CliError(`Redis has no functions (Redis 7 or later is needed): ${message}`);
    }
    throw new CliError(`cannot load the Redis function library: ${message}`);
  }
}

/** Calls a library function; Redis' `ERR …` refusals become CliErrors with the message after `ERR`. */
export async function fcall(redis: Redis, fn: string, id: string, ...args: string[]): Promise<number> {
  try {
    return Number(await redis.fcall(fn, 1, id, ...args));
  } catch (error) {
    const message = oneLine(error);
    if (isReplyError(error)) throw new CliError(message.replace(/^ERR /, ''));
    throw error;
  }
}

function isReplyError(error: unknown): boolean {
  return (error as { name?: unknown } | null)?.name === 'ReplyError';
}

// The key names are the sidecar's (one definition); re-exported for the CLI modules.
export { keyHash, userKeysSet, userString } from '../adapters/redis/keyspace';

/** What the sidecars recorded of a key's last allowed use (docs/redis-contract.md, "Last use"). */
export interface LastUse {
  at: number | null;
  ip: string | null;
  vault: string | null;
}
export const NEVER_USED: LastUse = Object.freeze({ at: null, ip: null, vault: null });

/** The key's last use; never used (or an unreadable entry) reads as nulls: it is information, not a rule. */
export async function readLastUse(redis: Redis, keyId: string): Promise<LastUse> {
  return lastUseFrom(await redis.hgetall(lastUsedHash(keyId)));
}

/** A last-use hash's fields (HGETALL) as a LastUse. */
export function lastUseFrom(fields: Record<string, string>): LastUse {
  const at = fields.at !== undefined && /^\d{1,15}$/.test(fields.at) ? Number(fields.at) : null;
  if (at === null) return NEVER_USED;
  return { at, ip: fields.ip || null, vault: fields.vault || null };
}

export type StoredKey = { ok: true; record: KeyRecord } | { ok: false; keyId: string; problem: string };

/** The key as stored, null when there is no such key; a record breaking the contract is returned as a problem. */
export async function readKey(redis: Redis, keyId: string): Promise<StoredKey | null> {
  return storedKeyFrom(keyId, await redis.hgetall(keyHash(keyId)));
}

/** A key hash's fields (HGETALL) as a StoredKey; null when the hash is empty (no such key). */
export function storedKeyFrom(keyId: string, fields: Record<string, string>): StoredKey | null {
  if (Object.keys(fields).length === 0) return null;
  const parsed = parseKeyRecord(keyId, {
    record: fields.record ?? null,
    revokedAt: fields.revokedAt ?? null,
  });
  return parsed.ok ? { ok: true, record: parsed.value } : { ok: false, keyId, problem: parsed.error };
}

/** A key that must exist and be valid. */
export async function requireKey(redis: Redis, keyId: string): Promise<KeyRecord> {
  const key = await readKey(redis, keyId);
  if (key === null) throw new CliError(`unknown key ${keyId}`);
  if (!key.ok) throw new CliError(`the stored record of key ${keyId} is invalid: ${key.problem}`);
  return key.record;
}

/** The user as stored, null when there is no such user. */
export async function readUser(redis: Redis, userId: string): Promise<UserRecord | null> {
  const text = await redis.get(userString(userId));
  if (text === null) return null;
  const parsed = parseUserRecord(userId, text);
  if (!parsed.ok) throw new CliError(`the stored record of user ${userId} is invalid: ${parsed.error}`);
  return parsed.value;
}

/** A user that must exist, be active and hold Developer on every vault given. */
export async function requireDeveloper(
  redis: Redis,
  userId: string,
  vaults: readonly string[],
): Promise<UserRecord> {
  const user = await readUser(redis, userId);
  if (user === null) throw new CliError(`unknown user ${userId}`);
  if (!user.active) throw new CliError(`user ${userId} is not active`);
  const missing = vaults.filter((vault) => !user.developerVaults.includes(vault));
  if (missing.length > 0) {
    throw new CliError(`user ${userId} does not hold the Developer role on vault ${missing.join(', ')}`);
  }
  return user;
}
