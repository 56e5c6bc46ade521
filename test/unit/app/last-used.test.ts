/** LastUsedRecorder with a fake store: what is written, when, how often, and what a full buffer or a failure does. */
import { LastUsedRecorder, type LastUse, type LastUsedEvents } from '../../../src/app/last-used';
import type { PeerAddress } from '../../../src/core/types';

const peer = (ip: string): PeerAddress => ({ kind: 'ip', ip });

function setup(options: { maxPending?: number; fail?: () => boolean; hang?: boolean } = {}) {
  const batches: LastUse[][] = [];
  const counts = { dropped: 0, written: 0, failed: 0 };
  const events: LastUsedEvents = {
    dropped: (n) => (counts.dropped += n),
    written: (n) => (counts.written += n),
    failed: (n) => (counts.failed += n),
  };
  const recorder = new LastUsedRecorder(
    {
      write: async (uses) => {
        if (options.hang) return new Promise<number>(() => {});
        if (options.fail?.()) throw new Error('redis down');
        batches.push([...uses]);
        return 0;
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
