/**
 * Decides when the record cache may be trusted, and applies change events to it.
 *
 * The cache is trusted only while the event subscription is known to be healthy (subscribed, reconciled after
 * the subscribe, heartbeats answered). Otherwise every request first re-reads `fortary:events:seq` (one cheap
 * Redis read, shared by concurrent requests): an unchanged sequence proves no event was missed; a changed one
 * flushes the cache; a failed read fails the request closed with 503.
 *
 * An event-loop stall suspends trust (docs/propagation.md#stalls). While the loop is stopped (SIGSTOP, a GC pause,
 * CFS throttling, a CPU-bound task) a revocation may be published; when it resumes, Node may answer the Checks
 * queued on a gRPC connection before it reads the event from the subscriber's socket. A timer ticks every
 * LOOP_TICK_MS; every Check compares its own time with the last tick, so a stall is seen before the first Check
 * after it is answered, even when its socket is read before any timer runs. After a stall, Checks wait until the
 * event loop has polled every socket afresh (two turns: the subscriber's socket may have become readable after
 * the current poll began) and so applied every event that reached the sidecar during the stall; no Redis call is
 * needed. A stall of LONG_STALL_MS or more (Redis may have dropped the subscriber, or the backlog may exceed what
 * one read takes) also withdraws trust, like a lost subscription: requests re-read the sequence until the
 * subscription has caught up and is reconciled.
 */
import type { ChangeEvent } from '../core/events';
import type { RecordCache } from './record-cache';
import type { RecordStore } from './ports';

export interface FreshnessEvents {
  trustChanged(trusted: boolean, cause: string): void;
  eventApplied(event: ChangeEvent, gap: boolean): void;
  /** The event loop did not run for `lagMs`; `distrusted`: long enough that the subscription must resync. */
  stalled(lagMs: number, distrusted: boolean): void;
}

/** How often the loop watch ticks (sidecar.ts runs the timer). */
export const LOOP_TICK_MS = 10;
/**
 * A gap between ticks longer than this is a stall. Well under the 100 ms propagation window, well over the tick
 * interval plus an ordinary busy loop iteration.
 */
export const STALL_THRESHOLD_MS = 50;

/** A stall this long also withdraws trust until the subscription has resynced. */
export const LONG_STALL_MS = 1000;

/** Why trust was withdrawn by a stall: the cause the log and the reconcile carry. */
export const STALL_CAUSE = 'stall';

export interface LoopWatchOptions {
  stallMs: number;
  longStallMs: number;
  /** Runs `fn` once the event loop has finished its current poll phase (setImmediate). */
  afterPoll: (fn: () => void) => void;
}

const LOOP_WATCH_DEFAULTS: LoopWatchOptions = {
  stallMs: STALL_THRESHOLD_MS,
  longStallMs: LONG_STALL_MS,
  afterPoll: (fn) => setImmediate(fn),
};

export class CacheFreshness {
  private trustedFlag = false;
  /** The last sequence the cache is known to reflect; null before the first reconcile. */
  private lastSeq: number | null = null;
  /** Why lastSeq is null: the flush cause the next sequence read reports. */
  private unsyncedCause = 'startup';
  private revalidation: Promise<void> | null = null;
  /** Advanced by every distrust(): a reconcile that started before one must not restore trust. */
  private distrusts = 0;
  /** The clock time of the loop watch's last tick; NaN while no watch runs (then stalls are not detected). */
  private lastTick = Number.NaN;
  /** Set from a stall until every socket has been polled afresh; `caughtUp` resolves then. */
  private catchingUp = false;
  private caughtUp: Promise<void> = Promise.resolve();
  private readonly watch: LoopWatchOptions;

  constructor(
    private readonly store: RecordStore,
    private readonly cache: RecordCache,
    private readonly events: FreshnessEvents,
    watch: Partial<LoopWatchOptions> = {},
  ) {
    this.watch = { ...LOOP_WATCH_DEFAULTS, ...watch };
  }

  /** Whether the subscription is healthy (the flag alone; the Check path asks trustedAt). */
  get trusted(): boolean {
    return this.trustedFlag;
  }

  /**
   * Whether a Check arriving at `now` may be answered from the cache at once: the subscription is healthy and the
   * event loop has not stalled since the last tick. Otherwise the Check awaits settle() first. Clock time in ms; a
   * clock that went backwards counts as a long stall (safe, and rare).
   */
  trustedAt(now: number): boolean {
    const lag = now - this.lastTick;
    if (lag <= this.watch.stallMs && lag >= 0 && !this.catchingUp) return this.trustedFlag;
    if (lag > this.watch.stallMs || lag < 0) this.stalled(now, lag);
    return this.trustedFlag && !this.catchingUp;
  }

