/**
 * Open-loop paced load in its own process: each stream sends at a fixed rate on a wall-clock schedule, whatever
 * the answers do, and every latency is measured from the request's SCHEDULED send time (so a stalled server is
 * charged for the requests it delayed: no coordinated omission).
 *
 * A worker thread keeps the schedule: it sleeps with Atomics.wait (sub-millisecond precision, no busy loop) and
 * posts each due send to the main thread, which owns the grpc-js channels. libuv timers alone have 1 ms
 * granularity, which would add up to a millisecond of client-side lateness to every sample.
 *
 *   node dist/bench/paced-client.js <config.json>     prints "measure-start" when the warm-up ends, then one JSON
 *                                                      line of PacedResult
 */
import fs from 'node:fs';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { authorizationService } from '../src/adapters/grpc/service-definition';
import { authorizationFor, checkRequestBytes } from './envoy-request';
import { Http2UnaryClient } from './http2-unary-client';
import { checkResponseCode, summarize } from './paced-summary';
import type { PacedConfig, PacedResult, StreamSpec } from './paced-types';

interface Scheduled {
  stream: number;
  index: number;
  at: number;
}

const nowNs = (): number => Number(process.hrtime.bigint());

// ---------------------------------------------------------------------------------------------------------------
// Worker: the schedule.

interface PacerInput {
  startNs: number;
  streams: Array<{ rate: number; total: number }>;
}

function runPacer(input: PacerInput): void {
  const port = parentPort;
  if (port === null) throw new Error('pacer must run in a worker');
  const cell = new Int32Array(new SharedArrayBuffer(4));
  const next = input.streams.map(() => 0);
  const due = (s: number) => input.startNs + Math.round(((next[s] as number) * 1e9) / input.streams[s]!.rate);
  for (;;) {
    let earliest = Infinity;
    for (let s = 0; s < input.streams.length; s++) {
      if ((next[s] as number) < input.streams[s]!.total) earliest = Math.min(earliest, due(s));
    }
    if (earliest === Infinity) break;
    const wait = earliest - nowNs();
    if (wait > 20_000) Atomics.wait(cell, 0, 0, wait / 1e6);
    const now = nowNs();
    const batch: Scheduled[] = [];
    for (let s = 0; s < input.streams.length; s++) {
      while ((next[s] as number) < input.streams[s]!.total && due(s) <= now) {
        batch.push({ stream: s, index: next[s] as number, at: due(s) });
        next[s] = (next[s] as number) + 1;
      }
    }
    if (batch.length > 0) port.postMessage(batch);
  }
  port.postMessage('done');
}

// ---------------------------------------------------------------------------------------------------------------
// Main thread: the channels and the measurements.

interface StreamState {
  spec: StreamSpec;
  /** Warm-up calls scheduled before the measured ones. */
  warm: number;
  warmDone: number;
  total: number;
  latency: Float64Array;
  service: Float64Array;
  lag: Float64Array;
  done: number;
  sent: number;
  inFlight: number;
  maxInFlight: number;
  grpcCodes: Record<string, number>;
  answers: Record<string, number>;
  bodies: Buffer[];
  send: (i: number, callback: (error: { code: number } | null, answer: string) => void) => void;
}

interface HealthClient extends grpc.Client {
  Check(
    request: { service: string },
    options: grpc.CallOptions,
    callback: (error: grpc.ServiceError | null, reply?: { status: string }) => void,
  ): void;
}

