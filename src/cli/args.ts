/**
 * Argument parsing and input validation for the CLI. Everything here throws UsageError (exit 2) and runs before
 * the first Redis command, so bad input never leaves anything half-written.
 */
import { parseArgs } from 'node:util';
import { labelProblem } from '../core/label';
import { cidrProblem } from '../core/network';
import { USER_ID_PATTERN, isKeyId, isVaultId } from '../core/records';
import { messageOf, UsageError } from './errors';

export type OptionSpec = Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }>;
export type OptionValues = Record<string, string | boolean | string[] | undefined>;

export interface ParsedCommand {
  values: OptionValues;
  positionals: string[];
}

/** Options every command accepts. */
const COMMON_OPTIONS: OptionSpec = { redis: { type: 'string' }, help: { type: 'boolean', short: 'h' } };

/**
 * Parses one command's arguments strictly: unknown flags, missing values, a single-valued flag given twice and
 * surplus positionals are refused. Positional names ending in '?' are optional.
 */
export function parseCommand(
  command: string,
  args: readonly string[],
  options: OptionSpec,
  positionalNames: readonly string[] = [],
): ParsedCommand {
  const spec = { ...COMMON_OPTIONS, ...options };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: [...args],
      options: spec,
      strict: true,
      allowPositionals: true,
      tokens: true,
    });
  } catch (error) {
    throw new UsageError(`${command}: ${describeParseError(error)}`);
  }
  const values = parsed.values as OptionValues;
  if (values.help === true) return { values, positionals: parsed.positionals };
  const seen = new Set<string>();
  for (const token of parsed.tokens ?? []) {
    if (token.kind !== 'option' || spec[token.name]?.multiple === true) continue;
    if (seen.has(token.name)) throw new UsageError(`${command}: --${token.name} given more than once`);
    seen.add(token.name);
  }
  const { positionals } = parsed;
  if (positionals.length > positionalNames.length) {
    throw new UsageError(`${command}: unexpected argument '${positionals[positionalNames.length]}'`);
  }
  // A name ending in '?' is optional (the caller decides what its absence means).
  const required = positionalNames.filter((name) => !name.endsWith('?'));
  if (positionals.length < required.length) {
    throw new UsageError(`${command}: missing ${required[positionals.length]}`);
  }
  return { values, positionals };
}

