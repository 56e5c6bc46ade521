/**
 * Prometheus metrics (prom-client). Labels are bounded enums: never key or user ids (unbounded cardinality).
 * Children for every label combination are created up front so the Check path does no label lookups.
 *
 * The counters a Check bumps (decisions, cache lookups) are plain numbers added to prom-client when Prometheus
 * scrapes (each counter's `collect`): prom-client hashes the label set on every inc(), ~0.2 µs a call, three calls
 * per Check. A scrape therefore always reports every Check answered before it.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { DENY_REASONS, decisionKind, type DecisionKind, type DenyReason } from '../core/outcome';
import { registerRuntimeMetrics } from './runtime-metrics';

/** The `outcome` label: the outcome table's kind (core/outcome.ts). */
export type DecisionOutcome = DecisionKind;

export class Metrics {
  readonly registry = new Registry();
  /** Decisions not yet added to the counter, by reason. */
  private readonly pendingDecisions = new Map<string, PendingCount>();
  private readonly decisions: Counter<'outcome' | 'reason'> = new Counter({
    name: 'fortary_authz_decisions_total',
    help: 'Check decisions by outcome and reason.',
    labelNames: ['outcome', 'reason'] as const,
    registers: [this.registry],
    collect: () => this.flushDecisions(),
  });
  private readonly duration: Histogram<'outcome'> = new Histogram({
    name: 'fortary_authz_check_duration_seconds',
    help: 'Time from a decoded CheckRequest to its answer.',
    labelNames: ['outcome'] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
    collect: () => {
      for (const pending of this.pendingDurations.values()) pending.flush();
    },
  });
  /** Durations not yet added to the histogram, by outcome. */
  private readonly pendingDurations = new Map<DecisionOutcome, PendingHistogram>();
  /** Cache lookups not yet added to the counter. */
  private readonly pendingLookups: PendingCount[] = [];
  private readonly cacheRequests: Counter<'cache' | 'result'> = new Counter({
    name: 'fortary_authz_cache_requests_total',
    help: 'Record cache lookups.',
    labelNames: ['cache', 'result'] as const,
    registers: [this.registry],
    collect: () => this.flushLookups(),
  });
  readonly bcryptInFlight = new Gauge({
    name: 'fortary_authz_bcrypt_in_flight',
    help: 'bcrypt comparisons running.',
    registers: [this.registry],
  });
  readonly bcryptQueued = new Gauge({
    name: 'fortary_authz_bcrypt_queued',
    help: 'bcrypt comparisons waiting for a slot.',
    registers: [this.registry],
  });
  readonly bcryptRejected = new Counter({
    name: 'fortary_authz_bcrypt_rejected_total',
    help: 'Checks refused with 503 because the bcrypt queue was full.',
    registers: [this.registry],
  });
  readonly subscriberConnected = new Gauge({
    name: 'fortary_authz_subscriber_connected',
    help: '1 while the event subscription is reconciled and answering heartbeats.',
    registers: [this.registry],
  });
  private lastEventAt: number | null = null;
  readonly lastEventAge = new Gauge({
    name: 'fortary_authz_last_event_age_seconds',
    help: 'Seconds since the last change event was received (-1 before the first).',
    registers: [this.registry],
    collect: () => {
      this.lastEventAge.set(this.lastEventAt === null ? -1 : (Date.now() - this.lastEventAt) / 1000);
    },
  });
  readonly propagation = new Histogram({
    name: 'fortary_authz_event_propagation_seconds',
    help: 'Delay from Redis applying a change to this sidecar applying its event.',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });
  readonly cacheFlushes = new Counter({
    name: 'fortary_authz_cache_flushes_total',
    help: 'Whole-cache flushes by cause (gap, resubscribe, unparseable, ...).',
    labelNames: ['cause'] as const,
    registers: [this.registry],
  });
  readonly loopStalls = new Counter({
    name: 'fortary_authz_event_loop_stalls_total',
    help: 'Event-loop stalls over 50 ms: Checks waited for pending events (from 1 s on, re-read the sequence).',
    registers: [this.registry],
  });
  readonly redisErrors = new Counter({
    name: 'fortary_authz_redis_errors_total',
    help: 'Failed Redis commands by operation (op="revive": a connection ioredis had ended was reconnected).',
    labelNames: ['op'] as const,
    registers: [this.registry],
  });
  readonly lastUsedWrites = new Counter({
    name: 'fortary_authz_last_used_writes_total',
    help: 'Keys whose last use was sent to Redis, by result (written, failed).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly lastUsedDropped = new Counter({
    name: 'fortary_authz_last_used_dropped_total',
    help: 'Uses not recorded because the last-used buffer was full (the key keeps its older last use).',
    registers: [this.registry],
  });
  readonly malformedRequests = new Counter({
    name: 'fortary_authz_malformed_requests_total',
    help: 'CheckRequests that could not be decoded (the call fails closed; Envoy answers status_on_error).',
    registers: [this.registry],
  });
  readonly recordsInvalid = new Counter({
    name: 'fortary_authz_records_invalid_total',
    help: 'Corrupt key or user records seen (once per record version).',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  /** Per reason: its pending count and its outcome's pending durations (one Map lookup per Check). */
  private readonly byReason = new Map<string, { count: PendingCount; duration: PendingHistogram }>();
  readonly keyHit: Increment = this.lookup('key', 'hit');
  readonly keyMiss: Increment = this.lookup('key', 'miss');
  readonly userHit: Increment = this.lookup('user', 'hit');
  readonly userMiss: Increment = this.lookup('user', 'miss');

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics !== false) registerRuntimeMetrics(this.registry, 'fortary_authz_');
    for (const outcome of ['allow', 'deny', 'error'] as const) {
      this.pendingDurations.set(outcome, new PendingHistogram(this.duration, outcome));
    }
    for (const reason of ['allowed', ...DENY_REASONS] as const) {
      const count = new PendingCount(this.decisions.labels(outcomeOf(reason), reason));
      this.pendingDecisions.set(reason, count);
      this.byReason.set(reason, {
        count,
        duration: this.pendingDurations.get(outcomeOf(reason)) as PendingHistogram,
      });
    }
  }

