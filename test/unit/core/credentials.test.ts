/**
 * Rule 1: exactly one `Authorization: Bearer <token>` (scheme case-insensitive). Every other place or shape a
 * credential can take is refused with a 401 that tells the caller to send a bearer token.
 */
import fc from 'fast-check';
import { extractCredential, queryCarriesToken, type CredentialResult } from '../../../src/core/credentials';
import { outcomeFor } from '../../../src/core/outcome';
import { formatToken } from '../../../src/core/token';
import type { AuthzRequest } from '../../../src/core/types';

const KEY_ID = 'AbCdEf012345';
const SECRET = 'Zy9Xw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBaZyXwVuT';
const T = formatToken(KEY_ID, SECRET);

function request(over: Partial<AuthzRequest> = {}): AuthzRequest {
  return {
    method: 'GET',
    path: '/v1/vaults/alpha',
    authorization: [],
    apiKeyHeader: false,
    forwardedFor: undefined,
    source: { kind: 'ip', ip: '203.0.113.7' },
    fortaryHeaders: [],
    requestId: undefined,
    ...over,
  };
}

const auth = (...values: string[]) => request({ authorization: values });

type Refusal = Extract<CredentialResult, { ok: false }>['reason'];

const REFUSED: [string, AuthzRequest, Refusal][] = [
  // Nothing at all.
  ['no Authorization header', request(), 'credentials_missing'],
  [
    'no Authorization header, harmless query',
    request({ path: '/v1/vaults/alpha?monkey=1&tokens=2' }),
    'credentials_missing',
  ],
  // The key in the wrong place.
  ['X-API-Key header', request({ apiKeyHeader: true }), 'credentials_misplaced'],
  ['query ?api_key=', request({ path: `/v1/vaults/alpha?api_key=${T}` }), 'credentials_misplaced'],
  ['query ?access_token=', request({ path: `/v1/vaults/alpha?access_token=${T}` }), 'credentials_misplaced'],
  ['query ?key=', request({ path: `/v1/vaults/alpha?key=${T}` }), 'credentials_misplaced'],
  [
    'query ?token= after another parameter',
    request({ path: `/v1/vaults/alpha?x=1&token=${T}` }),
    'credentials_misplaced',
  ],
  ['query ?apikey=', request({ path: `/v1/vaults/alpha?apikey=${T}` }), 'credentials_misplaced'],
  ['query ?api-key=', request({ path: `/v1/vaults/alpha?api-key=${T}` }), 'credentials_misplaced'],
  ['query ?API_KEY= (any case)', request({ path: `/v1/vaults/alpha?API_KEY=${T}` }), 'credentials_misplaced'],
  ['query ?key= with empty value', request({ path: '/v1/vaults/alpha?key=' }), 'credentials_misplaced'],
  // Other schemes.
  ['Basic', auth('Basic dXNlcjpwYXNzd29yZA=='), 'credentials_misplaced'],
  [
    'Basic carrying the token',
    auth(`Basic ${Buffer.from(`${T}:`).toString('base64')}`),
    'credentials_misplaced',
  ],
  [
    'Digest',
    auth('Digest username="u", realm="r", nonce="n", uri="/", response="x"'),
    'credentials_misplaced',
  ],
  ['Digest without commas', auth('Digest username="u"'), 'credentials_misplaced'],
  ['Token scheme', auth(`Token ${T}`), 'credentials_misplaced'],
  ['Bearer look-alike scheme (Cyrillic e)', auth(`B\u0435arer ${T}`), 'credentials_misplaced'],
  ['BearerX scheme', auth(`BearerX ${T}`), 'credentials_misplaced'],
  ['bare token without a scheme', auth(T), 'credentials_misplaced'],
  ['empty value', auth(''), 'credentials_misplaced'],
  // More than one credential.
  [
    'two Authorization values (both the same token)',
    auth(`Bearer ${T}`, `Bearer ${T}`),
    'credentials_misplaced',
  ],
  [
    'two Authorization values (Bearer and Basic)',
    auth(`Bearer ${T}`, 'Basic dXM6cHc='),
    'credentials_misplaced',
  ],
  ['comma-joined Bearer a,Bearer b', auth('Bearer a,Bearer b'), 'credentials_misplaced'],
  // Commas are classified before the length bound: two keys get the "send one bearer token" answer.
  ['comma-joined real tokens', auth(`Bearer ${T},Bearer ${T}`), 'credentials_misplaced'],
  ['comma-joined real tokens with a space', auth(`Bearer ${T}, Bearer ${T}`), 'credentials_misplaced'],
  ['trailing comma', auth(`Bearer ${T},`), 'credentials_misplaced'],
  ['two tokens in one value', auth(`Bearer ${T} ${T}`), 'token_malformed'],
  // Whitespace games: exactly one space, no tabs, nothing trailing.
  ['double space Bearer  tok', auth(`Bearer  ${T}`), 'token_malformed'],
  ['tab instead of space', auth(`Bearer\t${T}`), 'credentials_misplaced'],
  ['space then tab', auth(`Bearer \t${T}`), 'token_malformed'],
  ['trailing space', auth(`Bearer ${T} `), 'token_malformed'],
  ['trailing tab', auth(`Bearer ${T}\t`), 'token_malformed'],
  ['leading space', auth(` Bearer ${T}`), 'credentials_misplaced'],
  ['CRLF smuggled', auth(`Bearer ${T}\r\nX-A: b`), 'token_malformed'],
  // The scheme without a usable token.
  ['Bearer alone', auth('Bearer'), 'token_malformed'],
  ['Bearer and a space', auth('Bearer '), 'token_malformed'],
  ['Bearer with a garbage token', auth('Bearer abc'), 'token_malformed'],
  [
    'Bearer with a token whose checksum is wrong',
    auth(`Bearer ${T.slice(0, -1)}${T.endsWith('a') ? 'b' : 'a'}`),
    'token_malformed',
  ],
  ['Bearer with the token quoted', auth(`Bearer "${T}"`), 'token_malformed'],
  // Non-ASCII and control bytes.
  ['non-ASCII character in the token', auth(`Bearer ${T.slice(0, 20)}é${T.slice(21)}`), 'token_malformed'],
  ['fullwidth look-alike in the token', auth(`Bearer ${T.slice(0, 20)}Ａ${T.slice(21)}`), 'token_malformed'],
  ['NUL in the token', auth(`Bearer ${T.slice(0, 20)}\u0000${T.slice(21)}`), 'token_malformed'],
  ['latin-1 bytes as Envoy may pass them', auth(`Bearer ${T.slice(0, -1)}\u00ff`), 'token_malformed'],
  // Size.
  ['64 KiB value', auth('Bearer ' + 'a'.repeat(64 * 1024)), 'token_malformed'],
  ['64 KiB value of commas', auth('Bearer ' + ','.repeat(64 * 1024)), 'credentials_misplaced'],
];

