/**
 * Process plumbing for the bench: every child is registered so it is killed on success, error and Ctrl-C; a private
 * redis-server on a free loopback port; the sidecar and the baseline as separate processes; h2load runs and their
 * output; /metrics and /proc readings.
 */
import { spawn, spawnSync, type ChildProcess, type StdioOptions } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { parseAllDocuments } from 'yaml';
import { freePort, freePorts } from './free-ports';
import { repoRoot } from './envoy-request';

export const ROOT = repoRoot();

// ---------------------------------------------------------------------------------------------------------------
// Children and cleanup.

const children = new Set<ChildProcess>();
const cleanups: Array<() => void> = [];

export function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Runs once at exit (also after a signal or an uncaught error): synchronous work only. */
export function onCleanup(fn: () => void): void {
  cleanups.push(fn);
}

function killAll(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  }
  children.clear();
  for (const fn of cleanups.splice(0)) {
    try {
      fn();
    } catch {
      // Best effort.
    }
  }
}

let installed = false;
export function installCleanupHandlers(): void {
  if (installed) return;
  installed = true;
  process.on('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      process.stderr.write(`\nbench: ${signal}, stopping every process it started\n`);
      killAll();
      process.exit(130);
    });
  }
  process.on('uncaughtException', (error) => {
    process.stderr.write(`bench: ${error.stack ?? String(error)}\n`);
    killAll();
    process.exit(1);
  });
}

/** Sends SIGTERM, then SIGKILL after `graceMs`. */
export async function stopChild(child: ChildProcess, graceMs = 3000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

export function makeTempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fortary-bench-'));
  onCleanup(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// ---------------------------------------------------------------------------------------------------------------
// Ports, Redis.

export interface RedisProcess {
  port: number;
  url: string;
  proc: ChildProcess;
}

export async function startRedis(dir: string): Promise<RedisProcess> {
  const port = await freePort();
  if (port === 6379) throw new Error('refusing to use port 6379');
  const proc = track(
    spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
      { stdio: 'ignore' },
    ),
  );
  const deadline = Date.now() + 5000;
  while (!(await pingRedis(port))) {
    if (Date.now() > deadline || proc.exitCode !== null)
      throw new Error(`redis-server on ${port} did not start`);
    await sleep(25);
  }
  return { port, url: `redis://127.0.0.1:${port}`, proc };
}

function pingRedis(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('error', () => resolve(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => {
      socket.destroy();
      resolve(data.toString().startsWith('+PONG'));
    });
  });
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------------------------
// The sidecar and the baseline.

export interface SidecarProcess {
  proc: ChildProcess;
  pid: number;
  grpcPort: number;
  healthPort: number;
  adminPort: number;
  grpcTarget: string;
  healthTarget: string;
  stderr(): string;
}

const DEPLOYMENT = path.join(ROOT, 'deploy', 'base', 'deployment.yaml');
/** Set by the bench itself: loopback addresses on free ports, the private Redis. */
const BENCH_OWNED = new Set(['FORTARY_GRPC_ADDR', 'FORTARY_HEALTH_ADDR', 'FORTARY_ADMIN_ADDR', 'REDIS_URL']);

/**
 * The sidecar container's literal environment from deploy/base/deployment.yaml (NODE_OPTIONS with the heap cap,
 * UV_THREADPOOL_SIZE, FORTARY_BCRYPT_CONCURRENCY, ...), so the bench runs what production runs. Addresses and
 * REDIS_URL are the bench's own. The container's CPU limit (a cgroup quota) is not reproduced.
 */
export function productionEnv(): Record<string, string> {
  const text = fs.readFileSync(DEPLOYMENT, 'utf8');
  for (const doc of parseAllDocuments(text)) {
    const value = doc.toJS() as {
      kind?: string;
      spec?: {
        template?: {
          spec?: { containers?: Array<{ name: string; env?: Array<{ name: string; value?: unknown }> }> };
        };
      };
    };
    const container = value?.spec?.template?.spec?.containers?.find((c) => c.name === 'fortary-authz');
    if (value?.kind !== 'Deployment' || container === undefined) continue;
    const env: Record<string, string> = {};
    for (const entry of container.env ?? []) {
      if (typeof entry.value === 'string' && !BENCH_OWNED.has(entry.name)) env[entry.name] = entry.value;
    }
    return env;
  }
  throw new Error(`no fortary-authz container in ${DEPLOYMENT}`);
}

/** `node dist/src/main.js` with the deployment's environment (productionEnv); addresses and Redis are the bench's. */
export async function startSidecar(
  redisUrl: string,
  options: { logFile?: string; env?: Record<string, string>; nodeArgs?: string[]; main?: string } = {},
): Promise<SidecarProcess> {
  const [grpcPort, healthPort, adminPort] = (await freePorts(3)) as [number, number, number];
  const stdout = options.logFile === undefined ? 'ignore' : fs.openSync(options.logFile, 'a');
  const stdio: StdioOptions = ['ignore', stdout, 'pipe'];
  const proc = track(
    spawn(
      process.execPath,
      [...(options.nodeArgs ?? []), options.main ?? path.join(ROOT, 'dist/src/main.js')],
      {
        cwd: ROOT,
        env: {
          PATH: process.env.PATH ?? '',
          NODE_ENV: 'production',
          ...productionEnv(),
          REDIS_URL: redisUrl,
          FORTARY_GRPC_ADDR: `127.0.0.1:${grpcPort}`,
          FORTARY_HEALTH_ADDR: `127.0.0.1:${healthPort}`,
          FORTARY_ADMIN_ADDR: `127.0.0.1:${adminPort}`,
          ...options.env,
        },
        stdio,
      },
    ),
  );
  if (typeof stdout === 'number') fs.closeSync(stdout);
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-20_000)));
  const sidecar: SidecarProcess = {
    proc,
    pid: proc.pid as number,
    grpcPort,
    healthPort,
    adminPort,
    grpcTarget: `127.0.0.1:${grpcPort}`,
    healthTarget: `127.0.0.1:${healthPort}`,
    stderr: () => err,
  };
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`sidecar exited (${proc.exitCode}): ${err}`);
    if ((await healthStatus(sidecar.healthTarget, '')) === 'SERVING') break;
    if (Date.now() > deadline) throw new Error(`sidecar not SERVING within 15 s: ${err}`);
    await sleep(100);
  }
  return sidecar;
}

