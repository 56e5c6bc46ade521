/** LastUsedRecorder with a fake store: what is written, when, how often, and what a full buffer or a failure does. */
import { LastUsedRecorder, requeue, type LastUse, type LastUsedEvents } from '../../../src/app/last-used';
import type { PeerAddress } from '../../../src/core/types';

const peer = (ip: string): PeerAddress => ({ kind: 'ip', ip });

function setup(
  options: {
    maxPending?: number;
    fail?: () => boolean;
    hang?: boolean;
    /** Single writes Redis refuses (the rest of the batch is written). */
    refuse?: (use: LastUse) => boolean;
    /** Refusals counted but not named (a store that only counts). */
    silent?: boolean;
  } = {},
) {
  const batches: LastUse[][] = [];
  const counts = { dropped: 0, written: 0, failed: 0 };
  const events: LastUsedEvents = {
    dropped: (n) => (counts.dropped += n),
    written: (n) => (counts.written += n),
    failed: (n) => (counts.failed += n),
  };
  const recorder = new LastUsedRecorder(
    {
      write: async (uses, refused) => {
        if (options.hang) return new Promise<number>(() => {});
        if (options.fail?.()) throw new Error('redis down');
        const rejected = uses.filter((use) => options.refuse?.(use) ?? false);
        batches.push(uses.filter((use) => !rejected.includes(use)));
        if (!options.silent) for (const use of rejected) refused(use.keyId, new Error('NOPERM'));
        return rejected.length;
      },
    },
    events,
    {
      flushMs: 1000,
      maxPending: options.maxPending ?? 100,
      // The fake "policy": X-Forwarded-For's last hop when present, else the peer.
      resolveAddress: (source, xff) =>
        source.kind !== 'ip' ? undefined : xff === undefined ? source.ip : xff.split(',').pop()?.trim(),
    },
  );
  return { recorder, batches, counts };
}

afterEach(() => jest.useRealTimers());

test('one entry per key per flush, with the latest use; the address is resolved at flush time', async () => {
  const { recorder, batches } = setup();
  recorder.record('k1', 100, peer('192.0.2.1'), undefined, 'alpha');
  recorder.record('k1', 300, peer('10.0.0.1'), '1.1.1.1, 198.51.100.9', 'beta');
  recorder.record('k1', 200, peer('192.0.2.3'), undefined, 'gamma'); // older: ignored
  recorder.record('k2', 150, { kind: 'none', detail: 'pipe' }, undefined, undefined);
  await recorder.flush();
  expect(batches).toEqual([
    [
      { keyId: 'k1', at: 300, ip: '198.51.100.9', vault: 'beta' },
      { keyId: 'k2', at: 150, ip: '', vault: '' },
    ],
  ]);
  await recorder.flush();
  expect(batches).toHaveLength(1); // nothing new: no write
});

test('the timer flushes once per interval however many uses, and close() drains what is left', async () => {
  jest.useFakeTimers();
  const { recorder, batches, counts } = setup();
  recorder.start();
  for (let i = 0; i < 1000; i++) recorder.record('busy', i, peer('192.0.2.1'), undefined, 'alpha');
  await jest.advanceTimersByTimeAsync(999);
  expect(batches).toHaveLength(0);
  await jest.advanceTimersByTimeAsync(1);
  expect(batches).toEqual([[{ keyId: 'busy', at: 999, ip: '192.0.2.1', vault: 'alpha' }]]);
  recorder.record('busy', 5000, peer('192.0.2.1'), undefined, 'alpha');
  await recorder.close();
  expect(batches).toHaveLength(2);
  expect(counts.written).toBe(2);
  await jest.advanceTimersByTimeAsync(5000);
  expect(batches).toHaveLength(2); // stopped
});

