/**
 * `keys rotate`: the rotation the seed describes (create a successor, move the integration, retire the old key) as
 * one command. The successor copies owner, scope, vaults, IP allowlist and label; the old key keeps working for a
 * grace period and then simply expires. Both records link each other, and one atomic function call
 * (fortary_rotate_key) writes both, so there is never a successor without a shortened predecessor or the reverse.
 */
import bcrypt from 'bcrypt';
import type Redis from 'ioredis';
import { serializeKeyRecord } from '../core/records';
import { formatToken, KEY_ID_LENGTH, SECRET_LENGTH } from '../core/token';
import type { KeyRecord } from '../core/types';
import {
  bcryptCost,
  DAY_MS,
  DEFAULT_EXPIRY_DAYS,
  expiry,
  flagOption,
  requireKeyId,
  stringOption,
} from './args';
import type { Context } from './context';
import { CliError, oneLine, UsageError } from './errors';
import { ensureLibrary, keyHash, readKey, requireDeveloper } from './redis';
import { sidecarLine } from './users';
import { randomBase62 } from './random';

const HOUR_MS = 60 * 60 * 1000;
const MINUTE_MS = 60 * 1000;
export const DEFAULT_GRACE = '7d';
const MAX_GRACE_DAYS = 365;

/** `--grace <N>d|h|m` in ms: 0 (the old key stops at once) up to 365 days. */
export function graceMs(text: string): number {
  const match = /^(0|[1-9][0-9]{0,5})([dhm])$/.exec(text);
  const unit = match?.[2] === 'd' ? DAY_MS : match?.[2] === 'h' ? HOUR_MS : MINUTE_MS;
  const ms = match === null ? NaN : Number(match[1]) * unit;
  if (!(ms <= MAX_GRACE_DAYS * DAY_MS)) {
    throw new UsageError(
      `--grace must be <N>d, <N>h or <N>m, at most ${MAX_GRACE_DAYS} days (e.g. 7d, 12h, 30m)`,
    );
  }
  return ms;
}

export interface RotationResult {
  keyId: string;
  token: string;
  expiresAt: string | null;
  previous: { keyId: string; expiresAt: string };
}

/** keys rotate <keyId> [--grace <N>d|h|m] [expiry] [--json] */
export async function rotateKey(ctx: Context, args: readonly string[]): Promise<void> {
  const { values, positionals } = ctx.parse(
    'keys rotate',
    args,
    {
      grace: { type: 'string' },
      'expires-in': { type: 'string' },
      'expires-at': { type: 'string' },
      'no-expiry': { type: 'boolean' },
      json: { type: 'boolean' },
    },
    ['<keyId>'],
  );
  const oldId = requireKeyId(positionals[0]);
  const grace = graceMs(stringOption(values, 'grace') ?? DEFAULT_GRACE);
  const requested = expiry(values, ctx.now(), 'create');
  const cost = bcryptCost(ctx.io.env);

  const { result, receivers } = await ctx.withRedis(async (redis) => {
    await ensureLibrary(redis);
    for (let attempt = 1; ; attempt++) {
      try {
        return await rotateOnce(ctx, redis, oldId, grace, requested, cost);
      } catch (error) {
        // A concurrent edit of the old key or an id collision: read again and redo, a bounded number of times.
        const retry = /^(key changed while rotating; try again|key exists)$/.test((error as Error).message);
        if (!(error instanceof CliError && retry && attempt < 3)) throw error;
      }
    }
  });

  if (flagOption(values, 'json')) {
    ctx.reveal(JSON.stringify(result));
    return;
  }
  ctx.io.out(`Rotated key ${oldId}: its successor is ${result.keyId}.`);
  ctx.io.out(`key:      ${result.keyId}`);
  ctx.reveal(`token:    ${result.token}`);
  ctx.io.out(`expires:  ${result.expiresAt ?? 'never'}`);
  ctx.io.out(`previous: ${oldId} keeps working until ${result.previous.expiresAt}, then expires`);
  ctx.io.out('The token will not be shown again: store it now, and move the integration to it before then.');
  ctx.io.out(sidecarLine(receivers));
}

