/**
 * Runs the real sidecar in process against a private redis-server, with a real gRPC client over a socket.
 * Log lines are captured so tests can assert on reasons and on what must never be logged.
 */
import { Writable } from 'node:stream';
import type Redis from 'ioredis';
import { readConfig, type Config } from '../../src/config';
import { createLogger } from '../../src/observability/logger';
import { Metrics } from '../../src/observability/metrics';
import { startSidecar, type Sidecar } from '../../src/sidecar';
import type { Clock, SecretCompare } from '../../src/app/ports';
import { makeCheckClient, type CheckClient } from './check-client';
import { startRedis, type RedisInstance } from './redis-server';
import { waitFor } from './fixtures';

export interface Harness {
  redis: RedisInstance;
  admin: Redis;
  sidecar: Sidecar;
  client: CheckClient;
  logs: Array<Record<string, unknown>>;
  logText(): string;
  /** bcrypt compare calls made by the sidecar. */
  bcryptCalls(): number;
  stop(): Promise<void>;
}

export interface HarnessOptions {
  env?: Record<string, string>;
  clock?: Clock;
  redis?: RedisInstance;
  compare?: SecretCompare;
  /** The logger's level; debug by default so the tests see allow lines too (production's default is info). */
  logLevel?: string;
}

export function testConfig(redisUrl: string, env: Record<string, string> = {}): Readonly<Config> {
  const result = readConfig({
    REDIS_URL: redisUrl,
    FORTARY_GRPC_ADDR: '127.0.0.1:0',
    FORTARY_HEALTH_ADDR: 'off',
    FORTARY_ADMIN_ADDR: '127.0.0.1:0',
    FORTARY_HEARTBEAT_MS: '200',
    FORTARY_DRAIN_TIMEOUT_MS: '2000',
    ...env,
  });
  if (!result.ok) throw new Error(result.problems.join('; '));
  return result.config;
}

export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const redis = options.redis ?? (await startRedis());
  const admin = redis.client();
  const logs: Array<Record<string, unknown>> = [];
  const raw: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) {
        if (line.trim() === '') continue;
        raw.push(line);
        logs.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  let calls = 0;
  const bcrypt = await import('bcrypt');
  const compare: SecretCompare = async (token, hash) => {
    calls++;
    return options.compare ? options.compare(token, hash) : bcrypt.compare(token, hash);
  };
  const sidecar = await startSidecar(testConfig(redis.url, options.env), {
    logger: createLogger(options.logLevel ?? 'debug', sink),
    metrics: new Metrics({ defaultMetrics: false }),
    compare,
    ...(options.clock ? { clock: options.clock } : {}),
  });
  const client = makeCheckClient(`127.0.0.1:${sidecar.grpcPort}`);
  await waitFor(() => sidecar.health.serving, 5000);
  return {
    redis,
    admin,
    sidecar,
    client,
    logs,
    logText: () => raw.join('\n'),
    bcryptCalls: () => calls,
    async stop() {
      client.close();
      await sidecar.close();
      if (options.redis === undefined) await redis.stop();
    },
  };
}

/** The short form of an answer that most assertions need. */
export function verdict(response: Record<string, any>): {
  allow: boolean;
  grpc: number;
  http: number | null;
} {
  const grpc = response.status?.code ?? 0;
  return {
    allow: response.status !== undefined && grpc === 0 && response.ok_response !== undefined,
    grpc,
    http: response.denied_response?.status?.code ?? null,
  };
}
