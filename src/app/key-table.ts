/**
 * The key half of the record cache: compiled key records and their verified token digests, in one LRU laid out
 * as columns (typed arrays and flat arrays indexed by slot) rather than as objects.
 *
 * Why columns: at 100,000 cached keys, an object per record, per verified digest and per LRU entry cost ~570 heap
 * bytes per key, most of it object headers, boxed numbers and two LRUs' bookkeeping. Here a key costs its Map
 * entry and id string plus ~200 bytes of columns (the digest as raw bytes outside the heap). The bcrypt hash stays
 * a string: the warm path hands it on and compares it by reference, where bytes would cost a decode per request.
 *
 * Why the digest lives with the record: the two share one slot, one LRU position and one eviction. A record goes
 * stale (lifetime over, invalidated, cache flushed) without losing its digest, so reloading an unchanged record
 * does not cost a bcrypt; the digest is dropped when the reloaded record carries a different hash, when the key
 * is deleted or corrupt, and when the key is evicted.
 */
import { timingSafeEqual } from 'node:crypto';
import type { CompiledKey } from '../core/decide';
import type { CidrList } from '../core/network';

/** Where a verified token's digest is kept, and whether one is known for exactly this hash. */
export interface VerifiedDigests {
  /** 'ok' or 'mismatch' when a digest is known for this key and this exact hash; undefined when none is. */
  checkDigest(keyId: string, hash: string, digest: string): 'ok' | 'mismatch' | undefined;
  /** Keeps `digest` as the key's verified token, if the key is cached with this exact hash. */
  rememberDigest(keyId: string, hash: string, digest: string): void;
}

const DIGEST_BYTES = 32;
const FIRST_CAPACITY = 1024;
const NONE = -1;
// state flags
const READ_SCOPE = 1;
const VERIFIED = 2;

const digestA = Buffer.alloc(DIGEST_BYTES);
const digestB = Buffer.alloc(DIGEST_BYTES);

export class KeyTable implements VerifiedDigests {
  private readonly index = new Map<string, number>();
  private readonly ids: (string | undefined)[] = [];
  private readonly userIds: (string | undefined)[] = [];
  private readonly vaults: (readonly string[] | undefined)[] = [];
  private readonly ranges: (CidrList | undefined)[] = [];
  private readonly hashes: (string | undefined)[] = [];
  private state = new Uint8Array(0);
  private epochs = new Uint32Array(0);
  /** The cache clock's time (monotonic ms) until which the record may be served; -Infinity once invalidated. */
  private freshUntil = new Float64Array(0);
  /** NaN stands for null (never expires / not revoked). */
  private expiresAt = new Float64Array(0);
  private revokedAt = new Float64Array(0);
  private prev = new Int32Array(0);
  private next = new Int32Array(0);
  private digests = Buffer.alloc(0);
  private capacity = 0;
  /** Slots handed out so far; freed ones wait in `free`. */
  private highWater = 0;
  private readonly free: number[] = [];
  private head = NONE;
  private tail = NONE;
  /** Bumped by invalidateAll: a slot is fresh only while its epoch is the table's. */
  private epoch = 0;

  constructor(private readonly max: number) {
    if (!Number.isInteger(max) || max < 1) throw new Error('KeyTable: max must be a positive integer');
  }

  get size(): number {
    return this.index.size;
  }

  /**
   * The key's record if cached and fresh at `now` (the cache clock, monotonic ms); marks it recently used. The
   * record is a new small object per call, which dies young: keeping one per key is the cost this table removes.
   */
  get(keyId: string, now: number): CompiledKey | undefined {
    const slot = this.index.get(keyId);
    if (slot === undefined) return undefined;
    if (this.epochs[slot] !== this.epoch || !(now < (this.freshUntil[slot] as number))) return undefined;
    this.toFront(slot);
    return this.view(slot);
  }

  /**
   * Caches a loaded record. `fresh` false (the load raced an invalidation) never overwrites a cached record and
   * never makes one servable; it only gives a key that had no slot one, so the digest of the bcrypt this load
   * leads to can be kept.
   */
  set(keyId: string, key: CompiledKey, freshUntil: number, fresh: boolean): void {
    let slot = this.index.get(keyId);
    if (slot !== undefined && !fresh) return;
    if (slot === undefined) {
      slot = this.allocate();
      this.index.set(keyId, slot);
      this.ids[slot] = keyId;
      this.state[slot] = 0;
    } else {
      this.toFront(slot);
      // A new hash means a new secret: the old token's digest must not verify it.
      if (!this.sameHash(slot, key.secretHash)) this.state[slot] = 0;
    }
    this.hashes[slot] = key.secretHash;
    this.userIds[slot] = key.userId;
    this.vaults[slot] = key.vaults;
    this.ranges[slot] = key.ipRanges;
    this.state[slot] = ((this.state[slot] as number) & VERIFIED) | (key.readScope ? READ_SCOPE : 0);
    this.expiresAt[slot] = key.expiresAt ?? NaN;
    this.revokedAt[slot] = key.revokedAt ?? NaN;
    this.epochs[slot] = this.epoch;
    this.freshUntil[slot] = fresh ? freshUntil : -Infinity;
  }

