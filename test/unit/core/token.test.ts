/**
 * Token format fty_<keyId:12>_<secret:43><checksum:6>: parse/format round trip, the checksum that turns typos
 * and garbage away before Redis, and the base62 rejection sampler that generates secrets.
 */
import fc from 'fast-check';
import {
  base62FromBytes,
  CHECKSUM_LENGTH,
  checksumOf,
  crc32,
  formatToken,
  KEY_ID_LENGTH,
  parseToken,
  SECRET_LENGTH,
  TOKEN_LENGTH,
  TOKEN_PREFIX,
} from '../../../src/core/token';

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const KEY_ID = 'AbCdEf012345';
const SECRET = 'Zy9Xw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBaZyXwVuT';
const TOKEN = formatToken(KEY_ID, SECRET);

const base62 = (length: number) =>
  fc.string({ unit: fc.constantFrom(...BASE62.split('')), minLength: length, maxLength: length });

describe('token format', () => {
  it('has the documented shape and length', () => {
    expect(SECRET).toHaveLength(SECRET_LENGTH);
    expect(TOKEN_LENGTH).toBe(4 + 12 + 1 + 43 + 6);
    expect(TOKEN).toHaveLength(TOKEN_LENGTH);
    expect(TOKEN.startsWith(`${TOKEN_PREFIX}${KEY_ID}_${SECRET}`)).toBe(true);
    expect(TOKEN.slice(-CHECKSUM_LENGTH)).toBe(checksumOf(`fty_${KEY_ID}_${SECRET}`));
  });

  it('parses what it formats', () => {
    expect(parseToken(TOKEN)).toMatchObject({ keyId: KEY_ID, secret: SECRET });
  });

  it('round-trips any key id and secret (property)', () => {
    fc.assert(
      fc.property(base62(KEY_ID_LENGTH), base62(SECRET_LENGTH), (keyId, secret) => {
        const token = formatToken(keyId, secret);
        expect(token).toHaveLength(TOKEN_LENGTH);
        expect(parseToken(token)).toMatchObject({ keyId, secret });
      }),
      { seed: 20240601, numRuns: 300 },
    );
  });

  it('CRC-32 is the IEEE polynomial (check value of "123456789")', () => {
    expect(crc32('123456789')).toBe(0xcbf43926);
    expect(crc32('')).toBe(0);
  });

  it('the 6-character checksum is injective over all 32-bit CRC values (62^6 > 2^32)', () => {
    expect(62 ** 6).toBeGreaterThan(2 ** 32);
    expect(checksumOf('')).toBe('000000');
    for (const text of ['a', 'b', TOKEN.slice(0, -6)]) expect(checksumOf(text)).toMatch(/^[0-9A-Za-z]{6}$/);
  });
});

describe('checksum catches typos', () => {
  // Every other base62 character, the separator, and characters a copy-paste might introduce.
  const ALTERNATIVES = [...BASE62.split(''), '_', '-', ' ', '.', '=', '+', '/', 'é', '\u0000'];

  it('every single-character substitution anywhere in a sample token is refused', () => {
    let tried = 0;
    for (let i = 0; i < TOKEN.length; i++) {
      for (const c of ALTERNATIVES) {
        if (c === TOKEN[i]) continue;
        const mutated = TOKEN.slice(0, i) + c + TOKEN.slice(i + 1);
        expect({ i, c, parsed: parseToken(mutated) }).toEqual({ i, c, parsed: null });
        tried++;
      }
    }
    expect(tried).toBeGreaterThan(TOKEN.length * 61);
  });

  it('every swap of two adjacent different characters is refused', () => {
    for (let i = 0; i + 1 < TOKEN.length; i++) {
      if (TOKEN[i] === TOKEN[i + 1]) continue;
      const swapped = TOKEN.slice(0, i) + TOKEN[i + 1] + TOKEN[i] + TOKEN.slice(i + 2);
      expect({ i, parsed: parseToken(swapped) }).toEqual({ i, parsed: null });
    }
  });

  it('any single substitution in any token is refused (property)', () => {
    fc.assert(
      fc.property(
        base62(KEY_ID_LENGTH),
        base62(SECRET_LENGTH),
        fc.nat({ max: TOKEN_LENGTH - 1 }),
        fc.constantFrom(...BASE62.split('')),
        (keyId, secret, at, c) => {
          const token = formatToken(keyId, secret);
          fc.pre(token[at] !== c);
          expect(parseToken(token.slice(0, at) + c + token.slice(at + 1))).toBeNull();
        },
      ),
      { seed: 424242, numRuns: 500 },
    );
  });
});

