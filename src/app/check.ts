/**
 * The Check pipeline. Phases run in a fixed order and each phase's failures belong to one family of answers:
 *   1. credential and token format (401), no I/O
 *   2. cache trust: while the event subscription is unhealthy, or after the event loop stalled, prove no event was
 *      missed (503 if Redis can't say)
 *   3. key record: unknown, corrupt (401) or unreadable (503)
 *   4. key state: revoked, expired (401), before any bcrypt work
 *   5. secret: verified digest or bcrypt (401, 503 when bcrypt is saturated)
 *   6. owner record and access rules: owner inactive (401); IP, scope, vault, role (403/400)
 * A warm request (records cached, token verified before) runs synchronously with no Redis or bcrypt call.
 * Nothing here throws to the caller: every failure becomes a Decision.
 */
import { extractCredential } from '../core/credentials';
import { clientAddressText } from '../core/network';
import {
  accessDecision,
  expiryToAnnounce,
  keyStateDenial,
  type AccessPolicy,
  type CompiledKey,
} from '../core/decide';
import type { Decision, DenyReason } from '../core/outcome';
import type { ParsedToken } from '../core/token';
import type { AuthzRequest } from '../core/types';
import { isPromise, type MaybePromise } from './maybe-async';
import type { CacheFreshness } from './freshness';
import type { LastUsedRecorder } from './last-used';
import type { KeyEntry, RecordCache, UserEntry } from './record-cache';
import { StoreUnavailableError, type Clock } from './ports';
import type { SecretVerifier, Verification } from './secret-verifier';

export interface CheckDeps {
  cache: RecordCache;
  freshness: CacheFreshness;
  verifier: SecretVerifier;
  clock: Clock;
  policy: AccessPolicy;
  /** FORTARY_EXPIRY_WARNING_DAYS in ms: allows of keys expiring sooner carry the expiry. 0 or absent: off. */
  expiryWarningMs?: number;
  /** Remembers allowed uses for the periodic last-used write (no I/O here). Absent: not recorded. */
  lastUsed?: LastUsedRecorder;
}

export class CheckService {
  constructor(private readonly deps: CheckDeps) {}

  check(req: AuthzRequest): MaybePromise<Decision> {
    try {
      const result = this.run(req);
      return isPromise(result) ? result.catch(failure) : result;
    } catch (error) {
      return failure(error);
    }
  }

  private run(req: AuthzRequest): MaybePromise<Decision> {
    const credential = extractCredential(req);
    if (!credential.ok) return deny(credential.reason, credential.detail);
    const token = credential.token;
    // One clock read per Check serves both the stall test and the key's expiry (judged at arrival).
    const now = this.deps.clock.now();
    if (!this.deps.freshness.trustedAt(now)) {
      return this.deps.freshness.settle().then(() => this.withToken(req, token, now));
    }
    return this.withToken(req, token, now);
  }

  // Each phase continues synchronously when its value is at hand and through `then` only on a miss, so the warm
  // path allocates no closures.
  private withToken(req: AuthzRequest, token: ParsedToken, now: number): MaybePromise<Decision> {
    const entry = this.deps.cache.peekKey(token.keyId) ?? this.deps.cache.loadKey(token.keyId);
    return isPromise(entry)
      ? entry.then((e) => this.withKey(req, token, e, now))
      : this.withKey(req, token, entry, now);
  }

  private withKey(
    req: AuthzRequest,
    token: ParsedToken,
    entry: KeyEntry,
    now: number,
  ): MaybePromise<Decision> {
    const keyId = token.keyId;
    if (entry.kind === 'missing') return deny('key_unknown', 'no such key', { keyId });
    if (entry.kind === 'invalid') return deny('record_invalid', 'key record is corrupt', { keyId });
    const key = entry.key;
    const state = keyStateDenial(key, now);
    if (state !== null) return deny(state.reason, state.detail, { keyId, userId: key.userId });
    const verification = this.deps.verifier.verify(keyId, token.token, key.secretHash);
    return isPromise(verification)
      ? verification.then((result) => this.withSecret(req, keyId, key, result, now))
      : this.withSecret(req, keyId, key, verification, now);
  }

  private withSecret(
    req: AuthzRequest,
    keyId: string,
    key: CompiledKey,
    result: Verification,
    now: number,
  ): MaybePromise<Decision> {
    const userId = key.userId;
    if (result === 'overloaded') return deny('overloaded', 'bcrypt queue full', { keyId, userId });
    if (result === 'mismatch') return deny('secret_mismatch', 'secret does not match', { keyId, userId });
    const user = this.deps.cache.peekUser(userId) ?? this.deps.cache.loadUser(userId);
    return isPromise(user)
      ? user.then((u) => this.withOwner(req, key, u, now))
      : this.withOwner(req, key, user, now);
  }

  private withOwner(req: AuthzRequest, key: CompiledKey, entry: UserEntry, now: number): Decision {
    const keyId = key.id;
    const userId = key.userId;
    // A key whose owner record is gone or corrupt has no live roles to inherit.
    if (entry.kind !== 'user') return deny('record_invalid', `owner record ${entry.kind}`, { keyId, userId });
    const access = accessDecision(req, key, entry.user, this.deps.policy);
    if (access.reason !== 'allowed') return deny(access.reason, access.detail, { keyId, userId });
    const vault = access.vault ?? undefined;
    this.deps.lastUsed?.record(keyId, now, req.source, req.forwardedFor, vault);
    const warning = expiryToAnnounce(key.expiresAt, now, this.deps.expiryWarningMs ?? 0);
    // One object shape for every allow (absent values as undefined), so the handler's reads stay monomorphic.
    return {
      allow: true,
      reason: 'allowed',
      keyId,
      userId,
      vault,
      expiryWarning: warning ?? undefined,
    };
  }

  /**
   * The client address the IP rules compare for this request (see clientAddress), as text; for the decision log.
   * Computed only for a line that is written (about a microsecond): allows are logged at debug level.
   */
  comparedAddress(req: AuthzRequest): string | undefined {
    return clientAddressText(req.source, req.forwardedFor, this.deps.policy.trustedProxies);
  }
}

function deny(reason: DenyReason, detail: string, ids: { keyId?: string; userId?: string } = {}): Decision {
  return { allow: false, reason, detail, ...ids };
}

function failure(error: unknown): Decision {
  if (error instanceof StoreUnavailableError) return deny('store_unavailable', error.message);
  return deny('internal_error', error instanceof Error ? error.message : String(error));
}
