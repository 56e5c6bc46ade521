/**
 * The authorization rules of the product documentation, as pure functions. Time arrives as an argument.
 * The pipeline in src/app/check.ts calls them in this order; each phase's failures are one family of codes:
 *   1. credential and token format (401)      credentials.ts
 *   2. key state: revoked, expired (401)      keyStateDenial
 *   3. secret (401)                           src/app/secret-verifier.ts
 *   4. owner active (401)                     accessDenial
 *   5. source IP, scope, vault, role (403/400) accessDenial
 */
import type { KeyRecord, UserRecord } from './types';
import { clientAddress, compileCidrs, inRanges, type CidrList } from './network';
import { isOpenPath, parseVaultPath } from './vault-path';
import type { AuthzRequest } from './types';
import type { DenyReason } from './outcome';

/**
 * What a decision reads of a key, computed once when it enters the cache and nothing more: up to 100,000 of these
 * live in the record cache, so fields no rule reads (label, creation and update times) are left behind.
 */
export interface CompiledKey {
  readonly id: string;
  readonly userId: string;
  readonly secretHash: string;
  /** The key holds `vault:read`, the only scope v1 knows. */
  readonly readScope: boolean;
  readonly vaults: readonly string[];
  readonly ipRanges: CidrList;
  readonly expiresAt: number | null;
  readonly revokedAt: number | null;
}

export interface CompiledUser {
  readonly id: string;
  readonly active: boolean;
  readonly developerVaults: readonly string[];
}

/**
 * Lets the cache hand out one shared copy of equal values (many keys carry the same vault list and owner id).
 * The identity by default; whatever it returns must equal its argument.
 */
export interface Sharing {
  list(values: readonly string[]): readonly string[];
  text(value: string): string;
}
const NOT_SHARED: Sharing = { list: (values) => values, text: (value) => value };
const NO_RANGES: CidrList = Object.freeze([]);

export function compileKey(record: KeyRecord, share: Sharing = NOT_SHARED): CompiledKey {
  const compiled = compileCidrs(record.ipAllowlist);
  // parseKeyRecord already validated every CIDR; a failure here is a programming error.
  if (!compiled.ok) throw new Error(`key ${record.id}: invalid CIDR`);
  return {
    id: record.id,
    userId: share.text(record.userId),
    secretHash: record.secretHash,
    readScope: record.scopes.includes('vault:read'),
    vaults: share.list(record.vaults),
    ipRanges: compiled.ranges.length === 0 ? NO_RANGES : compiled.ranges,
    expiresAt: record.expiresAt,
    revokedAt: record.revokedAt,
  };
}

export function compileUser(record: UserRecord, share: Sharing = NOT_SHARED): CompiledUser {
  return {
    id: share.text(record.id),
    active: record.active,
    developerVaults: share.list(record.developerVaults),
  };
}

/** Methods the `vault:read` scope permits. */
const READ_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD']);

export interface Denial {
  reason: DenyReason;
  detail: string;
}

/** Phase 2: checked before any bcrypt work, so revoked and expired keys cost nothing. */
export function keyStateDenial(
  key: Pick<KeyRecord, 'revokedAt' | 'expiresAt'>,
  nowMs: number,
): Denial | null {
  if (key.revokedAt !== null) return { reason: 'key_revoked', detail: 'key is revoked' };
  // An expiry is the first instant at which the key no longer works.
  if (key.expiresAt !== null && nowMs >= key.expiresAt)
    return { reason: 'key_expired', detail: 'key has expired' };
  return null;
}

/**
 * The expiry an allowed request should announce to its client: the key's expiry when it is within `windowMs` of
 * now, else null (no expiry, expiring later, or a window of 0, which turns the warning off).
 */
export function expiryToAnnounce(expiresAt: number | null, nowMs: number, windowMs: number): number | null {
  if (expiresAt === null || windowMs <= 0) return null;
  return expiresAt - nowMs <= windowMs ? expiresAt : null;
}

export interface AccessPolicy {
  trustedProxies: CidrList;
  openPaths: readonly string[];
}

/** An allowed access: the vault the path named, null for an operator-opened path outside /v1/vaults. */
export interface Grant {
  reason: 'allowed';
  vault: string | null;
}
const OPEN_PATH_GRANT: Grant = Object.freeze({ reason: 'allowed', vault: null });

/** Phases 4 and 5, for a key whose secret was verified. null means allowed. */
export function accessDenial(
  req: AuthzRequest,
  key: CompiledKey,
  owner: CompiledUser,
  policy: AccessPolicy,
): Denial | null {
  const access = accessDecision(req, key, owner, policy);
  return access.reason === 'allowed' ? null : access;
}

/** accessDenial, saying on an allow which vault was granted (decision logs and last-used read it). */
export function accessDecision(
  req: AuthzRequest,
  key: CompiledKey,
  owner: CompiledUser,
  policy: AccessPolicy,
): Denial | Grant {
  if (!owner.active) return { reason: 'owner_inactive', detail: 'owner is deactivated' };
  if (key.ipRanges.length > 0) {
    const client = clientAddress(req.source, req.forwardedFor, policy.trustedProxies);
    if (!client.ok) return { reason: 'ip_not_allowed', detail: client.detail };
    if (!inRanges(key.ipRanges, client.ip))
      return { reason: 'ip_not_allowed', detail: 'client address not in allowlist' };
  }
  if (!READ_METHODS.has(req.method) || !key.readScope) {
    return { reason: 'scope_insufficient', detail: `method ${req.method.slice(0, 16)} needs a write scope` };
  }
  const target = parseVaultPath(req.path);
  if (target.kind === 'rejected') return { reason: 'path_rejected', detail: target.detail };
  if (target.kind === 'none') {
    return isOpenPath(target.path, policy.openPaths)
      ? OPEN_PATH_GRANT
      : { reason: 'vault_missing', detail: 'path names no vault' };
  }
  if (!key.vaults.includes(target.vaultId))
    return { reason: 'vault_not_allowed', detail: 'vault not in allowlist' };
  if (!owner.developerVaults.includes(target.vaultId)) {
    return { reason: 'role_missing', detail: 'owner lacks Developer on vault' };
  }
  return { reason: 'allowed', vault: target.vaultId };
}
