/**
 * `npm run bench`: the sidecar against a no-op grpc-js/proto-loader ext_authz server, on loopback, in one run.
 *
 * Starts a private redis-server (free port), the built sidecar (`node dist/src/main.js`, production defaults,
 * decision logs to /dev/null unless BENCH_SIDECAR_LOG names a file) and the baseline (bench/baseline-server.ts),
 * then runs the scenarios below and prints a table; the figures also go to bench/results/latest.json.
 *
 *   throughput  h2load at saturation (-c 4 -m 25 -t 1), baseline and sidecar alternated BENCH_REPS times (3);
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
import { execSync } from 'node:child_process';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import Redis from 'ioredis';
import { ensureFunctionLibrary } from '../src/adapters/redis/function-library';
import { authorizationService } from '../src/adapters/grpc/service-definition';
import {
  cpuSeconds,
  decisionDelta,
  ensureH2load,
  h2load,
  installCleanupHandlers,
  makeTempDir,
  median,
  memoryOf,
  ownTimeQuantileMs,
  onCleanup,
  productionEnv,
  ROOT,
  scrape,
  seriesDelta,
  sleep,
  startBaseline,
  startRedis,
  startSidecar,
  stopChild,
  track,
  type BaselineProcess,
  type H2loadResult,
  type SidecarProcess,
} from './bench-support';
import { checkRequestBytes, grpcFrame, type BodySpec } from './envoy-request';
import type { LatencySummary, PacedConfig, PacedResult, StreamResult } from './paced-client';
import { checkResponseCode } from './paced-client';
import {
  createFloodKeys,
  createKeys,
  pool,
  PRODUCTION_COST,
  putUser,
  revoke,
  seedMany,
  type BenchKey,
} from './seed';

const ALL_SCENARIOS = ['throughput', 'latency', 'cold', 'reject', 'flood', 'memory'] as const;
type Scenario = (typeof ALL_SCENARIOS)[number];

const H2LOAD = { connections: 4, streams: 25, threads: 1 };
const USER = 'bench-user';
const COLD_USER = 'bench-cold';
const COLD_KEYS = 2000;
const NEW_KEYS = 30;
/** New tokens arrive rarely in practice; at 5/s a cost-10 compare (~60-80 ms here) seldom waits for another. */
const NEW_TOKEN_RATE = 5;
const FLOOD_KEYS = 64;

interface Row {
  metric: string;
  value: string;
  target?: string;
  ok?: boolean;
}

interface Report {
  machine: Record<string, unknown>;
  startedAt: string;
  options: Record<string, unknown>;
  scenarios: Record<string, unknown>;
  verification: string[];
  rows: Array<Row & { section: string }>;
}

const log = (message: string) => process.stderr.write(`bench: ${message}\n`);

function parseOptions() {
  const fromEnv = process.env.BENCH_SCENARIOS?.split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  const scenarios = new Set<Scenario>(
    (fromEnv ?? ALL_SCENARIOS.filter((s) => s !== 'memory')).map((s) => {
      if (!(ALL_SCENARIOS as readonly string[]).includes(s)) throw new Error(`unknown scenario ${s}`);
      return s as Scenario;
    }),
  );
  if (process.argv.includes('--memory')) scenarios.add('memory');
  const int = (name: string, fallback: number) => {
    const value = process.env[name];
    return value === undefined || value === '' ? fallback : Number.parseInt(value, 10);
  };
  return {
    scenarios,
    reps: Math.max(1, int('BENCH_REPS', 5)),
    seconds: Math.max(1, int('BENCH_SECONDS', 4)),
    memoryKeys: int('BENCH_MEMORY_KEYS', 100_000),
    logFile: process.env.BENCH_SIDECAR_LOG || undefined,
    nodeArgs: (process.env.BENCH_SIDECAR_NODE_ARGS ?? '').split(' ').filter((s) => s !== ''),
    sidecarMain: process.env.BENCH_SIDECAR_MAIN ? path.resolve(process.env.BENCH_SIDECAR_MAIN) : undefined,
    sidecarEnv: Object.fromEntries(
      (process.env.BENCH_SIDECAR_ENV ?? '')
        .split(' ')
        .filter((s) => s.includes('='))
        .map((s) => [s.slice(0, s.indexOf('=')), s.slice(s.indexOf('=') + 1)]),
    ),
  };
}

function machine(): Record<string, unknown> {
  const cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
  let h2loadVersion = '';
  try {
    h2loadVersion = execSync('h2load --version', { encoding: 'utf8' }).trim().split('\n')[0] ?? '';
  } catch {
    // Reported as empty.
  }
  let redisVersion = '';
  try {
    redisVersion = execSync('redis-server --version', { encoding: 'utf8' }).trim();
  } catch {
    // Reported as empty.
  }
  return {
    nproc: os.availableParallelism(),
    cpuModel: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? 'unknown',
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    h2load: h2loadVersion,
    redis: redisVersion,
    kernel: os.release(),
    loadAvgAtStart: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

/** Busy and total CPU jiffies of the whole machine (to spot other work competing with the bench). */
function systemJiffies(): { busy: number; total: number } {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0] as string;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: total - idle, total };
}