  /**
   * For a Check that trustedAt() refused: resolves once it may read the cache (after a stall, when the loop has
   * caught up; while untrusted, after re-reading the sequence). Throws StoreUnavailableError.
   */
  async settle(): Promise<void> {
    while (this.catchingUp) await this.caughtUp;
    if (!this.trustedFlag) await this.revalidate();
  }

  /** The loop watch's timer: called every LOOP_TICK_MS with the clock's time. */
  tick(now: number): void {
    const lag = now - this.lastTick;
    if (lag > this.watch.stallMs || lag < 0) this.stalled(now, lag);
    this.lastTick = now;
  }

  get sequence(): number | null {
    return this.lastSeq;
  }

  /** The subscription is down or unverified: stop trusting the cache until reconcile() succeeds. */
  distrust(cause: string): void {
    this.distrusts++;
    if (!this.trustedFlag) return;
    this.trustedFlag = false;
    this.events.trustChanged(false, cause);
  }

  /**
   * Called after every (re)subscribe has been confirmed: anything published before the subscription started
   * shows up as a sequence change and flushes the cache. The cache is trusted afterwards only if `stillSubscribed`
   * holds once the sequence is read (the subscription may have been lost while the read was in flight); returns
   * whether it is. Throws StoreUnavailableError.
   */
  async reconcile(cause: string, stillSubscribed: () => boolean = () => true): Promise<boolean> {
    const distrusts = this.distrusts;
    await this.syncSequence(cause);
    // A stall (or a lost connection) while the read was in flight: its answer may predate an unread event.
    if (!stillSubscribed() || distrusts !== this.distrusts) return false;
    if (!this.trustedFlag) {
      this.trustedFlag = true;
      this.events.trustChanged(true, cause);
    }
    return true;
  }

  /**
   * The command connection was re-established. It may now reach another server (a failover, a restart, a new
   * address behind the same name) whose sequence numbers are not comparable with the last one seen: a promoted
   * replica that missed the last event and then published one of its own reuses its number. The next sequence
   * read therefore flushes, whatever it returns.
   */
  forgetSequence(): void {
    if (this.lastSeq === null) return;
    this.lastSeq = null;
    this.unsyncedCause = 'reconnect';
  }

  /** Used per request while untrusted; concurrent callers share one read. Throws StoreUnavailableError. */
  revalidate(): Promise<void> {
    if (this.revalidation === null) {
      this.revalidation = this.syncSequence('untrusted').finally(() => {
        this.revalidation = null;
      });
    }
    return this.revalidation;
  }

  apply(event: ChangeEvent): void {
    // Any seq but last + 1 flushes (docs/redis-contract.md): a higher one means a message was lost; a lower or
    // equal one means the sequence was reset (the store lost its data or was replaced) or a message arrived late,
    // and only a flush is safe in both cases. The stream's latest seq becomes the reference either way.
    const gap = this.lastSeq !== null && event.seq !== this.lastSeq + 1;
    if (gap || this.lastSeq === null) this.cache.flushAll(gap ? 'gap' : 'unsynced');
    else this.invalidate(event);
    this.lastSeq = event.seq;
    this.events.eventApplied(event, gap);
  }

  /** A message that is not a valid event may have been anything: resync on the next read. */
  applyUnparseable(): void {
    this.cache.flushAll('unparseable');
  }

  private invalidate(event: ChangeEvent): void {
    if (event.type === 'key.revoked' || event.type === 'key.updated') this.cache.invalidateKey(event.id);
    else this.cache.invalidateUser(event.id);
  }

  private stalled(now: number, lagMs: number): void {
    this.lastTick = now;
    const long = lagMs >= this.watch.longStallMs || lagMs < 0;
    if (long) this.distrust(STALL_CAUSE);
    if (!this.catchingUp) {
      this.catchingUp = true;
      // Two turns: the stall may have happened inside the current poll phase, whose list of readable sockets was
      // taken before it; the next poll lists the subscriber's socket if anything arrived meanwhile.
      this.caughtUp = new Promise((resolve) =>
        this.watch.afterPoll(() =>
          this.watch.afterPoll(() => {
            this.catchingUp = false;
            resolve();
          }),
        ),
      );
    }
    this.events.stalled(lagMs, long);
  }

  private async syncSequence(cause: string): Promise<void> {
    const seq = await this.store.getSequence();
    if (seq !== this.lastSeq) {
      this.cache.flushAll(this.lastSeq === null ? this.unsyncedCause : cause);
      this.lastSeq = seq;
    }
  }
}
