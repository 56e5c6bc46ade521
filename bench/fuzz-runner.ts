/**
 * Sending fuzz cases to a sidecar over gRPC, many in flight, and judging every answer. Part of the fuzzer run by
 * bench/fuzz.ts and test/fuzz/check.fuzz.test.ts (docs/hardening.md).
 */
import * as grpc from '@grpc/grpc-js';
import { caseArbitrary } from './fuzz-cases';
import { judge, type Outcome } from './fuzz-judge';
import { justify } from './fuzz-oracle';
import { encodeCase, generateCase } from './fuzz-wire';
import type { World } from './fuzz-world';

export const CHECK_PATH = '/envoy.service.auth.v3.Authorization/Check';
export const identity = (b: Buffer) => b;

export class RawCheckClient {
  private readonly client: grpc.Client;

  constructor(address: string) {
    this.client = new grpc.Client(address, grpc.credentials.createInsecure(), {
      'grpc.max_send_message_length': 4 * 1024 * 1024,
      // Its own connection: grpc-js otherwise shares one subchannel between clients of the same target.
      'grpc.use_local_subchannel_pool': 1,
    });
  }

  send(bytes: Buffer, deadlineMs = 10_000): Promise<Outcome> {
    return new Promise((resolve) => {
      this.client.makeUnaryRequest<Buffer, Buffer>(
        CHECK_PATH,
        identity,
        identity,
        bytes,
        { deadline: Date.now() + deadlineMs },
        (error, response) =>
          resolve(
            error !== null || response === undefined
              ? { error: { code: error?.code ?? -1, details: error?.details ?? String(error) } }
              : { response },
          ),
      );
    });
  }

  close(): void {
    this.client.close();
  }
}

export interface FuzzOptions {
  address: string;
  world: World;
  cases: number;
  seed: number;
  concurrency: number;
  /**
   * A call still unanswered after this long is a hang (default 60 s). Generous on purpose: under a saturating
   * closed loop, requests over the server's 64 KiB HTTP/2 window take seconds (docs/hardening.md, "Findings").
   */
  deadlineMs?: number;
  /** First case index (default 0). */
  from?: number;
  progress?: (done: number) => void;
}

export interface Violation {
  case: number;
  problem: string;
  outcome: string;
  request: string;
}

export interface FuzzReport {
  seed: number;
  cases: number;
  ms: number;
  perSecond: number;
  outcomes: Record<string, number>;
  /** Cases the oracle would have justified, and what the sidecar answered to those. */
  justifiable: number;
  justifiedOutcomes: Record<string, number>;
  /** Per-call latency seen by the client (with `concurrency` calls in flight, so mostly queueing). */
  latencyMs: { p50: number; p99: number; max: number };
  slowest: { case: number; ms: number; bytes: number };
  violations: Violation[];
  violationCount: number;
}

export function percentile(values: number[], q: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number);
}

/** Sends `cases` generated cases with `concurrency` calls in flight and judges every answer. */
export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const arbitrary = caseArbitrary(options.world);
  const clients = Array.from({ length: 4 }, () => new RawCheckClient(options.address));
  const outcomes: Record<string, number> = {};
  const justifiedOutcomes: Record<string, number> = {};
  const latencies: number[] = [];
  let slowest = { case: -1, ms: 0, bytes: 0 };
  const violations: Violation[] = [];
  let violationCount = 0;
  let justifiable = 0;
  let next = options.from ?? 0;
  const end = next + options.cases;
  let done = 0;
  const started = performance.now();
  const worker = async (w: number) => {
    const client = clients[w % clients.length] as RawCheckClient;
    for (;;) {
      const k = next++;
      if (k >= end) return;
      const bytes = encodeCase(generateCase(arbitrary, options.seed, k));
      const sent = performance.now();
      const result = await client.send(bytes, options.deadlineMs ?? 60_000);
      const ms = performance.now() - sent;
      latencies.push(ms);
      if (ms > slowest.ms) slowest = { case: k, ms: Math.round(ms), bytes: bytes.length };
      const verdict = judge(options.world, bytes, result);
      outcomes[verdict.outcome] = (outcomes[verdict.outcome] ?? 0) + 1;
      if (verdict.justified || justify(options.world, bytes).ok) {
        justifiable++;
        justifiedOutcomes[verdict.outcome] = (justifiedOutcomes[verdict.outcome] ?? 0) + 1;
      }
      if (verdict.problem !== null) {
        violationCount++;
        if (violations.length < 20) {
          violations.push({
            case: k,
            problem: verdict.problem,
            outcome: verdict.outcome,
            request: bytes.subarray(0, 512).toString('hex'),
          });
        }
      }
      if (++done % 10_000 === 0) options.progress?.(done);
    }
  };
  try {
    await Promise.all(Array.from({ length: options.concurrency }, (_, w) => worker(w)));
  } finally {
    for (const c of clients) c.close();
  }
  const ms = performance.now() - started;
  return {
    seed: options.seed,
    cases: options.cases,
    ms: Math.round(ms),
    perSecond: Math.round((options.cases / ms) * 1000),
    outcomes,
    justifiable,
    justifiedOutcomes,
    latencyMs: { p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99), max: slowest.ms },
    slowest,
    violations,
    violationCount,
  };
}
