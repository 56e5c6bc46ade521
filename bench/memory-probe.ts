/**
 * Bytes per cached key, in process and in seconds: the sidecar's Check handler over the real caches, with N keys
 * served from an in-memory store and a compare that accepts at once (so no bcrypt time; the verified digests are
 * still computed and kept). Each key is checked twice (cold, then warm from cache), then the heap is measured
 * after a full GC. The memory scenario of `npm run bench` is the end-to-end figure; this isolates the caches.
 *
 *   npx tsc -p tsconfig.build.json && node --expose-gc dist/bench/memory-probe.js [keys=100000] [keysPerUser=4]
 */
import fs from 'node:fs';
import v8 from 'node:v8';
import type * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { type RecordStore } from '../src/app/ports';
import { createCheckHandler } from '../src/adapters/grpc/authz-handler';
import { deserializeCheckRequest, type DecodedCheckRequest } from '../src/adapters/grpc/service-definition';
import { serializeKeyRecord, serializeUserRecord } from '../src/core/records';
import { formatToken } from '../src/core/token';
import { createLogger } from '../src/observability/logger';
import { Metrics } from '../src/observability/metrics';
import { inMemoryCheckService } from './in-memory-service';
import { BENCH_VAULT, checkRequestBytes, randomBase62 } from './envoy-request';

const HASH = '$2b$04$' + 'a'.repeat(53);

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 100_000);
  const perUser = Number(process.argv[3] ?? 4);
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('run with node --expose-gc');
  gc();
  // Before any key exists: the figures below are what the caches (and the allow memo) hold.
  const before = process.memoryUsage();
  const now = Date.now();
  const keys = new Map<string, string>();
  const users = new Map<string, string>();
  const requests: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const keyId = randomBase62(12);
    const userId = `user-${Math.floor(i / perUser)}`;
    keys.set(
      keyId,
      serializeKeyRecord({
        id: keyId,
        userId,
        secretHash: HASH,
        scopes: ['vault:read'],
        vaults: [BENCH_VAULT],
        ipAllowlist: [],
        expiresAt: now + 1e10,
        label: `bench key ${i}`,
        createdAt: now,
        updatedAt: now,
      }),
    );
    if (!users.has(userId))
      users.set(
        userId,
        serializeUserRecord({ id: userId, active: true, developerVaults: [BENCH_VAULT], updatedAt: now }),
      );
    requests.push(checkRequestBytes({ authorization: `Bearer ${formatToken(keyId, randomBase62(43))}` }));
  }
  const store: RecordStore = {
    getKey: async (id) => ({ record: keys.get(id) ?? null, revokedAt: null }),
    getUser: async (id) => users.get(id) ?? null,
    getSequence: async () => 1,
  };
  const { service, cache } = await inMemoryCheckService(store, async () => true, {
    maxKeys: n,
    concurrency: 2,
    queue: 1_000_000,
    maxWaitMs: 1e9,
  });
  const devNull = pino.destination({ dest: fs.openSync('/dev/null', 'w'), sync: true });
  const handler = createCheckHandler(service, createLogger('warn', devNull), new Metrics(), () => undefined);

  let allowed = 0;
  const ask = (bytes: Buffer) =>
    new Promise<boolean>((resolve) =>
      handler(
        { request: deserializeCheckRequest(bytes) } as grpc.ServerUnaryCall<DecodedCheckRequest, Buffer>,
        (error, answer) =>
          resolve(error === null && answer !== undefined && answer !== null && answer.length > 20),
      ),
    );
  for (let pass = 0; pass < 2; pass++) {
    for (let i = 0; i < requests.length; i += 256) {
      const answers = await Promise.all(requests.slice(i, i + 256).map(ask));
      if (pass === 1) allowed += answers.filter(Boolean).length;
    }
  }
  requests.length = 0;
  keys.clear();
  users.clear();
  gc();
  gc();
  const after = process.memoryUsage();
  if (process.env.PROBE_HEAP_SNAPSHOT)
    console.error(`heap snapshot: ${v8.writeHeapSnapshot(process.env.PROBE_HEAP_SNAPSHOT)}`);
  const per = (field: keyof NodeJS.MemoryUsage) => ((after[field] - before[field]) / n).toFixed(0);
  console.log(
    JSON.stringify({
      keys: n,
      users: Math.ceil(n / perUser),
      allowedOnSecondPass: allowed,
      cached: cache.size,
      bytesPerKey: { heapUsed: per('heapUsed'), external: per('external'), rss: per('rss') },
      totalMiB: {
        heapUsed: (after.heapUsed / 2 ** 20).toFixed(1),
        external: (after.external / 2 ** 20).toFixed(1),
        rss: (after.rss / 2 ** 20).toFixed(1),
      },
    }),
  );
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
