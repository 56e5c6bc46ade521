/**
 * Micro-benchmark of one warm Check inside the sidecar, stage by stage (not a test): the same objects the server
 * builds (CheckService over a RecordCache holding the key and its owner, SecretVerifier holding the verified
 * digest), the real handler with its pino logger and prom-client metrics, without the gRPC transport. The h2load
 * run in bench/run.ts gives the end-to-end figure; this tells where the handler's share of it goes, without the
 * noise of a shared machine.
 *
 *   npx tsc -p tsconfig.build.json && node dist/bench/check-path.bench.js [--instructions|--wall]
 */
import fs from 'node:fs';
import type * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { createCheckHandler } from '../src/adapters/grpc/authz-handler';
import { decodeCheckRequest } from '../src/adapters/grpc/check-request-decoder';
import { encodeAllow } from '../src/adapters/grpc/check-response-encoder';
import { deserializeCheckRequest, type DecodedCheckRequest } from '../src/adapters/grpc/service-definition';
import type { AuthzRequest } from '../src/core/types';
import { createLogger, decisionLogger, type DecisionFields } from '../src/observability/logger';
import { Metrics } from '../src/observability/metrics';
import { inMemoryCheckService } from './in-memory-service';
import { runMicroBench, warmFixture, warmUpCheck } from './micro';

const ITERATIONS = 200_000;

runMicroBench(async (bench) => {
  const fixture = await warmFixture();
  const { keyId, token, userId, bytes } = fixture;
  const { service, verifier } = await inMemoryCheckService(fixture.store, fixture.compare, { maxKeys: 1000 });
  const req: AuthzRequest = decodeCheckRequest(bytes);
  await warmUpCheck('CheckService.check', () => service.check(req));
  const time = (name: string, fn: () => unknown, iterations = ITERATIONS) =>
    bench.measure(name, fn, iterations);

  console.log(`warm Check path, CheckRequest ${bytes.length} bytes; ${ITERATIONS} iterations`);
  time('decodeCheckRequest', () => decodeCheckRequest(bytes));
  time('CheckService.check (warm: cache hit, verified digest)', () => service.check(req));
  time('  SecretVerifier.verify (verified digest)', () => verifier.verify(keyId, token, fixture.secretHash));
  time('encodeAllow (memoised)', () => encodeAllow(keyId, userId, []));
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
    userId,
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
  const reply: grpc.sendUnaryData<Buffer> = () => undefined;
  // Allows are logged at debug (refusals at info): level debug writes the line, production's info does not.
  const handler = createCheckHandler(service, createLogger('debug', devNull), metrics, () => undefined);
  const full = time(
    'handler: decode + check + encode + metrics + log line (debug)',
    () => handler(callOf(bytes), reply),
    50_000,
  );
  const quiet = createCheckHandler(service, logger, metrics, () => undefined);
  const noLog = time('handler at level info (production: no line for an allow)', () =>
    quiet(callOf(bytes), reply),
  );
  console.log(
    `an allow's decision log line costs the handler: ${(full - noLog).toFixed(0)} ${bench.meter.unit}`,
  );
});
