/**
 * What the in-process micro-benchmarks (check-path, stall-watch, last-used) share: the warm fixture (one key and
 * its owner in an in-memory store, its token, the CheckRequest Envoy sends with it), the checks that a loop really
 * runs the warm path, the meters, and the paired comparison of two ways of answering one Check.
 *
 * A paired comparison alternates the two contenders round by round (which one goes first alternates too, so neither
 * always inherits the other's garbage or cache state) and reports the median of the per-round ratios. Each round is
 * metered one of three ways, chosen on the command line (bench/README.md, "In-process micro-benchmarks"):
 *   (default)        this process's CPU time, all threads (process.cpuUsage): other processes' load is not
 *                    counted, its effect on caches and clock speed is (rounds scatter by ±10 % on a busy 2-core VM);
 *   --wall           elapsed time (hrtime);
 *   --instructions   the bench re-runs itself under valgrind's callgrind, which counts the instructions each round
 *                    executed (all threads, GC included). Repeatable to a few in 10^5 once V8 has compiled the loop,
 *                    whatever else the machine does; but instructions, not time (cache misses do not show).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import bcrypt from 'bcrypt';
import type { RecordStore, SecretCompare } from '../src/app/ports';
import { serializeUserRecord } from '../src/core/records';
import { formatToken } from '../src/core/token';
import { BENCH_VAULT, checkRequestBytes, randomBase62 } from './envoy-request';
import { keyRecord as benchKeyRecord } from './seed';

// ---------------------------------------------------------------------------------------------------------------
// The warm fixture and its checks.

export interface WarmFixture {
  keyId: string;
  userId: string;
  /** The token's secret part: formatToken(keyId, secret) is the token. */
  secret: string;
  token: string;
  /** The key's bcrypt hash (cost 4: only the first Check pays it). */
  secretHash: string;
  keyRecord: string;
  userRecord: string;
  /** Serves the key and its owner, never revoked, sequence 1. */
  store: RecordStore;
  compare: SecretCompare;
  /** The CheckRequest Envoy sends for a read of the key's vault with the token (envoy-request.ts). */
  bytes: Buffer;
}

export async function warmFixture(): Promise<WarmFixture> {
  const userId = 'bench-user';
  const keyId = randomBase62(12);
  const secret = randomBase62(43);
  const token = formatToken(keyId, secret);
  const secretHash = await bcrypt.hash(token, 4);
  const keyRecord = benchKeyRecord(keyId, userId, secretHash);
  const userRecord = serializeUserRecord({
    id: userId,
    active: true,
    developerVaults: [BENCH_VAULT],
    updatedAt: Date.now(),
  });
  return {
    keyId,
    userId,
    secret,
    token,
    secretHash,
    keyRecord,
    userRecord,
    store: {
      getKey: async () => ({ record: keyRecord, revokedAt: null }),
      getUser: async () => userRecord,
      getSequence: async () => 1,
    },
    compare: (t, h) => bcrypt.compare(t, h),
    bytes: checkRequestBytes({ authorization: `Bearer ${token}` }),
  };
}

/** Throws unless `decision` is an allow answered synchronously: a cache hit with a verified digest. */
export function assertWarmAllow(label: string, decision: unknown): void {
  if (decision instanceof Promise) {
    throw new Error(`${label}: the Check did not answer synchronously, so it is not the warm path`);
  }
  if ((decision as { allow?: unknown } | null)?.allow !== true) {
    throw new Error(`${label}: not allowed: ${JSON.stringify(decision)}`);
  }
}

/** Runs `check` until it is warm (the first call reads the store and runs bcrypt), then asserts it is. */
export async function warmUpCheck(label: string, check: () => unknown): Promise<void> {
  await check();
  assertWarmAllow(label, check());
}

// ---------------------------------------------------------------------------------------------------------------
// Meters.

/** The measured loop: `n` calls of `op`. */
export type Loop = (op: () => unknown, n: number) => unknown;

/**
 * A loop of its own for each contender, so its call site only ever sees that contender: V8 inlines it as it would
 * in the server, rather than dispatching between the two (a shared loop's feedback would mix them).
 */
export function newLoop(): Loop {
  return new Function('op', 'n', 'let last; for (let i = 0; i < n; i++) last = op(); return last;') as Loop;
}

export interface Meter {
  readonly name: string;
  readonly unit: string;
  /** Rounds are repeatable: a few suffice. */
  readonly exact: boolean;
  /** The cost of one op, from one run of `loop` over `n` ops. */
  perOp(loop: Loop, op: () => unknown, n: number): number;
}

let sink: unknown;

const cpuMeter: Meter = {
  name: 'CPU time of this process',
  unit: 'ns',
  exact: false,
  perOp(loop, op, n) {
    const start = process.cpuUsage();
    sink = loop(op, n);
    const used = process.cpuUsage(start);
    return ((used.user + used.system) * 1000) / n;
  },
};

