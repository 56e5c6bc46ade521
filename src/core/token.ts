/**
 * The API key token format (docs/token-format.md):
 *
 *   fty_<keyId:12 base62>_<secret:43 base62><checksum:6 base62>
 *
 * - `fty_` lets secret scanners recognise a leaked key;
 * - the key id finds the record with one Redis read, so unknown ids never reach bcrypt;
 * - the secret carries 43 × log2(62) ≈ 256 bits from a CSPRNG;
 * - the checksum is CRC-32 of everything before it, so typos and garbage are refused without touching Redis.
 */

export const TOKEN_PREFIX = 'fty_';
export const KEY_ID_LENGTH = 12;
export const SECRET_LENGTH = 43;
export const CHECKSUM_LENGTH = 6;
export const TOKEN_LENGTH = TOKEN_PREFIX.length + KEY_ID_LENGTH + 1 + SECRET_LENGTH + CHECKSUM_LENGTH;

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
export const KEY_ID_PATTERN = /^[0-9A-Za-z]{12}$/;

const KEY_ID_START = TOKEN_PREFIX.length;
const KEY_ID_END = KEY_ID_START + KEY_ID_LENGTH;
const SECRET_START = KEY_ID_END + 1;
const CHECKSUM_START = TOKEN_LENGTH - CHECKSUM_LENGTH;
/** The shape without captures: `test` builds no match array (irregexp also beats a charCodeAt loop here). */
const TOKEN_SHAPE = /^fty_[0-9A-Za-z]{12}_[0-9A-Za-z]{49}$/;

export interface ParsedToken {
  /** The whole token, as presented. */
  token: string;
  keyId: string;
  secret: string;
}

/**
 * Returns the key id and secret of a well-formed token with a correct checksum, else null. Runs on every Check, so
 * it checks the shape and the checksum in place and cuts only the two parts it returns.
 */
export function parseToken(token: string): ParsedToken | null {
  if (token.length !== TOKEN_LENGTH || !TOKEN_SHAPE.test(token) || !checksumMatches(token)) return null;
  return {
    token,
    keyId: token.slice(KEY_ID_START, KEY_ID_END),
    secret: token.slice(SECRET_START, CHECKSUM_START),
  };
}

/** The last CHECKSUM_LENGTH characters are checksumOf(everything before them), compared without building it. */
function checksumMatches(token: string): boolean {
  let value = crc32(token, CHECKSUM_START);
  for (let i = TOKEN_LENGTH - 1; i >= CHECKSUM_START; i--) {
    // value - next * 62 is exact below 2^32 and spares the floating-point modulo that `%` compiles to here.
    const next = Math.floor(value / 62);
    if (token.charCodeAt(i) !== BASE62.charCodeAt(value - next * 62)) return false;
    value = next;
  }
  return true;
}

/** Builds a token from an id and a secret (both base62 of the right length). */
export function formatToken(keyId: string, secret: string): string {
  if (!KEY_ID_PATTERN.test(keyId)) throw new Error('key id must be 12 base62 characters');
  if (!/^[0-9A-Za-z]{43}$/.test(secret)) throw new Error('secret must be 43 base62 characters');
  const body = `${TOKEN_PREFIX}${keyId}_${secret}`;
  return body + checksumOf(body);
}

/** Maps uniformly distributed bytes (one per character) to base62 by rejection; returns null when it ran short. */
export function base62FromBytes(bytes: Uint8Array, length: number): string | null {
  let out = '';
  for (const byte of bytes) {
    // 248 = 4 × 62: bytes at or above it would bias the first characters.
    if (byte >= 248) continue;
    out += BASE62[byte % 62];
    if (out.length === length) return out;
  }
  return null;
}

export function checksumOf(text: string): string {
  let value = crc32(text);
  let out = '';
  for (let i = 0; i < CHECKSUM_LENGTH; i++) {
    out = BASE62[value % 62] + out;
    value = Math.floor(value / 62);
  }
  return out;
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 (IEEE) of an ASCII string, or of its first `end` characters. */
export function crc32(text: string, end = text.length): number {
  // -1 is 0xffffffff as int32: starting from it keeps `crc` a 32-bit integer through the loop (not a double).
  let crc = -1;
  for (let i = 0; i < end; i++) {
    crc = (CRC_TABLE[(crc ^ text.charCodeAt(i)) & 0xff] as number) ^ (crc >>> 8);
  }
  return ~crc >>> 0;
}
