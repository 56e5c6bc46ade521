/**
 * fast-check arbitraries for the request line: the `method` and `path` dimensions, each with values that keep a
 * request allowable and values that attack the decoder and the path rules. Part of the fuzzer run by bench/fuzz.ts
 * and test/fuzz/check.fuzz.test.ts (docs/hardening.md); bench/fuzz-cases.ts combines the dimensions into cases.
 */
import fc from 'fast-check';
import { utf8, type Dimension } from './fuzz-case-types';

export const METHOD: Dimension<Uint8Array | null> = {
  good: fc.constantFrom('GET', 'GET', 'GET', 'HEAD').map(utf8),
  bad: fc.oneof(
    {
      weight: 6,
      arbitrary: fc
        .constantFrom(
          'POST',
          'PUT',
          'DELETE',
          'PATCH',
          'OPTIONS',
          'CONNECT',
          'TRACE',
          'get',
          'Get',
          'GET ',
          ' GET',
          'GE',
          'GETS',
          '',
          'G\u0000ET',
          'ＧＥＴ',
        )
        .map(utf8),
    },
    { weight: 2, arbitrary: fc.string({ maxLength: 10 }).map(utf8) },
    { weight: 1, arbitrary: fc.constant(null) },
  ),
};

export const PATH: Dimension<Uint8Array | null> = {
  good: fc
    .tuple(
      fc.constantFrom('alpha', 'alpha', 'alpha', 'delta', 'delta', 'beta', 'gamma'),
      fc.constantFrom('', '/', '/items/1', '/secrets/db-password', '/x%20y', '/a/b/c', '/%21'),
      fc.constantFrom('', '', '?a=1', '?next=/v1/vaults/beta', '?x=%2e%2e'),
    )
    .map(([vault, below, query]) => utf8(`/v1/vaults/${vault}${below}${query}`)),
  bad: fc.oneof(
    {
      weight: 30,
      arbitrary: fc
        .tuple(
          fc.constantFrom(
            '/v1/vaults/',
            '/v1/vaults/',
            '/v1/vaults/',
            '/V1/vaults/',
            '/v1/VAULTS/',
            '//v1/vaults/',
            'v1/vaults/',
            '/v1/vaults',
            '/v1/vaultsx/',
            'http://api/v1/vaults/',
            '/v2/vaults/',
            '/v1/%76aults/',
            '/v1/vaults/alpha/../',
            '/v1/me',
            '/',
          ),
          fc.oneof(
            { weight: 4, arbitrary: fc.constantFrom('alpha', 'beta', 'delta') },
            {
              weight: 4,
              arbitrary: fc.constantFrom(
                'ALPHA',
                'alph',
                'alpha2',
                'alpha.',
                '%61lpha',
                'alpha%00',
                '..',
                '.',
                '',
                'al pha',
                'a'.repeat(65),
                'Alpha',
                'alpha;x',
                'alpha\\',
                'аlpha',
              ),
            },
            { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
          ),
          fc.oneof(
            {
              weight: 4,
              arbitrary: fc.constantFrom(
                '/../beta',
                '/..',
                '/./x',
                '//x',
                '/%2e%2e/beta',
                '/x%2Fy',
                ';x',
                '\\x',
                '/x#y',
                '/..%20/beta',
                '/%20',
                '/caf%C3%A9',
                '/%zz',
                '/%',
                '/.%2e/delta',
                '/x\u0000',
                '/\u00e9',
              ),
            },
            { weight: 1, arbitrary: fc.constantFrom('', '/items/1') },
            { weight: 1, arbitrary: fc.string({ maxLength: 20 }) },
          ),
          fc.constantFrom('', '', '?a=1', '??', '?/v1/vaults/alpha', '#frag'),
        )
        .map(([p, v, s, q]) => utf8(p + v + s + q)),
    },
    // Clean paths that name no vault: without them only mutated cases reached vault_missing (2 in 4,000).
    {
      weight: 2,
      arbitrary: fc
        .tuple(
          fc.constantFrom('/v1/users', '/v2/vaults/alpha', '/v1/vaults', '/v1/vaults/', '/', '/v1/statusx'),
          fc.constantFrom('', '?a=1', '?next=/v1/vaults/alpha'),
        )
        .map(([p, q]) => utf8(p + q)),
    },
    { weight: 2, arbitrary: fc.string({ maxLength: 40 }).map(utf8) },
    { weight: 1, arbitrary: fc.constant(utf8('/v1/vaults/alpha/' + 'x'.repeat(5000))) },
    { weight: 1, arbitrary: fc.constant(null) },
  ),
};
