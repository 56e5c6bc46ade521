/**
 * Revocation propagation latency (not a test): how long after `FCALL fortary_revoke` returns to the caller does a
 * client polling the sidecar see the key denied?
 *
 * For each revocation, one client per sidecar checks the key in a tight loop (one call at a time, the next as soon
 * as the previous answers); the revoke is issued while they poll, and each client records when its first denial
 * arrived, measured from the moment the revoke's reply arrived. The figure therefore includes one Check round trip
 * of polling resolution (reported too). Run with one and with several sidecar processes subscribed to one Redis.
 *
 *   npx tsc -p tsconfig.build.json && node dist/bench/propagation.js
 *
 * PROPAGATION_REVOCATIONS (default 200) per configuration, PROPAGATION_SIDECARS (default "1,3"). It starts its own
 * redis-server on a free port and the built sidecars (node dist/src/main.js, the deployment's environment), and
 * stops every process it started.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type Redis from 'ioredis';
import { ROOT, scrape, sleep, startSidecar, stopChild, type SidecarProcess } from './bench-support';
import { checkRequestBytes } from './envoy-request';
import { CheckChannel, percentile, runBench, withBenchRedis } from './revocation-support';
import { createKeys, putUser, type BenchKey } from './seed';

/** A channel of its own per sidecar client (no shared subchannel pool), like separate Envoys. */
const pollerOf = (target: string) => new CheckChannel(target, { 'grpc.use_local_subchannel_pool': 1 });

interface Sample {
  /** ms from the revoke's reply to each sidecar's first denial, in sidecar order. */
  perSidecar: number[];
  /** Round trip of the call that saw the denial, per sidecar. */
  rtt: number[];
  receivers: number;
}

/**
 * Polls `bytes` on every poller until each sees a denial, revoking once they are all polling. A denial seen
 * before the revoke's reply arrived (the event can beat the reply to the client) counts as 0 ms.
 */
async function revokeWhilePolling(redis: Redis, pollers: CheckChannel[], key: BenchKey): Promise<Sample> {
  const bytes = checkRequestBytes({ authorization: `Bearer ${key.token}` });
  let revokeIssued = false;
  let polling = 0;
  const loops = pollers.map(async (poller) => {
    let first = true;
    for (;;) {
      const sent = performance.now();
      const { code, at: received } = await poller.check(bytes);
      if (first) {
        first = false;
        polling++;
      }
      if (code === 0) continue;
      if (!revokeIssued) throw new Error(`key ${key.keyId} denied (code ${code}) before its revocation`);
      return { received, rtt: received - sent };
    }
  });
  while (polling < pollers.length) await sleep(1);
  await sleep(2);
  revokeIssued = true;
  const receivers = (await redis.call('FCALL', 'fortary_revoke', '1', key.keyId)) as number;
  const revokedAt = performance.now();
  const results = await Promise.all(loops);
  return {
    perSidecar: results.map((r) => Math.max(0, r.received - revokedAt)),
    rtt: results.map((r) => r.rtt),
    receivers,
  };
}

interface Row {
  sidecars: number;
  revocations: number;
  samples: number;
  p50: number;
  p99: number;
  max: number;
  allP50: number;
  allP99: number;
  rttP50: number;
  over100: number;
  receivers: string;
  eventLagP99: string;
}

/** The sidecars' own view: share of events applied within 1 ms of Redis' `at` (histogram delta). */
async function eventLag(sidecars: SidecarProcess[], before: Array<Map<string, number>>): Promise<string> {
  let within1ms = 0;
  let within5ms = 0;
  let count = 0;
  for (const [i, sidecar] of sidecars.entries()) {
    const after = await scrape(sidecar.adminPort);
    const delta = (name: string) =>
      (after.get(name) ?? 0) - ((before[i] as Map<string, number>).get(name) ?? 0);
    within1ms += delta('fortary_authz_event_propagation_seconds_bucket{le="0.001"}');
    within5ms += delta('fortary_authz_event_propagation_seconds_bucket{le="0.005"}');
    count += delta('fortary_authz_event_propagation_seconds_count');
  }
  return count === 0
    ? 'n/a'
    : `${((100 * within1ms) / count).toFixed(1)}% ≤1ms, ${((100 * within5ms) / count).toFixed(1)}% ≤5ms`;
}

