/** `fortary-authz keys …`: create, edit, revoke and inspect API keys. */
import bcrypt from 'bcrypt';
import { serializeKeyRecord } from '../core/records';
import { formatToken, KEY_ID_LENGTH, SECRET_LENGTH } from '../core/token';
import type { KeyRecord } from '../core/types';
import {
  bcryptCost,
  cidrs,
  DAY_MS,
  DEFAULT_EXPIRY_DAYS,
  expiry,
  flagOption,
  label,
  listOption,
  requireKeyId,
  requireUserId,
  stringOption,
  vaultIds,
} from './args';
import { HelpRequested, type Context } from './context';
import { CliError, UsageError } from './errors';
import {
  ensureLibrary,
  fcall,
  keyHash,
  readLastUse,
  readKey,
  requireDeveloper,
  requireKey,
  userString,
} from './redis';
import { keyReference, requireTokenMatches, TOKEN_STDIN_OPTION } from './key-reference';
import { effectiveAccess, ownerState } from './access';
import { describeKey, keyView } from './key-view';
import { listKeys } from './list';
import { randomBase62 } from './random';
import { rotateKey } from './rotate';
import { waitForSidecars, waitRequest, WAIT_OPTIONS, type WaitResult } from './sidecars';
import { reportWrite } from './write-result';

export async function keysCommand(ctx: Context, args: readonly string[]): Promise<void> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'create':
      return createKey(ctx, rest);
    case 'edit':
      return editKey(ctx, rest);
    case 'rotate':
      return rotateKey(ctx, rest);
    case 'revoke':
      return revokeKey(ctx, rest);
    case 'show':
      return showKey(ctx, rest);
    case 'list':
      return listKeys(ctx, rest);
    case undefined:
      throw new UsageError('keys: missing subcommand (create, edit, rotate, revoke, show or list)');
    default:
      if (sub === '--help' || sub === '-h') throw new HelpRequested();
      throw new UsageError(`keys: unknown subcommand ${JSON.stringify(sub)}`);
  }
}

const EXPIRY_OPTIONS = {
  'expires-in': { type: 'string' },
  'expires-at': { type: 'string' },
  'no-expiry': { type: 'boolean' },
} as const;

/** keys create --user <userId> --vault <vaultId>... [--ip <cidr>]... [expiry] [--label <text>] [--json] */
async function createKey(ctx: Context, args: readonly string[]): Promise<void> {
  const { values } = ctx.parse('keys create', args, {
    user: { type: 'string' },
    vault: { type: 'string', multiple: true },
    ip: { type: 'string', multiple: true },
    ...EXPIRY_OPTIONS,
    label: { type: 'string' },
    json: { type: 'boolean' },
  });
  const userId = requireUserId(stringOption(values, 'user'), '--user');
  const vaults = vaultIds(listOption(values, 'vault'), '--vault');
  if (vaults.length === 0) throw new UsageError('keys create: at least one --vault is required');
  const ipAllowlist = cidrs(listOption(values, 'ip'));
  const now = ctx.now();
  const requested = expiry(values, now, 'create');
  const expiresAt = requested === undefined ? now + DEFAULT_EXPIRY_DAYS * DAY_MS : requested;
  const keyLabel = label(stringOption(values, 'label')) ?? '';
  const cost = bcryptCost(ctx.io.env);

  const created = await ctx.withRedis(async (redis) => {
    await requireDeveloper(redis, userId, vaults);
    await ensureLibrary(redis);
    // A fresh id collides with probability ~n/62^12; the function refuses an existing id, so just draw again.
    for (let attempt = 1; ; attempt++) {
      const keyId = randomBase62(KEY_ID_LENGTH);
      const token = formatToken(keyId, randomBase62(SECRET_LENGTH));
      // The whole token (66 bytes, under bcrypt's 72-byte limit) is hashed: the sidecar compares the token it got.
      const secretHash = await bcrypt.hash(token, cost);
      const createdAt = ctx.now();
      const record = serializeKeyRecord({
        id: keyId,
        userId,
        secretHash,
        scopes: ['vault:read'],
        vaults,
        ipAllowlist,
        expiresAt,
        label: keyLabel,
        createdAt,
        updatedAt: createdAt,
      });
      try {
        await fcall(redis, 'fortary_put_key', keyId, record, 'create');
        return { keyId, token };
      } catch (error) {
        if (!(error instanceof CliError && error.message === 'key exists' && attempt < 3)) throw error;
      }
    }
  });

  const expires = expiresAt === null ? null : new Date(expiresAt).toISOString();
  if (flagOption(values, 'json')) {
    ctx.reveal(JSON.stringify({ keyId: created.keyId, token: created.token, expiresAt: expires }));
    return;
  }
  ctx.io.out(`Created key ${created.keyId} for user ${userId}.`);
  ctx.io.out(`key:      ${created.keyId}`);
  ctx.reveal(`token:    ${created.token}`);
  ctx.io.out(`expires:  ${expires ?? 'never'}`);
  ctx.io.out('The token will not be shown again: store it now.');
}