describe('parseToken refuses', () => {
  const body = `fty_${KEY_ID}_${SECRET}`;
  const rows: [string, string][] = [
    ['empty', ''],
    ['one character short', TOKEN.slice(0, -1)],
    ['one character long', TOKEN + 'a'],
    ['checksum missing', body],
    ['twice the token', TOKEN + TOKEN],
    [
      'wrong prefix (correct checksum for it)',
      `ftx_${KEY_ID}_${SECRET}` + checksumOf(`ftx_${KEY_ID}_${SECRET}`),
    ],
    [
      'uppercase prefix (correct checksum for it)',
      `FTY_${KEY_ID}_${SECRET}` + checksumOf(`FTY_${KEY_ID}_${SECRET}`),
    ],
    ['no prefix', TOKEN.slice(4)],
    ['separator moved (11-char id, 44-char secret)', `fty_${KEY_ID.slice(0, 11)}_${KEY_ID[11]}${SECRET}`],
    ['separator replaced', TOKEN.replace(`${KEY_ID}_`, `${KEY_ID}-`)],
    ['leading space', ' ' + TOKEN.slice(0, -1)],
    ['trailing space', TOKEN.slice(1) + ' '],
    ['trailing newline', TOKEN + '\n'],
    ['non-ASCII look-alike in the secret', TOKEN.replace('Z', 'Ｚ')],
    ['bearer prefix included', `Bearer ${TOKEN}`],
    ['key id only', KEY_ID],
  ];
  it.each(rows)('%s', (_name, token) => {
    expect(parseToken(token)).toBeNull();
  });

  it('a separator moved with a recomputed checksum is still refused by the shape', () => {
    const moved = `fty_${KEY_ID.slice(0, 11)}_${KEY_ID[11]}${SECRET}`;
    expect(moved.length + CHECKSUM_LENGTH).toBe(TOKEN_LENGTH);
    expect(parseToken(moved + checksumOf(moved))).toBeNull();
  });
});

describe('formatToken refuses bad parts', () => {
  it.each([
    ['key id too short', KEY_ID.slice(1), SECRET],
    ['key id too long', KEY_ID + 'a', SECRET],
    ['key id with underscore', 'AbCdEf_12345', SECRET],
    ['secret too short', KEY_ID, SECRET.slice(1)],
    ['secret too long', KEY_ID, SECRET + 'a'],
    ['secret with dash', KEY_ID, SECRET.slice(1) + '-'],
  ])('%s', (_name, keyId, secret) => {
    expect(() => formatToken(keyId, secret)).toThrow();
  });
});

