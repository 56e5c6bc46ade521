/**
 * Validation of the records the portal (and the CLI) write to Redis; the layout is in docs/redis-contract.md.
 * A record that breaks the contract is refused whole: a half-understood key must never allow anything.
 */
import { KNOWN_SCOPES, type KeyRecord, type Scope, type UserRecord } from './types';
import { KEY_ID_PATTERN } from './token';
import { VAULT_ID_PATTERN } from './vault-path';
import { cidrProblem, isValidCidr } from './network';
import { labelLength, MAX_LABEL_CODE_POINTS } from './label';

export const RECORD_VERSION = 1;
export const USER_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$/;
const BCRYPT_HASH_PATTERN = /^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/;
const MAX_LIST_LENGTH = 1000;

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

/** The raw fields of the Redis hash `fortary:key:<keyId>`. */
export interface KeyHashFields {
  record: string | null;
  revokedAt: string | null;
}

export function parseKeyRecord(keyId: string, fields: KeyHashFields): Parsed<KeyRecord> {
  const revokedMarker = parseMarker(fields.revokedAt);
  if (revokedMarker === undefined) return fail('revokedAt marker is not an epoch-ms integer');
  if (fields.record === null) return fail('hash has no record field');
  const json = parseJson(fields.record);
  if (!json.ok) return json;
  const r = json.value;
  const problems: string[] = [];
  const check = (condition: boolean, problem: string) => {
    if (!condition) problems.push(problem);
  };
  check(r.v === RECORD_VERSION, `v must be ${RECORD_VERSION}`);
  check(r.id === keyId, 'id does not match the Redis key');
  check(typeof r.userId === 'string' && USER_ID_PATTERN.test(r.userId), 'userId is not a user id');
  check(
    typeof r.secretHash === 'string' && BCRYPT_HASH_PATTERN.test(r.secretHash),
    'secretHash is not a bcrypt hash',
  );
  check(isList(r.scopes, isScope) && (r.scopes as unknown[]).length > 0, 'scopes must be known scopes');
  check(isList(r.vaults, isVaultId), 'vaults must be vault ids');
  check(isList(r.ipAllowlist, isCidr), ipAllowlistProblem(r.ipAllowlist));
  check(r.expiresAt === null || isEpochMs(r.expiresAt), 'expiresAt must be epoch ms or null');
  check(
    typeof r.label === 'string' && labelLength(r.label) <= MAX_LABEL_CODE_POINTS,
    'label must be a short string',
  );
  check(isEpochMs(r.createdAt) && isEpochMs(r.updatedAt), 'createdAt/updatedAt must be epoch ms');
  check(
    r.revokedAt === undefined || r.revokedAt === null || isEpochMs(r.revokedAt),
    'revokedAt must be epoch ms',
  );
  check(isOptionalKeyId(r.rotatedTo), 'rotatedTo must be a key id or null');
  check(isOptionalKeyId(r.rotatedFrom), 'rotatedFrom must be a key id or null');
  if (problems.length > 0) return fail(problems.join('; '));
  // Either marker revokes: the hash field (written only by revocation, never cleared) or the record's own field.
  const revokedAt = revokedMarker ?? (r.revokedAt as number | null | undefined) ?? null;
  return {
    ok: true,
    value: {
      id: keyId,
      userId: r.userId as string,
      secretHash: r.secretHash as string,
      scopes: r.scopes as Scope[],
      vaults: r.vaults as string[],
      ipAllowlist: r.ipAllowlist as string[],
      expiresAt: r.expiresAt as number | null,
      label: r.label as string,
      createdAt: r.createdAt as number,
      updatedAt: r.updatedAt as number,
      revokedAt,
      // Present only when set, like in the stored JSON.
      ...(typeof r.rotatedTo === 'string' ? { rotatedTo: r.rotatedTo } : {}),
      ...(typeof r.rotatedFrom === 'string' ? { rotatedFrom: r.rotatedFrom } : {}),
    },
  };
}

export function parseUserRecord(userId: string, text: string): Parsed<UserRecord> {
  const json = parseJson(text);
  if (!json.ok) return json;
  const r = json.value;
  const problems: string[] = [];
  if (r.v !== RECORD_VERSION) problems.push(`v must be ${RECORD_VERSION}`);
  if (r.id !== userId) problems.push('id does not match the Redis key');
  if (typeof r.active !== 'boolean') problems.push('active must be a boolean');
  if (!isList(r.developerVaults, isVaultId)) problems.push('developerVaults must be vault ids');
  if (!isEpochMs(r.updatedAt)) problems.push('updatedAt must be epoch ms');
  if (problems.length > 0) return fail(problems.join('; '));
  return {
    ok: true,
    value: {
      id: userId,
      active: r.active as boolean,
      developerVaults: r.developerVaults as string[],
      updatedAt: r.updatedAt as number,
    },
  };
}

/** The JSON the CLI writes for a key; the inverse of parseKeyRecord. */
export function serializeKeyRecord(key: Omit<KeyRecord, 'revokedAt'>): string {
  return JSON.stringify({
    v: RECORD_VERSION,
    id: key.id,
    userId: key.userId,
    secretHash: key.secretHash,
    scopes: key.scopes,
    vaults: key.vaults,
    ipAllowlist: key.ipAllowlist,
    expiresAt: key.expiresAt,
    label: key.label,
    createdAt: key.createdAt,
    updatedAt: key.updatedAt,
    // The rotation links are written only when set, so records of keys never rotated stay as they were.
    ...(key.rotatedTo ? { rotatedTo: key.rotatedTo } : {}),
    ...(key.rotatedFrom ? { rotatedFrom: key.rotatedFrom } : {}),
  });
}

export function serializeUserRecord(user: UserRecord): string {
  return JSON.stringify({
    v: RECORD_VERSION,
    id: user.id,
    active: user.active,
    developerVaults: user.developerVaults,
    updatedAt: user.updatedAt,
  });
}

export const isKeyId = (value: unknown): value is string =>
  typeof value === 'string' && KEY_ID_PATTERN.test(value);
export const isVaultId = (value: unknown): value is string =>
  typeof value === 'string' && VAULT_ID_PATTERN.test(value);
const isOptionalKeyId = (value: unknown): boolean => value === undefined || value === null || isKeyId(value);
const isScope = (value: unknown): value is Scope => KNOWN_SCOPES.includes(value as Scope);
const isCidr = (value: unknown): boolean => typeof value === 'string' && isValidCidr(value);
const isEpochMs = (value: unknown): value is number =>
  typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

function isList(value: unknown, item: (v: unknown) => boolean): boolean {
  return Array.isArray(value) && value.length <= MAX_LIST_LENGTH && value.every(item);
}

/** Names the first refused entry, so an operator can see `1.2.3.4/8` and the network form it could have meant. */
function ipAllowlistProblem(list: unknown): string {
  const entry = Array.isArray(list) ? list.find((item) => !isCidr(item)) : undefined;
  return typeof entry === 'string'
    ? `ipAllowlist entry ${cidrProblem(entry) ?? entry}`
    : 'ipAllowlist must be CIDR ranges';
}

/** undefined = present but invalid; null = absent. */
function parseMarker(text: string | null): number | null | undefined {
  if (text === null) return null;
  return /^\d{1,16}$/.test(text) ? Number(text) : undefined;
}

function parseJson(text: string): Parsed<Record<string, unknown>> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return fail('record is not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return fail('record is not a JSON object');
  return { ok: true, value: value as Record<string, unknown> };
}

const fail = <T>(error: string): Parsed<T> => ({ ok: false, error });