test('the buffer is bounded: uses of further keys are dropped and counted, known keys still update', async () => {
  const { recorder, batches, counts } = setup({ maxPending: 2 });
  recorder.record('a', 1, peer('192.0.2.1'), undefined, 'v');
  recorder.record('b', 1, peer('192.0.2.1'), undefined, 'v');
  recorder.record('c', 1, peer('192.0.2.1'), undefined, 'v');
  recorder.record('d', 1, peer('192.0.2.1'), undefined, 'v');
  recorder.record('a', 2, peer('192.0.2.2'), undefined, 'v');
  expect(counts.dropped).toBe(2);
  expect(recorder.size).toBe(2);
  await recorder.flush();
  expect(batches[0]?.map((u) => [u.keyId, u.at])).toEqual([
    ['a', 2],
    ['b', 1],
  ]);
  // A flush empties the buffer for the next interval.
  recorder.record('c', 3, peer('192.0.2.1'), undefined, 'v');
  expect(recorder.size).toBe(1);
});

test('a failed write is kept for the next interval; a newer use recorded meanwhile wins', async () => {
  let down = true;
  const { recorder, batches, counts } = setup({ fail: () => down });
  recorder.record('a', 10, peer('192.0.2.1'), undefined, 'v');
  recorder.record('b', 10, peer('192.0.2.1'), undefined, 'v');
  const failing = recorder.flush();
  recorder.record('a', 20, peer('192.0.2.2'), undefined, 'w');
  await failing;
  expect(counts.failed).toBe(2);
  down = false;
  await recorder.flush();
  expect(batches).toEqual([
    [
      { keyId: 'a', at: 20, ip: '192.0.2.2', vault: 'w' },
      { keyId: 'b', at: 10, ip: '192.0.2.1', vault: 'v' },
    ],
  ]);
});

test('close() does not wait for a Redis that never answers longer than its deadline', async () => {
  jest.useFakeTimers();
  const { recorder } = setup({ hang: true });
  recorder.record('a', 1, peer('192.0.2.1'), undefined, 'v');
  let closed = false;
  void recorder.close().then(() => (closed = true));
  await jest.advanceTimersByTimeAsync(1999);
  expect(closed).toBe(false);
  await jest.advanceTimersByTimeAsync(1);
  expect(closed).toBe(true);
});

