/**
 * What the stall test (freshness.ts: one clock comparison per Check) costs on the warm path, measured against
 * another build of the sidecar in the same process: the warm CheckService.check, and the whole Check handler
 * (decode, check, encode, metrics; decision logs off) as its transport calls it. Issue 11 holds it to 3 %. Not a
 * test. The base is a checkout built beside this one, any commit from before the guard on:
 *
 *   git archive <base> | tar -x -C /tmp/base && ln -s $PWD/node_modules /tmp/base/ && (cd /tmp/base && npx tsc -p tsconfig.build.json)
 *   npx tsc -p tsconfig.build.json && node dist/bench/stall-watch.bench.js /tmp/base                 # CPU time
 *   node dist/bench/stall-watch.bench.js --instructions /tmp/base                                      # callgrind
 *   node dist/bench/stall-watch.bench.js --instructions /tmp/base /tmp/other                           # two others
 */
import fs from 'node:fs';
import path from 'node:path';
import { checkResponseCode } from './paced-summary';
import { runMicroBench, warmFixture, warmUpCheck, type Contender, type WarmFixture } from './micro';

const BUDGET = 1.03;

/** The modules of a build this bench uses, as loose as both transports' builds allow. */
interface BuildModules {
  inMemoryCheckService(
    store: WarmFixture['store'],
    compare: WarmFixture['compare'],
    options: { maxKeys: number },
  ): Promise<{ service: { check(req: unknown): unknown } }>;
  decodeCheckRequest(bytes: Buffer): unknown;
  /** Only in grpc-js builds: the Check method's deserializer. */
  deserializeCheckRequest?: (bytes: Buffer) => unknown;
  createCheckHandler(
    service: unknown,
    logger: unknown,
    metrics: unknown,
    onMalformed: () => void,
  ): (first: unknown, second: unknown) => void;
  createLogger(level: string, destination: { write(line: string): void }): unknown;
  Metrics: new () => unknown;
  formatToken(keyId: string, secret: string): string;
}

function loadModules(dist: string): BuildModules {
  const load = (file: string): Record<string, unknown> =>
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    require(path.join(dist, file)) as Record<string, unknown>;
  return Object.assign(
    {},
    load('bench/in-memory-service.js'),
    load('src/adapters/grpc/check-request-decoder.js'),
    load('src/adapters/grpc/service-definition.js'),
    load('src/adapters/grpc/authz-handler.js'),
    load('src/observability/logger.js'),
    load('src/observability/metrics.js'),
    load('src/core/token.js'),
  ) as unknown as BuildModules;
}

/**
 * One build's warm Check and its handler, called the way that build's transport calls it (the per-variant
 * adapter): grpc-js builds (from 277d98a on) take `(call, reply)` after the method's deserializer decoded the
 * bytes, which grpc-js runs per call, so it is inside the timed op; the hand-written node:http2 builds before them
 * take `(bytes, call)` and decode inside. Each build uses its own decoder, logger and metrics.
 */
async function loadBuild(
  name: string,
  dist: string,
  fixture: WarmFixture,
): Promise<{ check: Contender; handler: Contender }> {
  const m = loadModules(dist);
  // The fixture made its token with this checkout's formatToken, so that build's checksum code (inlined into the
  // Check's token parsing) has also seen a concatenated string: ~1 % more instructions per Check than an identical
  // build that has not. Each build makes the token once, so both have.
  if (m.formatToken(fixture.keyId, fixture.secret) !== fixture.token)
    throw new Error(`${name}: another token format`);
  const { service } = await m.inMemoryCheckService(fixture.store, fixture.compare, { maxKeys: 1000 });
  const req = m.decodeCheckRequest(fixture.bytes);
  const check = () => service.check(req);
  await warmUpCheck(name, check);

  const devNull = fs.openSync('/dev/null', 'w');
  const logger = m.createLogger('warn', { write: (line) => fs.writeSync(devNull, line) });
  const handler = m.createCheckHandler(service, logger, new m.Metrics(), () => undefined);
  let answer: unknown;
  const bytes = fixture.bytes;
  const deserialize = m.deserializeCheckRequest;
  let handle: () => unknown;
  if (deserialize !== undefined) {
    const reply = (error: unknown, value: unknown) => (answer = error ?? value);
    handle = () => handler({ request: deserialize(bytes) }, reply);
  } else {
    const call = { reply: (value: unknown) => (answer = value), fail: (code: unknown) => (answer = code) };
    handle = () => handler(bytes, call);
  }
  handle();
  if (!Buffer.isBuffer(answer) || checkResponseCode(answer) !== 0) {
    throw new Error(`${name}: the handler did not answer an allow: ${String(answer)}`);
  }
  return { check: { name, op: check }, handler: { name, op: handle } };
}

runMicroBench(async (bench, argv) => {
  // Which build is loaded first shifts the counts by about 1 % even between identical builds (README): run both.
  const reverse = argv.includes('--reverse');
  const args = argv.filter((a) => a !== '--reverse');
  const baseRoot = args[0];
  if (baseRoot === undefined) {
    throw new Error(
      'usage: node dist/bench/stall-watch.bench.js [--instructions|--wall] [--reverse] <base checkout> [<checkout to compare>]',
    );
  }
  // A second checkout to measure instead of this one: any two builds can be compared (bisecting a cost).
  const nextRoot = args[1] === undefined ? path.resolve(__dirname, '../..') : path.resolve(args[1]);
  const fixture = await warmFixture();
  const loadBase = () => loadBuild('base', path.resolve(baseRoot, 'dist'), fixture);
  const loadNext = () => loadBuild('this', path.join(nextRoot, 'dist'), fixture);
  let base: Awaited<ReturnType<typeof loadBase>>;
  let next: Awaited<ReturnType<typeof loadNext>>;
  if (reverse) {
    next = await loadNext();
    base = await loadBase();
  } else {
    base = await loadBase();
    next = await loadNext();
  }
  console.log(
    `base: ${path.resolve(baseRoot)}; this: ${nextRoot}; loaded first: ${reverse ? 'this' : 'base'}`,
  );
  const verdict = (ratio: number) => (ratio <= BUDGET ? `within ${BUDGET}` : `OVER ${BUDGET}`);
  const check = bench.compare('CheckService.check (warm)', base.check, next.check, {
    rounds: 31,
    perRound: 20_000,
  });
  console.log(`  ${verdict(check.ratio)}`);
  const handler = bench.compare(
    'Check handler: decode + check + encode + metrics',
    base.handler,
    next.handler,
    {
      rounds: 31,
      perRound: 10_000,
    },
  );
  console.log(`  ${verdict(handler.ratio)}`);
});
