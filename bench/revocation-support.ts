/**
 * What the revocation benches (propagation.ts, stall-propagation.ts) share: a private Redis with the function
 * library loaded, a gRPC channel that sends one Check at a time and reads its verdict, and how they run and fail.
 */
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import Redis from 'ioredis';
import { ensureFunctionLibrary } from '../src/adapters/redis/function-library';
import { CHECK_METHOD_PATH } from '../src/adapters/grpc/service-definition';
import {
  installCleanupHandlers,
  makeTempDir,
  startRedis,
  stopChild,
  type RedisProcess,
} from './bench-support';
import { checkResponseCode } from './paced-summary';

const identity = (b: Buffer) => b;

/** One gRPC channel to a sidecar, sending raw CheckRequest bytes. */
export class CheckChannel {
  private readonly client: grpc.Client;

  constructor(target: string, options: grpc.ChannelOptions = {}) {
    this.client = new grpc.Client(target, grpc.credentials.createInsecure(), options);
  }

  /** One Check: its CheckResponse's status code (0 = allowed) and when the answer arrived (performance.now()). */
  check(bytes: Buffer, timeoutMs = 5000): Promise<{ code: number; at: number }> {
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest<Buffer, Buffer>(
        CHECK_METHOD_PATH,
        identity,
        identity,
        bytes,
        { deadline: Date.now() + timeoutMs },
        (error, response) =>
          error !== null || response === undefined
            ? reject(error)
            : resolve({ code: checkResponseCode(response), at: performance.now() }),
      );
    });
  }

  close(): void {
    this.client.close();
  }
}

/** The value at percentile `p` (0-100) of ascending `sorted`; NaN when empty. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

/**
 * Runs `fn` with a private redis-server (free port, no persistence) holding the function library, and a client
 * on it; stops both afterwards, and every process the bench started if it is interrupted.
 */
export async function withBenchRedis<T>(fn: (redis: Redis, server: RedisProcess) => Promise<T>): Promise<T> {
  installCleanupHandlers();
  const server = await startRedis(makeTempDir());
  const redis = new Redis(server.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
  try {
    await ensureFunctionLibrary(redis);
    return await fn(redis, server);
  } finally {
    redis.disconnect();
    await stopChild(server.proc);
  }
}

/** Runs a bench's `main`: exit 0, or 1 with the error on stderr prefixed by `name`. */
export function runBench(name: string, main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (error: unknown) => {
      process.stderr.write(
        `${name}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
      );
      process.exit(1);
    },
  );
}