async function run(redis: Redis, redisUrl: string, sidecarCount: number, revocations: number): Promise<Row> {
  const userId = `bench-propagation-${sidecarCount}`;
  await putUser(redis, userId);
  // Cost 4: the hash cost does not change propagation, and every key is verified once per sidecar to warm up.
  const keys = await createKeys(redis, userId, revocations, 4);
  const sidecars: SidecarProcess[] = [];
  const pollers: CheckChannel[] = [];
  try {
    for (let i = 0; i < sidecarCount; i++) {
      const sidecar = await startSidecar(redisUrl);
      sidecars.push(sidecar);
      pollers.push(pollerOf(sidecar.grpcTarget));
    }
    // Warm-up: every key verified and cached by every sidecar, so each revocation hits a cached, allowed key.
    for (const key of keys) {
      const bytes = checkRequestBytes({ authorization: `Bearer ${key.token}` });
      for (const poller of pollers) {
        const { code } = await poller.check(bytes);
        if (code !== 0) throw new Error(`warm-up: key ${key.keyId} answered ${code}`);
      }
    }
    const before = await Promise.all(sidecars.map((s) => scrape(s.adminPort)));
    const samples: Sample[] = [];
    for (const key of keys) samples.push(await revokeWhilePolling(redis, pollers, key));

    const all = samples.flatMap((s) => s.perSidecar).sort((a, b) => a - b);
    const slowest = samples.map((s) => Math.max(...s.perSidecar)).sort((a, b) => a - b);
    const rtts = samples.flatMap((s) => s.rtt).sort((a, b) => a - b);
    const receivers = [...new Set(samples.map((s) => s.receivers))].join('/');
    return {
      sidecars: sidecarCount,
      revocations,
      samples: all.length,
      p50: percentile(all, 50),
      p99: percentile(all, 99),
      max: all[all.length - 1] as number,
      allP50: percentile(slowest, 50),
      allP99: percentile(slowest, 99),
      rttP50: percentile(rtts, 50),
      over100: all.filter((v) => v > 100).length,
      receivers,
      eventLagP99: await eventLag(sidecars, before),
    };
  } finally {
    for (const poller of pollers) poller.close();
    await Promise.all(sidecars.map((s) => stopChild(s.proc)));
  }
}

function machine(): string {
  const cpu = /^model name\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown CPU';
  const redisVersion = execFileSync('redis-server', ['--version'], { encoding: 'utf8' }).trim().split(' ')[2];
  return `${os.availableParallelism()} CPUs (nproc), ${cpu}, Node ${process.version}, redis-server ${redisVersion}`;
}

runBench('propagation bench', async () => {
  if (!fs.existsSync(path.join(ROOT, 'dist/src/main.js'))) {
    throw new Error('dist/src/main.js is missing: run `npx tsc -p tsconfig.build.json` first');
  }
  const revocations = Number(process.env.PROPAGATION_REVOCATIONS ?? 200);
  const configs = (process.env.PROPAGATION_SIDECARS ?? '1,3').split(',').map(Number);
  const rows = await withBenchRedis(async (redis, server) => {
    const rows: Row[] = [];
    for (const count of configs) {
      process.stderr.write(`propagation: ${count} sidecar(s), ${revocations} revocations...\n`);
      rows.push(await run(redis, server.url, count, revocations));
    }
    return rows;
  });
  console.log(`\nRevocation propagation: revoke reply -> first denial seen by a client polling each sidecar`);
  console.log(machine());
  console.log('');
  console.log(
    '| sidecars | revocations | samples | p50 ms | p99 ms | max ms | all sidecars p50 / p99 ms | poll RTT p50 ms | > 100 ms | receivers | events applied (sidecar view) |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(
      `| ${r.sidecars} | ${r.revocations} | ${r.samples} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.max.toFixed(2)} | ${r.allP50.toFixed(2)} / ${r.allP99.toFixed(2)} | ${r.rttP50.toFixed(2)} | ${r.over100} | ${r.receivers} | ${r.eventLagP99} |`,
    );
  }
});
