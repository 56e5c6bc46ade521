/**
 * fast-check arbitraries for fuzz cases: one dimension per part of the request (method, path, source, header
 * lines, duplicates, extra fields, mutations), a few varied per case. Part of the fuzzer run by bench/fuzz.ts and
 * test/fuzz/check.fuzz.test.ts (docs/hardening.md).
 */
import fc from 'fast-check';
import {
  LEVELS,
  type Duplicate,
  type ExtraField,
  type FuzzCase,
  type HeaderLine,
  type Mutation,
  type Shape,
  type Source,
} from './fuzz-case-types';
import type { World } from './fuzz-world';

export const utf8 = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'utf8'));

export function tokenVariants(world: World): fc.Arbitrary<string> {
  const valid = world.keys.map((k) => k.token);
  const mutateToken = fc
    .tuple(
      fc.constantFrom(...valid),
      fc.nat(),
      fc.constantFrom('flip', 'truncate', 'extend', 'case', 'swap-id'),
    )
    .map(([token, n, how]) => {
      const i = n % token.length;
      switch (how) {
        case 'flip':
          return token.slice(0, i) + (token[i] === 'A' ? 'B' : 'A') + token.slice(i + 1);
        case 'truncate':
          return token.slice(0, i);
        case 'extend':
          return token + 'A';
        case 'case':
          return token.slice(0, i) + (token[i] as string).toUpperCase() + token.slice(i + 1).toLowerCase();
        default: {
          const other = valid[n % valid.length] as string;
          return token.slice(0, 17) + other.slice(17);
        }
      }
    });
  return fc.oneof(
    { weight: 12, arbitrary: fc.constantFrom(...valid) },
    { weight: 2, arbitrary: fc.constantFrom(...world.wrongSecrets) },
    { weight: 1, arbitrary: fc.constantFrom(...world.unknownTokens) },
    { weight: 3, arbitrary: mutateToken },
    { weight: 1, arbitrary: fc.string({ maxLength: 80 }) },
  );
}

export function authorizationValues(world: World): fc.Arbitrary<Uint8Array> {
  const tokens = tokenVariants(world);
  const composed = fc
    .record({
      scheme: fc.constantFrom(
        'Bearer',
        'Bearer',
        'Bearer',
        'Bearer',
        'bearer',
        'BEARER',
        'bEaReR',
        'Basic',
        'Token',
        '',
      ),
      sep: fc.constantFrom(' ', ' ', ' ', ' ', ' ', ' ', '  ', '\t', '', ' \t', '\u00a0', '\r\n '),
      token: tokens,
      prefix: fc.constantFrom('', '', '', '', '', '', ' ', '\t', ','),
      suffix: fc.constantFrom('', '', '', '', '', '', '', ' ', '\t', ',', '\0', ',Bearer x', ' extra', ';'),
    })
    .map(({ scheme, sep, token, prefix, suffix }) => utf8(prefix + scheme + sep + token + suffix));
  const twoTokens = fc
    .tuple(tokens, tokens, fc.constantFrom(',', ', ', ' ', ',Bearer ', ', Bearer '))
    .map(([a, b, join]) => utf8(`Bearer ${a}${join}${b}`));
  const notUtf8 = fc
    .tuple(
      composed,
      fc.nat(),
      fc.uint8Array({ minLength: 1, maxLength: 3 }).map((b) => b.map((x) => x | 0x80)),
    )
    .map(([value, n, bad]) => {
      const i = n % (value.length + 1);
      return new Uint8Array([...value.subarray(0, i), ...bad, ...value.subarray(i)]);
    });
  const huge = fc
    .tuple(tokens, fc.constantFrom(' ', 'A', ',', '\u00e9'))
    .map(([token, fill]) => utf8(`Bearer ${token}`.padEnd(65536, fill)));
  return fc.oneof(
    { weight: 20, arbitrary: composed },
    { weight: 2, arbitrary: twoTokens },
    { weight: 2, arbitrary: notUtf8 },
    { weight: 1, arbitrary: huge },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 100 }) },
  );
}

export const IPS = [
  '198.51.100.20',
  '198.51.100.255',
  '198.51.100.0',
  '203.0.113.9',
  '192.0.2.5',
  '192.0.2.17',
  '10.200.0.5',
  '10.200.9.9',
  '10.201.0.1',
  '2001:db8::1',
  '2001:DB8:ffff::9',
  '2001:db9::1',
  '::ffff:198.51.100.20',
  '::ffff:c633:6414',
  '0:0:0:0:0:ffff:198.51.100.7',
  '::ffff:10.200.0.5',
  '::198.51.100.20',
  '::10.200.0.5',
  '0198.51.100.20',
  '198.51.100.020',
  '0xc6.51.100.20',
  '198.51.100.20 ',
  ' 198.51.100.20',
  '198.51.100.20:80',
  '[2001:db8::1]',
  'fe80::1%eth0',
  '2001:db8::1%1',
  '',
  'localhost',
  '::1',
  '127.0.0.1',
  '198.51.100',
  '198.51.100.20.1',
  '1.2.3.4\u0000',
];