describe('extractCredential refuses', () => {
  it.each(REFUSED)('%s', (_name, req, reason) => {
    const result = extractCredential(req);
    expect(result).toMatchObject({ ok: false, reason });
  });

  it.each(REFUSED)(
    '%s → 401 with the shared message telling the caller to send a bearer token',
    (_name, req) => {
      const result = extractCredential(req);
      if (result.ok) throw new Error('accepted');
      const outcome = outcomeFor(result.reason);
      expect(outcome.httpStatus).toBe(401);
      expect(outcome.publicCode).toBe('unauthenticated');
      expect(outcome.publicMessage).toContain('Authorization: Bearer <API key>');
    },
  );

  it('a missing credential gets the bare challenge; a misplaced one says invalid_request', () => {
    expect(outcomeFor('credentials_missing').bearerError).toBe('');
    expect(outcomeFor('credentials_misplaced').bearerError).toBe('invalid_request');
  });
});

describe('extractCredential accepts exactly one bearer token', () => {
  it.each([
    ['Bearer', `Bearer ${T}`],
    ['lowercase scheme', `bearer ${T}`],
    ['uppercase scheme', `BEARER ${T}`],
    ['mixed-case scheme', `bEaReR ${T}`],
  ])('%s', (_name, value) => {
    expect(extractCredential(auth(value))).toEqual({
      ok: true,
      token: expect.objectContaining({ keyId: KEY_ID, secret: SECRET }),
    });
  });

  it('the bearer token wins over an ignored X-API-Key header or query parameter (the credential is always the bearer)', () => {
    const req = request({
      authorization: [`Bearer ${T}`],
      apiKeyHeader: true,
      path: '/v1/vaults/alpha?key=x',
    });
    expect(extractCredential(req)).toMatchObject({ ok: true, token: { keyId: KEY_ID } });
  });
});

