/**
 * fast-check arbitraries for addresses: IP spellings (good, deprecated, malformed), X-Forwarded-For chains, and the
 * `source` dimension (socket, pipe, internal listener, no address). Part of the fuzzer run by bench/fuzz.ts and
 * test/fuzz/check.fuzz.test.ts (docs/hardening.md); bench/fuzz-cases.ts combines the dimensions into cases.
 */
import fc from 'fast-check';
import type { Dimension, Source } from './fuzz-case-types';

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
