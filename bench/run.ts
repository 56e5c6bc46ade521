/**
 * `npm run bench`: the sidecar against a no-op grpc-js/proto-loader ext_authz server, on loopback, in one run
 * (and, for information, a no-op node:http2 server: the transport floor).
 *
 * Starts a private redis-server (free port), the built sidecar (`node dist/src/main.js`, production defaults,
 * decision logs to /dev/null unless BENCH_SIDECAR_LOG names a file), the baseline (bench/baseline-server.ts) and
 * the floor (bench/h2-floor-server.ts), then runs the scenarios below and prints a table; the figures also go to
 * bench/results/latest.json. The scenarios live in bench/scenario-*.ts.
 *
 *   throughput  h2load at saturation (-c 4 -m 25 -t 1), baseline, floor and sidecar alternated BENCH_REPS times;
 *               every sidecar run is checked against its own /metrics: allow decisions == h2load's succeeded,
 *               nothing else decided (h2load counts gRPC errors as successes); the baseline by a client call
 *   latency     warm Check at a fixed 1,000/s from the paced client (open loop, measured from the schedule)
 *   cold        record not cached but token verified (evicted by a real user.updated event), and a new token
 *               (bcrypt at the CLI's default cost 10 included)
 *   reject      malformed token, bad checksum, unknown key id, revoked key, each at 1,000/s: no bcrypt, p99
 *   flood       200/s wrong secrets for valid, never-verified key ids (cost 10) while 500/s valid traffic and
 *               health checks run
 *   memory      (opt-in: --memory or BENCH_SCENARIOS) 100,000 keys each used once, then RSS
 *
 * Environment: BENCH_SCENARIOS (comma list, default all but memory), BENCH_REPS (5), BENCH_SECONDS (4, length of
 * one h2load run), BENCH_SIDECAR_LOG (file for the sidecar's stdout), BENCH_MEMORY_KEYS (100000),
 * BENCH_SIDECAR_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"), BENCH_SIDECAR_ENV (extra sidecar environment for
 * experiments, e.g. "FORTARY_LOG_LEVEL=warn FORTARY_BCRYPT_CONCURRENCY=1"; the default is the production config),
 * BENCH_SIDECAR_MAIN (another build's main.js, to compare builds; default dist/src/main.js).
 */
import fs from 'node:fs';
import path from 'node:path';
import Redis from 'ioredis';
import { ensureFunctionLibrary } from '../src/adapters/redis/function-library';
import {
  ensureH2load,
  installCleanupHandlers,
  makeTempDir,
  memoryOf,
  onCleanup,
  productionEnv,
  ROOT,
  startBaseline,
  startRedis,
  startSidecar,
  stopChild,
} from './bench-support';
import { presentOnce } from './bench-client';
import { Bench, log, parseOptions, printReport, type Scenario } from './bench-report';
import { cold, COLD_USER, latency, USER } from './scenario-latency';
import { memory } from './scenario-memory';
import { flood, reject } from './scenario-reject';
import { throughput } from './scenario-throughput';
import { createFloodKeys, createKeys, PRODUCTION_COST, putUser, revoke, type BenchKey } from './seed';

const COLD_KEYS = 2000;
const NEW_KEYS = 30;
const FLOOD_KEYS = 64;