  /** The record must be reloaded before it is served again; its digest stays. */
  invalidate(keyId: string): void {
    const slot = this.index.get(keyId);
    if (slot !== undefined) this.freshUntil[slot] = -Infinity;
  }

  invalidateOwner(userId: string): void {
    for (const slot of this.index.values()) {
      if (this.userIds[slot] === userId) this.freshUntil[slot] = -Infinity;
    }
  }

  invalidateAll(): void {
    this.epoch = (this.epoch + 1) >>> 0;
  }

  /** Forgets the key and its digest (it was deleted, or its record is corrupt). */
  delete(keyId: string): void {
    const slot = this.index.get(keyId);
    if (slot === undefined) return;
    this.index.delete(keyId);
    this.unlink(slot);
    this.clear(slot);
    this.free.push(slot);
  }

  checkDigest(keyId: string, hash: string, digest: string): 'ok' | 'mismatch' | undefined {
    const slot = this.index.get(keyId);
    if (slot === undefined || ((this.state[slot] as number) & VERIFIED) === 0) return undefined;
    if (!this.sameHash(slot, hash) || digest.length !== DIGEST_BYTES) return undefined;
    digestA.write(digest, 0, DIGEST_BYTES, 'latin1');
    this.digests.copy(digestB, 0, slot * DIGEST_BYTES, (slot + 1) * DIGEST_BYTES);
    return timingSafeEqual(digestA, digestB) ? 'ok' : 'mismatch';
  }

  rememberDigest(keyId: string, hash: string, digest: string): void {
    const slot = this.index.get(keyId);
    if (slot === undefined || digest.length !== DIGEST_BYTES || !this.sameHash(slot, hash)) return;
    this.digests.write(digest, slot * DIGEST_BYTES, DIGEST_BYTES, 'latin1');
    this.state[slot] = (this.state[slot] as number) | VERIFIED;
  }

  private view(slot: number): CompiledKey {
    const expiresAt = this.expiresAt[slot] as number;
    const revokedAt = this.revokedAt[slot] as number;
    return {
      id: this.ids[slot] as string,
      userId: this.userIds[slot] as string,
      secretHash: this.hashes[slot] as string,
      readScope: ((this.state[slot] as number) & READ_SCOPE) !== 0,
      vaults: this.vaults[slot] as readonly string[],
      ipRanges: this.ranges[slot] as CidrList,
      expiresAt: Number.isNaN(expiresAt) ? null : expiresAt,
      revokedAt: Number.isNaN(revokedAt) ? null : revokedAt,
    };
  }

  private sameHash(slot: number, hash: string): boolean {
    return this.hashes[slot] === hash;
  }

  /** A free slot at the front of the LRU list: a freed one, a new one, or the least recently used key's. */
  private allocate(): number {
    let slot = this.free.pop();
    if (slot === undefined && this.highWater < this.max) {
      if (this.highWater === this.capacity) this.grow();
      slot = this.highWater++;
    }
    if (slot === undefined) {
      slot = this.tail;
      this.index.delete(this.ids[slot] as string);
      this.unlink(slot);
      this.clear(slot);
    }
    this.linkFront(slot);
    return slot;
  }

  private clear(slot: number): void {
    this.ids[slot] = undefined;
    this.userIds[slot] = undefined;
    this.vaults[slot] = undefined;
    this.ranges[slot] = undefined;
    this.hashes[slot] = undefined;
    this.state[slot] = 0;
  }

  /** Doubles every column (up to max), so a small cache stays small and a large one is not over-allocated. */
  private grow(): void {
    const capacity = Math.min(this.max, Math.max(FIRST_CAPACITY, this.capacity * 2));
    const resize = <T extends Uint8Array | Uint32Array | Int32Array | Float64Array>(
      old: T,
      make: (n: number) => T,
    ) => {
      const bigger = make(capacity);
      bigger.set(old);
      return bigger;
    };
    this.state = resize(this.state, (n) => new Uint8Array(n));
    this.epochs = resize(this.epochs, (n) => new Uint32Array(n));
    this.freshUntil = resize(this.freshUntil, (n) => new Float64Array(n));
    this.expiresAt = resize(this.expiresAt, (n) => new Float64Array(n));
    this.revokedAt = resize(this.revokedAt, (n) => new Float64Array(n));
    this.prev = resize(this.prev, (n) => new Int32Array(n));
    this.next = resize(this.next, (n) => new Int32Array(n));
    this.digests = resize(this.digests, (n) => Buffer.alloc(n * DIGEST_BYTES));
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