export interface BaselineProcess {
  proc: ChildProcess;
  pid: number;
  port: number;
  target: string;
}

/**
 * A no-op server (`script`: baseline-server.js, grpc-js + proto-loader, or h2-floor-server.js, node:http2), with
 * the same NODE_OPTIONS as the sidecar so both run under the same V8 heap settings.
 */
export async function startBaseline(
  nodeOptions = '',
  script = 'baseline-server.js',
): Promise<BaselineProcess> {
  const proc = track(
    spawn(process.execPath, [path.join(ROOT, 'dist/bench', script), '127.0.0.1:0'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', NODE_ENV: 'production', NODE_OPTIONS: nodeOptions },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    let err = '';
    proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    proc.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n')[0];
      if (out.includes('\n') && line !== undefined) resolve((JSON.parse(line) as { port: number }).port);
    });
    proc.once('exit', (code) => reject(new Error(`baseline exited (${code}): ${err}`)));
  });
  return { proc, pid: proc.pid as number, port, target: `127.0.0.1:${port}` };
}

// ---------------------------------------------------------------------------------------------------------------
// Health, metrics, /proc.

interface HealthClient extends grpc.Client {
  Check(
    request: { service: string },
    options: grpc.CallOptions,
    callback: (error: grpc.ServiceError | null, reply?: { status: string }) => void,
  ): void;
}
let HealthCtor: (new (address: string, creds: grpc.ChannelCredentials) => HealthClient) | null = null;

export async function healthStatus(target: string, service: string, timeoutMs = 1000): Promise<string> {
  if (HealthCtor === null) {
    const definition = protoLoader.loadSync(healthProtoPath, {
      keepCase: true,
      enums: String,
      defaults: true,
    });
    const pkg = grpc.loadPackageDefinition(definition) as unknown as {
      grpc: { health: { v1: { Health: NonNullable<typeof HealthCtor> } } };
    };
    HealthCtor = pkg.grpc.health.v1.Health;
  }
  const client = new HealthCtor(target, grpc.credentials.createInsecure());
  try {
    return await new Promise<string>((resolve) =>
      client.Check({ service }, { deadline: Date.now() + timeoutMs }, (error, reply) =>
        resolve(error ? `error: ${error.message}` : (reply?.status ?? '?')),
      ),
    );
  } finally {
    client.close();
  }
}

/** Prometheus text -> series (name{labels} exactly as printed) -> value. */
export async function scrape(adminPort: number): Promise<Map<string, number>> {
  const text = await new Promise<string>((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: adminPort, path: '/metrics' }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
  const series = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    series.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return series;
}

/** Decisions by reason between two scrapes (only reasons that moved). */
export function decisionDelta(
  before: Map<string, number>,
  after: Map<string, number>,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, value] of after) {
    const match = /^fortary_authz_decisions_total\{outcome="(\w+)",reason="(\w+)"\}$/.exec(name);
    if (match === null) continue;
    const delta = value - (before.get(name) ?? 0);
    if (delta !== 0) out[match[2] as string] = delta;
  }
  return out;
}

export function seriesDelta(before: Map<string, number>, after: Map<string, number>, name: string): number {
  return (after.get(name) ?? 0) - (before.get(name) ?? 0);
}

