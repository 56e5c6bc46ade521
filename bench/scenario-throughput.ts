/**
 * The throughput scenario: h2load at saturation against the sidecar's warm Check, the no-op grpc-js +
 * proto-loader server (the baseline the goal is stated against) and a no-op node:http2 server (the transport
 * floor, for information), alternated in one run; every answer is verified.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  cpuSeconds,
  decisionDelta,
  h2load,
  median,
  scrape,
  type BaselineProcess,
  type H2loadResult,
  type SidecarProcess,
} from './bench-support';
import { rawClient } from './bench-client';
import { count, log, systemJiffies, type Bench } from './bench-report';
import { checkRequestBytes, grpcFrame } from './envoy-request';

const H2LOAD = { connections: 4, streams: 25, threads: 1 };

interface Servers {
  sidecar: SidecarProcess;
  /** grpc-js + proto-loader no-op (bench/baseline-server.ts): the goal is stated against it. */
  baseline: BaselineProcess;
  /** node:http2 no-op (bench/h2-floor-server.ts): what the transport alone costs, for information. */
  floor: BaselineProcess;
}

type Run = H2loadResult & { cpuUsPerReq: number; otherCpu: number };
type Name = keyof Servers;
/** Each rep runs all three; the order rotates so a drift in machine load favours none of them. */
const ORDERS: ReadonlyArray<readonly Name[]> = [
  ['baseline', 'floor', 'sidecar'],
  ['sidecar', 'baseline', 'floor'],
  ['floor', 'sidecar', 'baseline'],
];

export async function throughput(bench: Bench, servers: Servers, warmToken: string): Promise<void> {
  bench.begin('throughput (h2load, saturation)');
  const { sidecar } = servers;
  const body = checkRequestBytes({ authorization: `Bearer ${warmToken}` });
  const bodyFile = path.join(bench.dir, 'check-request.bin');
  fs.writeFileSync(bodyFile, grpcFrame(body));

  const clients = { baseline: rawClient(servers.baseline.target), floor: rawClient(servers.floor.target) };
  const answersOk = async (name: 'baseline' | 'floor') => {
    const r = await clients[name].call(body);
    return r.code === 0 && r.answer === 0;
  };
  bench.verify(await answersOk('baseline'), 'baseline answers grpc-status 0 with status.code 0');
  bench.verify(await answersOk('floor'), 'node:http2 floor answers grpc-status 0 with status.code 0');

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
  const noopRun = async (name: 'baseline' | 'floor', requests: number): Promise<Run> => {
    const server = servers[name];
    const run = await measure(server.pid, server.target, requests);
    bench.verify(
      run.succeeded === requests && (await answersOk(name)),
      `${name}: ${run.succeeded}/${requests} h2load successes, then grpc-status 0 from a client call`,
    );
    return run;
  };
  const runOf = (name: Name, requests: number) =>
    name === 'sidecar' ? sidecarRun(requests) : noopRun(name, requests);

  // Warm-up (JIT, connection pools) and calibration: each run then lasts about BENCH_SECONDS.
  const sized = {} as Record<Name, number>;
  for (const name of ORDERS[0] as readonly Name[]) {
    const warm = await runOf(name, 10_000);
    sized[name] = Math.max(10_000, Math.round((warm.rps * bench.options.seconds) / 1000) * 1000);
    log(`warm-up: ${name} ${count(warm.rps)} req/s; runs of ${sized[name]}`);
  }

  const reps: Array<Record<Name, Run>> = [];
  for (let rep = 0; rep < bench.options.reps; rep++) {
    const runs = {} as Record<Name, Run>;
    for (const name of ORDERS[rep % ORDERS.length] as readonly Name[])
      runs[name] = await runOf(name, sized[name]);
    log(
      `rep ${rep + 1}: baseline ${count(runs.baseline.rps)}, floor ${count(runs.floor.rps)}, sidecar ${count(
        runs.sidecar.rps,
      )} req/s, sidecar/baseline ${(runs.sidecar.rps / runs.baseline.rps).toFixed(3)}`,
    );
    reps.push(runs);
  }
  clients.baseline.close();
  clients.floor.close();

  const med = (name: Name, field: 'rps' | 'cpuUsPerReq' = 'rps') => median(reps.map((r) => r[name][field]));
  const ratio = med('sidecar') / med('baseline');
  const pairRatio = median(reps.map((r) => r.sidecar.rps / r.baseline.rps));
  const floorRatio = median(reps.map((r) => r.sidecar.rps / r.floor.rps));
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
    reps: reps.map((r) => ({
      baseline: strip(r.baseline),
      floor: strip(r.floor),
      sidecar: strip(r.sidecar),
    })),
    medianBaselineRps: med('baseline'),
    medianFloorRps: med('floor'),
    medianSidecarRps: med('sidecar'),
    ratioOfMedians: ratio,
    medianPairRatio: pairRatio,
    medianSidecarToFloorRatio: floorRatio,
  };
  const list = (name: Name) => reps.map((r) => count(r[name].rps)).join(', ');
  bench.row(
    'CheckRequest size',
    `${body.length} bytes (${count(sized.baseline)} / ${count(sized.floor)} / ${count(sized.sidecar)} requests per run)`,
  );
  bench.row(
    'NODE_OPTIONS of all three servers',
    `${String(bench.report.options.nodeOptions || '(none)')} (the deployment's, so GC settings are equal)`,
  );
  bench.row(
    'baseline (grpc-js + proto-loader no-op)',
    `${count(med('baseline'))} req/s  [${list('baseline')}]`,
  );
  bench.row('transport floor (node:http2 no-op)', `${count(med('floor'))} req/s  [${list('floor')}]`);
  bench.row('sidecar, warm path', `${count(med('sidecar'))} req/s  [${list('sidecar')}]`);
  bench.row(
    'ratio of medians (sidecar / baseline)',
    `${ratio.toFixed(3)}x`,
    '>= 1.1x (aim 1.3x)',
    ratio >= 1.1,
  );
  bench.row(
    'median of per-rep ratios',
    `${pairRatio.toFixed(3)}x  [${reps.map((r) => (r.sidecar.rps / r.baseline.rps).toFixed(3)).join(', ')}]`,
  );
  bench.row('sidecar / floor (median per rep)', `${floorRatio.toFixed(3)}x (information)`);
  bench.row(
    'server CPU per request (median)',
    `baseline ${med('baseline', 'cpuUsPerReq').toFixed(1)} us, floor ${med('floor', 'cpuUsPerReq').toFixed(
      1,
    )} us, sidecar ${med('sidecar', 'cpuUsPerReq').toFixed(1)} us`,
  );
  bench.row(
    'other CPU during runs (h2load + rest)',
    `${median(reps.flatMap((r) => [r.baseline.otherCpu, r.floor.otherCpu, r.sidecar.otherCpu])).toFixed(2)} cores of ${os.availableParallelism()}`,
  );
}
