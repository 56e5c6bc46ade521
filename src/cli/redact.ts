/**
 * Keeps secrets out of everything the CLI prints. Every stdout and stderr line passes through redactTokens() (see
 * run() in main.ts), so a token typed into the wrong place (`keys revoke fty_…` with a typo, `--label fty_…`, an
 * unknown flag's value) is never echoed back into a terminal, a CI log or a ticket. Only the one line that hands a
 * new token to its owner bypasses it, explicitly (Context.reveal).
 */

/**
 * Anything shaped like a token: the `fty_` prefix and everything up to the next space or quote, in any case.
 * Deliberately looser than the real format (src/core/token.ts) so a mistyped, truncated or extended token is
 * caught too; redacting a little too much is harmless.
 */
const TOKEN_SHAPE = /fty_([0-9A-Za-z]{12}_)?[^\s"'`]*/gi;

/** Replaces the secret part of token-shaped text; the key id, which is not secret, stays for orientation. */
export function redactTokens(text: string): string {
  if (!/fty_/i.test(text)) return text;
  return text.replace(TOKEN_SHAPE, (match, keyIdPart: string | undefined) =>
    keyIdPart === undefined ? (match.length > 4 ? 'fty_[redacted]' : match) : `fty_${keyIdPart}[redacted]`,
  );
}
