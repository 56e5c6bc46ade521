/**
 * A bounded LRU whose entries expire, with storage that grows with the entries it holds (doubling, up to `max`).
 *
 * Why not lru-cache: it allocates every column for `max` entries up front. The user cache is bounded by
 * FORTARY_CACHE_MAX_USERS (default 100,000) while a sidecar typically holds a fraction of that: with 25,000 users an
 * lru-cache of max 100,000 took 5.0 MiB of heap (4.1 MiB of it when empty), one sized for them 1.9 MiB.
 *
 * Semantics are lru-cache's as the record cache used them (`ttlResolution: 0`, `updateAgeOnGet: false`, no stale
 * reads): an entry set at `t` with lifetime `ttl` is served while `now - t <= ttl`; a `get` of an expired entry
 * deletes it and returns undefined; `get` and `set` make the entry the most recently used; a `set` beyond `max`
 * evicts the least recently used entry.
 */
import type { Clock } from './ports';

const NONE = -1;
const FIRST_CAPACITY = 256;

export class TtlLru<V> {
  private readonly index = new Map<string, number>();
  private readonly keys: (string | undefined)[] = [];
  private readonly values: (V | undefined)[] = [];
  private starts = new Float64Array(0);
  private ttls = new Float64Array(0);
  private prev = new Int32Array(0);
  private next = new Int32Array(0);
  private capacity = 0;
  /** Slots handed out so far; freed ones wait in `free`. */
  private highWater = 0;
  private readonly free: number[] = [];
  private head = NONE;
  private tail = NONE;

  constructor(
    private readonly max: number,
    /** Lifetime of an entry set without one (ms on `clock`). */
    private readonly ttl: number,
    private readonly clock: Clock,
  ) {
    if (!Number.isInteger(max) || max < 1) throw new Error('TtlLru: max must be a positive integer');
  }

  /** Entries held, expired ones not yet removed included. */
  get size(): number {
    return this.index.size;
  }

  get(key: string): V | undefined {
    const slot = this.index.get(key);
    if (slot === undefined) return undefined;
    if (this.clock.now() - (this.starts[slot] as number) > (this.ttls[slot] as number)) {
      this.remove(key, slot);
      return undefined;
    }
    this.toFront(slot);
    return this.values[slot];
  }

  set(key: string, value: V, ttl: number = this.ttl): void {
    let slot = this.index.get(key);
    if (slot === undefined) {
      slot = this.allocate();
      this.index.set(key, slot);
      this.keys[slot] = key;
    } else {
      this.toFront(slot);
    }
    this.values[slot] = value;
    this.starts[slot] = this.clock.now();
    this.ttls[slot] = ttl;
  }

  delete(key: string): void {
    const slot = this.index.get(key);
    if (slot !== undefined) this.remove(key, slot);
  }

  /** Forgets every entry; the storage already grown is kept for the entries to come. */
  clear(): void {
    for (const slot of this.index.values()) {
      this.keys[slot] = undefined;
      this.values[slot] = undefined;
    }
    this.index.clear();
    this.free.length = 0;
    this.highWater = 0;
    this.head = NONE;
    this.tail = NONE;
  }

  private remove(key: string, slot: number): void {
    this.index.delete(key);
    this.unlink(slot);
    this.keys[slot] = undefined;
    this.values[slot] = undefined;
    this.free.push(slot);
  }

  /** A free slot at the front of the list: a freed one, a new one, or the least recently used entry's. */
  private allocate(): number {
    let slot = this.free.pop();
    if (slot === undefined && this.highWater < this.max) {
      if (this.highWater === this.capacity) this.grow();
      slot = this.highWater++;
    }
    if (slot === undefined) {
      slot = this.tail;
      this.index.delete(this.keys[slot] as string);
      this.unlink(slot);
    }
    this.linkFront(slot);
    return slot;
  }

  private grow(): void {
    const capacity = Math.min(this.max, Math.max(FIRST_CAPACITY, this.capacity * 2));
    const resize = <T extends Int32Array | Float64Array>(old: T, make: (n: number) => T): T => {
      const bigger = make(capacity);
      bigger.set(old);
      return bigger;
    };
    this.starts = resize(this.starts, (n) => new Float64Array(n));
    this.ttls = resize(this.ttls, (n) => new Float64Array(n));
    this.prev = resize(this.prev, (n) => new Int32Array(n));
    this.next = resize(this.next, (n) => new Int32Array(n));
    this.capacity = capacity;
  }

  private toFront(slot: number): void {
    if (slot === this.head) return;
    this.unlink(slot);
    this.linkFront(slot);
  }

  private linkFront(slot: number): void {
    this.prev[slot] = NONE;
    this.next[slot] = this.head;
    if (this.head !== NONE) this.prev[this.head] = slot;
    this.head = slot;
    if (this.tail === NONE) this.tail = slot;
  }

  private unlink(slot: number): void {
    const before = this.prev[slot] as number;
    const after = this.next[slot] as number;
    if (before === NONE) this.head = after;
    else this.next[before] = after;
    if (after === NONE) this.tail = before;
    else this.prev[after] = before;
  }
}