export function ipText(): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(...IPS) },
    { weight: 1, arbitrary: fc.ipV4() },
    { weight: 1, arbitrary: fc.ipV6() },
    { weight: 1, arbitrary: fc.string({ maxLength: 20 }) },
  );
}

export const xffValue = fc
  .tuple(
    fc.array(ipText(), { minLength: 0, maxLength: 5 }),
    fc.constantFrom(',', ', ', ' , '),
    fc.nat({ max: 40 }),
  )
  .map(([hops, join, many]) => (many === 40 ? Array(70).fill('198.51.100.20').join(',') : hops.join(join)));

/** Each dimension of a case has values that keep a request valid and values that attack it. */
export interface Dimension<T> {
  good: fc.Arbitrary<T>;
  bad: fc.Arbitrary<T>;
}

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
    { weight: 2, arbitrary: fc.string({ maxLength: 40 }).map(utf8) },
    { weight: 1, arbitrary: fc.constant(utf8('/v1/vaults/alpha/' + 'x'.repeat(5000))) },
    { weight: 1, arbitrary: fc.constant(null) },
  ),
};

export const SOURCE: Dimension<Source> = {
  good: fc.record({
    kind: fc.constant('socket' as const),
    ip: fc.constantFrom(
      '198.51.100.20',
      '203.0.113.7',
      '2001:db8::1',
      '192.0.2.5',
      '10.200.0.5',
      '::ffff:198.51.100.20',
    ),
    port: fc.boolean(),
  }),
  bad: fc.oneof(
    {
      weight: 12,
      arbitrary: fc.record({ kind: fc.constant('socket' as const), ip: ipText(), port: fc.boolean() }),
    },
    { weight: 1, arbitrary: fc.constant({ kind: 'pipe' as const }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'internal' as const }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'no-address' as const }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'empty-address' as const }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('socket-and-pipe' as const), ip: ipText() }) },
  ),
};

export function shuffled(lines: HeaderLine[], seed: number): HeaderLine[] {
  // A deterministic shuffle from a generated seed keeps cases reproducible.
  let s = seed;
  for (let i = lines.length - 1; i > 0; i--) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const j = s % (i + 1);
    [lines[i], lines[j]] = [lines[j] as HeaderLine, lines[i] as HeaderLine];
  }
  return lines;
}

export function linesDimension(world: World): Dimension<HeaderLine[]> {
  const allowable = world.keys.filter((k) => k.reachable.length > 0).map((k) => k.token);
  const goodToken = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...allowable) },
    { weight: 2, arbitrary: fc.constantFrom(...world.keys.map((k) => k.token)) },
    { weight: 1, arbitrary: fc.constantFrom(...world.wrongSecrets, ...world.unknownTokens) },
  );
  const goodAuth = fc
    .tuple(fc.constantFrom('Bearer', 'Bearer', 'Bearer', 'bearer', 'BEARER'), goodToken)
    .map(([scheme, token]) => ({ name: 'authorization', value: utf8(`${scheme} ${token}`) }));
  const badAuth = fc.record({
    name: fc.constantFrom(
      'authorization',
      'authorization',
      'authorization',
      'authorization',
      'Authorization',
      'AUTHORIZATION',
      'authorization ',
      'authorisation',
    ),
    value: authorizationValues(world),
  });
  const fortary = fc.record({
    name: fc.constantFrom(
      'x-fortary-key-id',
      'x-fortary-user-id',
      'X-Fortary-Key-Id',
      'X-Fortary-Admin',
      'x-fortary-role',
      'x-fortary-',
      'x-fortary-vault',
    ),
    value: fc.string({ maxLength: 16 }).map(utf8),
  });
  const other = fc.oneof(
    { weight: 3, arbitrary: fc.record({ name: fc.constant('x-forwarded-for'), value: xffValue.map(utf8) }) },
    { weight: 1, arbitrary: fc.record({ name: fc.constant('X-Forwarded-For'), value: xffValue.map(utf8) }) },
    {
      weight: 1,
      arbitrary: fc.record({ name: fc.constant('x-api-key'), value: tokenVariants(world).map(utf8) }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        name: fc.constant('x-request-id'),
        value: fc.string({ maxLength: 40 }).map(utf8),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({ name: fc.string({ maxLength: 16 }), value: fc.uint8Array({ maxLength: 32 }) }),
    },
  );
  const pseudo: HeaderLine[] = [
    { name: ':authority', value: utf8('api.fortary.example') },
    { name: ':scheme', value: utf8('https') },
    { name: 'user-agent', value: utf8('fuzz/1.0') },
  ];
  const build = (auth: fc.Arbitrary<HeaderLine[]>) =>
    fc
      .tuple(auth, fc.array(fortary, { maxLength: 3 }), fc.array(other, { maxLength: 4 }), fc.nat())
      .map(([a, f, o, seed]) => shuffled([...pseudo, ...a, ...f, ...o], seed));
  return {
    good: build(goodAuth.map((line) => [line])),
    bad: build(
      fc.oneof(
        { weight: 6, arbitrary: fc.array(badAuth, { minLength: 1, maxLength: 1 }) },
        { weight: 2, arbitrary: fc.array(fc.oneof(badAuth, goodAuth), { minLength: 0, maxLength: 3 }) },
      ),
    ),
  };
}

