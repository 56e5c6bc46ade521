/**
 * Last use of each key: when this sidecar last allowed it, the client address the rules compared and the vault.
 *
 * The Check path only writes into an in-memory map (one lookup and a few assignments per allow, no Redis call, no
 * allocation for a key already seen in this window). A timer swaps the map out every `flushMs` and hands what it
 * held to the store in one batch, so a key is written at most once per interval however busy it is. The client
 * address is resolved at flush time, from the peer and X-Forwarded-For kept as they came, so the allow path does not
 * parse addresses for this. The map is bounded: uses of keys beyond `maxPending` distinct keys in one window are
 * dropped and counted. Every entry Redis did not take (the whole batch, or single writes it refused) goes back into
 * the map for the next interval, unless a newer use of that key is already there, so a transient Redis error loses
 * nothing but the delay; the map's bound still holds, and entries that do not fit are counted as dropped.
 *
 * Several sidecars write the same key: the store keeps the latest time (a compare in Redis), never moving it back.
 */
import type { PeerAddress } from '../core/types';

/** One key's last use, as the store writes it. `ip` and `vault` are '' when there was none. */
export interface LastUse {
  keyId: string;
  at: number;
  ip: string;
  vault: string;
}

export interface LastUseStore {
  /**
   * Writes the batch (pipelined: one round trip per few hundred entries) and resolves to how many entries Redis refused, naming each through `refused`
   * so that exactly those are retried. Throws when nothing could be sent or every write was refused.
   */
  write(uses: readonly LastUse[], refused: (keyId: string, error: unknown) => void): Promise<number>;
}

export interface LastUsedEvents {
  dropped(count: number): void;
  written(count: number): void;
  failed(count: number, error: unknown): void;
}

export interface LastUsedOptions {
  flushMs: number;
  maxPending: number;
  /** The address the rules compare for a peer and X-Forwarded-For (clientAddressText with the policy's proxies). */
  resolveAddress(source: PeerAddress, forwardedFor: string | undefined): string | undefined;
}

interface Pending {
  at: number;
  source: PeerAddress;
  forwardedFor: string | undefined;
  vault: string | undefined;
}

/** Longest a drain at shutdown waits for Redis: a dead Redis must not hold the process. */
const DRAIN_TIMEOUT_MS = 2000;

export class LastUsedRecorder {
  private pending = new Map<string, Pending>();
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> | null = null;

  constructor(
    private readonly store: LastUseStore,
    private readonly events: LastUsedEvents,
    private readonly options: LastUsedOptions,
  ) {}

  /**
   * Called on every allow with the time the decision read from the clock: remembers the latest use of the key for
   * the next flush. Never throws, no I/O.
   */
  record(
    keyId: string,
    at: number,
    source: PeerAddress,
    forwardedFor: string | undefined,
    vault: string | undefined,
  ): void {
    const entry = this.pending.get(keyId);
    if (entry !== undefined) {
      if (at < entry.at) return;
      entry.at = at;
      entry.source = source;
      entry.forwardedFor = forwardedFor;
      entry.vault = vault;
      return;
    }
    if (this.pending.size >= this.options.maxPending) {
      this.events.dropped(1);
      return;
    }
    this.pending.set(keyId, { at, source, forwardedFor, vault });
  }

  /** Uses waiting for the next flush (distinct keys). */
  get size(): number {
    return this.pending.size;
  }

  start(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => void this.flush(), this.options.flushMs);
    // A quiet sidecar may exit without waiting for the next tick; close() drains.
    this.timer.unref();
  }

  /** Writes everything pending now (one batch); a flush already running is waited for instead of overlapped. */
  flush(): Promise<void> {
    if (this.writing !== null) return this.writing;
    if (this.pending.size === 0) return Promise.resolve();
    const batch = this.pending;
    this.pending = new Map();
    this.writing = this.write(batch).finally(() => {
      this.writing = null;
    });
    return this.writing;
  }

  /** Stops the timer and writes what is pending, waiting at most DRAIN_TIMEOUT_MS (shutdown). */
  async close(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    let deadline: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      deadline = setTimeout(resolve, DRAIN_TIMEOUT_MS);
    });
    try {
      await Promise.race([
        (async () => {
          await this.writing;
          await this.flush();
        })(),
        timeout,
      ]);
    } finally {
      clearTimeout(deadline);
    }
  }

  private async write(batch: Map<string, Pending>): Promise<void> {
    const uses: LastUse[] = [];
    for (const [keyId, entry] of batch) {
      const ip = this.options.resolveAddress(entry.source, entry.forwardedFor) ?? '';
      uses.push({ keyId, at: entry.at, ip, vault: entry.vault ?? '' });
    }
    const refused: string[] = [];
    let firstError: unknown = null;
    let retry: Iterable<string>;
    try {
      const failed = await this.store.write(uses, (keyId, error) => {
        refused.push(keyId);
        firstError ??= error;
      });
      this.events.written(uses.length - failed);
      if (failed === 0) return;
      this.events.failed(
        failed,
        firstError ?? new Error(`${failed} of ${uses.length} last-used writes failed`),
      );
      // A store that did not name them all: retry the whole batch, which is safe, as Redis keeps the later time.
      retry = refused.length >= failed ? refused : batch.keys();
    } catch (error) {
      this.events.failed(uses.length, error);
      retry = batch.keys();
    }
    const dropped = requeue(this.pending, retry, batch, this.options.maxPending);
    if (dropped > 0) this.events.dropped(dropped);
  }
}

/**
 * Puts the entries of `batch` named by `failed` back into `pending` for the next write, and returns how many did not
 * fit. A key already pending keeps whichever use is later: a use recorded while the batch was in flight is newer in
 * all but clock-skew cases, and the write in Redis keeps the later time anyway, so the buffer must never hold the
 * older one. New keys are only added while `pending` has fewer than `maxPending` entries.
 */
export function requeue<T extends { at: number }>(
  pending: Map<string, T>,
  failed: Iterable<string>,
  batch: ReadonlyMap<string, T>,
  maxPending: number,
): number {
  let dropped = 0;
  for (const keyId of failed) {
    const entry = batch.get(keyId);
    if (entry === undefined) continue;
    const current = pending.get(keyId);
    if (current !== undefined) {
      if (entry.at > current.at) pending.set(keyId, entry);
    } else if (pending.size >= maxPending) {
      dropped++;
    } else {
      pending.set(keyId, entry);
    }
  }
  return dropped;
}
