/**
 * Micro-benchmark of one warm Check inside the sidecar, stage by stage (not a test): the same objects the server
 * builds (CheckService over a RecordCache holding the key and its owner, SecretVerifier holding the verified
 * digest), the real handler with its pino logger and prom-client metrics, without the gRPC transport. The h2load
 * run in bench/run.ts gives the end-to-end figure; this tells where the handler's share of it goes, without the
 * noise of a shared machine.
 *
 *   npx tsc -p tsconfig.build.json && node dist/bench/check-path.bench.js
 */
import fs from 'node:fs';
import type * as grpc from '@grpc/grpc-js';
import bcrypt from 'bcrypt';
import pino from 'pino';
import { type RecordStore } from '../src/app/ports';
import { createCheckHandler } from '../src/adapters/grpc/authz-handler';
import { decodeCheckRequest } from '../src/adapters/grpc/check-request-decoder';
import { encodeAllow } from '../src/adapters/grpc/check-response-encoder';
import { deserializeCheckRequest, type DecodedCheckRequest } from '../src/adapters/grpc/service-definition';
import type { Decision } from '../src/core/outcome';
import { serializeKeyRecord, serializeUserRecord } from '../src/core/records';
import type { AuthzRequest } from '../src/core/types';
import { createLogger, decisionLogger, type DecisionFields } from '../src/observability/logger';
import { Metrics } from '../src/observability/metrics';
import { inMemoryCheckService } from './in-memory-service';
import { BENCH_VAULT, checkRequestBytes, randomBase62 } from './envoy-request';
import { formatToken } from '../src/core/token';

const ITERATIONS = 200_000;
let sink: unknown;

function time(name: string, fn: () => unknown, iterations = ITERATIONS): number {
  for (let i = 0; i < iterations / 10; i++) sink = fn();
  let best = Infinity;
  for (let round = 0; round < 5; round++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) sink = fn();
    best = Math.min(best, Number(process.hrtime.bigint() - start) / iterations);
  }
  console.log(`${name.padEnd(60)} ${best.toFixed(0).padStart(7)} ns/op`);
  return best;
}

async function main(): Promise<void> {
  const keyId = randomBase62(12);
  const token = formatToken(keyId, randomBase62(43));
  const now = Date.now();
  const keyRecord = serializeKeyRecord({
    id: keyId,
    userId: 'bench-user',
    secretHash: await bcrypt.hash(token, 4),
    scopes: ['vault:read'],
    vaults: [BENCH_VAULT],
    ipAllowlist: [],
    expiresAt: now + 1e10,
    label: 'bench',
    createdAt: now,
    updatedAt: now,
  });
  const userRecord = serializeUserRecord({
    id: 'bench-user',
    active: true,
    developerVaults: [BENCH_VAULT],
    updatedAt: now,
  });
  const store: RecordStore = {
    getKey: async () => ({ record: keyRecord, revokedAt: null }),
    getUser: async () => userRecord,
    getSequence: async () => 1,
  };
  const { service, verifier } = await inMemoryCheckService(store, (t, h) => bcrypt.compare(t, h), {
    maxKeys: 1000,
  });

  const bytes = checkRequestBytes({ authorization: `Bearer ${token}` });
  const req: AuthzRequest = decodeCheckRequest(bytes);
  const first = await service.check(req);
  if (!first.allow) throw new Error(`not allowed: ${JSON.stringify(first)}`);
  const secretHash = (JSON.parse(keyRecord) as { secretHash: string }).secretHash;
  const warm = service.check(req) as Decision;
  if (!warm.allow || warm instanceof Promise) throw new Error('warm check is not synchronous');

  console.log(`warm Check path, CheckRequest ${bytes.length} bytes; ${ITERATIONS} iterations, best of 5`);
  time('decodeCheckRequest', () => decodeCheckRequest(bytes));
  time('CheckService.check (warm: cache hit, verified digest)', () => service.check(req));
  time('  SecretVerifier.verify (verified digest)', () => verifier.verify(keyId, token, secretHash));
  time('encodeAllow (memoised)', () => encodeAllow(keyId, 'bench-user', []));
  const metrics = new Metrics();
  time('Metrics.decision (counter + histogram)', () => metrics.decision('allowed', 0.00005));
  time('performance.now()', () => performance.now());
  // Buffered like production (minLength 4096) but written synchronously: an asynchronous destination never gets to
  // write inside a loop that does not yield, and its growing buffer would be measured instead of the log call.
  const devNull = pino.destination({ dest: fs.openSync('/dev/null', 'w'), sync: true, minLength: 4096 });
  const logger = createLogger('info', devNull);
  const line = {
    decision: 'allow',
    reason: 'allowed',
    detail: undefined,
    keyId,
    userId: 'bench-user',
    requestId: req.requestId,
    method: 'GET',
    durationMs: 0.042,
  };
  time('pino info decision line (production logger, /dev/null)', () => logger.info(line, 'check'), 50_000);
  const writeDecision = decisionLogger(logger);
  time(
    'decisionLogger line (same bytes, /dev/null)',
    () => writeDecision('info', line as DecisionFields),
    50_000,
  );

  // What grpc-js does per call around the handler: the method's deserializer, then the handler.
  const callOf = (request: Buffer) =>
    ({ request: deserializeCheckRequest(request) }) as grpc.ServerUnaryCall<DecodedCheckRequest, Buffer>;
  const reply: grpc.sendUnaryData<Buffer> = (_error, value) => {
    sink = value;
  };
  const handler = createCheckHandler(service, logger, metrics, () => undefined);
  const full = time(
    'handler: decode + check + encode + metrics + log line',
    () => handler(callOf(bytes), reply),
    50_000,
  );
  const quiet = createCheckHandler(service, createLogger('warn', devNull), metrics, () => undefined);
  const noLog = time('handler with decision logs off (level warn)', () => quiet(callOf(bytes), reply));
  console.log(`decision log share of the handler: ${(full - noLog).toFixed(0)} ns`);
  if (sink === undefined) console.log('');
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