// ---------------------------------------------------------------------------------------------------------------
// A grpc-js client for one-off calls (priming caches, checking a server answers OK).

type RawClient = {
  call(body: Buffer, deadlineMs?: number): Promise<{ code: number; answer: number | null }>;
  close(): void;
};

function rawClient(target: string): RawClient {
  const Ctor = grpc.makeGenericClientConstructor(authorizationService, 'Authorization');
  const client = new Ctor(target, grpc.credentials.createInsecure());
  return {
    call: (body, deadlineMs = 10_000) =>
      new Promise((resolve) => {
        client.makeUnaryRequest<Buffer, Buffer>(
          authorizationService.Check.path,
          authorizationService.Check.requestSerialize,
          authorizationService.Check.responseDeserialize,
          body,
          { deadline: Date.now() + deadlineMs },
          (error, response) =>
            resolve(
              error !== null || response === undefined
                ? { code: error?.code ?? -1, answer: null }
                : { code: 0, answer: checkResponseCode(response) },
            ),
        );
      }),
    close: () => client.close(),
  };
}

/** Presents each token once (at most `concurrency` in flight; bcrypt's queue is short), retrying 503s. */
async function presentOnce(
  target: string,
  tokens: readonly string[],
  concurrency: number,
): Promise<Record<string, number>> {
  const client = rawClient(target);
  const answers: Record<string, number> = {};
  try {
    await pool(tokens, concurrency, async (token) => {
      for (let attempt = 0; ; attempt++) {
        const { code, answer } = await client.call(checkRequestBytes({ authorization: `Bearer ${token}` }));
        // 14 = UNAVAILABLE in the CheckResponse: bcrypt queue full; try again shortly.
        if (answer === 14 && attempt < 50) {
          await sleep(20);
          continue;
        }
        const label = code === 0 ? `answer ${answer}` : `grpc ${code}`;
        answers[label] = (answers[label] ?? 0) + 1;
        return;
      }
    });
  } finally {
    client.close();
  }
  return answers;
}

// ---------------------------------------------------------------------------------------------------------------

/** A malformed token: paced warm-up calls use it, so they are answered without Redis or bcrypt, as token_malformed. */
const WARMUP_AUTHORIZATION = 'Bearer fty_warmup';
const WARMUP_MS = 2000;

interface PacedRun extends PacedResult {
  /** Cores the machine spent on anything but the paced client and the sidecar during the measured phase. */
  otherCores: number;
  /** CPU seconds the sidecar (the pid passed in) used during the measured phase. */
  serverCpuSeconds: number;
  /** Warm-up Check calls sent (answered token_malformed). */
  warmupChecks: number;
}

/**
 * Runs the paced client in its own process, warm-up first (WARMUP_MS of malformed-token calls at each stream's
 * rate, not measured); the sidecar's CPU and the machine's load are read when the measured phase starts and ends.
 */
async function runPaced(dir: string, config: PacedConfig, serverPid: number): Promise<PacedRun> {
  const file = path.join(dir, `paced-${Date.now()}-${Math.random().toString(36).slice(2)}.json`);
  fs.writeFileSync(
    file,
    JSON.stringify({ warmup: { ms: WARMUP_MS, authorization: WARMUP_AUTHORIZATION }, ...config }),
  );
  const proc = track(
    spawn(process.execPath, [path.join(ROOT, 'dist/bench/paced-client.js'), file], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  let out = '';
  let err = '';
  let cpu0 = cpuSeconds(serverPid);
  let sys0 = systemJiffies();
  proc.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
    if (out.startsWith('measure-start\n')) {
      out = out.slice('measure-start\n'.length);
      cpu0 = cpuSeconds(serverPid);
      sys0 = systemJiffies();
    }
  });
  proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((resolve) => proc.once('exit', (c) => resolve(c)));
  const sys1 = systemJiffies();
  const cpu1 = cpuSeconds(serverPid);
  if (code !== 0) throw new Error(`paced client exited ${code}: ${err}`);
  const result = JSON.parse(out) as PacedResult;
  const seconds = result.elapsedMs / 1000;
  const busyCores = ((sys1.busy - sys0.busy) / (sys1.total - sys0.total)) * os.availableParallelism();
  const serverCpuSeconds = cpu1 - cpu0;
  const otherCores = busyCores - (result.clientCpuSeconds + serverCpuSeconds) / seconds;
  const warmupChecks = result.streams.reduce(
    (sum, s, i) => sum + (config.streams[i]?.kind === 'check' ? s.warmupSent : 0),
    0,
  );
  return { ...result, otherCores, serverCpuSeconds, warmupChecks };
}

/** How busy the machine was with other work: the noise floor of every latency figure. */
function contention(run: PacedRun): string {
  const seconds = run.elapsedMs / 1000;
  return `${Math.max(0, run.otherCores).toFixed(2)} cores busy with other work; client ${(
    run.clientCpuSeconds / seconds
  ).toFixed(2)}, sidecar ${(run.serverCpuSeconds / seconds).toFixed(2)} cores`;
}

