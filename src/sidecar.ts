/**
 * Wires the sidecar together. Adapters start in dependency order and close in reverse:
 *   redis (command) -> cache/verifier/freshness -> subscriber -> gRPC Check + health -> admin HTTP
 * Used by main.ts and, in process, by integration tests.
 */
import bcrypt from 'bcrypt';
import type { Logger } from 'pino';
import { CheckService } from './app/check';
import { CacheFreshness, LOOP_TICK_MS, STALL_CAUSE } from './app/freshness';
import { systemClock, type AppEvents, type Clock, type SecretCompare } from './app/ports';
import { LastUsedRecorder, type LastUsedEvents } from './app/last-used';
import { RecordCache } from './app/record-cache';
import { SecretVerifier } from './app/secret-verifier';
import type { Config } from './config';
import { AdminServer } from './adapters/admin/admin-server';
import { createCheckHandler } from './adapters/grpc/authz-handler';
import { GrpcListener, HEALTH_SERVER_OPTIONS } from './adapters/grpc/grpc-server';
import { Health, healthImplementation } from './adapters/grpc/health-service';
import { sidecarServices } from './adapters/grpc/service-definition';
import { createRedis, describeRedisError, reviveAfterEnd } from './adapters/redis/connections';
import { AckReporter } from './adapters/redis/ack-reporter';
import { EventSubscriber } from './adapters/redis/event-subscriber';
import { ensureFunctionLibrary } from './adapters/redis/function-library';
import { RedisLastUseStore } from './adapters/redis/last-used-store';
import { RedisRecordStore } from './adapters/redis/record-store';
import { clientAddressText } from './core/network';
import { Metrics } from './observability/metrics';
import { QuietLog } from './observability/quiet-log';
import { version } from '../package.json';

export interface SidecarOptions {
  logger: Logger;
  metrics?: Metrics;
  clock?: Clock;
  /** Injected in tests to count bcrypt calls. */
  compare?: SecretCompare;
}

export interface Sidecar {
  grpcPort: number;
  healthPort: number | null;
  adminPort: number | null;
  metrics: Metrics;
  health: Health;
  close(): Promise<void>;
}