async function rotateOnce(
  ctx: Context,
  redis: Redis,
  oldId: string,
  grace: number,
  requested: number | null | undefined,
  cost: number,
): Promise<{ result: RotationResult; receivers: number }> {
  const asRead = await redis.hget(keyHash(oldId), 'record');
  const stored = await readKey(redis, oldId);
  if (stored === null || asRead === null) throw new CliError(`unknown key ${oldId}`);
  if (!stored.ok) throw new CliError(`the stored record of key ${oldId} is invalid: ${stored.problem}`);
  const old = stored.record;
  const now = ctx.now();
  refuseDeadKey(old, now);
  if (old.rotatedTo) {
    throw new CliError(
      `key ${oldId} was already rotated to ${old.rotatedTo}; rotate ${old.rotatedTo} instead`,
    );
  }
  await requireDeveloper(redis, old.userId, old.vaults);

  const newId = randomBase62(KEY_ID_LENGTH);
  const token = formatToken(newId, randomBase62(SECRET_LENGTH));
  // No expiry only when the old key had none and no flag asks for one; otherwise the flags or the default.
  const expiresAt =
    requested !== undefined ? requested : old.expiresAt === null ? null : now + DEFAULT_EXPIRY_DAYS * DAY_MS;
  // The grace period may shorten the old key's life, never lengthen it.
  const oldExpiresAt = old.expiresAt === null ? now + grace : Math.min(old.expiresAt, now + grace);
  const successor: Omit<KeyRecord, 'revokedAt'> = {
    id: newId,
    userId: old.userId,
    secretHash: await bcrypt.hash(token, cost),
    scopes: old.scopes,
    vaults: old.vaults,
    ipAllowlist: old.ipAllowlist,
    expiresAt,
    label: old.label,
    createdAt: now,
    updatedAt: now,
    rotatedFrom: oldId,
  };
  const retired: Omit<KeyRecord, 'revokedAt'> = {
    ...old,
    expiresAt: oldExpiresAt,
    updatedAt: Math.max(now, old.updatedAt + 1),
    rotatedTo: newId,
  };
  let receivers: number;
  try {
    receivers = Number(
      await redis.fcall(
        'fortary_rotate_key',
        2,
        oldId,
        newId,
        asRead,
        serializeKeyRecord(retired),
        serializeKeyRecord(successor),
      ),
    );
  } catch (error) {
    if ((error as { name?: unknown }).name === 'ReplyError') {
      throw new CliError(refusal(oneLine(error).replace(/^ERR /, ''), oldId));
    }
    throw error;
  }
  const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
  return {
    result: {
      keyId: newId,
      token,
      expiresAt: iso(expiresAt),
      previous: { keyId: oldId, expiresAt: iso(oldExpiresAt) as string },
    },
    receivers,
  };
}

/** A revoked or expired key has no integration left to move: rotating it would mint access out of a dead key. */
function refuseDeadKey(key: KeyRecord, nowMs: number): void {
  if (key.revokedAt !== null) {
    throw new CliError(
      `key ${key.id} is revoked; a revoked key cannot be rotated (create a new key instead)`,
    );
  }
  if (key.expiresAt !== null && nowMs >= key.expiresAt) {
    throw new CliError(
      `key ${key.id} expired at ${new Date(key.expiresAt).toISOString()}; an expired key cannot be rotated (create a new key instead)`,
    );
  }
}

/** The function's refusals (the race-time twins of the checks above), worded like them. */
function refusal(message: string, oldId: string): string {
  if (message === 'key is revoked') return `key ${oldId} is revoked; a revoked key cannot be rotated`;
  if (message === 'key has expired') return `key ${oldId} has expired; an expired key cannot be rotated`;
  return message;
}
