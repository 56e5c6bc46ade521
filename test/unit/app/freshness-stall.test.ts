/**
 * The stall rule of CacheFreshness (issue 11), with time as an argument and the event loop's turns driven by hand:
 * a Check whose time is more than the threshold past the loop watch's last tick may not read the cache until two
 * loop turns have passed; a long stall (or a clock that went backwards) withdraws trust, and a reconcile that was
 * in flight across it cannot restore trust.
 */
import { CacheFreshness, LONG_STALL_MS, STALL_THRESHOLD_MS } from '../../../src/app/freshness';
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
  let turns: Array<() => void> = [];
  const freshness = new CacheFreshness(
    store,
    cache,
    {
      trustChanged: (trusted, cause) => trust.push([trusted, cause]),
      eventApplied: () => {},
      stalled: (lag) => stalls.push(lag),
    },
    { afterPoll: (fn) => turns.push(fn) },
  );
  /** One event-loop turn: runs what was scheduled for after the current poll phase. */
  const turn = async () => {
    const due = turns;
    turns = [];
    for (const fn of due) fn();
    await Promise.resolve();
  };
  return { freshness, stalls, trust, turn };
}

describe('CacheFreshness stall detection', () => {
  it('without a loop watch (no tick yet) only the subscription decides', async () => {
    const { freshness, stalls } = setup();
    await freshness.reconcile('subscribe');
    expect(freshness.trustedAt(1e12)).toBe(true);
    expect(stalls).toEqual([]);
  });

  it('a Check past the threshold after the last tick waits two loop turns, then reads the trusted cache; the stall is reported once', async () => {
    const { freshness, stalls, trust, turn } = setup();
    freshness.tick(1000);
    await freshness.reconcile('subscribe');
    expect(freshness.trustedAt(1000 + STALL_THRESHOLD_MS)).toBe(true);
    expect(freshness.trustedAt(1000 + STALL_THRESHOLD_MS + 1)).toBe(false);
    // Later Checks of the same turn wait too, although the stall is already reported.
    expect(freshness.trustedAt(1000 + STALL_THRESHOLD_MS + 2)).toBe(false);
    expect(stalls).toEqual([STALL_THRESHOLD_MS + 1]);
    let settled = false;
    void freshness.settle().then(() => (settled = true));
    await turn();
    expect(settled).toBe(false);
    expect(freshness.trustedAt(1000 + STALL_THRESHOLD_MS + 3)).toBe(false);
    await turn();
    await Promise.resolve();
    expect(settled).toBe(true);
    expect(freshness.trustedAt(1000 + STALL_THRESHOLD_MS + 4)).toBe(true);
    // A short stall does not touch trust: no Redis call is needed.
    expect(trust).toEqual([[true, 'subscribe']]);
    freshness.tick(1000 + STALL_THRESHOLD_MS + 5);
    expect(stalls).toHaveLength(1);
  });

  it('a long stall withdraws trust until a reconcile that started after it', async () => {
    const { freshness, stalls, trust, turn } = setup();
    freshness.tick(1000);
    await freshness.reconcile('subscribe');
    expect(freshness.trustedAt(1000 + LONG_STALL_MS)).toBe(false);
    expect(stalls).toEqual([LONG_STALL_MS]);
    expect(trust.at(-1)).toEqual([false, 'stall']);
    await turn();
    await turn();
    expect(freshness.trustedAt(1000 + LONG_STALL_MS + 1)).toBe(false);
    expect(await freshness.reconcile('stall')).toBe(true);
    expect(freshness.trustedAt(1000 + LONG_STALL_MS + 2)).toBe(true);
  });

  it('the timer reports a stall no Check saw, and a clock that went backwards counts as a long one', async () => {
    const { freshness, stalls, trust } = setup();
    freshness.tick(1000);
    freshness.tick(1010);
    freshness.tick(1300);
    expect(stalls).toEqual([290]);
    await freshness.reconcile('subscribe');
    freshness.tick(900);
    expect(stalls).toEqual([290, -400]);
    expect(trust.at(-1)).toEqual([false, 'stall']);
  });

  it('a reconcile whose sequence read was in flight across a long stall does not restore trust', async () => {
    let answer: (seq: number) => void = () => {};
    const { freshness } = setup(() => new Promise((resolve) => (answer = resolve)));
    freshness.tick(1000);
    const reconcile = freshness.reconcile('subscribe');
    expect(freshness.trustedAt(1000 + LONG_STALL_MS + 1)).toBe(false);
    answer(7);
    expect(await reconcile).toBe(false);
    expect(freshness.trusted).toBe(false);
  });
});