export async function startSidecar(config: Readonly<Config>, options: SidecarOptions): Promise<Sidecar> {
  const { logger } = options;
  const metrics = options.metrics ?? new Metrics();
  const closers: Array<() => Promise<void>> = [];
  const health = new Health();
  const quiet = new QuietLog(logger);

  const redis = createRedis(config.redis, 'command');
  const revived = (role: string) => () => {
    metrics.redisErrors.labels('revive').inc();
    logger.warn({ role }, 'redis connection had given up (ioredis ended it); reconnecting');
  };
  const stopReviving = reviveAfterEnd(redis, revived('command'));
  closers.push(async () => {
    stopReviving();
    await redis.quit().catch(() => undefined);
    // QUIT leaves ioredis' Sentinel failover-detector connections open; disconnect() closes them.
    redis.disconnect();
  });
  const store = new RedisRecordStore(redis, (op) => metrics.redisErrors.labels(op).inc());
  const events = appEvents(logger, metrics);
  const cache = new RecordCache(store, events, {
    maxKeys: config.cache.maxKeys,
    maxUsers: config.cache.maxUsers,
    maxStalenessMs: config.roleMaxStalenessMs,
  });
  const clock = options.clock ?? systemClock;
  let subscriber: EventSubscriber | null = null;
  let acks: AckReporter | null = null;
  const stallLog = stallReporter(logger, metrics);
  const freshness = new CacheFreshness(store, cache, {
    trustChanged: (trusted, cause) => {
      if (trusted) acks?.report();
      // Stalls are summarised by stallLog: a CPU-throttled pod may stall many times a second.
      if (cause === STALL_CAUSE) return;
      logger[trusted ? 'info' : 'warn']({ trusted, cause }, trusted ? 'cache trusted' : 'cache not trusted');
    },
    eventApplied: (event, gap) => {
      acks?.report();
      if (gap) logger.warn({ seq: event.seq }, 'event sequence gap: cache flushed');
    },
    stalled: (lagMs, distrusted) => {
      stallLog(lagMs, distrusted);
      if (distrusted) subscriber?.resync(STALL_CAUSE);
    },
  });
  // The loop watch (freshness.ts): unref'd, so it never keeps the process alive.
  freshness.tick(clock.now());
  const loopWatch = setInterval(() => freshness.tick(clock.now()), LOOP_TICK_MS);
  loopWatch.unref();
  closers.push(async () => clearInterval(loopWatch));
  const verifier = new SecretVerifier(
    options.compare ?? ((token, hash) => bcrypt.compare(token, hash)),
    events,
    {
      concurrency: config.bcrypt.concurrency,
      queue: config.bcrypt.queue,
      maxKeys: config.cache.maxKeys,
      digests: cache.digests,
    },
  );
  const lastUsed = new LastUsedRecorder(
    new RedisLastUseStore(redis, () => metrics.redisErrors.labels('last_used').inc()),
    lastUsedEvents(logger, metrics),
    {
      flushMs: config.lastUsedFlushMs,
      maxPending: LAST_USED_MAX_PENDING,
      resolveAddress: (source, forwardedFor) =>
        clientAddressText(source, forwardedFor, config.trustedProxies),
    },
  );
  lastUsed.start();
  // Runs after the gRPC listener and the subscriber have closed, before the command connection quits.
  closers.push(() => lastUsed.close());
  const check = new CheckService({
    cache,
    freshness,
    verifier,
    clock,
    policy: { trustedProxies: config.trustedProxies, openPaths: config.openPaths },
    expiryWarningMs: config.expiryWarningMs,
    lastUsed,
  });

  watchCommandConnection(redis, health, logger, quiet, () => {
    freshness.forgetSequence();
    // The subscriber's reconcile reads through this connection: let it run now rather than at its next heartbeat.
    setImmediate(() => subscriber?.storeReady());
  });
  redis.connect().catch(() => {
    // Reported through 'error'; ioredis keeps reconnecting and health stays NOT_SERVING meanwhile.
  });

  const subscriberRedis = createRedis(config.redis, 'subscriber');
  const stopRevivingSubscriber = reviveAfterEnd(subscriberRedis, revived('subscriber'));
  subscriber = new EventSubscriber(
    subscriberRedis,
    freshness,
    {
      connected: (up) => {
        metrics.subscriberConnected.set(up ? 1 : 0);
        if (up) quiet.recovered('subscriber', 'event subscription restored');
      },
      event: (event, receivedAt) => metrics.eventReceived(event?.at ?? null, receivedAt),
      warn: (message, details) => logger.warn(details ?? {}, message),
      failure: (message, details) => quiet.failure('subscriber', message, details),
    },
    { heartbeatMs: config.heartbeatMs },
  );
  subscriber.start();
  closers.push(() => {
    stopRevivingSubscriber();
    return subscriber.close();
  });

  const identity = { id: `${config.hostname}@${new Date().toISOString()}`, version };
  const ackReporter = new AckReporter(
    redis,
    identity,
    () => freshness.sequence,
    config.heartbeatMs,
    () => metrics.redisErrors.labels('ack').inc(),
  );
  acks = ackReporter;
  ackReporter.start();
  redis.on('ready', () => ackReporter.report());
  closers.push(() => ackReporter.close());

  try {
    // Admin and health listeners start first and close last: probes see NOT_SERVING while checks drain.
    let adminPort: number | null = null;
    if (config.admin !== null) {
      const admin = new AdminServer(config.admin, metrics.registry, () => health.serving);
      adminPort = await admin.start();
      closers.push(() => admin.close());
    }
    const services = sidecarServices();
    const listenerError = (listener: string) => (error: Error) =>
      logger.warn({ listener, error: error.message }, 'listener error; still serving');
    const healthService = [services.health, healthImplementation(health)] as const;
    let healthPort: number | null = null;
    if (config.health !== null) {
      const healthListener = new GrpcListener(
        config.health,
        [healthService],
        listenerError('health'),
        HEALTH_SERVER_OPTIONS,
      );
      healthPort = await healthListener.start();
      closers.push(() => healthListener.close(1000));
    }

    const checkHandler = createCheckHandler(check, logger, metrics, malformedReporter(logger, metrics));
    const grpcListener = new GrpcListener(
      config.grpc,
      [[services.authorization, { Check: checkHandler }], healthService],
      listenerError('grpc'),
    );
    const grpcPort = await grpcListener.start();
    closers.push(() => grpcListener.close(config.drainTimeoutMs));

    logger.info({ grpcPort, healthPort, adminPort }, 'fortary-authz listening');

    let closing: Promise<void> | null = null;
    return {
      grpcPort,
      healthPort,
      adminPort,
      metrics,
      health,
      close: () => (closing ??= closeAll(health, closers, logger)),
    };
  } catch (error) {
    await closeAll(health, closers, logger);
    throw error;
  }
}

async function closeAll(health: Health, closers: Array<() => Promise<void>>, logger: Logger): Promise<void> {
  health.setDraining();
  for (const close of closers.reverse()) {
    try {
      await close();
    } catch (error) {
      logger.warn({ error: describeRedisError(error) }, 'error while closing');
    }
  }
}