const wallMeter: Meter = {
  name: 'elapsed time',
  unit: 'ns',
  exact: false,
  perOp(loop, op, n) {
    const start = process.hrtime.bigint();
    sink = loop(op, n);
    return Number(process.hrtime.bigint() - start) / n;
  },
};

/**
 * Under callgrind (started by runMicroBench with --zero-before and --dump-before on these two libuv functions, which
 * nothing else in a bench calls): os.loadavg() zeroes the counts, os.uptime() writes what was executed since to the
 * next numbered dump file, before it returns. The markers themselves add about 7,000 instructions to a segment
 * (measured with an empty loop), under 0.01 % of a round: not subtracted.
 */
const ZERO_MARK = 'uv_loadavg';
const DUMP_MARK = 'uv_uptime';
const CALLGRIND_DIR_ENV = 'FORTARY_BENCH_CALLGRIND_DIR';
/** BENCH_CALLGRIND_KEEP=1 keeps each segment's dump (cg.out.N, in order) for callgrind_annotate. */
const KEEP_DUMPS = process.env.BENCH_CALLGRIND_KEEP === '1';

class InstructionMeter implements Meter {
  readonly name = 'instructions executed (callgrind)';
  readonly unit = 'instr';
  readonly exact = true;
  private dumps = 0;

  constructor(private readonly dir: string) {}

  perOp(loop: Loop, op: () => unknown, n: number): number {
    return this.segment(() => (sink = loop(op, n))) / n;
  }

  private segment(fn: () => void): number {
    os.loadavg();
    fn();
    os.uptime();
    const part = ++this.dumps;
    const file = path.join(this.dir, `cg.out.${part}`);
    const text = fs.readFileSync(file, 'utf8');
    if (!KEEP_DUMPS) fs.rmSync(file);
    const summary = /^summary: (\d+)$/m.exec(text);
    if (!text.includes(`desc: Trigger: --dump-before=${DUMP_MARK}`) || summary === null) {
      throw new Error(`${file} is not a dump of the measured loop`);
    }
    if (fs.existsSync(path.join(this.dir, `cg.out.${part + 1}`))) {
      throw new Error(
        `something other than the meter called ${DUMP_MARK}: the dumps no longer match the loops`,
      );
    }
    return Number(summary[1]);
  }
}

function meterFor(args: Set<string>): Meter {
  const dir = process.env[CALLGRIND_DIR_ENV];
  if (dir !== undefined) return new InstructionMeter(dir);
  return args.has('--wall') ? wallMeter : cpuMeter;
}

// ---------------------------------------------------------------------------------------------------------------
// Measuring.

export interface Contender {
  name: string;
  op: () => unknown;
}

export interface PairOptions {
  /** Rounds with a time meter; an instruction count needs fewer (EXACT_ROUNDS). */
  rounds: number;
  perRound: number;
}

export interface PairResult {
  /** Time meters: each contender's median round; instructions: its fewest (see compare). */
  base: number;
  next: number;
  /** Time meters: the median of the per-round ratios next / base; instructions: next / base of the above. */
  ratio: number;
}

const EXACT_ROUNDS = 9;
const WARMUP_ROUNDS = 5;

const sorted = (values: number[]) => [...values].sort((a, b) => a - b);
const quantile = (values: number[], q: number) =>
  sorted(values)[Math.floor((values.length - 1) * q)] as number;
const median = (values: number[]) => quantile(values, 0.5);
const fmt = (value: number, unit: string) => `${value.toFixed(unit === 'ns' ? 0 : 1)} ${unit}`;

export class MicroBench {
  constructor(readonly meter: Meter) {}

  /**
   * The cost of one call of `op`: best of 5 runs of `n` with a time meter, median of 3 runs of n / 10 when counting
   * instructions.
   */
  measure(label: string, op: () => unknown, n: number): number {
    const loop = newLoop();
    const ops = this.meter.exact ? Math.ceil(n / 10) : n;
    for (let i = 0; i < WARMUP_ROUNDS; i++) this.meter.perOp(loop, op, Math.ceil(n / 10));
    const runs = Array.from({ length: this.meter.exact ? 3 : 5 }, () => this.meter.perOp(loop, op, ops));
    const cost = this.meter.exact ? median(runs) : Math.min(...runs);
    console.log(`${label.padEnd(60)} ${fmt(cost, this.meter.unit).padStart(12)}/op`);
    return cost;
  }