/** The decisions between two scrapes equal `expected` plus the run's warm-up calls (token_malformed). */
function expectDecisions(
  bench: Bench,
  before: Map<string, number>,
  after: Map<string, number>,
  run: PacedRun | null,
  expected: Record<string, number>,
  what: string,
): Record<string, number> {
  const delta = decisionDelta(before, after);
  const want: Record<string, number> = { ...expected };
  if (run !== null && run.warmupChecks > 0)
    want.token_malformed = (want.token_malformed ?? 0) + run.warmupChecks;
  const keys = new Set([...Object.keys(delta), ...Object.keys(want)]);
  const ok = [...keys].every((k) => (delta[k] ?? 0) === (want[k] ?? 0));
  bench.verify(ok, `${what}: decisions ${JSON.stringify(delta)}, expected ${JSON.stringify(want)}`);
  if (run !== null && run.warmupChecks > 0) {
    delta.token_malformed = (delta.token_malformed ?? 0) - run.warmupChecks;
    if (delta.token_malformed === 0) delete delta.token_malformed;
  }
  return delta;
}

const ms = (x: number) => (Number.isFinite(x) ? `${x < 10 ? x.toFixed(3) : x.toFixed(1)} ms` : 'n/a');
const pct = (s: LatencySummary) =>
  `p50 ${ms(s.p50)}  p99 ${ms(s.p99)}  p99.9 ${ms(s.p999)}  max ${ms(s.max)}`;
const count = (n: number) => Math.round(n).toLocaleString('en-US');

function stream(result: PacedResult, name: string): StreamResult {
  const s = result.streams.find((x) => x.name === name);
  if (s === undefined) throw new Error(`no stream ${name}`);
  return s;
}

class Bench {
  readonly report: Report;
  private section = '';

  constructor(
    readonly options: ReturnType<typeof parseOptions>,
    readonly dir: string,
  ) {
    this.report = {
      machine: machine(),
      startedAt: new Date().toISOString(),
      options: { ...options, scenarios: [...options.scenarios] },
      scenarios: {},
      verification: [],
      rows: [],
    };
  }

  begin(section: string): void {
    this.section = section;
    log(section);
  }

  row(metric: string, value: string, target?: string, ok?: boolean): void {
    this.report.rows.push({ section: this.section, metric, value, target, ok });
  }