async function main(): Promise<void> {
  installCleanupHandlers();
  const options = parseOptions();
  ensureH2load();
  const dir = makeTempDir();
  const bench = new Bench(options, dir);
  log(`scenarios: ${[...options.scenarios].join(', ')}; machine: ${JSON.stringify(bench.report.machine)}`);

  const redis = await startRedis(dir);
  const admin = new Redis(redis.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
  onCleanup(() => admin.disconnect());
  await ensureFunctionLibrary(admin);

  log('seeding keys');
  await putUser(admin, USER);
  await putUser(admin, COLD_USER);
  const [warm] = await createKeys(admin, USER, 1, PRODUCTION_COST);
  const [revoked] = await createKeys(admin, USER, 1, 4);
  await revoke(admin, (revoked as BenchKey).keyId);
  const want = (s: Scenario) => options.scenarios.has(s);
  const coldKeys = want('cold') ? await createKeys(admin, COLD_USER, COLD_KEYS, 4) : [];
  const newKeys = want('cold') ? await createKeys(admin, USER, NEW_KEYS, PRODUCTION_COST) : [];
  const floodKeyIds = want('flood') ? await createFloodKeys(admin, USER, FLOOD_KEYS, PRODUCTION_COST) : [];

  const needsMain = [...options.scenarios].some((s) => s !== 'memory');
  if (needsMain) {
    const sidecar = await startSidecar(redis.url, {
      logFile: options.logFile,
      nodeArgs: options.nodeArgs,
      env: options.sidecarEnv,
      ...(options.sidecarMain ? { main: options.sidecarMain } : {}),
    });
    // Same V8 flags for both servers (the deployment's heap cap): the comparison is of code, not of GC settings.
    const nodeOptions = options.sidecarEnv.NODE_OPTIONS ?? productionEnv().NODE_OPTIONS ?? '';
    bench.report.options.nodeOptions = nodeOptions;
    const baseline = await startBaseline(nodeOptions);
    const floor = await startBaseline(nodeOptions, 'h2-floor-server.js');
    const warmToken = (warm as BenchKey).token;
    // First use: one bcrypt at cost 10; from then on the warm path.
    const primed = await presentOnce(sidecar.grpcTarget, [warmToken], 1);
    bench.verify(primed['answer 0'] === 1, `warm token allowed on first use: ${JSON.stringify(primed)}`);

    // RSS after each scenario, to see which one grows the process.
    const rssAfter: Record<string, { rssMiB: number; peakMiB: number }> = { start: memoryOf(sidecar.pid) };
    const after = (name: string) => (rssAfter[name] = memoryOf(sidecar.pid));
    if (want('throughput')) {
      await throughput(bench, { sidecar, baseline, floor }, warmToken);
      after('throughput');
    }
    if (want('latency')) {
      await latency(bench, sidecar, baseline, warmToken, admin);
      after('latency');
    }
    await stopChild(baseline.proc);
    await stopChild(floor.proc);
    if (want('cold')) {
      await cold(bench, sidecar, coldKeys, newKeys, admin);
      after('cold');
    }
    if (want('reject')) {
      await reject(bench, sidecar, [(warm as BenchKey).keyId], (revoked as BenchKey).token);
      after('reject');
    }
    if (want('flood')) {
      await flood(bench, sidecar, warmToken, floodKeyIds);
      after('flood');
    }
    bench.report.scenarios.sidecarRssAfter = rssAfter;

    const mem = memoryOf(sidecar.pid);
    bench.begin('sidecar process');
    bench.row(
      'peak RSS (VmHWM) over the run above',
      `${mem.peakMiB.toFixed(0)} MiB; RSS after ${Object.entries(rssAfter)
        .map(([name, m]) => `${name} ${m.rssMiB.toFixed(0)}`)
        .join(', ')} MiB`,
    );
    bench.report.scenarios.sidecarMemory = mem;
    await stopChild(sidecar.proc);
    bench.verify(
      sidecar.proc.exitCode === 0,
      `sidecar drained and exited 0 on SIGTERM (exit ${sidecar.proc.exitCode})`,
    );
  }
  if (want('memory')) await memory(bench, redis.url, admin);

  admin.disconnect();
  printReport(bench.report);
  const resultsDir = path.join(ROOT, 'bench', 'results');
  fs.mkdirSync(resultsDir, { recursive: true });
  fs.writeFileSync(path.join(resultsDir, 'latest.json'), `${JSON.stringify(bench.report, null, 2)}\n`);
  log(`results written to ${path.relative(process.cwd(), path.join(resultsDir, 'latest.json'))}`);
  if (bench.report.verification.some((v) => v.startsWith('FAIL'))) process.exitCode = 1;
  // Children are stopped by the exit handler too; ensure nothing keeps the loop alive.
  process.exit();
}

main().catch((error: unknown) => {
  process.stderr.write(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