  /** Alternates `base` and `next`, prints and returns their costs and the ratio. */
  compare(label: string, base: Contender, next: Contender, options: PairOptions): PairResult {
    // Under callgrind everything runs ~50x slower: fewer, shorter rounds, still long enough to hold several
    // scavenges each. Counts repeat exactly but for the rounds a mark-compact falls into (a few % more), and which
    // rounds those are differs between the contenders: the ratio of each one's fewest compares like with like.
    const rounds = this.meter.exact ? Math.min(options.rounds, EXACT_ROUNDS) : options.rounds;
    const perRound = this.meter.exact ? Math.ceil(options.perRound / 4) : options.perRound;
    const baseLoop = newLoop();
    const nextLoop = newLoop();
    for (let i = 0; i < WARMUP_ROUNDS; i++) {
      this.meter.perOp(baseLoop, base.op, perRound);
      this.meter.perOp(nextLoop, next.op, perRound);
    }
    const a: number[] = [];
    const b: number[] = [];
    const ratios: number[] = [];
    for (let round = 0; round < rounds; round++) {
      let p: number;
      let q: number;
      if (round % 2 === 0) {
        p = this.meter.perOp(baseLoop, base.op, perRound);
        q = this.meter.perOp(nextLoop, next.op, perRound);
      } else {
        q = this.meter.perOp(nextLoop, next.op, perRound);
        p = this.meter.perOp(baseLoop, base.op, perRound);
      }
      a.push(p);
      b.push(q);
      ratios.push(q / p);
    }
    const exact = this.meter.exact;
    const result = exact
      ? { base: Math.min(...a), next: Math.min(...b), ratio: Math.min(...b) / Math.min(...a) }
      : { base: median(a), next: median(b), ratio: median(ratios) };
    const unit = this.meter.unit;
    const spread = (values: number[]) =>
      `${fmt(Math.min(...values), unit)}-${fmt(Math.max(...values), unit)}`.replace(` ${unit}-`, '-');
    const sum = (values: number[]) => values.reduce((x, y) => x + y, 0);
    console.log(label);
    console.log(`  ${base.name.padEnd(10)} ${fmt(result.base, unit).padStart(12)}/op  (rounds ${spread(a)})`);
    console.log(`  ${next.name.padEnd(10)} ${fmt(result.next, unit).padStart(12)}/op  (rounds ${spread(b)})`);
    const ratioName = `ratio ${next.name}/${base.name}`;
    console.log(
      exact
        ? `  ${ratioName} ${result.ratio.toFixed(4)} (fewest of ${rounds} alternated rounds of ${perRound} each; ` +
            `of all rounds, mark-compacts included: ${(sum(b) / sum(a)).toFixed(4)})`
        : `  ${ratioName} ${result.ratio.toFixed(4)} (median of ${rounds} alternated rounds of ${perRound}; ` +
            `interquartile ${quantile(ratios, 0.25).toFixed(4)}-${quantile(ratios, 0.75).toFixed(4)})`,
    );
    return result;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Running.

const METER_FLAGS = new Set(['--instructions', '--wall']);

/**
 * Runs a micro-benchmark's `main` with the meter its command line asks for and the other arguments; exits 0, or 1
 * with the error. With --instructions it runs the same command under callgrind instead and exits with its status.
 */
export function runMicroBench(main: (bench: MicroBench, args: string[]) => Promise<void>): void {
  const argv = process.argv.slice(2);
  const flags = new Set(argv.filter((a) => METER_FLAGS.has(a)));
  const args = argv.filter((a) => !METER_FLAGS.has(a));
  if (flags.has('--instructions') && process.env[CALLGRIND_DIR_ENV] === undefined) {
    process.exit(runUnderCallgrind(argv));
  }
  const bench = new MicroBench(meterFor(flags));
  console.log(`metered by: ${bench.meter.name}`);
  main(bench, args).then(
    () => {
      if (sink === undefined) console.log('');
      process.exit(0);
    },
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}

/** This bench's command again, under callgrind with the meter's markers; returns its exit status. */
function runUnderCallgrind(argv: string[]): number {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fortary-callgrind-'));
  const log = path.join(dir, 'valgrind.log');
  try {
    const result = spawnSync(
      'valgrind',
      [
        '--tool=callgrind',
        // V8 writes and rewrites machine code at run time: without this valgrind runs stale translations.
        '--smc-check=all-non-file',
        `--zero-before=${ZERO_MARK}`,
        `--dump-before=${DUMP_MARK}`,
        `--callgrind-out-file=${path.join(dir, 'cg.out')}`,
        `--log-file=${log}`,
        process.execPath,
        ...process.execArgv,
        process.argv[1] as string,
        ...argv,
      ],
      { stdio: 'inherit', env: { ...process.env, [CALLGRIND_DIR_ENV]: dir } },
    );
    if (result.error !== undefined) {
      throw new Error(`could not run valgrind (apt-get install valgrind): ${result.error.message}`);
    }
    if (result.status !== 0 && fs.existsSync(log)) process.stderr.write(fs.readFileSync(log, 'utf8'));
    return result.status ?? 1;
  } finally {
    if (KEEP_DUMPS) console.log(`callgrind dumps kept in ${dir}`);
    else fs.rmSync(dir, { recursive: true, force: true });
  }
}
