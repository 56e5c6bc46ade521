/**
 * In-process cache of key and user records, the reason the warm path needs no Redis round trip.
 *
 * Freshness rules (docs/propagation.md):
 * - entries live at most `maxStalenessMs` (role changes without an event are bounded by it);
 * - events invalidate single entries; a gap in the event sequence flushes everything;
 * - a load that was in flight while an invalidation happened is used for its own request but never served from
 *   the cache, so a revocation cannot be overwritten by the stale read that raced it.
 * Valid key records live in a KeyTable together with their verified digests (which outlive a record's freshness);
 * unknown and corrupt key ids live in a small LRU of their own, so a flood of random key ids cannot evict them.
 */
import { createHash } from 'node:crypto';
import { compileKey, compileUser, type CompiledKey, type CompiledUser, type Sharing } from '../core/decide';
import { parseKeyRecord, parseUserRecord } from '../core/records';
import { KeyTable, type VerifiedDigests } from './key-table';
import { TtlLru } from './ttl-lru';
import { monotonicClock, WrongType, type AppEvents, type Clock, type RecordStore } from './ports';

export type KeyEntry = { kind: 'key'; key: CompiledKey } | { kind: 'missing' } | { kind: 'invalid' };
export type UserEntry = { kind: 'user'; user: CompiledUser } | { kind: 'missing' } | { kind: 'invalid' };

export interface RecordCacheOptions {
  maxKeys: number;
  maxUsers: number;
  maxStalenessMs: number;
  /** Unknown ids are remembered briefly so a client retrying a deleted key does not hammer Redis. */
  missingTtlMs?: number;
  /** What entry lifetimes are measured on (default monotonicClock); tests pass a clock they advance. */
  clock?: Clock;
}

interface InFlight<T> {
  generation: number;
  promise: Promise<T>;
}

const MISSING = Object.freeze({ kind: 'missing' } as const);
const INVALID = Object.freeze({ kind: 'invalid' } as const);
/** Negative answers are short-lived and re-read cheaply; this only has to absorb a burst. */
const MAX_NEGATIVE_KEYS = 10_000;

export class RecordCache {
  private readonly keys: KeyTable;
  private readonly unusableKeys: TtlLru<KeyEntry>;
  private readonly ttl: number;
  private readonly users: TtlLru<UserEntry>;
  private readonly keyLoads = new Map<string, InFlight<KeyEntry>>();
  private readonly userLoads = new Map<string, InFlight<UserEntry>>();
  /** The corrupt version last logged per record, so a hot corrupt key logs once, not per request. */
  private readonly reported: TtlLru<string>;
  private readonly missingTtlMs: number;
  /** Advanced by every invalidation; loads that started under an older generation are not cached. */
  private generation = 0;
  private readonly sharing = new SharedValues();
  private readonly clock: Clock;

  constructor(
    private readonly store: RecordStore,
    private readonly events: AppEvents,
    options: RecordCacheOptions,
  ) {
    const ttl = options.maxStalenessMs;
    this.ttl = ttl;
    this.missingTtlMs = Math.min(options.missingTtlMs ?? 5000, ttl);
    this.clock = options.clock ?? monotonicClock;
    this.keys = new KeyTable(options.maxKeys);
    // Expiry is checked on read, which is all correctness needs and costs no timers. Storage grows with the
    // entries (ttl-lru.ts): a sidecar holds far fewer users than FORTARY_CACHE_MAX_USERS allows.
    this.unusableKeys = new TtlLru(Math.min(options.maxKeys, MAX_NEGATIVE_KEYS), ttl, this.clock);
    this.users = new TtlLru(options.maxUsers, ttl, this.clock);
    this.reported = new TtlLru(10_000, Infinity, this.clock);
  }

  get size(): { keys: number; users: number } {
    return { keys: this.keys.size + this.unusableKeys.size, users: this.users.size };
  }

  /** Verified token digests, kept beside the key records (the SecretVerifier's memory). */
  get digests(): VerifiedDigests {
    return this.keys;
  }

  /** A cached key entry, or undefined on a miss (the caller then awaits loadKey). */
  peekKey(keyId: string): KeyEntry | undefined {
    const key = this.keys.get(keyId, this.clock.now());
    const entry: KeyEntry | undefined =
      key !== undefined ? { kind: 'key', key } : this.unusableKeys.get(keyId);
    this.events.cacheLookup('key', entry !== undefined);
    return entry;
  }

  peekUser(userId: string): UserEntry | undefined {
    const entry = this.users.get(userId);
    this.events.cacheLookup('user', entry !== undefined);
    return entry;
  }

  loadKey(keyId: string): Promise<KeyEntry> {
    return this.load(
      this.keyLoads,
      keyId,
      async () => {
        const fields = await this.store.getKey(keyId);
        if (fields === null) return MISSING;
        if (fields instanceof WrongType)
          return this.invalid(
            'key',
            keyId,
            `Redis value is a ${fields.type}, not a hash`,
            `type:${fields.type}`,
          );
        const parsed = parseKeyRecord(keyId, fields);
        if (!parsed.ok)
          return this.invalid('key', keyId, parsed.error, `${fields.record}\0${fields.revokedAt}`);
        this.repaired('key', keyId);
        return { kind: 'key', key: compileKey(parsed.value, this.sharing) } as const;
      },
      (entry, generation) => this.storeKey(keyId, entry, generation),
    );
  }

