/**
 * Verifies a token against its key's bcrypt hash without letting bcrypt near the warm path.
 *
 * - A key has exactly one secret. Once a token has verified, its HMAC digest (process-local pepper) is kept; later
 *   requests compare digests in constant time, so the right token costs ~2 µs and every wrong one is refused
 *   without bcrypt.
 * - Until then, concurrent requests with the same token share one bcrypt, wrong tokens are remembered (bounded), and
 *   bcrypt runs at most `concurrency` at a time behind a short queue that fails fast: a flood of wrong secrets
 *   cannot take the threadpool, and gets 503 rather than making everyone wait.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { MaybePromise } from './maybe-async';
import type { AppEvents, SecretCompare } from './ports';

export type Verification = 'ok' | 'mismatch' | 'overloaded';

export interface SecretVerifierOptions {
  concurrency: number;
  queue: number;
  maxKeys: number;
  maxRejected?: number;
}

interface Verified {
  hash: string;
  digest: Buffer;
}

export class SecretVerifier {
  private readonly pepper = randomBytes(32);
  private readonly verified: LRUCache<string, Verified>;
  private readonly rejected: LRUCache<string, true>;
  private readonly inFlight = new Map<string, Promise<Verification>>();
  private readonly waiting: Array<() => void> = [];
  private running = 0;

  constructor(
    private readonly compare: SecretCompare,
    private readonly events: AppEvents,
    private readonly options: SecretVerifierOptions,
  ) {
    this.verified = new LRUCache({ max: options.maxKeys });
    this.rejected = new LRUCache({ max: options.maxRejected ?? 10_000 });
  }

  verify(keyId: string, token: string, hash: string): MaybePromise<Verification> {
    const digest = createHmac('sha256', this.pepper).update(token).digest();
    const known = this.verified.get(keyId);
    if (known !== undefined && known.hash === hash) {
      return timingSafeEqual(known.digest, digest) ? 'ok' : 'mismatch';
    }
    // The digest is keyed with a secret pepper, so using it as a map key leaks nothing about the token.
    const attempt = `${keyId}\0${hash}\0${digest.toString('base64')}`;
    if (this.rejected.has(attempt)) return 'mismatch';
    const pending = this.inFlight.get(attempt);
    if (pending !== undefined) return pending;
    if (this.running >= this.options.concurrency && this.waiting.length >= this.options.queue) {
      this.events.bcryptRejected();
      return 'overloaded';
    }
    const promise = this.runBcrypt(token, hash).then((matches): Verification => {
      this.inFlight.delete(attempt);
      if (matches) this.verified.set(keyId, { hash, digest });
      else this.rejected.set(attempt, true);
      return matches ? 'ok' : 'mismatch';
    });
    this.inFlight.set(attempt, promise);
    return promise;
  }

  /** Forgets a key's verified digest (not needed for correctness: the hash is compared too). */
  forget(keyId: string): void {
    this.verified.delete(keyId);
  }

  private async runBcrypt(token: string, hash: string): Promise<boolean> {
    if (this.running >= this.options.concurrency) {
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.running++;
    }
    this.report();
    try {
      return await this.compare(token, hash);
    } catch {
      // A hash bcrypt cannot read never verifies anything.
      return false;
    } finally {
      const next = this.waiting.shift();
      // Hand the slot straight to the next waiter so `running` never over-counts.
      if (next !== undefined) next();
      else this.running--;
      this.report();
    }
  }

  private report(): void {
    this.events.bcryptState(this.running, this.waiting.length);
  }
}
