/**
 * What a key can actually do right now. A key record alone is not the answer: the key inherits its owner's live
 * roles, so a key whose owner lost Developer on a vault is refused there (role_missing) however `active` the key
 * record looks, and a key whose owner is deactivated or unreadable is refused everywhere. `keys show` and
 * `keys list` report this next to the record so the operator sees what the sidecar will answer.
 */
import type { KeyView } from './key-view';
import { parseUserRecord } from '../core/records';
import type { KeyRecord, UserRecord } from '../core/types';

/** The owner as the sidecar would see it: a valid record, none, or one it refuses. */
export type OwnerState = { kind: 'user'; user: UserRecord } | { kind: 'missing' } | { kind: 'invalid' };

export interface EffectiveAccess {
  /** null when the owner record is missing or unreadable. */
  ownerActive: boolean | null;
  /** Per vault on the key's allowlist: does the owner hold Developer there now? */
  vaults: { vaultId: string; developer: boolean }[];
  /**
   * The deny reason every vault request with this key gets because of its owner, or null when at least one vault
   * works. Key state (revoked, expired) is reported by `status`, not here.
   */
  deniedEverywhere: 'owner_inactive' | 'record_invalid' | 'role_missing' | null;
}

export function ownerState(userId: string, text: string | null): OwnerState {
  if (text === null) return { kind: 'missing' };
  const parsed = parseUserRecord(userId, text);
  return parsed.ok ? { kind: 'user', user: parsed.value } : { kind: 'invalid' };
}

export function effectiveAccess(key: Pick<KeyRecord, 'vaults'>, owner: OwnerState): EffectiveAccess {
  const user = owner.kind === 'user' ? owner.user : null;
  const vaults = key.vaults.map((vaultId) => ({
    vaultId,
    developer: user !== null && user.developerVaults.includes(vaultId),
  }));
  // The sidecar's order (src/app/check.ts, src/core/decide.ts): owner record, then active, then the role.
  const deniedEverywhere =
    user === null
      ? 'record_invalid'
      : !user.active
        ? 'owner_inactive'
        : vaults.every((v) => !v.developer)
          ? 'role_missing'
          : null;
  return { ownerActive: user === null ? null : user.active, vaults, deniedEverywhere };
}

/** The lines describeKey adds: the status qualified by what the owner allows, and per-vault access. */
export function accessLines(view: KeyView & { effectiveAccess?: EffectiveAccess }): string[] {
  const access = view.effectiveAccess;
  if (access === undefined || view.status !== 'active') return [];
  const lacking = access.vaults.filter((v) => !v.developer).map((v) => v.vaultId);
  const lines: string[] = [];
  if (access.deniedEverywhere !== null) {
    const why =
      access.deniedEverywhere === 'record_invalid'
        ? `the owner's user record is missing or invalid`
        : access.deniedEverywhere === 'owner_inactive'
          ? `owner ${view.userId} is deactivated`
          : `owner ${view.userId} holds the Developer role on none of its vaults`;
    lines.push(`effect:   every vault request is DENIED (${access.deniedEverywhere}): ${why}`);
  } else if (lacking.length > 0) {
    lines.push(
      `effect:   requests to ${lacking.join(', ')} are DENIED (role_missing): owner ${view.userId} lacks Developer there`,
    );
  }
  return lines;
}