/**
 * Readiness follows the command connection; the function library is (re)loaded on every connect. Every connect
 * may reach a different server, so the sequence seen before it is forgotten (`reconnected`) before the first reply.
 */
function watchCommandConnection(
  redis: ReturnType<typeof createRedis>,
  health: Health,
  logger: Logger,
  quiet: QuietLog,
  reconnected: () => void,
): void {
  redis.on('ready', () => {
    quiet.recovered('command', 'redis connection restored');
    reconnected();
    health.setReady(true);
    ensureFunctionLibrary(redis).then(
      (state) => logger.info({ state }, 'redis function library checked'),
      (error: unknown) =>
        logger.warn(
          { error: describeRedisError(error) },
          'could not load the redis function library (run `fortary-authz setup` with a privileged user)',
        ),
    );
  });
  const down = () => health.setReady(false);
  redis.on('close', down);
  redis.on('end', down);
  redis.on('error', (error: unknown) =>
    quiet.failure('command', 'redis error', { error: describeRedisError(error) }),
  );
}

function appEvents(logger: Logger, metrics: Metrics): AppEvents {
  return {
    recordInvalid: (kind, id, error) => {
      metrics.recordsInvalid.labels(kind).inc();
      logger.error({ kind, id, error }, 'corrupt record in redis: denying it');
    },
    cacheLookup: (cache, hit) =>
      (cache === 'key'
        ? hit
          ? metrics.keyHit
          : metrics.keyMiss
        : hit
          ? metrics.userHit
          : metrics.userMiss
      ).inc(),
    cacheFlushed: (cause) => metrics.cacheFlushes.labels(cause).inc(),
    bcryptState: (inFlight, queued) => {
      metrics.bcryptInFlight.set(inFlight);
      metrics.bcryptQueued.set(queued);
    },
    bcryptRejected: () => metrics.bcryptRejected.inc(),
  };
}

/**
 * Logs the first stall at once, then at most one line per 5 s with how many stalls there were and the longest,
 * so a pod under CFS throttling does not flood its log; warn when one of them was long enough to distrust the
 * cache. Each stall is counted in the metrics either way.
 */
function stallReporter(logger: Logger, metrics: Metrics): (lagMs: number, long: boolean) => void {
  let lastLog = -Infinity;
  let stalls = 0;
  let longestMs = 0;
  let anyLong = false;
  return (lagMs, long) => {
    metrics.loopStalls.inc();
    stalls++;
    longestMs = Math.max(longestMs, lagMs);
    anyLong ||= long;
    const now = Date.now();
    if (now - lastLog < 5_000) return;
    logger[anyLong ? 'warn' : 'info'](
      { lagMs: Math.round(longestMs), stalls },
      anyLong
        ? 'event loop stalled: cache not trusted until the event subscription catches up'
        : 'event loop stalled: checks waited for pending events',
    );
    lastLog = now;
    stalls = 0;
    longestMs = 0;
    anyLong = false;
  };
}

/**
 * Distinct keys whose last use waits for the next write: ~200 bytes each, so at most ~2 MiB. More keys used within
 * one interval than this lose that interval's update (counted), never the decision.
 */
const LAST_USED_MAX_PENDING = 10_000;

function lastUsedEvents(logger: Logger, metrics: Metrics): LastUsedEvents {
  let lastWarning = 0;
  return {
    dropped: (count) => metrics.lastUsedDropped.inc(count),
    written: (count) => metrics.lastUsedWrites.labels('written').inc(count),
    failed: (count, error) => {
      metrics.lastUsedWrites.labels('failed').inc(count);
      // One line a minute at most: a Redis outage already has its own warnings.
      const now = Date.now();
      if (now - lastWarning < 60_000) return;
      lastWarning = now;
      const message = describeRedisError(error);
      logger.warn(
        { count, error: message },
        /function not found/i.test(message)
          ? 'could not write last use: the redis function library is old (run `fortary-authz setup`)'
          : 'could not write last use; retried at the next interval',
      );
    },
  };
}

/** Counts every undecodable CheckRequest and logs at most one line per 10 s, so garbage cannot flood the log. */
function malformedReporter(logger: Logger, metrics: Metrics): (error: unknown) => void {
  let lastLog = 0;
  let unlogged = 0;
  return (error) => {
    metrics.malformedRequests.inc();
    unlogged++;
    const now = Date.now();
    if (now - lastLog < 10_000) return;
    logger.warn(
      { count: unlogged, error: error instanceof Error ? error.message : String(error) },
      'undecodable CheckRequest refused',
    );
    lastLog = now;
    unlogged = 0;
  };
}
