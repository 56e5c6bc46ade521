/**
 * The growing LRU behind the user cache and the negative key cache: lifetimes on the clock it is given (served while
 * `now - set <= ttl`), least recently used evicted first, and the same answers as a plain reference model for any
 * sequence of operations, across growth, eviction, deletion and clear.
 */
import fc from 'fast-check';
import { TtlLru } from '../../../src/app/ttl-lru';
import { ManualClock } from '../../support/in-memory';

describe('TtlLru', () => {
  it('serves an entry until its lifetime has passed, then forgets it', () => {
    const clock = new ManualClock(1_000);
    const lru = new TtlLru<string>(10, 5_000, clock);
    lru.set('a', 'A');
    lru.set('b', 'B', 100);
    clock.advance(100);
    expect(lru.get('b')).toBe('B');
    clock.advance(1);
    expect(lru.get('b')).toBeUndefined();
    expect(lru.size).toBe(1);
    clock.advance(4_899);
    expect(lru.get('a')).toBe('A');
    clock.advance(1);
    expect(lru.get('a')).toBeUndefined();
    expect(lru.size).toBe(0);
  });

  it('a get does not extend the lifetime; a set starts it again', () => {
    const clock = new ManualClock(0);
    const lru = new TtlLru<string>(10, 1_000, clock);
    lru.set('a', 'A');
    clock.advance(900);
    expect(lru.get('a')).toBe('A');
    clock.advance(101);
    expect(lru.get('a')).toBeUndefined();
    lru.set('a', 'A2');
    clock.advance(1_000);
    expect(lru.get('a')).toBe('A2');
  });

  it('evicts the least recently used entry, counting gets as uses', () => {
    const lru = new TtlLru<number>(3, Infinity, new ManualClock(0));
    lru.set('a', 1);
    lru.set('b', 2);
    lru.set('c', 3);
    expect(lru.get('a')).toBe(1);
    lru.set('d', 4);
    expect(lru.get('b')).toBeUndefined();
    expect([lru.get('a'), lru.get('c'), lru.get('d')]).toEqual([1, 3, 4]);
    expect(lru.size).toBe(3);
  });

  it('grows past its first allocation up to max, then evicts, and clear starts over', () => {
    const lru = new TtlLru<number>(1_000, Infinity, new ManualClock(0));
    for (let i = 0; i < 1_500; i++) lru.set(`k${i}`, i);
    expect(lru.size).toBe(1_000);
    expect(lru.get('k499')).toBeUndefined();
    expect(lru.get('k500')).toBe(500);
    expect(lru.get('k1499')).toBe(1_499);
    lru.clear();
    expect(lru.size).toBe(0);
    expect(lru.get('k500')).toBeUndefined();
    for (let i = 0; i < 1_200; i++) lru.set(`n${i}`, i);
    expect(lru.size).toBe(1_000);
    expect(lru.get('n200')).toBe(200);
    expect(lru.get('n199')).toBeUndefined();
  });

  it('refuses a max that is not a positive integer', () => {
    expect(() => new TtlLru(0, 1, new ManualClock(0))).toThrow('positive integer');
  });

  type Op =
    | { op: 'set'; key: number; ttl: number | undefined }
    | { op: 'get'; key: number }
    | { op: 'delete'; key: number }
    | { op: 'advance'; ms: number }
    | { op: 'clear' };

  const op: fc.Arbitrary<Op> = fc.oneof(
    {
      weight: 5,
      arbitrary: fc.record({
        op: fc.constant('set' as const),
        key: fc.nat(15),
        ttl: fc.option(fc.integer({ min: 0, max: 50 }), { nil: undefined }),
      }),
    },
    { weight: 5, arbitrary: fc.record({ op: fc.constant('get' as const), key: fc.nat(15) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('delete' as const), key: fc.nat(15) }) },
    {
      weight: 2,
      arbitrary: fc.record({ op: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 30 }) }),
    },
    { weight: 1, arbitrary: fc.constant({ op: 'clear' as const }) },
  );

  it('answers like a reference model for any sequence of operations', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 12 }),
        fc.array(op, { minLength: 20, maxLength: 300, size: 'max' }),
        (max, ops) => {
          const clock = new ManualClock(0);
          const lru = new TtlLru<string>(max, 25, clock);
          // Insertion order of the Map is recency order: oldest first.
          const model = new Map<string, { value: string; start: number; ttl: number }>();
          ops.forEach((o, i) => {
            if (o.op === 'advance') return clock.advance(o.ms);
            if (o.op === 'clear') {
              lru.clear();
              return model.clear();
            }
            const key = `k${o.key}`;
            if (o.op === 'delete') {
              lru.delete(key);
              return model.delete(key);
            }
            if (o.op === 'set') {
              const value = `v${i}`;
              lru.set(key, value, o.ttl);
              model.delete(key);
              if (model.size >= max) model.delete(model.keys().next().value as string);
              return model.set(key, { value, start: clock.now(), ttl: o.ttl ?? 25 });
            }
            const entry = model.get(key);
            let expected: string | undefined;
            if (entry !== undefined) {
              model.delete(key);
              if (clock.now() - entry.start <= entry.ttl) {
                model.set(key, entry);
                expected = entry.value;
              }
            }
            expect(lru.get(key)).toBe(expected);
            expect(lru.size).toBe(model.size);
          });
        },
      ),
      { numRuns: 150 },
    );
  });
});