  loadUser(userId: string): Promise<UserEntry> {
    return this.load(
      this.userLoads,
      userId,
      async () => {
        const text = await this.store.getUser(userId);
        if (text === null) return { kind: 'missing' } as const;
        if (text instanceof WrongType)
          return this.invalid(
            'user',
            userId,
            `Redis value is a ${text.type}, not a string`,
            `type:${text.type}`,
          );
        const parsed = parseUserRecord(userId, text);
        if (!parsed.ok) return this.invalid('user', userId, parsed.error, text);
        this.repaired('user', userId);
        return { kind: 'user', user: compileUser(parsed.value, this.sharing) } as const;
      },
      (entry, generation) => this.store_(this.users, userId, entry, generation),
    );
  }

  invalidateKey(keyId: string): void {
    this.generation++;
    this.keys.invalidate(keyId);
    this.unusableKeys.delete(keyId);
    this.keyLoads.delete(keyId);
  }

  /** Drops the user and, since a deactivation revokes them, every cached key the user owns. */
  invalidateUser(userId: string): void {
    this.generation++;
    this.users.delete(userId);
    this.userLoads.delete(userId);
    this.keys.invalidateOwner(userId);
  }

  flushAll(cause: string): void {
    this.generation++;
    this.keys.invalidateAll();
    this.unusableKeys.clear();
    this.users.clear();
    this.keyLoads.clear();
    this.userLoads.clear();
    this.events.cacheFlushed(cause);
  }

  private load<T>(
    inFlight: Map<string, InFlight<T>>,
    id: string,
    fetch: () => Promise<T>,
    save: (entry: T, generation: number) => void,
  ): Promise<T> {
    const existing = inFlight.get(id);
    // Concurrent misses for one id share one Redis read, unless an invalidation happened since it started.
    if (existing !== undefined && existing.generation === this.generation) return existing.promise;
    const generation = this.generation;
    const promise = fetch().then(
      (entry) => {
        if (inFlight.get(id)?.promise === promise) inFlight.delete(id);
        save(entry, generation);
        return entry;
      },
      (error: unknown) => {
        if (inFlight.get(id)?.promise === promise) inFlight.delete(id);
        throw error;
      },
    );
    inFlight.set(id, { generation, promise });
    return promise;
  }

  private storeKey(keyId: string, entry: KeyEntry, generation: number): void {
    const current = generation === this.generation;
    if (entry.kind === 'key') {
      if (current) this.unusableKeys.delete(keyId);
      this.keys.set(keyId, entry.key, this.clock.now() + this.ttl, current);
      return;
    }
    if (!current) return;
    this.keys.delete(keyId);
    this.unusableKeys.set(keyId, entry, entry.kind === 'missing' ? this.missingTtlMs : this.ttl);
  }

  private store_<T extends { kind: string }>(
    cache: TtlLru<T>,
    id: string,
    entry: T,
    generation: number,
  ): void {
    if (generation !== this.generation) return;
    cache.set(id, entry, entry.kind === 'missing' ? this.missingTtlMs : this.ttl);
  }

  private invalid(kind: 'key' | 'user', id: string, error: string, version: string): { kind: 'invalid' } {
    const fingerprint = createHash('sha256').update(version).digest('base64');
    if (this.reported.get(`${kind}:${id}`) !== fingerprint) {
      this.reported.set(`${kind}:${id}`, fingerprint);
      this.events.recordInvalid(kind, id, error);
    }
    return INVALID;
  }

  /** A valid load ends the corrupt streak: corrupting the record again, even into the same bytes, logs again. */
  private repaired(kind: 'key' | 'user', id: string): void {
    if (this.reported.size > 0) this.reported.delete(`${kind}:${id}`);
  }
}

/**
 * One shared copy of equal vault lists and user ids across cached records (most keys carry the same few lists,
 * and every key of a user repeats its id): tens of bytes per cached key. Bounded: when a table is full it starts
 * over, which only costs sharing, never correctness.
 */
class SharedValues implements Sharing {
  static readonly MAX = 50_000;
  private readonly lists = new Map<string, readonly string[]>();
  private readonly texts = new Map<string, string>();

  list(values: readonly string[]): readonly string[] {
    const id = JSON.stringify(values);
    let shared = this.lists.get(id);
    if (shared === undefined) {
      if (this.lists.size >= SharedValues.MAX) this.lists.clear();
      shared = Object.freeze([...values]);
      this.lists.set(id, shared);
    }
    return shared;
  }

  text(value: string): string {
    const shared = this.texts.get(value);
    if (shared !== undefined) return shared;
    if (this.texts.size >= SharedValues.MAX) this.texts.clear();
    this.texts.set(value, value);
    return value;
  }
}
