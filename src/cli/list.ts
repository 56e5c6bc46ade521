/**
 * `fortary-authz keys list`: one user's keys, read through the user's key index; or, with a filter and no --user,
 * the matching keys of every user, found by walking the key records with SCAN (never KEYS, which blocks Redis for
 * the whole keyspace). The walk reads each SCAN page in one pipelined round trip and keeps only the matches, so its
 * memory grows with the keys it lists, not with the keys Redis holds.
 */
import type Redis from 'ioredis';
import { KEY_PREFIX, lastUsedHash } from '../adapters/redis/keyspace';
import { KEY_ID_PATTERN } from '../core/token';
import type { KeyRecord } from '../core/types';
import { daysOption, DAY_MS, flagOption, requireUserId, stringOption } from './args';
import { effectiveAccess, ownerState, type OwnerState } from './access';
import type { Context } from './context';
import { CliError, oneLine, UsageError } from './errors';
import { describeKey, keyView, type KeyView, type ListedKey } from './key-view';
import {
  keyHash,
  lastUseFrom,
  NEVER_USED,
  readKey,
  readLastUse,
  readUser,
  storedKeyFrom,
  userKeysSet,
  userString,
  type LastUse,
  type StoredKey,
} from './redis';

/** What --expiring-within and --unused-for ask for, as windows in ms. */
interface Filters {
  expiringWithin: number | undefined;
  unusedFor: number | undefined;
}

/** keys list (--user <userId> | --expiring-within <N>d | --unused-for <N>d) [...] [--json] */
export async function listKeys(ctx: Context, args: readonly string[]): Promise<void> {
  const { values } = ctx.parse('keys list', args, {
    user: { type: 'string' },
    'expiring-within': { type: 'string' },
    'unused-for': { type: 'string' },
    json: { type: 'boolean' },
  });
  const user = stringOption(values, 'user');
  const filters: Filters = {
    expiringWithin: daysOption(values, 'expiring-within'),
    unusedFor: daysOption(values, 'unused-for'),
  };
  const json = flagOption(values, 'json');
  if (user !== undefined) return listUserKeys(ctx, requireUserId(user, '--user'), filters, json);
  if (filters.expiringWithin === undefined && filters.unusedFor === undefined) {
    throw new UsageError(
      'keys list: missing --user (or give --expiring-within <N>d or --unused-for <N>d to search every user)',
    );
  }
  return listAllKeys(ctx, filters, json);
}

/**
 * One user's keys, oldest first; records that break the contract are shown as invalid, or, when a filter is on,
 * skipped with one stderr line each (exit 0, as for the search over every user).
 */
async function listUserKeys(ctx: Context, userId: string, filters: Filters, json: boolean): Promise<void> {
  const { expiringWithin, unusedFor } = filters;
  const keys = await ctx.withRedis(async (redis) => {
    const ids = await redis.smembers(userKeysSet(userId));
    if (ids.length === 0 && (await readUser(redis, userId)) === null)
      throw new CliError(`unknown user ${userId}`);
    const stored = await Promise.all(ids.map((id) => readKey(redis, id)));
    const present = stored.filter((key): key is StoredKey => key !== null);
    const uses = await Promise.all(present.map((key) => readLastUse(redis, storedId(key))));
    return {
      keys: present.map((key, i) => ({ key, lastUse: uses[i] as LastUse })),
      owner: ownerState(userId, await redis.get(userString(userId))),
    };
  });
  const now = ctx.now();
  const filtered = expiringWithin !== undefined || unusedFor !== undefined;
  // With a filter an invalid record cannot be judged: named on stderr like the search over every user does.
  if (filtered) {
    for (const { key } of keys.keys)
      if (!key.ok)
        ctx.io.err(`fortary-authz: skipped key ${key.keyId}: its record is invalid (${key.problem})`);
  }
  const views: ListedKey[] = keys.keys
    .filter(
      ({ key, lastUse }) =>
        (expiringWithin === undefined || (key.ok && expiresWithin(key.record, now, expiringWithin))) &&
        (unusedFor === undefined || (key.ok && unusedSince(key.record, lastUse, now, unusedFor))),
    )
    .sort((a, b) => byCreation(a.key, b.key))
    .map(({ key, lastUse }) =>
      key.ok
        ? { ...keyView(key.record, now, lastUse), effectiveAccess: effectiveAccess(key.record, keys.owner) }
        : { keyId: key.keyId, status: 'invalid' as const, problem: key.problem },
    );
  if (json) {
    ctx.io.out(JSON.stringify(views));
    return;
  }
  if (views.length === 0) ctx.io.out(noKeysLine(userId, filters));
  views.forEach((view, i) => {
    if (i > 0) ctx.io.out('');
    if (view.status === 'invalid') {
      ctx.io.out(`key:      ${view.keyId}`);
      ctx.io.out(`status:   invalid (${view.problem})`);
    } else {
      for (const line of describeKey(view)) ctx.io.out(line);
    }
  });
}

