/**
 * What the paced client (bench/paced-client.ts) is given and what it prints: the streams to send, and per stream the
 * latency, service time and send lag of every measured call, summarized. The bench's parent process
 * (bench-client.ts, bench-report.ts, scenario-*.ts) reads the same types.
 */
import type { BodySpec } from './envoy-request';

export type StreamSpec =
  | {
      name: string;
      kind: 'check';
      /** host:port */
      target: string;
      rate: number;
      /** Stop after this many requests (default: rate × duration). */
      count?: number;
      body: BodySpec;
    }
  | { name: string; kind: 'health'; target: string; service: string; rate: number; count?: number };

export interface PacedConfig {
  durationMs: number;
  deadlineMs: number;
  streams: StreamSpec[];
  /**
   * Each stream first sends at its rate for `ms` without recording anything (JIT, connections: the first hundred
   * calls of a fresh client take tens of milliseconds). Check streams send `authorization` meanwhile (choose one
   * whose decision is known, so the caller can account for it in the server's counters).
   */
  warmup?: { ms: number; authorization: string };
  /**
   * Client for Check streams: 'http2' (default) sends the same gRPC request over Node's http2 module, which costs
   * the client a fraction of a grpc-js call, so less of the measured tail is the client's own; 'grpc-js' uses a
   * grpc-js channel. Health streams always use grpc-js.
   */
  transport?: 'http2' | 'grpc-js';
}

export interface LatencySummary {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

export interface StreamResult {
  name: string;
  /** Warm-up calls sent before the measured ones (not in any figure below). */
  warmupSent: number;
  sent: number;
  /** grpc status code -> count (0 = OK) */
  grpcCodes: Record<string, number>;
  /** For Check streams: CheckResponse status.code -> count (0 = allowed); for health: serving status -> count. */
  answers: Record<string, number>;
  /** Milliseconds from the scheduled send time to the answer (errors included). */
  latencyMs: LatencySummary;
  /** Milliseconds from the actual send to the answer. */
  serviceMs: LatencySummary;
  /** How late the client sent relative to its schedule (client-side noise, included in latencyMs). */
  sendLagMs: LatencySummary;
  maxInFlight: number;
}

export interface PacedResult {
  streams: StreamResult[];
  elapsedMs: number;
  /** CPU seconds this client used (both threads) while sending. */
  clientCpuSeconds: number;
}
