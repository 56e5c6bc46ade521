/**
 * Verifies a token against its key's bcrypt hash without letting bcrypt near the warm path.
 *
 * - A key has exactly one secret. Once a token has verified, its salted SHA-256 digest (a process-local random
 *   salt) is kept, never the token; later requests compare digests in constant time (crypto.timingSafeEqual), so
 *   the right token costs one digest and every wrong one is refused without bcrypt. Salted SHA-256 rather than
 *   HMAC: the digest only ever answers "is this the token that verified?" for a 256-bit random secret, which a
 *   salted hash answers as well; createHmac's per-call key schedule made it 2.9 µs against createHash's 1.2
 *   (alternated in one process), on every warm Check. It is computed with the one-shot `crypto.hash` (documented,
 *   Node >= 20.12), which builds no Hash object and no native handle for the garbage collector to track: 15.7k ->
 *   11.1k instructions per verified Check (bench/check-path.bench.ts --instructions).
 * - Until then, concurrent requests with the same token share one bcrypt, wrong tokens are remembered (bounded), and
 *   bcrypt runs at most `concurrency` at a time behind a short queue that fails fast: a flood of wrong secrets
 *   cannot take the threadpool, and gets 503 rather than making everyone wait.
 * - "Short" is measured in time as well as in places: a request is queued only if the bcrypts ahead of it should
 *   finish within `maxWaitMs` (from the running average of recent compares), and one that has waited longer than
 *   that when its turn comes is answered 503 without running bcrypt at all: Envoy (200 ms timeout by default) has
 *   given up on it by then, and the compare would only take the CPU from requests that can still be answered.
 * - One key id has at most `perKeyLimit` bcrypts running or queued at a time (default 1). A key has one secret, so
 *   two different tokens for the same unverified key at once means at least one is wrong; concurrent requests with
 *   the same token still share theirs. A flood aimed at a few key ids takes a few slots, not the whole queue.
 */