/**
 * The keys of every user that pass the filters, soonest expiry first (no expiry last), ties by key id. A key whose
 * record breaks the contract cannot be judged: it is skipped with one stderr line naming it, and the exit status
 * stays 0, because such a key already allows nothing (the sidecar refuses it whole), so it is not a key that will
 * stop working; `keys show <keyId>` tells what is wrong with it.
 */
async function listAllKeys(ctx: Context, filters: Filters, json: boolean): Promise<void> {
  const now = ctx.now();
  const views = await ctx.withRedis(async (redis) => {
    const found = await scanMatchingKeys(redis, filters, now, (what, why) =>
      ctx.io.err(`fortary-authz: skipped ${what}: ${why}`),
    );
    const owners = await readOwners(redis, new Set(found.map((m) => m.record.userId)));
    return found
      .sort((a, b) => byExpiry(a.record, b.record))
      .map(({ record, lastUse }) => ({
        ...keyView(record, now, lastUse),
        effectiveAccess: effectiveAccess(record, owners.get(record.userId) ?? { kind: 'missing' }),
      }));
  });
  if (json) {
    ctx.io.out(JSON.stringify(views));
    return;
  }
  if (views.length === 0) ctx.io.out(noKeysLine(undefined, filters));
  views.forEach((view: KeyView, i) => {
    if (i > 0) ctx.io.out('');
    for (const line of describeKey(view)) ctx.io.out(line);
  });
}

/** Keys per SCAN call (a hint to Redis) and per pipelined read: one page of records in memory at a time. */
const SCAN_PAGE = 500;

interface Match {
  record: KeyRecord;
  lastUse: LastUse;
}

/**
 * One pass of SCAN over `fortary:key:*`. Per page: the records in one pipeline, then the last uses of the records
 * that pass the expiry filter in another. SCAN may return a key more than once (the keyspace can be rehashed
 * between calls), so matches are keyed by id; keys created or deleted during the walk may or may not be seen.
 */
async function scanMatchingKeys(
  redis: Redis,
  filters: Filters,
  nowMs: number,
  skipped: (what: string, why: string) => void,
): Promise<Match[]> {
  const found = new Map<string, Match>();
  const reported = new Set<string>();
  const skip = (what: string, why: string) => {
    if (reported.has(what)) return;
    reported.add(what);
    skipped(what, why);
  };
  let cursor = '0';
  do {
    const [next, names] = await redis.scan(cursor, 'MATCH', `${KEY_PREFIX}*`, 'COUNT', SCAN_PAGE);
    cursor = next;
    const ids: string[] = [];
    for (const name of names) {
      const id = name.slice(KEY_PREFIX.length);
      if (!KEY_ID_PATTERN.test(id)) skip(`Redis key ${JSON.stringify(name.slice(0, 80))}`, 'not a key id');
      else if (!found.has(id)) ids.push(id);
    }
    const candidates: KeyRecord[] = [];
    for (const [id, reply] of zip(ids, await pipelined(redis, ids.map(keyHash)))) {
      if (reply instanceof Error) {
        skip(`key ${id}`, `its record cannot be read (${oneLine(reply)})`);
        continue;
      }
      const stored = storedKeyFrom(id, reply);
      if (stored === null) continue; // gone between SCAN and the read
      if (!stored.ok) skip(`key ${id}`, `its record is invalid (${stored.problem})`);
      else if (mayMatch(stored.record, nowMs, filters)) candidates.push(stored.record);
    }
    const uses = await pipelined(
      redis,
      candidates.map((record) => lastUsedHash(record.id)),
    );
    for (const [record, reply] of zip(candidates, uses)) {
      // A last-use entry of the wrong type reads as never used (like an unparsable `at`): information, not a rule.
      const lastUse = reply instanceof Error ? NEVER_USED : lastUseFrom(reply);
      if (matches(record, lastUse, nowMs, filters)) found.set(record.id, { record, lastUse });
    }
  } while (cursor !== '0');
  return [...found.values()];
}

/**
 * HGETALL of each name in one round trip: the fields, or the error Redis answered for that name (WRONGTYPE: not a
 * hash). Any other failure (the connection, NOPERM) fails the command.
 */