export const DUPLICATE: Dimension<Duplicate> = {
  good: fc.constant('none'),
  bad: fc.constantFrom<Duplicate>('attributes', 'source', 'address', 'request', 'http', 'header_map'),
};

/** Good: unknown field numbers only (>= 100), which every reader skips. Bad: low numbers, which may hit read fields. */
export const EXTRAS: Dimension<ExtraField[]> = {
  good: fc.oneof(
    { weight: 2, arbitrary: fc.constant<ExtraField[]>([]) },
    {
      weight: 1,
      arbitrary: fc.array(
        fc.record({
          level: fc.constantFrom(...LEVELS),
          field: fc.integer({ min: 100, max: 536_870_911 }),
          wire: fc.constantFrom(0 as const, 1 as const, 2 as const, 5 as const),
          payload: fc.uint8Array({ maxLength: 24 }),
        }),
        { minLength: 1, maxLength: 4 },
      ),
    },
  ),
  bad: fc.array(
    fc.record({
      level: fc.constantFrom(...LEVELS),
      field: fc.integer({ min: 1, max: 20 }),
      wire: fc.constantFrom(0 as const, 1 as const, 2 as const, 5 as const),
      payload: fc.uint8Array({ maxLength: 24 }),
    }),
    { minLength: 1, maxLength: 4 },
  ),
};

export const MUTATIONS: Dimension<Mutation[]> = {
  good: fc.constant<Mutation[]>([]),
  bad: fc.array(
    fc.record({
      op: fc.constantFrom<Mutation['op']>(
        'flip',
        'flip',
        'set',
        'insert',
        'delete',
        'duplicate',
        'truncate',
        'huge-length',
        'append',
      ),
      at: fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
      length: fc.integer({ min: 1, max: 16 }),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }),
    }),
    { minLength: 1, maxLength: 3 },
  ),
};

export const SHAPES = fc.constantFrom<Shape>(
  'headers',
  'headers',
  'headers-envoy',
  'headers-envoy',
  'header_map',
  'header_map',
  'header_map-value',
  'header_map-both',
  'both',
);

export type DimensionName = 'method' | 'path' | 'source' | 'lines' | 'duplicate' | 'extras' | 'mutations';
export const DIMENSIONS: DimensionName[] = [
  'method',
  'path',
  'source',
  'lines',
  'duplicate',
  'extras',
  'mutations',
];

/**
 * The case mix: a third clean requests (every dimension valid: the allow path, unknown fields, both header shapes,
 * spoofed x-fortary-* and X-Forwarded-For), a third with exactly one dimension attacked, a quarter with every
 * dimension drawn from either side (mutations included), and the rest plain garbage bytes.
 */
export function caseArbitrary(world: World): fc.Arbitrary<FuzzCase> {
  const lines = linesDimension(world);
  const dims = {
    method: METHOD,
    path: PATH,
    source: SOURCE,
    lines,
    duplicate: DUPLICATE,
    extras: EXTRAS,
    mutations: MUTATIONS,
  };
  const pick = <T>(d: Dimension<T>, side: 'good' | 'bad' | 'either'): fc.Arbitrary<T> =>
    side === 'either' ? fc.oneof(d.good, d.bad) : d[side];
  const build = (side: (name: DimensionName) => 'good' | 'bad' | 'either'): fc.Arbitrary<FuzzCase> =>
    fc.record({
      garbage: fc.constant(null),
      method: pick(dims.method, side('method')),
      path: pick(dims.path, side('path')),
      source: pick(dims.source, side('source')),
      lines: pick(dims.lines, side('lines')),
      altLines: lines.bad,
      shape: SHAPES,
      duplicate: pick(dims.duplicate, side('duplicate')),
      extras: pick(dims.extras, side('extras')),
      reversed: fc.boolean(),
      mutations: pick(dims.mutations, side('mutations')),
    });
  const garbage = fc.record({
    garbage: fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ maxLength: 2048 })),
    method: fc.constant(null),
    path: fc.constant(null),
    source: fc.constant<Source>({ kind: 'no-address' }),
    lines: fc.constant<HeaderLine[]>([]),
    altLines: fc.constant<HeaderLine[]>([]),
    shape: fc.constant<Shape>('headers'),
    duplicate: fc.constant<Duplicate>('none'),
    extras: fc.constant<ExtraField[]>([]),
    reversed: fc.constant(false),
    mutations: fc.constant<Mutation[]>([]),
  });
  return fc.oneof(
    { weight: 8, arbitrary: build(() => 'good') },
    {
      weight: 8,
      arbitrary: fc
        .constantFrom(...DIMENSIONS)
        .chain((bad) => build((name) => (name === bad ? 'bad' : 'good'))),
    },
    { weight: 6, arbitrary: build(() => 'either') },
    { weight: 1, arbitrary: garbage },
  );
}