describe('base62FromBytes (rejection sampling)', () => {
  it('maps bytes 0..61 to the alphabet in order', () => {
    const bytes = Uint8Array.from({ length: 62 }, (_, i) => i);
    expect(base62FromBytes(bytes, 62)).toBe(BASE62);
  });

  it('wraps bytes 62..247 modulo 62 (247 is the last accepted byte)', () => {
    expect(base62FromBytes(Uint8Array.from([62, 123, 124, 185, 186, 247]), 6)).toBe('0z0z0z');
  });

  it('skips bytes 248..255, which would bias the first characters', () => {
    const bytes = Uint8Array.from([248, 249, 250, 251, 252, 253, 254, 255, 5, 255, 7]);
    expect(base62FromBytes(bytes, 2)).toBe('57');
  });

  it('every accepted byte value maps to each character exactly 4 times (uniform)', () => {
    const counts = new Map<string, number>();
    for (let b = 0; b < 256; b++) {
      const c = base62FromBytes(Uint8Array.from([b]), 1);
      if (b >= 248) {
        expect(c).toBeNull();
        continue;
      }
      counts.set(c as string, (counts.get(c as string) ?? 0) + 1);
    }
    expect(counts.size).toBe(62);
    for (const n of counts.values()) expect(n).toBe(4);
  });

  it('returns null when the bytes run out before the length is reached', () => {
    expect(base62FromBytes(new Uint8Array(0), 1)).toBeNull();
    expect(base62FromBytes(Uint8Array.from([1, 2, 3]), 4)).toBeNull();
    expect(base62FromBytes(new Uint8Array(100).fill(255), 1)).toBeNull();
    expect(base62FromBytes(Uint8Array.from([1, 2, 3, 250, 251]), 4)).toBeNull();
  });

  it('stops at the requested length and ignores the surplus', () => {
    expect(base62FromBytes(Uint8Array.from([10, 11, 12, 13]), 2)).toBe('AB');
  });

  it('produces base62 of the requested length whenever enough bytes are accepted (property)', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 0, maxLength: 80 }),
        fc.integer({ min: 1, max: 60 }),
        (bytes, length) => {
          const accepted = bytes.filter((b) => b < 248).length;
          const out = base62FromBytes(bytes, length);
          if (accepted < length) expect(out).toBeNull();
          else expect(out).toMatch(new RegExp(`^[0-9A-Za-z]{${length}}$`));
        },
      ),
      { seed: 7, numRuns: 300 },
    );
  });
});

describe('parseToken agrees with the format written as a regular expression', () => {
  // The reference: the grammar of docs/token-format.md, with the checksum computed by checksumOf.
  const reference = (token: string) => {
    const match = /^fty_([0-9A-Za-z]{12})_([0-9A-Za-z]{43})([0-9A-Za-z]{6})$/.exec(token);
    if (match === null || checksumOf(token.slice(0, -CHECKSUM_LENGTH)) !== match[3]) return null;
    return { token, keyId: match[1], secret: match[2] };
  };
  // Valid tokens with one character replaced by something near the grammar (or far from it), cut or extended.
  const nearToken = fc
    .tuple(
      base62(KEY_ID_LENGTH),
      base62(SECRET_LENGTH),
      fc.nat({ max: TOKEN_LENGTH }),
      fc.constantFrom('_', '-', ' ', '', 'a', 'Z', '0', '\u0131', '\u212a', 'é', '\u0000', '\u00ff', 'fty_'),
      fc.constantFrom('replace', 'insert', 'cut', 'none'),
    )
    .map(([keyId, secret, at, c, how]) => {
      const token = formatToken(keyId, secret);
      if (how === 'none') return token;
      if (how === 'cut') return token.slice(0, at);
      return token.slice(0, at) + c + token.slice(how === 'replace' ? at + 1 : at);
    });

  it('on valid tokens and near misses (property)', () => {
    fc.assert(
      fc.property(nearToken, (token) => {
        expect(parseToken(token)).toEqual(reference(token));
      }),
      { numRuns: 5000 },
    );
  });

  it('on arbitrary strings of the right length (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', minLength: TOKEN_LENGTH, maxLength: TOKEN_LENGTH }), (text) => {
        expect(parseToken(text)).toEqual(reference(text));
        expect(parseToken(`fty_${text.slice(4)}`)).toEqual(reference(`fty_${text.slice(4)}`));
      }),
    );
  });

  it('refuses non-ASCII characters even when the checksum is computed over them', () => {
    // CRC-32 reads a character's low byte: U+0161 checksums like 'a', U+0130 like '0'.
    for (const [ascii, wide] of [
      ['a', '\u0161'],
      ['0', '\u0130'],
    ] as const) {
      const body = `fty_${KEY_ID.replace(/[a0]/, ascii)}_${SECRET}`.replace(ascii, wide);
      expect(checksumOf(body)).toBe(checksumOf(body.replace(wide, ascii)));
      expect(parseToken(body + checksumOf(body))).toBeNull();
    }
  });

  it('refuses a token whose checksum is right but whose separator is not an underscore', () => {
    const body = `fty_${KEY_ID}-${SECRET}`;
    expect(parseToken(body + checksumOf(body))).toBeNull();
  });
});
