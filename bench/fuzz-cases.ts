/**
 * fast-check arbitraries for fuzz cases: one dimension per part of the request (method, path, source, header lines,
 * duplicates, extra fields, mutations), a few varied per case. This file holds the structural dimensions and the
 * case mix; method and path are in bench/fuzz-request-line.ts, source in fuzz-addresses.ts, header lines in
 * fuzz-headers.ts. Part of the fuzzer run by bench/fuzz.ts and test/fuzz/check.fuzz.test.ts (docs/hardening.md).
 */
import fc from 'fast-check';
import { SOURCE } from './fuzz-addresses';
import {
  LEVELS,
  type Dimension,
  type Duplicate,
  type ExtraField,
  type FuzzCase,
  type HeaderLine,
  type Mutation,
  type Shape,
  type Source,
} from './fuzz-case-types';
import { linesDimension } from './fuzz-headers';
import { METHOD, PATH } from './fuzz-request-line';
import type { World } from './fuzz-world';

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
