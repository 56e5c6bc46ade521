/**
 * Builds the two ioredis connections the sidecar owns: one for commands, one for the event subscription (a
 * subscribed connection cannot run other commands). Both reconnect forever with a short back-off, so the
 * sidecar recovers by itself within a second or so of Redis returning.
 */
import Redis, { type RedisOptions } from 'ioredis';
import type { Config } from '../../config';

export type RedisRole = 'command' | 'subscriber';

/** Each command gets this long before it is failed (the request becomes a 503 well within Envoy's timeout). */
export const COMMAND_TIMEOUT_MS = 250;

export function redisOptions(config: Config['redis'], role: RedisRole): RedisOptions {
  const base: RedisOptions = {
    connectionName: `fortary-authz-${role}`,
    connectTimeout: 2000,
    // Reconnect quickly and forever: the sidecar must heal without a restart.
    retryStrategy: (times) => Math.min(50 * times, 500),
    // Requests must fail fast while Redis is away (503), not queue up behind a dead socket.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    enableReadyCheck: true,
    lazyConnect: true,
    keepAlive: 5000,
    ...(role === 'command' ? { commandTimeout: COMMAND_TIMEOUT_MS } : { autoResubscribe: false }),
  };
  const url = new URL(config.url);
  const auth: RedisOptions = {
    ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
    ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
    ...(url.protocol === 'rediss:' ? { tls: { servername: url.hostname } } : {}),
    db: url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0,
  };
  if (config.sentinels !== null && config.sentinelName !== null) {
    return {
      ...base,
      ...auth,
      sentinels: config.sentinels.map(({ host, port }) => ({ host, port })),
      name: config.sentinelName,
      // Ask Sentinel again soon after a failover instead of waiting for the default back-off.
      sentinelRetryStrategy: (times) => Math.min(100 * times, 1000),
      // Leave the old master as soon as Sentinel announces +switch-master. Without this a live old master keeps
      // the connections until Sentinel demotes it (~10 s later), and the sidecar misses the new master's events.
      failoverDetector: true,
      ...(url.protocol === 'rediss:' ? { enableTLSForSentinelMode: true } : {}),
    };
  }
  return { ...base, ...auth, host: url.hostname || '127.0.0.1', port: url.port ? Number(url.port) : 6379 };
}

export function createRedis(config: Config['redis'], role: RedisRole): Redis {
  return new Redis(redisOptions(config, role));
}

/** How long after an unexpected end a new connect starts (long enough not to spin, short against Envoy's view). */
export const REVIVE_AFTER_END_MS = 250;

/**
 * ioredis gives up for good (status `end`, every command "Connection is closed.") when a disconnect lands while a
 * connect is in progress: Sentinel's +switch-master arriving while it asks a sentinel for the master does exactly
 * that (redis/ioredis#1683), as does disconnect(true) during a connect. retryStrategy is never consulted then. The
 * liveness probe deliberately ignores Redis, so nothing would ever restart such a sidecar: it would answer 503
 * forever. This starts a new connect after an `end` that close() did not ask for. Returns the stop function that
 * close() calls before QUIT.
 */
export function reviveAfterEnd(redis: Redis, revived: () => void, delayMs = REVIVE_AFTER_END_MS): () => void {
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  const onEnd = () => {
    if (stopped || timer !== null) return;
    timer = setTimeout(() => {
      timer = null;
      if (stopped || redis.status !== 'end') return;
      revived();
      redis.connect().catch(() => {
        // A failed connect either retries by itself or ends again, which lands here once more.
      });
    }, delayMs);
    timer.unref();
  };
  redis.on('end', onEnd);
  return () => {
    stopped = true;
    if (timer !== null) clearTimeout(timer);
    redis.off('end', onEnd);
  };
}

/** Describes a Redis error without echoing anything that could hold a password (URLs, AUTH arguments). */
export function describeRedisError(error: unknown): string {
  if (error instanceof Error) return error.message.replace(/\/\/[^@/\s]*@/g, '//***@');
  return String(error);
}