import { hash as oneShotHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { VerifiedDigests } from './key-table';
import type { MaybePromise } from './maybe-async';
import type { AppEvents, SecretCompare } from './ports';

export type Verification = 'ok' | 'mismatch' | 'overloaded';

export interface SecretVerifierOptions {
  concurrency: number;
  queue: number;
  maxKeys: number;
  maxRejected?: number;
  /** Longest a request may wait for a bcrypt slot (default 100 ms). */
  maxWaitMs?: number;
  /** bcrypts running or queued per key id (default 1). */
  perKeyLimit?: number;
  /** Milliseconds, monotonic (tests inject one). */
  now?: () => number;
  /** Where verified digests are kept: the sidecar passes its RecordCache's (digests beside records). */
  digests?: VerifiedDigests;
}

export const DEFAULT_BCRYPT_MAX_WAIT_MS = 100;

const DIGEST_BYTES = 32;
const scratchA = Buffer.alloc(DIGEST_BYTES);
const scratchB = Buffer.alloc(DIGEST_BYTES);

/** Constant-time equality of two digests (one-byte strings of DIGEST_BYTES characters). */
function digestsEqual(a: string, b: string): boolean {
  if (a.length !== DIGEST_BYTES || b.length !== DIGEST_BYTES) return false;
  scratchA.write(a, 0, 'binary');
  scratchB.write(b, 0, 'binary');
  return timingSafeEqual(scratchA, scratchB);
}

/** A standalone verifier's own digest memory (unit tests, tools); the sidecar keeps digests in its KeyTable. */
class LruDigests implements VerifiedDigests {
  private readonly entries: LRUCache<string, { hash: string; digest: string }>;

  constructor(max: number) {
    this.entries = new LRUCache({ max });
  }

  checkDigest(keyId: string, hash: string, digest: string): 'ok' | 'mismatch' | undefined {
    const known = this.entries.get(keyId);
    if (known === undefined || known.hash !== hash) return undefined;
    return digestsEqual(known.digest, digest) ? 'ok' : 'mismatch';
  }

  rememberDigest(keyId: string, hash: string, digest: string): void {
    this.entries.set(keyId, { hash, digest });
  }
}

export class SecretVerifier {
  /**
   * The salt of the verified-token digests: 256 random bits per process, never leaves it. Text, so salt + token
   * is one string for the one-shot hash; its fixed length keeps the input unambiguous. base64url (43 characters)
   * rather than hex keeps salt + token within two SHA-256 blocks.
   */
  private readonly salt = randomBytes(32).toString('base64url');
  private readonly digests: VerifiedDigests;
  private readonly rejected: LRUCache<string, true>;
  private readonly inFlight = new Map<string, Promise<Verification>>();
  private readonly waiting: Array<() => void> = [];
  private running = 0;
  /** bcrypts running or queued, by key id. */
  private readonly perKey = new Map<string, number>();
  /** Running average of a compare's duration (ms); 0 until the first one finishes. */
  private averageMs = 0;
  private readonly maxWaitMs: number;
  private readonly perKeyLimit: number;
  private readonly now: () => number;

  constructor(
    private readonly compare: SecretCompare,
    private readonly events: AppEvents,
    private readonly options: SecretVerifierOptions,
  ) {
    this.digests = options.digests ?? new LruDigests(options.maxKeys);
    this.rejected = new LRUCache({ max: options.maxRejected ?? 10_000 });
    this.maxWaitMs = options.maxWaitMs ?? DEFAULT_BCRYPT_MAX_WAIT_MS;
    this.perKeyLimit = options.perKeyLimit ?? 1;
    this.now = options.now ?? (() => performance.now());
  }

  verify(keyId: string, token: string, hash: string): MaybePromise<Verification> {
    const digest = oneShotHash('sha256', this.salt + token, 'binary');
    const known = this.digests.checkDigest(keyId, hash, digest);
    if (known !== undefined) return known;
    // The digest is salted with a secret salt, so using it as a map key leaks nothing about the token. Key id and
    // bcrypt hash have fixed lengths, so the composite key is unambiguous.
    const attempt = `${keyId}\0${hash}\0${digest}`;
    if (this.rejected.has(attempt)) return 'mismatch';
    const pending = this.inFlight.get(attempt);
    if (pending !== undefined) return pending;
    const forKey = this.perKey.get(keyId) ?? 0;
    if (forKey >= this.perKeyLimit || !this.admit()) {
      this.events.bcryptRejected();
      return 'overloaded';
    }
    this.perKey.set(keyId, forKey + 1);
    const promise = this.runBcrypt(token, hash).then((result): Verification => {
      this.inFlight.delete(attempt);
      const left = (this.perKey.get(keyId) ?? 1) - 1;
      if (left > 0) this.perKey.set(keyId, left);
      else this.perKey.delete(keyId);
      if (result === 'expired') {
        this.events.bcryptRejected();
        return 'overloaded';
      }
      if (result) this.digests.rememberDigest(keyId, hash, digest);
      else this.rejected.set(attempt, true);
      return result ? 'ok' : 'mismatch';
    });
    this.inFlight.set(attempt, promise);
    return promise;
  }

  /** A free slot, or a place in a queue that should reach a slot within maxWaitMs. */
  private admit(): boolean {
    const { concurrency, queue } = this.options;
    if (this.running < concurrency) return true;
    if (this.waiting.length >= queue) return false;
    // The bcrypts ahead finish `concurrency` at a time; this one starts when its round comes up.
    const rounds = Math.ceil((this.waiting.length + 1) / concurrency);
    return rounds * this.averageMs <= this.maxWaitMs;
  }

  /** The compare's answer, or 'expired' when the request waited longer than maxWaitMs for a slot. */
  private async runBcrypt(token: string, hash: string): Promise<boolean | 'expired'> {
    if (this.running >= this.options.concurrency) {
      const queuedAt = this.now();
      await new Promise<void>((resolve) => this.waiting.push(resolve));
      // The slot was handed over; give it straight on if this request is too late to be worth a bcrypt.
      if (this.now() - queuedAt > this.maxWaitMs) {
        this.release();
        return 'expired';
      }
    } else {
      this.running++;
    }
    this.report();
    const started = this.now();
    try {
      return await this.compare(token, hash);
    } catch {
      // A hash bcrypt cannot read never verifies anything.
      return false;
    } finally {
      const took = this.now() - started;
      this.averageMs = this.averageMs === 0 ? took : 0.8 * this.averageMs + 0.2 * took;
      this.release();
    }
  }

  /** Hands the slot straight to the next waiter, so `running` never over-counts. */
  private release(): void {
    const next = this.waiting.shift();
    if (next !== undefined) next();
    else this.running--;
    this.report();
  }

  private report(): void {
    this.events.bcryptState(this.running, this.waiting.length);
  }
}
