/**
 * fast-check arbitraries for header lines: token variants, Authorization values in every malformed shape, spoofed
 * x-fortary-* names, X-Forwarded-For and other headers, shuffled deterministically into the `lines` dimension. Part
 * of the fuzzer run by bench/fuzz.ts and test/fuzz/check.fuzz.test.ts (docs/hardening.md); bench/fuzz-cases.ts
 * combines the dimensions into cases.
 */
import fc from 'fast-check';
import { xffValue } from './fuzz-addresses';
import { utf8, type Dimension, type HeaderLine } from './fuzz-case-types';
import type { World } from './fuzz-world';

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
