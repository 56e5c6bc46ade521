/**
 * Finds the one credential a request may carry: `Authorization: Bearer <token>` (RFC 6750 §2.1).
 * Anything else that looks like a credential is refused, so a key is never accepted from a place
 * where proxies and logs would keep it.
 */
import type { AuthzRequest } from './types';
import { parseToken, TOKEN_LENGTH, type ParsedToken } from './token';

export type CredentialResult =
  | { ok: true; token: ParsedToken }
  | {
      ok: false;
      reason: 'credentials_missing' | 'credentials_misplaced' | 'token_malformed';
      detail: string;
    };

/** Longest Authorization value worth looking at; refusing longer ones first keeps the work bounded. */
const MAX_AUTHORIZATION_LENGTH = 7 + TOKEN_LENGTH + 64;

/** Query parameters that clients use to smuggle keys; their presence is reported, not accepted. */
const QUERY_CREDENTIALS = /(?:^|&)(?:access_token|api_key|apikey|api-key|key|token)=/i;

export function extractCredential(req: AuthzRequest): CredentialResult {
  // Checked first, whatever else the request carries: an allowed request would take the token to upstream and
  // to every access log on the way, so a leaked key in the URL is refused even beside a valid bearer.
  if (queryCarriesToken(req.path)) return misplaced('Fortary token in the query string');
  const values = req.authorization;
  if (values.length === 0) return missingCredential(req);
  if (values.length > 1) return misplaced('more than one Authorization header');
  const value = values[0] as string;
  if (value.includes(',')) return misplaced('comma-joined Authorization values');
  if (value.length > MAX_AUTHORIZATION_LENGTH)
    return malformed(`authorization value of ${value.length} chars`);
  const space = value.indexOf(' ');
  if (!isBearerScheme(value, space < 0 ? value.length : space))
    return misplaced(`authorization scheme is not Bearer`);
  // Exactly one space and one token: extra spaces, tabs or a second token are refused rather than guessed at.
  const token = value.slice(space + 1);
  const parsed = parseToken(token);
  if (parsed === null) return malformed('token is not a well-formed fortary key');
  return { ok: true, token: parsed };
}

const BEARER = 'bearer';

/**
 * The first `length` characters are `bearer` in any ASCII case, compared in place (this runs on every Check).
 * Setting bit 0x20 lower-cases an ASCII letter and maps no other character onto one of these letters; no
 * non-ASCII character lower-cases to them either, so this agrees with `toLowerCase() === 'bearer'`.
 */
function isBearerScheme(value: string, length: number): boolean {
  if (length !== BEARER.length) return false;
  for (let i = 0; i < length; i++) {
    if ((value.charCodeAt(i) | 0x20) !== BEARER.charCodeAt(i)) return false;
  }
  return true;
}

function missingCredential(req: AuthzRequest): CredentialResult {
  if (req.apiKeyHeader) return misplaced('key sent in X-API-Key');
  const query = req.path.indexOf('?');
  if (query >= 0 && QUERY_CREDENTIALS.test(req.path.slice(query + 1)))
    return misplaced('key sent in the query');
  return { ok: false, reason: 'credentials_missing', detail: 'no Authorization header' };
}

/** The token shape (token.ts) anywhere in a text, checksum not verified: a near-miss is as much a leak. */
const TOKEN_SHAPE = /fty_[0-9A-Za-z]{12}_[0-9A-Za-z]{49}/i;
const PERCENT_ESCAPE = /%([0-9A-Fa-f]{2})/g;
/** Rounds of percent-decoding: enough for a value encoded twice over (`%255F`) by chained redirects or clients. */
const DECODE_ROUNDS = 3;

/**
 * True when the query string of a raw `:path` holds something shaped like a Fortary token, in a parameter value or
 * anywhere else, also when percent-encoded (`fty%5F…`, `%66ty_…`, or encoded twice). Paths without a query, or
 * whose query has neither `fty_` nor a `%`, cost one or two scans.
 */
export function queryCarriesToken(path: string): boolean {
  const start = path.indexOf('?');
  // Percent-encoding only lengthens: a query shorter than a token cannot hold one (most queries; no scan at all).
  if (start < 0 || path.length - start - 1 < TOKEN_LENGTH) return false;
  let query = path.slice(start + 1);
  for (let round = 0; ; round++) {
    if (TOKEN_SHAPE.test(query)) return true;
    if (round === DECODE_ROUNDS || !query.includes('%')) return false;
    const decoded = query.replace(PERCENT_ESCAPE, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
    if (decoded === query) return false;
    query = decoded;
  }
}

const misplaced = (detail: string): CredentialResult => ({
  ok: false,
  reason: 'credentials_misplaced',
  detail,
});
const malformed = (detail: string): CredentialResult => ({ ok: false, reason: 'token_malformed', detail });
