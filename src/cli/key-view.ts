/** How `keys show`, `keys list` and the write commands present a key: the view (JSON) and its lines (human). */
import { printableLabel } from '../core/label';
import type { KeyRecord } from '../core/types';
import { accessLines, type EffectiveAccess } from './access';
import type { LastUse } from './redis';

/** What show and list print: everything but the secret hash. Times are ISO-8601 UTC. */
export interface KeyView {
  keyId: string;
  userId: string;
  status: 'active' | 'expired' | 'revoked';
  scopes: readonly string[];
  vaults: readonly string[];
  ipAllowlist: readonly string[];
  expiresAt: string | null;
  label: string;
  createdAt: string;
  updatedAt: string;
  revokedAt: string | null;
  /** The successor `keys rotate` made, and the key this one replaced; null when none. */
  rotatedTo: string | null;
  rotatedFrom: string | null;
  /** What the owner's live roles let the key do (show and list; not after edits). */
  effectiveAccess?: EffectiveAccess;
  /** Last allowed use as the sidecars recorded it (up to FORTARY_LAST_USED_FLUSH_S late); null: never. */
  lastUsedAt?: string | null;
  /** The client address the rules compared on that use. */
  lastUsedIp?: string | null;
  lastUsedVault?: string | null;
}

export type ListedKey = KeyView | { keyId: string; status: 'invalid'; problem: string };

/** What show and list print of a key; with `lastUse`, also its last use (edit does not read it). */
export function keyView(key: KeyRecord, nowMs: number, lastUse?: LastUse): KeyView {
  // The same order as the sidecar's keyStateDenial: revoked first, then expired (expiry is the first dead instant).
  const status =
    key.revokedAt !== null
      ? 'revoked'
      : key.expiresAt !== null && nowMs >= key.expiresAt
        ? 'expired'
        : 'active';
  return {
    keyId: key.id,
    userId: key.userId,
    status,
    scopes: key.scopes,
    vaults: key.vaults,
    ipAllowlist: key.ipAllowlist,
    expiresAt: iso(key.expiresAt),
    label: key.label,
    createdAt: iso(key.createdAt) as string,
    updatedAt: iso(key.updatedAt) as string,
    revokedAt: iso(key.revokedAt),
    rotatedTo: key.rotatedTo ?? null,
    rotatedFrom: key.rotatedFrom ?? null,
    ...(lastUse === undefined
      ? {}
      : { lastUsedAt: iso(lastUse.at), lastUsedIp: lastUse.ip, lastUsedVault: lastUse.vault }),
  };
}

export function describeKey(view: KeyView): string[] {
  return [
    `key:      ${view.keyId}`,
    `user:     ${view.userId}`,
    `status:   ${view.status}${view.status === 'active' && view.effectiveAccess?.deniedEverywhere ? ` (but every vault request is denied: ${view.effectiveAccess.deniedEverywhere})` : ''}`,
    `scopes:   ${view.scopes.join(', ')}`,
    `vaults:   ${view.vaults.length > 0 ? view.vaults.join(', ') : '(none)'}`,
    `ips:      ${view.ipAllowlist.length > 0 ? view.ipAllowlist.join(', ') : 'any (no IP restriction)'}`,
    `expires:  ${view.expiresAt ?? 'never'}`,
    `label:    ${view.label === '' ? '(none)' : printableLabel(view.label)}`,
    `created:  ${view.createdAt}`,
    `updated:  ${view.updatedAt}`,
    `revoked:  ${view.revokedAt ?? 'no'}`,
    ...accessLines(view),
    ...(view.rotatedFrom !== null ? [`rotated from: ${view.rotatedFrom}`] : []),
    ...(view.rotatedTo !== null ? [`rotated to:   ${view.rotatedTo} (this key stops at its expiry)`] : []),
    ...(view.lastUsedAt === undefined ? [] : [`last used: ${describeLastUse(view)}`]),
  ];
}

function describeLastUse(view: KeyView): string {
  if (view.lastUsedAt === null || view.lastUsedAt === undefined) return 'never';
  const from = view.lastUsedIp === null ? '' : ` from ${view.lastUsedIp}`;
  const vault = view.lastUsedVault === null ? '' : ` on vault ${view.lastUsedVault}`;
  return `${view.lastUsedAt}${from}${vault}`;
}

export const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());