describe('a write Redis partly refused: the refused entries go back for the next interval', () => {
  test('exactly the refused keys are written at the next flush, with the use they had', async () => {
    let refusing = true;
    const { recorder, batches, counts } = setup({ refuse: (use) => refusing && use.keyId.startsWith('b') });
    recorder.record('a1', 10, peer('192.0.2.1'), undefined, 'v');
    recorder.record('b1', 11, peer('192.0.2.2'), undefined, 'v');
    recorder.record('b2', 12, peer('192.0.2.3'), undefined, 'w');
    await recorder.flush();
    expect(batches).toEqual([[{ keyId: 'a1', at: 10, ip: '192.0.2.1', vault: 'v' }]]);
    expect(counts).toEqual({ dropped: 0, written: 1, failed: 2 });
    expect(recorder.size).toBe(2);
    refusing = false;
    await recorder.flush();
    expect(batches[1]).toEqual([
      { keyId: 'b1', at: 11, ip: '192.0.2.2', vault: 'v' },
      { keyId: 'b2', at: 12, ip: '192.0.2.3', vault: 'w' },
    ]);
    expect(counts).toEqual({ dropped: 0, written: 3, failed: 2 });
    await recorder.flush();
    expect(batches).toHaveLength(2); // nothing left over: no write
  });

  test('a refused entry and a use recorded during the write: the later one stays, either way', async () => {
    let refusing = true;
    const { recorder, batches } = setup({ refuse: () => refusing });
    recorder.record('k', 10, peer('192.0.2.1'), undefined, 'old');
    recorder.record('skew', 50, peer('192.0.2.1'), undefined, 'newer-refused');
    const flushing = recorder.flush();
    recorder.record('k', 20, peer('192.0.2.9'), undefined, 'new');
    // A concurrent check whose clock read came earlier: older than the refused entry, which must win.
    recorder.record('skew', 40, peer('192.0.2.9'), undefined, 'older-in-memory');
    await flushing;
    refusing = false;
    await recorder.flush();
    expect(batches.at(-1)).toEqual([
      { keyId: 'k', at: 20, ip: '192.0.2.9', vault: 'new' },
      { keyId: 'skew', at: 50, ip: '192.0.2.1', vault: 'newer-refused' },
    ]);
  });

  test('still bounded: refused entries that no longer fit are dropped and counted', async () => {
    let refusing = true;
    const { recorder, batches, counts } = setup({ maxPending: 2, refuse: () => refusing });
    recorder.record('a', 1, peer('192.0.2.1'), undefined, 'v');
    recorder.record('b', 1, peer('192.0.2.1'), undefined, 'v');
    const flushing = recorder.flush();
    recorder.record('c', 2, peer('192.0.2.1'), undefined, 'v');
    recorder.record('a', 2, peer('192.0.2.1'), undefined, 'v');
    await flushing;
    expect(recorder.size).toBe(2);
    expect(counts).toMatchObject({ dropped: 1, failed: 2 });
    refusing = false;
    await recorder.flush();
    expect(batches.at(-1)?.map((u) => [u.keyId, u.at])).toEqual([
      ['c', 2],
      ['a', 2],
    ]);
  });

  test('a store that counts refusals without naming them: the whole batch is retried (rewrites are harmless)', async () => {
    let refusing = true;
    const { recorder, batches, counts } = setup({ refuse: (u) => refusing && u.keyId === 'b', silent: true });
    recorder.record('a', 1, peer('192.0.2.1'), undefined, 'v');
    recorder.record('b', 1, peer('192.0.2.1'), undefined, 'v');
    await recorder.flush();
    expect(counts).toMatchObject({ written: 1, failed: 1 });
    refusing = false;
    await recorder.flush();
    expect(batches.at(-1)?.map((u) => u.keyId)).toEqual(['a', 'b']);
  });
});

describe('requeue (pure)', () => {
  const entry = (at: number, tag = '') => ({ at, tag });

  test('puts the named entries of the batch back; ids not in the batch are ignored', () => {
    const pending = new Map<string, { at: number; tag: string }>();
    const batch = new Map([
      ['a', entry(1)],
      ['b', entry(2)],
      ['c', entry(3)],
    ]);
    expect(requeue(pending, ['a', 'c', 'zzz'], batch, 10)).toBe(0);
    expect([...pending]).toEqual([
      ['a', entry(1)],
      ['c', entry(3)],
    ]);
  });

  test('keeps the later of the pending and the refused use of a key, never moving it back', () => {
    const pending = new Map([
      ['newer-pending', entry(20, 'pending')],
      ['older-pending', entry(5, 'pending')],
      ['tie', entry(7, 'pending')],
    ]);
    const batch = new Map([
      ['newer-pending', entry(10, 'refused')],
      ['older-pending', entry(9, 'refused')],
      ['tie', entry(7, 'refused')],
    ]);
    expect(requeue(pending, batch.keys(), batch, 10)).toBe(0);
    expect(Object.fromEntries(pending)).toEqual({
      'newer-pending': entry(20, 'pending'),
      'older-pending': entry(9, 'refused'),
      tie: entry(7, 'pending'),
    });
  });

  test('adds new keys only up to the bound and counts the rest; known keys update even when full', () => {
    const pending = new Map([['known', entry(1, 'pending')]]);
    const batch = new Map([
      ['known', entry(2, 'refused')],
      ['x', entry(1)],
      ['y', entry(1)],
      ['z', entry(1)],
    ]);
    expect(requeue(pending, batch.keys(), batch, 2)).toBe(2);
    expect(pending.size).toBe(2);
    expect(pending.get('known')).toEqual(entry(2, 'refused'));
    expect(pending.has('x')).toBe(true);
  });
});
