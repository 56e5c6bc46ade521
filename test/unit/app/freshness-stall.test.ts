/**
 * The stall rule of CacheFreshness (issue 11), with time as an argument: a Check whose time is more than the
 * threshold past the loop watch's last tick finds the cache untrusted, the stall is reported once, and a
 * reconcile that was in flight across the stall cannot restore trust.
 */
import { CacheFreshness, STALL_THRESHOLD_MS } from '../../../src/app/freshness';
import { silentEvents, type RecordStore } from '../../../src/app/ports';
import { RecordCache } from '../../../src/app/record-cache';

function setup(sequence: () => Promise<number> = async () => 7) {
  const store: RecordStore = {
    getKey: async () => null,
    getUser: async () => null,
    getSequence: sequence,
  };
  const cache = new RecordCache(store, silentEvents, { maxKeys: 10, maxUsers: 10, maxStalenessMs: 60_000 });
  const stalls: number[] = [];
  const trust: Array<[boolean, string]> = [];
  const freshness = new CacheFreshness(store, cache, {
    trustChanged: (trusted, cause) => trust.push([trusted, cause]),
    eventApplied: () => {},
    stalled: (lag) => stalls.push(lag),
  });
  return { freshness, stalls, trust };
}

describe('CacheFreshness stall detection', () => {
  it('without a loop watch (no tick yet) only the subscription decides', async () => {
    const { freshness, stalls } = setup();
    await freshness.reconcile('subscribe');
    expect(freshness.trustedAt(1e12)).toBe(true);
    expect(stalls).toEqual([]);
  });

  it('a Check within the threshold of the last tick is trusted; one past it is not, and the stall is reported once', async () => {
    const { freshness, stalls, trust } = setup();
    freshness.tick(1000);
    await freshness.reconcile('subscribe');
    expect(freshness.trustedAt(1000 + STALL_THRESHOLD_MS)).toBe(true);
    expect(freshness.trustedAt(1000 + STALL_THRESHOLD_MS + 1)).toBe(false);
    expect(freshness.trustedAt(1000 + STALL_THRESHOLD_MS + 2)).toBe(false);
    expect(stalls).toEqual([STALL_THRESHOLD_MS + 1]);
    expect(trust.at(-1)).toEqual([false, 'stall']);
    // The timer's late tick after a Check already reported the stall does not report it again.
    freshness.tick(1000 + STALL_THRESHOLD_MS + 5);
    expect(stalls).toHaveLength(1);
    await freshness.reconcile('stall');
    expect(freshness.trustedAt(1000 + STALL_THRESHOLD_MS + 6)).toBe(true);
  });

  it('the timer reports a stall no Check saw, and a clock that went backwards counts as one', async () => {
    const { freshness, stalls } = setup();
    freshness.tick(1000);
    freshness.tick(1010);
    freshness.tick(1300);
    expect(stalls).toEqual([290]);
    freshness.tick(900);
    expect(stalls).toEqual([290, -400]);
    await freshness.reconcile('subscribe');
    expect(freshness.trustedAt(899)).toBe(false);
  });

  it('a reconcile whose sequence read was in flight across a stall does not restore trust', async () => {
    let answer: (seq: number) => void = () => {};
    const { freshness } = setup(() => new Promise((resolve) => (answer = resolve)));
    freshness.tick(1000);
    const reconcile = freshness.reconcile('subscribe');
    expect(freshness.trustedAt(1400)).toBe(false);
    answer(7);
    expect(await reconcile).toBe(false);
    expect(freshness.trusted).toBe(false);
  });
});
