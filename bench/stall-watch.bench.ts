/**
 * What the stall test (freshness.ts: one clock comparison per Check) costs on the warm path, measured against
 * another build of the sidecar in the same process: the two are alternated round by round, so machine noise hits
 * both alike, and the median ratio is reported. Not a test.
 *
 *   git archive <base> | tar -x -C /tmp/base && ln -s $PWD/node_modules /tmp/base/ && (cd /tmp/base && npx tsc -p tsconfig.build.json)
 *   npx tsc -p tsconfig.build.json && node dist/bench/stall-watch.bench.js /tmp/base
 */
import fs from 'node:fs';
import path from 'node:path';
import bcrypt from 'bcrypt';
import type { RecordStore } from '../src/app/ports';
import { decodeCheckRequest } from '../src/adapters/grpc/check-request-decoder';
import { serializeKeyRecord, serializeUserRecord } from '../src/core/records';
import { formatToken } from '../src/core/token';
import { createLogger } from '../src/observability/logger';
import { Metrics } from '../src/observability/metrics';
import { BENCH_VAULT, checkRequestBytes, randomBase62 } from './envoy-request';

type Handler = (bytes: Buffer, call: { reply(value: Buffer): void; fail(error: unknown): void }) => void;
interface Variant {
  name: string;
  check: () => unknown;
  handler: () => unknown;
}

const ROUNDS = 30;
const ITERATIONS = 100_000;
let sink: unknown;

/** Builds the warm CheckService and the Check handler (decision logs off) from the build rooted at `dist`. */
async function variant(name: string, dist: string, store: RecordStore, bytes: Buffer): Promise<Variant> {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { inMemoryCheckService } = require(path.join(dist, 'bench/in-memory-service.js'));
  const { createCheckHandler } = require(path.join(dist, 'src/adapters/grpc/authz-handler.js'));
  /* eslint-enable @typescript-eslint/no-require-imports */
  const { service } = await inMemoryCheckService(store, (t: string, h: string) => bcrypt.compare(t, h), {
    maxKeys: 1000,
  });
  const req = decodeCheckRequest(bytes);
  if (!(await service.check(req)).allow) throw new Error(`${name}: not allowed`);
  const devNull = fs.openSync('/dev/null', 'w');
  const logger = createLogger('warn', { write: (s: string) => fs.writeSync(devNull, s) });
  const handle: Handler = createCheckHandler(service, logger, new Metrics(), () => undefined);
  const call = { reply: (value: Buffer) => (sink = value), fail: () => undefined };
  return { name, check: () => service.check(req), handler: () => handle(bytes, call) };
}

function run(fn: () => unknown): number {
  const start = process.hrtime.bigint();
  for (let i = 0; i < ITERATIONS; i++) sink = fn();
  return Number(process.hrtime.bigint() - start) / ITERATIONS;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

function compare(label: string, base: () => unknown, next: () => unknown): void {
  for (let i = 0; i < 5; i++) run(i % 2 === 0 ? base : next);
  const a: number[] = [];
  const b: number[] = [];
  const ratios: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate which goes first, so neither always inherits the other's cache state.
    let p: number;
    let q: number;
    if (round % 2 === 0) {
      p = run(base);
      q = run(next);
    } else {
      q = run(next);
      p = run(base);
    }
    a.push(p);
    b.push(q);
    ratios.push(q / p);
  }
  console.log(
    `${label.padEnd(44)} base ${median(a).toFixed(0).padStart(5)} ns  new ${median(b).toFixed(0).padStart(5)} ns  ` +
      `median ratio ${median(ratios).toFixed(3)} (${ROUNDS} alternated rounds of ${ITERATIONS})`,
  );
}

async function main(): Promise<void> {
  const baseRoot = process.argv[2];
  if (baseRoot === undefined) throw new Error('usage: node dist/bench/stall-watch.bench.js <base checkout>');
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
  const bytes = checkRequestBytes({ authorization: `Bearer ${token}` });
  const base = await variant('base', path.resolve(baseRoot, 'dist'), store, bytes);
  const next = await variant('new', path.resolve(__dirname, '..'), store, bytes);
  compare('CheckService.check (warm)', base.check, next.check);
  compare('handler: decode + check + encode + metrics', base.handler, next.handler);
  if (sink === undefined) console.log('');
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