  verify(condition: boolean, what: string): void {
    const line = `${condition ? 'ok  ' : 'FAIL'} ${this.section}: ${what}`;
    this.report.verification.push(line);
    if (!condition) log(line);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Scenarios.

async function throughput(
  bench: Bench,
  sidecar: SidecarProcess,
  baseline: BaselineProcess,
  warmToken: string,
): Promise<void> {
  bench.begin('throughput (h2load, saturation)');
  const body = checkRequestBytes({ authorization: `Bearer ${warmToken}` });
  const bodyFile = path.join(bench.dir, 'check-request.bin');
  fs.writeFileSync(bodyFile, grpcFrame(body));

  const baselineClient = rawClient(baseline.target);
  const baselineAnswersOk = async () => {
    const r = await baselineClient.call(body);
    return r.code === 0 && r.answer === 0;
  };
  bench.verify(await baselineAnswersOk(), 'baseline answers grpc-status 0 with status.code 0');

  type Run = H2loadResult & { cpuUsPerReq: number; otherCpu: number };
  const measure = async (pid: number, target: string, requests: number): Promise<Run> => {
    const cpu0 = cpuSeconds(pid);
    const sys0 = systemJiffies();
    const result = await h2load(target, bodyFile, { ...H2LOAD, requests });
    const sys1 = systemJiffies();
    const cpu1 = cpuSeconds(pid);
    const serverCpu = cpu1 - cpu0;
    const busyShare = (sys1.busy - sys0.busy) / (sys1.total - sys0.total);
    const cores = os.availableParallelism();
    // Share of the machine busy with something other than this server (h2load, other tenants), in cores.
    const otherCpu = busyShare * cores - serverCpu / result.seconds;
    return {
      ...result,
      cpuUsPerReq: (serverCpu / result.succeeded) * 1e6,
      otherCpu,
    };
  };
  const sidecarRun = async (requests: number): Promise<Run> => {
    const before = await scrape(sidecar.adminPort);
    const run = await measure(sidecar.pid, sidecar.grpcTarget, requests);
    const after = await scrape(sidecar.adminPort);
    const delta = decisionDelta(before, after);
    const allowed = delta.allowed ?? 0;
    const others = Object.entries(delta).filter(([reason]) => reason !== 'allowed');
    bench.verify(
      allowed === run.succeeded && others.length === 0 && run.succeeded === requests,
      `sidecar decided allow ${allowed} times for ${run.succeeded} h2load successes of ${requests}` +
        (others.length > 0 ? `; other decisions ${JSON.stringify(Object.fromEntries(others))}` : ''),
    );
    return run;
  };
  const baselineRun = async (requests: number): Promise<Run> => {
    const run = await measure(baseline.pid, baseline.target, requests);
    bench.verify(
      run.succeeded === requests && (await baselineAnswersOk()),
      `baseline: ${run.succeeded}/${requests} h2load successes, then grpc-status 0 from a client call`,
    );
    return run;
  };

  // Warm-up (JIT, connection pools) and calibration: each run then lasts about BENCH_SECONDS.
  const warmB = await baselineRun(10_000);
  const warmS = await sidecarRun(10_000);
  const nB = Math.max(10_000, Math.round((warmB.rps * bench.options.seconds) / 1000) * 1000);
  const nS = Math.max(10_000, Math.round((warmS.rps * bench.options.seconds) / 1000) * 1000);
  log(
    `warm-up: baseline ${count(warmB.rps)} req/s, sidecar ${count(warmS.rps)} req/s; runs of ${nB} / ${nS}`,
  );

  const pairs: Array<{ baseline: Run; sidecar: Run }> = [];
  for (let rep = 0; rep < bench.options.reps; rep++) {
    // Alternate which goes first so a drift in machine load does not always favour the same server.
    const first = rep % 2 === 0 ? 'baseline' : 'sidecar';
    let b: Run;
    let s: Run;
    if (first === 'baseline') {
      b = await baselineRun(nB);
      s = await sidecarRun(nS);
    } else {
      s = await sidecarRun(nS);
      b = await baselineRun(nB);
    }
    log(
      `rep ${rep + 1}: baseline ${count(b.rps)} req/s, sidecar ${count(s.rps)} req/s, ratio ${(s.rps / b.rps).toFixed(3)}`,
    );
    pairs.push({ baseline: b, sidecar: s });
  }
  baselineClient.close();

  const medB = median(pairs.map((p) => p.baseline.rps));
  const medS = median(pairs.map((p) => p.sidecar.rps));
  const ratio = medS / medB;
  const pairRatio = median(pairs.map((p) => p.sidecar.rps / p.baseline.rps));
  const strip = (r: Run) => ({
    rps: r.rps,
    seconds: r.seconds,
    requests: r.requests,
    succeeded: r.succeeded,
    meanMs: r.meanMs,
    serverCpuUsPerReq: r.cpuUsPerReq,
    otherCpuCores: r.otherCpu,
  });
  bench.report.scenarios.throughput = {
    h2load: H2LOAD,
    requestBytes: body.length,
    pairs: pairs.map((p) => ({ baseline: strip(p.baseline), sidecar: strip(p.sidecar) })),
    medianBaselineRps: medB,
    medianSidecarRps: medS,
    ratioOfMedians: ratio,
    medianPairRatio: pairRatio,
  };
  bench.row('CheckRequest size', `${body.length} bytes (${count(nB)} / ${count(nS)} requests per run)`);
  bench.row(
    'NODE_OPTIONS of both servers',
    `${String(bench.report.options.nodeOptions || '(none)')} (the deployment's, so GC settings are equal)`,
  );
  bench.row(
    'baseline (grpc-js + proto-loader no-op)',
    `${count(medB)} req/s  [${pairs.map((p) => count(p.baseline.rps)).join(', ')}]`,
  );
  bench.row(
    'sidecar, warm path',
    `${count(medS)} req/s  [${pairs.map((p) => count(p.sidecar.rps)).join(', ')}]`,
  );
  bench.row('ratio of medians', `${ratio.toFixed(3)}x`, '>= 1.1x (aim 1.3x)', ratio >= 1.1);
  bench.row(
    'median of per-pair ratios',
    `${pairRatio.toFixed(3)}x  [${pairs.map((p) => (p.sidecar.rps / p.baseline.rps).toFixed(3)).join(', ')}]`,
  );
  bench.row(
    'server CPU per request (median)',
    `baseline ${median(pairs.map((p) => p.baseline.cpuUsPerReq)).toFixed(1)} us, sidecar ${median(
      pairs.map((p) => p.sidecar.cpuUsPerReq),
    ).toFixed(1)} us`,
  );
  bench.row(
    'other CPU during runs (h2load + rest)',
    `${median(pairs.flatMap((p) => [p.baseline.otherCpu, p.sidecar.otherCpu])).toFixed(2)} cores of ${os.availableParallelism()}`,
  );
}

/** Rewrites a user (a real user.updated event) and waits until the sidecar has applied the event. */
async function putUserApplied(sidecar: SidecarProcess, admin: Redis, userId: string): Promise<void> {
  const propagated = 'fortary_authz_event_propagation_seconds_count';
  const ev0 = (await scrape(sidecar.adminPort)).get(propagated) ?? 0;
  await putUser(admin, userId);
  for (let i = 0; i < 200 && ((await scrape(sidecar.adminPort)).get(propagated) ?? 0) <= ev0; i++)
    await sleep(10);
}

async function latency(
  bench: Bench,
  sidecar: SidecarProcess,
  baseline: BaselineProcess | null,
  warmToken: string,
  admin: Redis,
): Promise<void> {
  bench.begin('latency at 1,000 checks/s (warm)');
  const paced = (target: string, pid: number) =>
    runPaced(
      bench.dir,
      {
        durationMs: 10_000,
        deadlineMs: 2000,
        streams: [
          {
            name: 'warm',
            kind: 'check',
            target,
            rate: 1000,
            body: { kind: 'fixed', authorization: `Bearer ${warmToken}` },
          },
        ],
      },
      pid,
    );
  // The no-op baseline under the same paced load first: its tail is what this machine adds by itself.
  const reference = baseline === null ? null : await paced(baseline.target, baseline.pid);
  // A record is served for at most FORTARY_ROLE_MAX_STALENESS_S (60 s) after it was read, and the throughput runs
  // take about that long: reload it now (a real user.updated event, then one request; no bcrypt, the digest is
  // kept), so its lifetime cannot end inside the 10 s measured here and turn one warm check into a cold one.
  await putUserApplied(sidecar, admin, USER);
  const refreshed = await presentOnce(sidecar.grpcTarget, [warmToken], 1);
  bench.verify(
    refreshed['answer 0'] === 1,
    `warm token allowed after the refresh: ${JSON.stringify(refreshed)}`,
  );
  const before = await scrape(sidecar.adminPort);
  const run = await paced(sidecar.grpcTarget, sidecar.pid);
  const after = await scrape(sidecar.adminPort);
  const s = stream(run, 'warm');
  expectDecisions(bench, before, after, run, { allowed: s.sent }, 'warm checks');
  bench.verify(s.answers['0'] === s.sent, `${s.answers['0'] ?? 0} of ${s.sent} answered allowed`);
  bench.verify(
    seriesDelta(before, after, 'fortary_authz_cache_requests_total{cache="key",result="hit"}') === s.sent,
    'every check was a key cache hit',
  );
  const ref = reference === null ? null : stream(reference, 'warm');
  if (ref !== null) bench.verify(ref.answers['0'] === ref.sent, `baseline answered OK to all ${ref.sent}`);
  bench.report.scenarios.latency = {
    rate: 1000,
    result: s,
    sidecarCpuUsPerCheck: (run.serverCpuSeconds / s.sent) * 1e6,
    otherCores: run.otherCores,
    baseline: ref === null ? null : { result: ref, otherCores: reference?.otherCores },
  };
  bench.row('warm check, 10 s at 1,000/s', pct(s.latencyMs), 'p99 <= 1 ms', s.latencyMs.p99 <= 1);
  bench.row('  service time (from the actual send)', pct(s.serviceMs));
  bench.row('  client send lag (included above)', `p99 ${ms(s.sendLagMs.p99)}  max ${ms(s.sendLagMs.max)}`);
  // The sidecar's own histogram: decoded request to answer, without the transport and the machine around it.
  const own = (q: number) => {
    const bound = ownTimeQuantileMs(before, after, 'allow', q);
    return bound === Infinity ? '> 500 ms' : `<= ${ms(bound)}`;
  };
  bench.row('  sidecar time per check (its own histogram)', `p99 ${own(0.99)}  p99.9 ${own(0.999)}`);
  bench.row('  machine during the run', contention(run));
  if (ref !== null && reference !== null) {
    bench.row('no-op baseline, same load (noise floor)', pct(ref.latencyMs));
    bench.row('  machine during the baseline run', contention(reference));
  }
}

async function cold(
  bench: Bench,
  sidecar: SidecarProcess,
  coldKeys: BenchKey[],
  newKeys: BenchKey[],
  admin: Redis,
): Promise<void> {
  bench.begin('cold path');
  // Verify every cold token once (cost 4: bcrypt is not what this measures), then evict their records with a real
  // event: user.updated for their owner drops the user and every cached key it owns.
  const primed = await presentOnce(
    sidecar.grpcTarget,
    coldKeys.map((k) => k.token),
    8,
  );
  bench.verify(
    primed['answer 0'] === coldKeys.length,
    `cold tokens verified once: ${JSON.stringify(primed)}`,
  );
  await putUserApplied(sidecar, admin, COLD_USER);

  const before = await scrape(sidecar.adminPort);
  const run = await runPaced(
    bench.dir,
    {
      durationMs: 0,
      deadlineMs: 2000,
      streams: [
        {
          name: 'record-miss',
          kind: 'check',
          target: sidecar.grpcTarget,
          rate: 1000,
          count: coldKeys.length,
          body: { kind: 'tokens', tokens: coldKeys.map((k) => k.token) },
        },
      ],
    },
    sidecar.pid,
  );
  const after = await scrape(sidecar.adminPort);
  const s = stream(run, 'record-miss');
  expectDecisions(bench, before, after, run, { allowed: s.sent }, 'cold records');
  const misses = seriesDelta(before, after, 'fortary_authz_cache_requests_total{cache="key",result="miss"}');
  const cpuUs = (run.serverCpuSeconds / s.sent) * 1e6;
  bench.verify(misses === s.sent, `${misses} key cache misses for ${s.sent} checks (one Redis read each)`);
  bench.verify(
    cpuUs < 1000,
    `sidecar CPU ${cpuUs.toFixed(0)} us per check (a cost-4 bcrypt alone is ~1,350 us)`,
  );
  bench.row(
    'record not cached, token verified (1,000/s)',
    pct(s.latencyMs),
    'p99 <= 5 ms',
    s.latencyMs.p99 <= 5,
  );
  bench.row('  sidecar CPU per cold check', `${cpuUs.toFixed(0)} us (no bcrypt)`);
  bench.row('  machine during the run', contention(run));

  // New tokens: keys never used, production cost, one bcrypt each.
  const nb = await scrape(sidecar.adminPort);
  const freshRun = await runPaced(
    bench.dir,
    {
      durationMs: 0,
      deadlineMs: 5000,
      streams: [
        {
          name: 'new-token',
          kind: 'check',
          target: sidecar.grpcTarget,
          rate: NEW_TOKEN_RATE,
          count: newKeys.length,
          body: { kind: 'tokens', tokens: newKeys.map((k) => k.token) },
        },
      ],
    },
    sidecar.pid,
  );
  const na = await scrape(sidecar.adminPort);
  const f = stream(freshRun, 'new-token');
  expectDecisions(bench, nb, na, freshRun, { allowed: f.sent }, 'new tokens');
  const bcryptMs = await bcryptCostMs(newKeys[0] as BenchKey);
  bench.report.scenarios.cold = {
    recordMiss: s,
    recordMissCpuUs: cpuUs,
    recordMissOtherCores: run.otherCores,
    newToken: f,
    bcryptCost: PRODUCTION_COST,
    bcryptMs,
  };
  bench.row(
    `new token, bcrypt cost ${PRODUCTION_COST} (${NEW_TOKEN_RATE}/s, n=${f.sent})`,
    pct(f.latencyMs),
    `p99 <= 5 ms + one bcrypt (${bcryptMs.toFixed(0)} ms here)`,
    f.latencyMs.p99 <= 5 + bcryptMs,
  );
}

/** One bcrypt compare at the production cost in this process, for reference. */
async function bcryptCostMs(key: BenchKey): Promise<number> {
  const bcrypt = await import('bcrypt');
  const hash = await bcrypt.hash(key.token, PRODUCTION_COST);
  const t0 = performance.now();
  for (let i = 0; i < 3; i++) await bcrypt.compare(key.token, hash);
  return (performance.now() - t0) / 3;
}

async function reject(
  bench: Bench,
  sidecar: SidecarProcess,
  knownKeyIds: string[],
  revokedToken: string,
): Promise<void> {
  bench.begin('no bcrypt for bad tokens (1,000/s each)');
  const cases: Array<{ name: string; body: BodySpec; reason: string }> = [
    { name: 'malformed token', body: { kind: 'malformed' }, reason: 'token_malformed' },
    { name: 'bad checksum', body: { kind: 'bad-checksum', keyIds: knownKeyIds }, reason: 'token_malformed' },
    { name: 'unknown key id (random)', body: { kind: 'unknown-key' }, reason: 'key_unknown' },
    {
      name: 'revoked key',
      body: { kind: 'fixed', authorization: `Bearer ${revokedToken}` },
      reason: 'key_revoked',
    },
  ];
  const out: Record<string, unknown> = {};
  const others: number[] = [];
  for (const c of cases) {
    const before = await scrape(sidecar.adminPort);
    const run = await runPaced(
      bench.dir,
      {
        durationMs: 3000,
        deadlineMs: 2000,
        streams: [{ name: c.name, kind: 'check', target: sidecar.grpcTarget, rate: 1000, body: c.body }],
      },
      sidecar.pid,
    );
    const after = await scrape(sidecar.adminPort);
    const s = stream(run, c.name);
    const cpuUs = (run.serverCpuSeconds / s.sent) * 1e6;
    expectDecisions(bench, before, after, run, { [c.reason]: s.sent }, c.name);
    const bcryptBusy =
      (after.get('fortary_authz_bcrypt_in_flight') ?? 0) + (after.get('fortary_authz_bcrypt_queued') ?? 0);
    bench.verify(
      cpuUs < 1000 && bcryptBusy === 0,
      `${c.name}: ${cpuUs.toFixed(0)} us sidecar CPU per check, no bcrypt`,
    );
    out[c.name] = { result: s, cpuUsPerCheck: cpuUs, otherCores: run.otherCores };
    others.push(run.otherCores);
    bench.row(
      c.name,
      `${pct(s.latencyMs)}  (${cpuUs.toFixed(0)} us CPU)`,
      'p99 <= 1 ms',
      s.latencyMs.p99 <= 1,
    );
  }
  bench.report.scenarios.reject = out;
  bench.row(
    '  machine during these runs',
    `${Math.max(0, median(others)).toFixed(2)} cores busy with other work (median)`,
  );
}

async function flood(
  bench: Bench,
  sidecar: SidecarProcess,
  warmToken: string,
  floodKeyIds: string[],
): Promise<void> {
  bench.begin('bcrypt flood: 200/s wrong secrets on never-verified valid key ids');
  const before = await scrape(sidecar.adminPort);
  const run = await runPaced(
    bench.dir,
    {
      durationMs: 10_000,
      deadlineMs: 2000,
      streams: [
        {
          name: 'valid',
          kind: 'check',
          target: sidecar.grpcTarget,
          rate: 500,
          body: { kind: 'fixed', authorization: `Bearer ${warmToken}` },
        },
        {
          name: 'flood',
          kind: 'check',
          target: sidecar.grpcTarget,
          rate: 200,
          body: { kind: 'random-secret', keyIds: floodKeyIds },
        },
        { name: 'health (Check port)', kind: 'health', target: sidecar.grpcTarget, service: '', rate: 20 },
        { name: 'health (health port)', kind: 'health', target: sidecar.healthTarget, service: '', rate: 10 },
      ],
    },
    sidecar.pid,
  );
  const after = await scrape(sidecar.adminPort);
  const valid = stream(run, 'valid');
  const fl = stream(run, 'flood');
  const hc = stream(run, 'health (Check port)');
  const hp = stream(run, 'health (health port)');
  const delta = decisionDelta(before, after);
  const mismatch = delta.secret_mismatch ?? 0;
  const overloaded = delta.overloaded ?? 0;
  expectDecisions(
    bench,
    before,
    after,
    run,
    { allowed: valid.sent, secret_mismatch: mismatch, overloaded },
    'valid traffic all allowed, flood only mismatch or overloaded',
  );
  bench.verify(
    mismatch + overloaded === fl.sent,
    `flood answered: ${mismatch} + ${overloaded} of ${fl.sent}`,
  );
  bench.verify(
    valid.answers['0'] === valid.sent,
    `${valid.answers['0'] ?? 0} of ${valid.sent} valid allowed`,
  );
  const healthOk = (s: StreamResult) => (s.answers.SERVING ?? 0) === s.sent;
  const seconds = run.elapsedMs / 1000;
  bench.report.scenarios.flood = {
    valid,
    flood: fl,
    healthCheckPort: hc,
    healthPort: hp,
    decisions: delta,
    bcryptRejected: seriesDelta(before, after, 'fortary_authz_bcrypt_rejected_total'),
    sidecarCpuCores: run.serverCpuSeconds / seconds,
    otherCores: run.otherCores,
  };
  bench.row(
    'valid traffic at 500/s during the flood',
    pct(valid.latencyMs),
    'p99 <= 10 ms',
    valid.latencyMs.p99 <= 10,
  );
  bench.row(
    'flood outcomes (200/s x 10 s)',
    `secret_mismatch ${mismatch}, overloaded (503) ${overloaded}; flood ${pct(fl.latencyMs)}`,
  );
  bench.row(
    'health check on the Check port (20/s)',
    `${hc.answers.SERVING ?? 0}/${hc.sent} SERVING, ${pct(hc.latencyMs)}`,
    'all SERVING',
    healthOk(hc),
  );
  bench.row(
    'health check on the health port (10/s)',
    `${hp.answers.SERVING ?? 0}/${hp.sent} SERVING, ${pct(hp.latencyMs)}`,
    'all SERVING',
    healthOk(hp),
  );
  bench.row('  machine during the run', contention(run));
}

async function memory(bench: Bench, redisUrl: string, admin: Redis): Promise<void> {
  const n = bench.options.memoryKeys;
  bench.begin(`memory: ${count(n)} keys cached`);
  const users = Math.max(1, Math.round(n / 4));
  const t0 = Date.now();
  const keys = await seedMany(admin, n, users, 4, (done) => {
    if (done % 10_000 === 0)
      log(`  seeded ${count(done)} keys (cost-4 bcrypt each), ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  });
  // The first use of 100,000 keys takes longer than the default 60 s record lifetime: allow the maximum (300 s) so
  // the second pass finds every record still cached, and two bcrypt threads to make the first pass quicker.
  const memoryEnv = { FORTARY_ROLE_MAX_STALENESS_S: '300', FORTARY_BCRYPT_CONCURRENCY: '2' };
  const sidecar = await startSidecar(redisUrl, {
    logFile: bench.options.logFile,
    env: { ...memoryEnv, ...bench.options.sidecarEnv },
    nodeArgs: bench.options.nodeArgs,
    ...(bench.options.sidecarMain ? { main: bench.options.sidecarMain } : {}),
  });
  try {
    const idle = memoryOf(sidecar.pid);
    const tokens = keys.map((k) => k.token);
    const t1 = Date.now();
    // First use: one Redis read and one bcrypt (cost 4) per key; both caches fill.
    const first = await presentOnce(sidecar.grpcTarget, tokens, 16);
    log(
      `  first use of ${count(n)} keys in ${((Date.now() - t1) / 1000).toFixed(0)} s: ${JSON.stringify(first)}`,
    );
    const afterFirst = memoryOf(sidecar.pid);
    const m0 = await scrape(sidecar.adminPort);
    // Second use: every key must now be a cache hit with a verified digest (no bcrypt, no Redis).
    const second = await presentOnce(sidecar.grpcTarget, tokens, 64);
    const m1 = await scrape(sidecar.adminPort);
    const hits = seriesDelta(m0, m1, 'fortary_authz_cache_requests_total{cache="key",result="hit"}');
    const final = memoryOf(sidecar.pid);
    // V8's memory reducer returns free heap pages after a few seconds without allocation: the steady state.
    await sleep(12_000);
    const settled = memoryOf(sidecar.pid);
    bench.verify(
      first['answer 0'] === n && second['answer 0'] === n,
      `every key allowed twice: ${JSON.stringify({ first, second })}`,
    );
    bench.verify(hits === n, `second pass: ${hits} key cache hits of ${n}`);
    const heap = m1.get('fortary_authz_nodejs_heap_size_used_bytes') ?? NaN;
    const heapTotal = m1.get('fortary_authz_nodejs_heap_size_total_bytes') ?? NaN;
    const external = m1.get('fortary_authz_nodejs_external_memory_bytes') ?? NaN;
    bench.report.scenarios.memory = {
      keys: n,
      users,
      env: memoryEnv,
      idle,
      afterFirst,
      final,
      settled,
      heapUsedMiB: heap / 2 ** 20,
      heapTotalMiB: heapTotal / 2 ** 20,
      externalMiB: external / 2 ** 20,
    };
    bench.row('RSS idle, fresh sidecar', `${idle.rssMiB.toFixed(0)} MiB`);
    bench.row(
      `RSS with ${count(n)} keys + ${count(users)} users cached and verified`,
      `${final.rssMiB.toFixed(0)} MiB (peak ${final.peakMiB.toFixed(0)} MiB; V8 heap used ${(
        heap /
        2 ** 20
      ).toFixed(
        0,
      )} of ${(heapTotal / 2 ** 20).toFixed(0)} MiB, Buffers ${(external / 2 ** 20).toFixed(0)} MiB)`,
      '< 150 MB',
      final.peakMiB * 2 ** 20 < 150e6,
    );
    bench.row('RSS 12 s later, idle (memory reducer has run)', `${settled.rssMiB.toFixed(0)} MiB`);
  } finally {
    await stopChild(sidecar.proc);
  }
}

// ---------------------------------------------------------------------------------------------------------------

function printReport(report: Report): void {
  const lines: string[] = [];
  const m = report.machine;
  lines.push('');
  lines.push(
    `fortary-authz bench  ${report.startedAt}  ${m.nproc} x ${m.cpuModel}, ${m.memGiB} GiB, Node ${m.node}, load avg at start ${(m.loadAvgAtStart as number[]).join(' ')}`,
  );
  const width = Math.max(...report.rows.map((r) => r.metric.length), 10);
  const valueWidth = Math.min(90, Math.max(...report.rows.map((r) => r.value.length), 10));
  let section = '';
  for (const r of report.rows) {
    if (r.section !== section) {
      section = r.section;
      lines.push('');
      lines.push(`== ${section}`);
    }
    const status = r.ok === undefined ? '' : r.ok ? 'MET ' : 'MISS';
    lines.push(
      `  ${r.metric.padEnd(width)}  ${r.value.padEnd(valueWidth)}  ${status}${r.target ? ` (${r.target})` : ''}`.trimEnd(),
    );
  }
  const failed = report.verification.filter((v) => v.startsWith('FAIL'));
  lines.push('');
  lines.push(
    failed.length === 0
      ? `verification: all ${report.verification.length} checks passed (answers counted by the sidecar's /metrics and by the client)`
      : `verification: ${failed.length} of ${report.verification.length} checks FAILED:\n  ${failed.join('\n  ')}`,
  );
  process.stdout.write(`${lines.join('\n')}\n`);
}

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
    const warmToken = (warm as BenchKey).token;
    // First use: one bcrypt at cost 10; from then on the warm path.
    const primed = await presentOnce(sidecar.grpcTarget, [warmToken], 1);
    bench.verify(primed['answer 0'] === 1, `warm token allowed on first use: ${JSON.stringify(primed)}`);

    // RSS after each scenario, to see which one grows the process.
    const rssAfter: Record<string, { rssMiB: number; peakMiB: number }> = { start: memoryOf(sidecar.pid) };
    const after = (name: string) => (rssAfter[name] = memoryOf(sidecar.pid));
    if (want('throughput')) {
      await throughput(bench, sidecar, baseline, warmToken);
      after('throughput');
    }
    if (want('latency')) {
      await latency(bench, sidecar, baseline, warmToken, admin);
      after('latency');
    }
    await stopChild(baseline.proc);
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