/** keys edit <keyId> [--vault <vaultId>]... [--ip <cidr>]... [--no-ip-restriction] [expiry] [--label <text>] */
async function editKey(ctx: Context, args: readonly string[]): Promise<void> {
  const { values, positionals } = ctx.parse(
    'keys edit',
    args,
    {
      vault: { type: 'string', multiple: true },
      ip: { type: 'string', multiple: true },
      'no-ip-restriction': { type: 'boolean' },
      ...EXPIRY_OPTIONS,
      reactivate: { type: 'boolean' },
      label: { type: 'string' },
      ...WAIT_OPTIONS,
    },
    ['<keyId>'],
  );
  const wait = waitRequest('keys edit', values);
  const keyId = requireKeyId(positionals[0]);
  const vaults = vaultIds(listOption(values, 'vault'), '--vault');
  const ips = cidrs(listOption(values, 'ip'));
  const noIpRestriction = flagOption(values, 'no-ip-restriction');
  if (noIpRestriction && ips.length > 0)
    throw new UsageError('keys edit: --ip and --no-ip-restriction exclude each other');
  const newExpiry = expiry(values, ctx.now(), 'edit');
  const newLabel = label(stringOption(values, 'label'));
  const reactivate = flagOption(values, 'reactivate');
  if (reactivate && newExpiry === undefined) {
    throw new UsageError(
      'keys edit: --reactivate needs a new expiry (--expires-in, --expires-at or --no-expiry)',
    );
  }
  if (
    vaults.length === 0 &&
    ips.length === 0 &&
    !noIpRestriction &&
    newExpiry === undefined &&
    newLabel === undefined
  ) {
    throw new UsageError(
      'keys edit: nothing to change (give --vault, --ip, --no-ip-restriction, an expiry or --label)',
    );
  }

  const { updated, receivers, waited } = await ctx.withRedis(async (redis) => {
    const key = await requireKey(redis, keyId);
    if (key.revokedAt !== null) throw new CliError(`key ${keyId} is revoked; a revoked key cannot be edited`);
    checkReactivation(key, newExpiry, reactivate, ctx.now());
    if (vaults.length > 0) await requireDeveloper(redis, key.userId, vaults);
    const next: KeyRecord = {
      ...key,
      vaults: vaults.length > 0 ? vaults : key.vaults,
      ipAllowlist: noIpRestriction ? [] : ips.length > 0 ? ips : key.ipAllowlist,
      expiresAt: newExpiry === undefined ? key.expiresAt : newExpiry,
      label: newLabel ?? key.label,
      updatedAt: Math.max(ctx.now(), key.updatedAt + 1),
    };
    await ensureLibrary(redis);
    const receivers = await fcall(redis, 'fortary_put_key', keyId, serializeKeyRecord(next), 'edit');
    return { updated: next, receivers, waited: wait && (await waitForSidecars(redis, wait.timeoutMs)) };
  });
  const view = keyView(updated, ctx.now());
  const result = { key: view, reactivated: reactivate, sidecarsNotified: receivers };
  const human = () => [
    `Updated key ${keyId}.`,
    ...(reactivate ? [`Key ${keyId} had expired; it is reactivated and works again.`] : []),
    ...describeKey(view),
  ];
  reportWrite(ctx, values, result, human, wait && { ...wait, what: 'the edit' }, waited);
}

