/**
 * The refusal scenarios: bad tokens of every kind at 1,000/s (answered without bcrypt), and a bcrypt flood of
 * wrong secrets on valid key ids while valid traffic and health checks run.
 */
import { decisionDelta, median, scrape, seriesDelta, type SidecarProcess } from './bench-support';
import { contention, expectDecisions, runPaced, stream } from './bench-client';
import { pct, type Bench } from './bench-report';
import type { BodySpec } from './envoy-request';
import type { StreamResult } from './paced-types';

export async function reject(
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

export async function flood(
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
