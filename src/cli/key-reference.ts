/**
 * How `keys revoke` and `keys show` name a key: by its id, by a whole token (whoever holds a leaked token has the
 * token, not the id), or by a token on standard input (`--token-stdin`, so it stays out of shell history and `ps`).
 * A token's checksum is verified before anything else, and its secret is checked against the stored hash before
 * the command acts on the key: a token that does not belong to the key is not evidence about that key.
 */
import bcrypt from 'bcrypt';
import { isKeyId } from '../core/records';
import { parseToken } from '../core/token';
import { flagOption, type OptionValues } from './args';
import type { Context } from './context';
import { CliError, UsageError } from './errors';

export interface KeyReference {
  keyId: string;
  /** The whole token when the key was named by one. */
  token: string | null;
}

export const TOKEN_STDIN_OPTION = { 'token-stdin': { type: 'boolean' } } as const;

/** The key the command names: `<keyId|token>` or `--token-stdin`, exactly one of them. */
export async function keyReference(
  ctx: Context,
  command: string,
  values: OptionValues,
  positional: string | undefined,
): Promise<KeyReference> {
  const fromStdin = flagOption(values, 'token-stdin');
  if (fromStdin && positional !== undefined) {
    throw new UsageError(`${command}: give a key id or token, or --token-stdin, not both`);
  }
  if (fromStdin) {
    if (ctx.io.readStdin === undefined) throw new UsageError(`${command}: no standard input to read`);
    const text = (await ctx.io.readStdin()).trim();
    if (text === '') throw new UsageError(`${command}: --token-stdin: standard input is empty`);
    if (/\s/.test(text))
      throw new UsageError(`${command}: --token-stdin: expected one token, found several words`);
    return tokenReference(text, '--token-stdin: standard input');
  }
  if (positional === undefined) throw new UsageError(`${command}: missing <keyId|token> (or --token-stdin)`);
  if (/^fty_/i.test(positional)) return tokenReference(positional, 'the token');
  if (!isKeyId(positional)) {
    throw new UsageError(
      `${JSON.stringify(positional)} is not a key id (12 base62 characters) or a Fortary token`,
    );
  }
  return { keyId: positional, token: null };
}

function tokenReference(text: string, what: string): KeyReference {
  const parsed = parseToken(text);
  // The message never repeats the text: it is, or nearly is, a secret (the output is redacted as well).
  if (parsed === null) {
    throw new UsageError(`${what} is not a valid Fortary token (wrong length, characters or checksum)`);
  }
  return { keyId: parsed.keyId, token: parsed.token };
}

/** Refuses to act on a key by a token whose secret is not that key's; no-op for a reference by id. */
export async function requireTokenMatches(reference: KeyReference, secretHash: string | null): Promise<void> {
  if (reference.token === null) return;
  if (secretHash === null) {
    throw new CliError(
      `cannot check the token against key ${reference.keyId} (its stored record is unreadable); name the key by its id`,
    );
  }
  if (!(await bcrypt.compare(reference.token, secretHash))) {
    throw new CliError(
      `the token names key ${reference.keyId} but its secret is not that key's; nothing was changed (name the key by its id if you mean it)`,
    );
  }
}