describe('extractCredential does bounded work', () => {
  // A guard against a regression to scanning or regex-matching oversized values: each call must stay in the
  // microseconds whatever the size. The bounds are generous (CI machines are slow); quadratic work would blow them.
  const time = (fn: () => void, runs: number) => {
    const start = process.hrtime.bigint();
    for (let i = 0; i < runs; i++) fn();
    return Number(process.hrtime.bigint() - start) / 1e6;
  };

  it('refuses a 64 KiB value quickly', () => {
    const req = auth('Bearer ' + 'a '.repeat(32 * 1024));
    expect(extractCredential(req)).toMatchObject({ ok: false, reason: 'token_malformed' });
    expect(time(() => extractCredential(req), 2000)).toBeLessThan(500);
  });

  it('refuses a 64 KiB value whose only comma is at the end quickly (one linear scan, no more)', () => {
    const req = auth('Bearer ' + 'a'.repeat(64 * 1024) + ',');
    expect(extractCredential(req)).toMatchObject({ ok: false, reason: 'credentials_misplaced' });
    expect(time(() => extractCredential(req), 2000)).toBeLessThan(500);
  });

  it('refuses a 16 MiB value in milliseconds, with or without commas', () => {
    const plain = auth('Bearer ' + 'a'.repeat(16 * 1024 * 1024));
    const commas = auth('Bearer ' + 'a'.repeat(16 * 1024 * 1024) + ',Bearer x');
    expect(extractCredential(plain)).toMatchObject({ ok: false, reason: 'token_malformed' });
    expect(extractCredential(commas)).toMatchObject({ ok: false, reason: 'credentials_misplaced' });
    expect(time(() => extractCredential(plain), 20)).toBeLessThan(500);
    expect(time(() => extractCredential(commas), 20)).toBeLessThan(500);
  });

  it('refuses ten thousand Authorization values without looking at them', () => {
    const many = request({
      authorization: Array.from({ length: 10_000 }, () => 'Bearer ' + 'x'.repeat(1000)),
    });
    expect(extractCredential(many)).toMatchObject({ ok: false, reason: 'credentials_misplaced' });
    expect(time(() => extractCredential(many), 2000)).toBeLessThan(500);
  });

  it('a long query with no credential in it is classified without backtracking', () => {
    const req = request({ path: '/v1/vaults/alpha?' + '&'.repeat(4000) + 'a='.repeat(2000) });
    expect(extractCredential(req)).toMatchObject({ ok: false, reason: 'credentials_missing' });
    expect(time(() => extractCredential(req), 200)).toBeLessThan(500);
  });
});