  decision(reason: DenyReason | 'allowed', seconds: number): void {
    const entry = this.byReason.get(reason);
    if (entry === undefined) return;
    entry.count.inc();
    entry.duration.observe(seconds);
  }

  private lookup(cache: 'key' | 'user', result: 'hit' | 'miss'): PendingCount {
    const pending = new PendingCount(this.cacheRequests.labels(cache, result));
    this.pendingLookups.push(pending);
    return pending;
  }

  private flushDecisions(): void {
    for (const pending of this.pendingDecisions.values()) pending.flush();
  }

  private flushLookups(): void {
    for (const pending of this.pendingLookups) pending.flush();
  }

  eventReceived(at: number | null, receivedAt: number): void {
    this.lastEventAt = receivedAt;
    if (at !== null) this.propagation.observe(Math.max(0, receivedAt - at) / 1000);
  }
}

/** What the Check path needs from a counter. */
export interface Increment {
  inc(): void;
}

/** Counts in a plain number; flush() adds them to the prom-client child (at scrape time). */
class PendingCount implements Increment {
  private count = 0;

  constructor(private readonly child: Counter.Internal) {}

  inc(): void {
    this.count++;
  }

  flush(): void {
    if (this.count === 0) return;
    this.child.inc(this.count);
    this.count = 0;
  }
}

const DURATION_BUCKETS = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
];

/** Durations held per outcome before they go to prom-client (32 KiB each). */
const PENDING_DURATIONS = 4096;

/**
 * One label set of the duration histogram, fed through prom-client's public API (the child from `labels()`) in
 * batches: a Check stores its duration in a preallocated array, and the batch is observed at scrape time (the
 * histogram's `collect`) or when the array is full. prom-client's observe() re-validates and re-hashes the label
 * set on every call; run per Check, inside the request, that was measured as ~10% of the sidecar's CPU. Batched,
 * the same calls run in a tight loop off the request path, and a scrape still reports every Check answered
 * before it.
 */
class PendingHistogram {
  private readonly values = new Float64Array(PENDING_DURATIONS);
  private count = 0;
  private readonly child: Histogram.Internal<'outcome'>;

  constructor(histogram: Histogram<'outcome'>, outcome: DecisionOutcome) {
    this.child = histogram.labels(outcome);
  }

  observe(value: number): void {
    // prom-client throws on a non-finite value; a clock reading cannot be one, and the Check path must not throw.
    if (!Number.isFinite(value)) return;
    this.values[this.count++] = value;
    if (this.count === PENDING_DURATIONS) this.flush();
  }

  flush(): void {
    const { values, child } = this;
    for (let i = 0; i < this.count; i++) child.observe(values[i] as number);
    this.count = 0;
  }
}

/** The `outcome` label of a reason: its kind in the outcome table (core/outcome.ts), nothing decided here. */
export const outcomeOf = decisionKind;