export async function runPaced(config: PacedConfig): Promise<PacedResult> {
  const transport = config.transport ?? 'http2';
  const rawClients = new Map<string, Http2UnaryClient>();
  const AuthorizationClient = grpc.makeGenericClientConstructor(authorizationService, 'Authorization');
  const checkClients = new Map<string, grpc.Client>();
  const healthClients = new Map<string, HealthClient>();
  const healthDefinition = protoLoader.loadSync(healthProtoPath, {
    keepCase: true,
    enums: String,
    defaults: true,
  });
  const healthPkg = grpc.loadPackageDefinition(healthDefinition) as unknown as {
    grpc: {
      health: { v1: { Health: new (address: string, creds: grpc.ChannelCredentials) => HealthClient } };
    };
  };

  const states: StreamState[] = config.streams.map((spec) => {
    const total = spec.count ?? Math.floor((spec.rate * config.durationMs) / 1000);
    const warm = Math.floor((spec.rate * (config.warmup?.ms ?? 0)) / 1000);
    const state: StreamState = {
      spec,
      warm,
      warmDone: 0,
      total,
      latency: new Float64Array(total),
      service: new Float64Array(total),
      lag: new Float64Array(total),
      done: 0,
      sent: 0,
      inFlight: 0,
      maxInFlight: 0,
      grpcCodes: {},
      answers: {},
      bodies: [],
      send: () => {},
    };
    if (spec.kind === 'check') {
      let client = checkClients.get(spec.target);
      if (client === undefined && transport === 'grpc-js') {
        client = new AuthorizationClient(spec.target, grpc.credentials.createInsecure());
        checkClients.set(spec.target, client);
      }
      let raw = rawClients.get(spec.target);
      if (raw === undefined && transport === 'http2') {
        raw = new Http2UnaryClient(spec.target);
        rawClients.set(spec.target, raw);
      }
      // Every body is built before the clock starts, so encoding never delays a send.
      state.bodies = Array.from({ length: total }, (_, i) =>
        checkRequestBytes({
          authorization: authorizationFor(spec.body, i),
          requestId: `bench-${spec.name}-${i}`,
        }),
      );
      const warmBody = checkRequestBytes({ authorization: config.warmup?.authorization ?? '' });
      const answered = (
        error: { code: number; message: string } | null,
        response: Buffer | undefined,
        callback: (error: { code: number } | null, answer: string) => void,
      ) => {
        if (error !== null || response === undefined) return callback(error ?? { code: 13 }, '');
        let answer: string;
        try {
          answer = String(checkResponseCode(response));
        } catch (e) {
          answer = `unparseable: ${(e as Error).message}`;
        }
        callback(null, answer);
      };
      const c = client;
      const r = raw;
      state.send = (i, callback) => {
        const body = i < 0 ? warmBody : (state.bodies[i] as Buffer);
        if (r !== undefined) {
          r.unary(authorizationService.Check.path, body, config.deadlineMs, (error, response) =>
            answered(error, response, callback),
          );
          return;
        }
        c?.makeUnaryRequest<Buffer, Buffer>(
          authorizationService.Check.path,
          authorizationService.Check.requestSerialize,
          authorizationService.Check.responseDeserialize,
          body,
          { deadline: Date.now() + config.deadlineMs },
          (error, response) => answered(error, response, callback),
        );
      };
    } else {
      let client = healthClients.get(spec.target);
      if (client === undefined) {
        client = new healthPkg.grpc.health.v1.Health(spec.target, grpc.credentials.createInsecure());
        healthClients.set(spec.target, client);
      }
      const c = client;
      state.send = (_i, callback) => {
        c.Check({ service: spec.service }, { deadline: Date.now() + config.deadlineMs }, (error, reply) =>
          callback(error, reply?.status ?? ''),
        );
      };
    }
    return state;
  });

  const allClients = [...checkClients.values(), ...healthClients.values()];
  await Promise.all([
    ...allClients.map(
      (client) =>
        new Promise<void>((resolve, reject) =>
          client.waitForReady(Date.now() + 10_000, (error) => (error ? reject(error) : resolve())),
        ),
    ),
    ...[...rawClients.values()].map((client) => client.ready()),
  ]);

  const startNs = nowNs() + 100e6;
  const worker = new Worker(__filename, {
    workerData: {
      startNs,
      streams: states.map((s) => ({ rate: s.spec.rate, total: s.warm + s.total })),
    } as PacerInput,
  });
  let scheduleDone = false;
  let finish: () => void = () => {};
  const finished = new Promise<void>((resolve) => (finish = resolve));
  let cpuStart = process.cpuUsage();
  let measuredFromNs = startNs;
  let warming = states.some((s) => s.warm > 0);
  const maybeFinish = () => {
    if (scheduleDone && states.every((s) => s.done === s.sent && s.warmDone === s.warm)) finish();
  };

  worker.on('message', (message: Scheduled[] | 'done') => {
    if (message === 'done') {
      scheduleDone = true;
      maybeFinish();
      return;
    }
    for (const { stream, index: scheduled, at } of message) {
      const state = states[stream] as StreamState;
      if (scheduled < state.warm) {
        state.send(-1, () => {
          state.warmDone++;
          maybeFinish();
        });
        continue;
      }
      if (warming) {
        // The first measured send: CPU and elapsed time count from here; the parent reads its own counters too.
        warming = false;
        cpuStart = process.cpuUsage();
        measuredFromNs = at;
        process.stdout.write('measure-start\n');
      }
      const index = scheduled - state.warm;
      const sentAt = nowNs();
      state.lag[index] = (sentAt - at) / 1e6;
      state.sent++;
      state.inFlight++;
      if (state.inFlight > state.maxInFlight) state.maxInFlight = state.inFlight;
      state.send(index, (error, answer) => {
        const end = nowNs();
        state.latency[index] = (end - at) / 1e6;
        state.service[index] = (end - sentAt) / 1e6;
        const code = error === null ? 0 : error.code;
        state.grpcCodes[code] = (state.grpcCodes[code] ?? 0) + 1;
        if (error === null) state.answers[answer] = (state.answers[answer] ?? 0) + 1;
        state.inFlight--;
        state.done++;
        maybeFinish();
      });
    }
  });
  worker.on('error', (error) => {
    throw error;
  });
  await finished;
  const cpu = process.cpuUsage(cpuStart);
  await worker.terminate();
  const elapsedMs = (nowNs() - measuredFromNs) / 1e6;
  const dump = process.env.BENCH_PACED_DUMP;
  if (dump) {
    // Debugging aid: every measured call's latency, send lag and service time, in schedule order.
    const raw = states.map((st) => ({
      name: st.spec.name,
      latencyMs: Array.from(st.latency.subarray(0, st.sent)),
      sendLagMs: Array.from(st.lag.subarray(0, st.sent)),
      serviceMs: Array.from(st.service.subarray(0, st.sent)),
    }));
    fs.writeFileSync(dump, JSON.stringify(raw));
  }
  for (const client of allClients) client.close();
  for (const client of rawClients.values()) client.close();

  return {
    elapsedMs,
    clientCpuSeconds: (cpu.user + cpu.system) / 1e6,
    streams: states.map((s) => ({
      name: s.spec.name,
      warmupSent: s.warm,
      sent: s.sent,
      grpcCodes: s.grpcCodes,
      answers: s.answers,
      latencyMs: summarize(s.latency, s.sent),
      serviceMs: summarize(s.service, s.sent),
      sendLagMs: summarize(s.lag, s.sent),
      maxInFlight: s.maxInFlight,
    })),
  };
}

if (!isMainThread) {
  runPacer(workerData as PacerInput);
} else if (require.main === module) {
  const file = process.argv[2];
  if (file === undefined) {
    process.stderr.write('usage: paced-client <config.json>\n');
    process.exit(2);
  }
  const config = JSON.parse(fs.readFileSync(file, 'utf8')) as PacedConfig;
  runPaced(config).then(
    (result) => {
      process.stdout.write(`${JSON.stringify(result)}\n`);
      process.exit(0);
    },
    (error: unknown) => {
      process.stderr.write(`paced-client: ${error instanceof Error ? error.stack : String(error)}\n`);
      process.exit(1);
    },
  );
}