describe('a Fortary token in the query string is refused, with or without a bearer (issue 12 item 6)', () => {
  const ANOTHER = formatToken('ZZZZZZZZZZZZ', SECRET);
  const bearer = [`Bearer ${T}`];
  const encodeAll = (text: string) =>
    Array.from(text, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).join('');
  it.each([
    ['any parameter name', `/v1/vaults/alpha/items?q=${ANOTHER}`],
    ['the same token as the bearer', `/v1/vaults/alpha/items?api_key=${T}`],
    ['after other parameters', `/v1/vaults/alpha/items?a=1&b=2&x=${ANOTHER}&c=3`],
    ['inside a longer value', `/v1/vaults/alpha/items?next=/v1/x?k=${ANOTHER}`],
    ['a wrong checksum (the shape is enough)', `/v1/vaults/alpha?k=${ANOTHER.slice(0, -1)}0`],
    ['the underscore percent-encoded', `/v1/vaults/alpha?k=${ANOTHER.replace(/_/g, '%5F')}`],
    ['lowercase hex escapes', `/v1/vaults/alpha?k=${ANOTHER.replace(/_/g, '%5f')}`],
    ['the prefix letters encoded', `/v1/vaults/alpha?k=%66%74%79${ANOTHER.slice(3)}`],
    ['every character encoded', `/v1/vaults/alpha?k=${encodeAll(ANOTHER)}`],
    ['encoded twice', `/v1/vaults/alpha?k=${ANOTHER.replace(/_/g, '%255F')}`],
    ['an uppercase prefix', `/v1/vaults/alpha?k=FTY${ANOTHER.slice(3)}`],
    ['as a parameter name', `/v1/vaults/alpha?${ANOTHER}`],
  ])('%s', (_name, path) => {
    for (const authorization of [bearer, []]) {
      expect(extractCredential(request({ authorization, path }))).toEqual({
        ok: false,
        reason: 'credentials_misplaced',
        detail: 'Fortary token in the query string',
      });
    }
  });

  it.each([
    ['no query', `/v1/vaults/alpha/items`],
    ['a token-shaped path segment is not the query', `/v1/vaults/alpha/${ANOTHER}`],
    ['a parameter value one character short', `/v1/vaults/alpha?k=${ANOTHER.slice(0, -1)}`],
    ['a different prefix', `/v1/vaults/alpha?k=ftx${ANOTHER.slice(3)}`],
    ['a malformed escape', `/v1/vaults/alpha?k=%zz${ANOTHER.slice(3)}`],
    ['ordinary parameters', '/v1/vaults/alpha?page=2&sort=name&q=fty_'],
  ])('not refused for it: %s', (_name, path) => {
    expect(extractCredential(request({ authorization: bearer, path }))).toMatchObject({ ok: true });
    expect(queryCarriesToken(path)).toBe(false);
  });

  it('a long query of escapes is decoded in bounded rounds', () => {
    const path = '/v1/vaults/alpha?' + '%2525'.repeat(20_000);
    const start = process.hrtime.bigint();
    expect(queryCarriesToken(path)).toBe(false);
    expect(Number(process.hrtime.bigint() - start) / 1e6).toBeLessThan(500);
  });
});

describe('the Bearer scheme is compared in ASCII case only', () => {
  it('accepts every ASCII case of bearer and nothing that only looks like it', () => {
    const cases = ['bearer', 'BEARER', 'BeArEr', 'bEARER'];
    for (const scheme of cases) expect(extractCredential(auth(`${scheme} ${T}`)).ok).toBe(true);
    const lookalikes = [
      'bearer\u0000',
      'bear',
      'bearers',
      'Bearеr',
      '\u0062earer'.replace('b', 'B\u0301'),
      'Bearer\u00a0',
    ];
    for (const scheme of lookalikes) {
      const result = extractCredential(auth(`${scheme} ${T}`));
      expect(result).toMatchObject({ ok: false, reason: 'credentials_misplaced' });
    }
  });

  it('agrees with toLowerCase() === "bearer" on any six characters (property)', () => {
    const letters = fc.constantFrom(
      ...'bearBEAR\u0000\u0002\u0042\u0062\u0130\u0131\u212a\u017f\u00e9"'.split(''),
    );
    fc.assert(
      fc.property(
        fc.string({
          unit: fc.oneof(letters, fc.string({ unit: 'grapheme', maxLength: 1 })),
          minLength: 6,
          maxLength: 6,
        }),
        (scheme) => {
          fc.pre(!scheme.includes(' ') && !scheme.includes(','));
          const expected = scheme.toLowerCase() === 'bearer';
          expect(extractCredential(auth(`${scheme} ${T}`)).ok).toBe(expected);
        },
      ),
      { numRuns: 5000 },
    );
  });
});