/**
 * The upper bound of the histogram bucket holding quantile `q` of the observations between two scrapes, for one
 * outcome of the sidecar's `fortary_authz_check_duration_seconds` (decoded request to answer), in ms. Infinity
 * when the quantile is past the last bucket; NaN with no observations.
 */
export function ownTimeQuantileMs(
  before: Map<string, number>,
  after: Map<string, number>,
  outcome: 'allow' | 'deny' | 'error',
  q: number,
): number {
  const buckets: Array<{ le: number; count: number }> = [];
  for (const name of after.keys()) {
    const match = /^fortary_authz_check_duration_seconds_bucket\{(.*)\}$/.exec(name);
    if (match === null || !(match[1] as string).includes(`outcome="${outcome}"`)) continue;
    const le = /le="([^"]+)"/.exec(match[1] as string)?.[1];
    if (le === undefined) continue;
    buckets.push({
      le: le === '+Inf' ? Infinity : Number(le) * 1000,
      count: seriesDelta(before, after, name),
    });
  }
  buckets.sort((a, b) => a.le - b.le);
  const total = buckets.at(-1)?.count ?? 0;
  if (total === 0) return NaN;
  return buckets.find((b) => b.count >= q * total)?.le ?? Infinity;
}

/** VmRSS and VmHWM (peak RSS) in MiB. */
export function memoryOf(pid: number): { rssMiB: number; peakMiB: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssMiB: kb('VmRSS') / 1024, peakMiB: kb('VmHWM') / 1024 };
}

const CLOCK_TICKS = (() => {
  const result = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const value = Number(result.stdout?.trim());
  return Number.isFinite(value) && value > 0 ? value : 100;
})();

/** CPU seconds (user + system, all threads) a process has used. */
export function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields after the command: state is index 0, utime is field 14 of the line (index 11 here), stime 15 (12).
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

// ---------------------------------------------------------------------------------------------------------------
// h2load.

export interface H2loadResult {
  requests: number;
  succeeded: number;
  failed: number;
  errored: number;
  timeout: number;
  status2xx: number;
  seconds: number;
  rps: number;
  /** Mean request time in ms as h2load reports it. */
  meanMs: number;
  raw: string;
}

export function ensureH2load(): string {
  const which = spawnSync('sh', ['-c', 'command -v h2load'], { encoding: 'utf8' });
  if (which.status === 0 && which.stdout.trim() !== '') return which.stdout.trim();
  process.stderr.write('bench: h2load missing, installing nghttp2-client\n');
  const sudo = process.getuid?.() === 0 ? [] : ['sudo'];
  const install = spawnSync(
    sudo.length > 0 ? 'sudo' : 'apt-get',
    [...(sudo.length > 0 ? ['apt-get'] : []), 'install', '-y', 'nghttp2-client'],
    {
      stdio: 'inherit',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    },
  );
  const again = spawnSync('sh', ['-c', 'command -v h2load'], { encoding: 'utf8' });
  if (install.status !== 0 || again.status !== 0)
    throw new Error('h2load is missing and could not be installed');
  return again.stdout.trim();
}

export async function h2load(
  target: string,
  bodyFile: string,
  options: { requests: number; connections: number; streams: number; threads: number },
): Promise<H2loadResult> {
  const args = [
    `http://${target}/envoy.service.auth.v3.Authorization/Check`,
    '-d',
    bodyFile,
    '-H',
    'content-type: application/grpc',
    '-H',
    'te: trailers',
    '-c',
    String(options.connections),
    '-m',
    String(options.streams),
    '-t',
    String(options.threads),
    '-n',
    String(options.requests),
  ];
  const proc = track(spawn('h2load', args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => proc.once('exit', (c) => resolve(c)));
  if (code !== 0) throw new Error(`h2load exited ${code}: ${out}`);
  return parseH2load(out);
}

export function parseH2load(out: string): H2loadResult {
  const finished = /finished in ([\d.]+)(m?s), ([\d.]+) req\/s/.exec(out);
  const requests =
    /requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(
      out,
    );
  const codes = /status codes: (\d+) 2xx/.exec(out);
  const time = /time for request:\s+[\d.]+\w+\s+[\d.]+\w+\s+([\d.]+)(us|ms|s)/.exec(out);
  if (finished === null || requests === null || codes === null)
    throw new Error(`cannot parse h2load output:\n${out}`);
  const unit = (value: string, u: string) => Number(value) * (u === 'us' ? 1e-3 : u === 'ms' ? 1 : 1000);
  return {
    requests: Number(requests[1]),
    succeeded: Number(requests[2]),
    failed: Number(requests[3]),
    errored: Number(requests[4]),
    timeout: Number(requests[5]),
    status2xx: Number(codes[1]),
    seconds: unit(finished[1] as string, finished[2] as string) / 1000,
    rps: Number(finished[3]),
    meanMs: time === null ? NaN : unit(time[1] as string, time[2] as string),
    raw: out,
  };
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}
