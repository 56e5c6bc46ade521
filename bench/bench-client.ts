/**
 * How the bench talks to the servers: a grpc-js client for one-off calls (priming caches, checking a server
 * answers OK), the paced client in its own process (bench/paced-client.ts) with the machine's load around it, and
 * the checks of what the sidecar decided (its /metrics) against what was sent.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type Redis from 'ioredis';
import { authorizationService } from '../src/adapters/grpc/service-definition';
import { cpuSeconds, decisionDelta, ROOT, scrape, sleep, track, type SidecarProcess } from './bench-support';
import { systemJiffies, type Bench } from './bench-report';
import { checkRequestBytes } from './envoy-request';
import { checkResponseCode } from './paced-summary';
import type { PacedConfig, PacedResult, StreamResult } from './paced-types';
import { pool, putUser } from './seed';

// A grpc-js client for one-off calls (priming caches, checking a server answers OK).

export type RawClient = {
  call(body: Buffer, deadlineMs?: number): Promise<{ code: number; answer: number | null }>;
  close(): void;
};

export function rawClient(target: string): RawClient {
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
export async function presentOnce(
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

/** A malformed token: paced warm-up calls use it, so they are answered without Redis or bcrypt, as token_malformed. */
export const WARMUP_AUTHORIZATION = 'Bearer fty_warmup';
const WARMUP_MS = 2000;

export interface PacedRun extends PacedResult {
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
export async function runPaced(dir: string, config: PacedConfig, serverPid: number): Promise<PacedRun> {
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
export function contention(run: PacedRun): string {
  const seconds = run.elapsedMs / 1000;
  return `${Math.max(0, run.otherCores).toFixed(2)} cores busy with other work; client ${(
    run.clientCpuSeconds / seconds
  ).toFixed(2)}, sidecar ${(run.serverCpuSeconds / seconds).toFixed(2)} cores`;
}

/** The decisions between two scrapes equal `expected` plus the run's warm-up calls (token_malformed). */
export function expectDecisions(
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

export function stream(result: PacedResult, name: string): StreamResult {
  const s = result.streams.find((x) => x.name === name);
  if (s === undefined) throw new Error(`no stream ${name}`);
  return s;
}

/** Rewrites a user (a real user.updated event) and waits until the sidecar has applied the event. */
export async function putUserApplied(sidecar: SidecarProcess, admin: Redis, userId: string): Promise<void> {
  const propagated = 'fortary_authz_event_propagation_seconds_count';
  const ev0 = (await scrape(sidecar.adminPort)).get(propagated) ?? 0;
  await putUser(admin, userId);
  for (let i = 0; i < 200 && ((await scrape(sidecar.adminPort)).get(propagated) ?? 0) <= ev0; i++)
    await sleep(10);
}
