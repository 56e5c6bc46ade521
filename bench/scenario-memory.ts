/**
 * The memory scenario (opt-in): 100,000 keys, each used once then again, in a fresh sidecar; RSS at each step.
 */
import type Redis from 'ioredis';
import { memoryOf, scrape, seriesDelta, sleep, startSidecar, stopChild } from './bench-support';
import { presentOnce } from './bench-client';
import { count, log, type Bench } from './bench-report';
import { seedMany } from './seed';

export async function memory(bench: Bench, redisUrl: string, admin: Redis): Promise<void> {
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