async function pipelined(
  redis: Redis,
  names: readonly string[],
): Promise<Array<Record<string, string> | Error>> {
  if (names.length === 0) return [];
  const pipeline = redis.pipeline();
  for (const name of names) pipeline.hgetall(name);
  const replies = (await pipeline.exec()) ?? [];
  return names.map((name, i) => {
    const [error, fields] = replies[i] ?? [new Error(`no reply for ${name}`), null];
    if (error === null) return fields as Record<string, string>;
    if (/^WRONGTYPE/.test(error.message)) return error;
    throw error;
  });
}

/** The owners' user records (GET), one pipelined round trip per page of ids. */
async function readOwners(redis: Redis, userIds: ReadonlySet<string>): Promise<Map<string, OwnerState>> {
  const owners = new Map<string, OwnerState>();
  const ids = [...userIds];
  for (let start = 0; start < ids.length; start += SCAN_PAGE) {
    const page = ids.slice(start, start + SCAN_PAGE);
    const pipeline = redis.pipeline();
    for (const id of page) pipeline.get(userString(id));
    const replies = (await pipeline.exec()) ?? [];
    page.forEach((id, i) => {
      const [error, text] = replies[i] ?? [null, null];
      // A user string of the wrong type is a user record the sidecar refuses, like an unparsable one.
      owners.set(id, error !== null ? { kind: 'invalid' } : ownerState(id, (text as string | null) ?? null));
    });
  }
  return owners;
}

function zip<A, B>(as: readonly A[], bs: readonly B[]): Array<[A, B]> {
  return as.map((a, i) => [a, bs[i] as B]);
}

/** The record-only part of the filters: the key works now, and expires within the window when one is given. */
function mayMatch(key: KeyRecord, nowMs: number, filters: Filters): boolean {
  if (key.revokedAt !== null || (key.expiresAt !== null && nowMs >= key.expiresAt)) return false;
  return filters.expiringWithin === undefined || expiresWithin(key, nowMs, filters.expiringWithin);
}

/** Both filters (each only when given). */
function matches(key: KeyRecord, lastUse: LastUse, nowMs: number, filters: Filters): boolean {
  const { expiringWithin, unusedFor } = filters;
  return (
    (expiringWithin === undefined || expiresWithin(key, nowMs, expiringWithin)) &&
    (unusedFor === undefined || unusedSince(key, lastUse, nowMs, unusedFor))
  );
}

/** The line printed when nothing is listed; `userId` undefined: the search over every user. */
function noKeysLine(userId: string | undefined, { expiringWithin, unusedFor }: Filters): string {
  const filters: string[] = [];
  if (expiringWithin !== undefined) filters.push(`expires within ${days(expiringWithin)}`);
  if (unusedFor !== undefined) filters.push(`works and went unused for ${days(unusedFor)}`);
  if (userId === undefined) return `No key of any user ${filters.join(' and ')}.`;
  return filters.length === 0
    ? `User ${userId} has no keys.`
    : `User ${userId} has no key that ${filters.join(' and ')}.`;
}

/**
 * A key that still works (not revoked, not expired) and was not allowed by any sidecar for `windowMs`: its last use,
 * or its creation when it was never used, lies that far back (what --unused-for lists: candidates to revoke).
 */
function unusedSince(key: KeyRecord, lastUse: LastUse, nowMs: number, windowMs: number): boolean {
  if (key.revokedAt !== null || (key.expiresAt !== null && nowMs >= key.expiresAt)) return false;
  return nowMs - (lastUse.at ?? key.createdAt) >= windowMs;
}

/**
 * A key that works now and stops working within `windowMs` because it expires (what --expiring-within lists). An
 * expired key (its expiry is the first instant it no longer works) has already stopped, and a revoked one too.
 */
function expiresWithin(key: KeyRecord, nowMs: number, windowMs: number): boolean {
  return (
    key.revokedAt === null &&
    key.expiresAt !== null &&
    key.expiresAt > nowMs &&
    key.expiresAt - nowMs <= windowMs
  );
}

const storedId = (key: StoredKey): string => (key.ok ? key.record.id : key.keyId);

/** Oldest first, ties by id; records that break the contract last. */
function byCreation(a: StoredKey, b: StoredKey): number {
  const created = (key: StoredKey) => (key.ok ? key.record.createdAt : Number.MAX_SAFE_INTEGER);
  return created(a) - created(b) || compareIds(storedId(a), storedId(b));
}

/** Soonest expiry first, keys without one last, ties by id: the same input always prints the same order. */
function byExpiry(a: KeyRecord, b: KeyRecord): number {
  const expiry = (key: KeyRecord) => key.expiresAt ?? Number.MAX_SAFE_INTEGER;
  return expiry(a) - expiry(b) || compareIds(a.id, b.id);
}

const compareIds = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
const days = (ms: number): string => `${ms / DAY_MS} day${ms === DAY_MS ? '' : 's'}`;
