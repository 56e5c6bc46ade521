/**
 * The bench's report: options from the environment, the machine it ran on, rows per section with their targets,
 * every verification line, and the printed table (bench/README.md shows one).
 */
import { execSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { LatencySummary } from './paced-types';

export const ALL_SCENARIOS = ['throughput', 'latency', 'cold', 'reject', 'flood', 'memory'] as const;
export type Scenario = (typeof ALL_SCENARIOS)[number];

export interface Row {
  metric: string;
  value: string;
  target?: string;
  ok?: boolean;
}

export interface Report {
  machine: Record<string, unknown>;
  startedAt: string;
  options: Record<string, unknown>;
  scenarios: Record<string, unknown>;
  verification: string[];
  rows: Array<Row & { section: string }>;
}

export const log = (message: string) => process.stderr.write(`bench: ${message}\n`);
export function parseOptions() {
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
export type BenchOptions = ReturnType<typeof parseOptions>;

export function machine(): Record<string, unknown> {
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
export function systemJiffies(): { busy: number; total: number } {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0] as string;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: total - idle, total };
}
export const ms = (x: number) => (Number.isFinite(x) ? `${x < 10 ? x.toFixed(3) : x.toFixed(1)} ms` : 'n/a');
export const pct = (s: LatencySummary) =>
  `p50 ${ms(s.p50)}  p99 ${ms(s.p99)}  p99.9 ${ms(s.p999)}  max ${ms(s.max)}`;
export const count = (n: number) => Math.round(n).toLocaleString('en-US');

export class Bench {
  readonly report: Report;
  private section = '';

  constructor(
    readonly options: BenchOptions,
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

export function printReport(report: Report): void {
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
