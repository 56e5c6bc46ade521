/**
 * What the application layer needs from the outside world. Adapters implement these; unit tests use fakes.
 */
import type { KeyHashFields } from '../core/records';

/** Raised by a store when Redis cannot answer: the request becomes a 503, never a 401/403 and never an allow. */
export class StoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}

/** A Redis value of the wrong type: the record is corrupt, not the store unavailable. */
export class WrongType {
  /** `type` is what Redis holds there (TYPE), so a different wrong value counts as a new record version. */
  constructor(readonly type: string) {}
}

export interface RecordStore {
  /** The key hash, null when the key does not exist. Throws StoreUnavailableError. */
  getKey(keyId: string): Promise<KeyHashFields | null | WrongType>;
  /** The user record text, null when absent. Throws StoreUnavailableError. */
  getUser(userId: string): Promise<string | null | WrongType>;
  /** The current event sequence (0 when never advanced). Throws StoreUnavailableError. */
  getSequence(): Promise<number>;
}

/** Time in milliseconds. Injected everywhere time matters, so tests drive it instead of sleeping. */
export interface Clock {
  now(): number;
}

/** Wall-clock epoch ms: key expiry (`expiresAt`) is a date. */
export const systemClock: Clock = { now: () => Date.now() };

/** Monotonic ms (performance.now()): cache lifetimes, which a wall-clock step must not stretch or cut. */
export const monotonicClock: Clock = { now: () => performance.now() };

/** bcrypt.compare, injected so tests can count calls. */
export type SecretCompare = (token: string, hash: string) => Promise<boolean>;

/** Hooks the app layer calls so adapters can log and count without the app knowing pino or prom-client. */
export interface AppEvents {
  recordInvalid(kind: 'key' | 'user', id: string, error: string): void;
  cacheLookup(cache: 'key' | 'user', hit: boolean): void;
  cacheFlushed(cause: string): void;
  bcryptState(inFlight: number, queued: number): void;
  bcryptRejected(): void;
}

export const silentEvents: AppEvents = {
  recordInvalid: () => {},
  cacheLookup: () => {},
  cacheFlushed: () => {},
  bcryptState: () => {},
  bcryptRejected: () => {},
};