/**
 * An expired key stopped working; giving it a new expiry brings it back, which must be a decision, not a side
 * effect of "extend all keys by 30 days". So a new expiry on an expired key needs --reactivate, and --reactivate
 * is refused on a key that has not expired (it would say something untrue).
 */
function checkReactivation(
  key: KeyRecord,
  newExpiry: number | null | undefined,
  reactivate: boolean,
  nowMs: number,
): void {
  const expired = key.expiresAt !== null && nowMs >= key.expiresAt;
  const when = key.expiresAt === null ? '' : new Date(key.expiresAt).toISOString();
  if (expired && newExpiry !== undefined && !reactivate) {
    throw new CliError(
      `key ${key.id} expired at ${when}; a new expiry would make it work again: add --reactivate if that is intended`,
    );
  }
  if (reactivate && !expired)
    throw new CliError(`key ${key.id} has not expired; --reactivate is only for expired keys`);
}

/** keys revoke <keyId|token> | --token-stdin [--wait [--timeout <N>s|ms] [--json]] */
async function revokeKey(ctx: Context, args: readonly string[]): Promise<void> {
  const { values, positionals } = ctx.parse('keys revoke', args, { ...TOKEN_STDIN_OPTION, ...WAIT_OPTIONS }, [
    '<keyId|token>?',
  ]);
  const wait = waitRequest('keys revoke', values);
  const reference = await keyReference(ctx, 'keys revoke', values, positionals[0]);
  const { keyId } = reference;
  const { before, receivers, after, waited } = await ctx.withRedis(async (redis) => {
    const stored = await readKey(redis, keyId);
    if (stored === null) throw new CliError(`unknown key ${keyId}`);
    await requireTokenMatches(reference, stored.ok ? stored.record.secretHash : null);
    const before = await redis.hget(keyHash(keyId), 'revokedAt');
    await ensureLibrary(redis);
    const receivers = await fcall(redis, 'fortary_revoke', keyId);
    const after = await redis.hget(keyHash(keyId), 'revokedAt');
    const waited: WaitResult | null = wait && (await waitForSidecars(redis, wait.timeoutMs));
    return { before, receivers, after, waited };
  });
  const already = before !== null && /^\d+$/.test(before);
  const revokedAt = after !== null && /^\d+$/.test(after) ? new Date(Number(after)).toISOString() : null;
  const result = { keyId, revokedAt, alreadyRevoked: already, sidecarsNotified: receivers };
  const human = () => [
    already
      ? `Key ${keyId} was already revoked at ${revokedAt} (that time is kept).`
      : `Revoked key ${keyId}.`,
  ];
  reportWrite(
    ctx,
    values,
    result,
    human,
    wait && { ...wait, what: 'the revocation', extra: { keyId } },
    waited,
  );
}

/** keys show <keyId|token> | --token-stdin [--json] */
async function showKey(ctx: Context, args: readonly string[]): Promise<void> {
  const { values, positionals } = ctx.parse(
    'keys show',
    args,
    { json: { type: 'boolean' }, ...TOKEN_STDIN_OPTION },
    ['<keyId|token>?'],
  );
  const reference = await keyReference(ctx, 'keys show', values, positionals[0]);
  const { key, owner, lastUse } = await ctx.withRedis(async (redis) => {
    const record = await requireKey(redis, reference.keyId);
    await requireTokenMatches(reference, record.secretHash);
    return {
      key: record,
      owner: ownerState(record.userId, await redis.get(userString(record.userId))),
      lastUse: await readLastUse(redis, reference.keyId),
    };
  });
  const view = { ...keyView(key, ctx.now(), lastUse), effectiveAccess: effectiveAccess(key, owner) };
  if (flagOption(values, 'json')) ctx.io.out(JSON.stringify(view));
  else for (const line of describeKey(view)) ctx.io.out(line);
}