function describeParseError(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  const message = messageOf(error);
  const option = /'(-[^' ]*)/.exec(message)?.[1] ?? '';
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${option}`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      if (message.includes('does not take an argument')) return `${option} does not take a value`;
      if (message.includes('ambiguous'))
        return `${option} needs a value (write ${option}=-x for one starting with -)`;
      return `${option} needs a value`;
    default:
      return message.split('\n')[0] ?? message;
  }
}

export function stringOption(values: OptionValues, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

export function listOption(values: OptionValues, name: string): string[] {
  const value = values[name];
  return Array.isArray(value) ? value : [];
}

export function flagOption(values: OptionValues, name: string): boolean {
  return values[name] === true;
}

export function requireUserId(value: string | undefined, what: string): string {
  if (value === undefined) throw new UsageError(`missing ${what}`);
  if (!USER_ID_PATTERN.test(value)) throw new UsageError(`${what} ${JSON.stringify(value)} is not a user id`);
  // The pattern admits a token; a user named by one would print a secret in every listing.
  if (/^fty_[0-9A-Za-z]{12}_/i.test(value)) {
    throw new UsageError(`${what} ${JSON.stringify(value)} is not a user id (it looks like an API token)`);
  }
  return value;
}

export function requireKeyId(value: string | undefined): string {
  if (value === undefined) throw new UsageError('missing <keyId>');
  if (!isKeyId(value))
    throw new UsageError(`${JSON.stringify(value)} is not a key id (12 base62 characters)`);
  return value;
}

/** Vault ids, checked and de-duplicated in the order given. */
export function vaultIds(values: readonly string[], flag: string): string[] {
  for (const value of values) {
    if (!isVaultId(value)) throw new UsageError(`${flag} ${JSON.stringify(value)} is not a vault id`);
  }
  return atMost(MAX_LIST_LENGTH, [...new Set(values)], flag);
}

/** The record contract's bound on vault and IP lists (src/core/records.ts). */
const MAX_LIST_LENGTH = 1000;

function atMost(max: number, list: string[], flag: string): string[] {
  if (list.length > max) throw new UsageError(`${flag} given more than ${max} times`);
  return list;
}

/** CIDR ranges in network form, checked with the same strict parser the sidecar uses, de-duplicated. */
export function cidrs(values: readonly string[]): string[] {
  for (const value of values) {
    const problem = cidrProblem(value);
    if (problem !== null) throw new UsageError(`--ip ${problem}`);
  }
  return atMost(MAX_LIST_LENGTH, [...new Set(values)], '--ip');
}

/** The label rules of src/core/label.ts: at most 200 code points, no control or bidi-override characters. */
export function label(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const problem = labelProblem(value);
  if (problem !== null) throw new UsageError(`--label ${problem}`);
  return value;
}

export const DAY_MS = 24 * 60 * 60 * 1000;
export const DEFAULT_EXPIRY_DAYS = 365;
const MAX_EXPIRY_DAYS = 36500;

/**
 * The expiry the flags ask for: epoch ms, null for `--no-expiry`, undefined when no expiry flag was given.
 * At most one of the three flags; for a new key the expiry must lie in the future.
 */
export function expiry(
  values: OptionValues,
  nowMs: number,
  purpose: 'create' | 'edit',
): number | null | undefined {
  const expiresIn = stringOption(values, 'expires-in');
  const expiresAt = stringOption(values, 'expires-at');
  const noExpiry = flagOption(values, 'no-expiry');
  const given = [expiresIn !== undefined, expiresAt !== undefined, noExpiry].filter(Boolean).length;
  if (given > 1) throw new UsageError('--expires-in, --expires-at and --no-expiry exclude each other');
  if (noExpiry) return null;
  if (expiresIn !== undefined) {
    const match = /^([1-9][0-9]*)d$/.exec(expiresIn);
    const days = match === null ? NaN : Number(match[1]);
    if (!(days <= MAX_EXPIRY_DAYS)) {
      throw new UsageError(`--expires-in must be <days>d with 1 <= days <= ${MAX_EXPIRY_DAYS} (e.g. 90d)`);
    }
    return nowMs + days * DAY_MS;
  }
  if (expiresAt !== undefined) {
    const at = parseIsoInstant(expiresAt);
    if (at === null) {
      throw new UsageError(
        `--expires-at ${JSON.stringify(expiresAt)} is not an ISO-8601 date (2026-01-31) or date-time with zone (2026-01-31T12:00:00Z)`,
      );
    }
    if (at <= nowMs) {
      // Editing a key's expiry into the past would be a revocation that a later edit silently undoes.
      throw new UsageError(
        purpose === 'create'
          ? `--expires-at ${expiresAt} is in the past`
          : `--expires-at ${expiresAt} is in the past; to stop a key now, use 'keys revoke'`,
      );
    }
    return at;
  }
  return undefined;
}

/** A `--<name> <N>d` filter of keys list, in ms (1 <= N <= 36500); undefined when the flag is absent. */
export function daysOption(values: OptionValues, name: string): number | undefined {
  const text = stringOption(values, name);
  if (text === undefined) return undefined;
  const match = /^([1-9][0-9]{0,4})d$/.exec(text);
  const days = match === null ? NaN : Number(match[1]);
  if (!(days <= MAX_EXPIRY_DAYS))
    throw new UsageError(`--${name} must be <days>d with 1 <= days <= ${MAX_EXPIRY_DAYS} (e.g. 30d)`);
  return days * DAY_MS;
}

const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const DATE_TIME =
  /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(?:(Z)|([+-])(\d{2}):?(\d{2}))$/;

/**
 * Epoch ms of `YYYY-MM-DD` (00:00 UTC that day) or `YYYY-MM-DDTHH:MM[:SS[.fff]]` with `Z` or `±HH:MM`; null for
 * anything else, including dates that do not exist (2026-02-30) and times without a zone (ambiguous).
 */
export function parseIsoInstant(text: string): number | null {
  const date = DATE.exec(text);
  const dateTime = date === null ? DATE_TIME.exec(text) : null;
  const parts = date ?? dateTime;
  if (parts === null) return null;
  const n = (i: number) => Number(parts[i] ?? 0);
  const [year, month, day, hour, minute, second] = [n(1), n(2), n(3), n(4), n(5), n(6)];
  const millis = Number(((dateTime?.[7] ?? '') + '000').slice(0, 3));
  if (year < 1970 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59)
    return null;
  const utc = Date.UTC(year, month - 1, day, hour, minute, second, millis);
  if (new Date(utc).getUTCDate() !== day) return null;
  let offsetMinutes = 0;
  if (dateTime !== null && dateTime[8] === undefined) {
    const [offsetHours, offsetMins] = [Number(dateTime[10]), Number(dateTime[11])];
    if (offsetHours > 23 || offsetMins > 59) return null;
    offsetMinutes = (dateTime[9] === '-' ? -1 : 1) * (offsetHours * 60 + offsetMins);
  }
  const epoch = utc - offsetMinutes * 60_000;
  return epoch >= 0 ? epoch : null;
}

/** bcrypt cost for new keys: FORTARY_BCRYPT_COST, 4-15, default 10. */
export function bcryptCost(env: Record<string, string | undefined>): number {
  const text = env.FORTARY_BCRYPT_COST;
  if (text === undefined || text === '') return 10;
  const cost = /^\d{1,2}$/.test(text) ? Number(text) : NaN;
  if (!(cost >= 4 && cost <= 15)) throw new UsageError('FORTARY_BCRYPT_COST must be an integer from 4 to 15');
  return cost;
}
