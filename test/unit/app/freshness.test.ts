/**
 * CacheFreshness (app/freshness.ts) over a real RecordCache and an in-memory store: when the cache is trusted,
 * how each change event is applied (one key, one user's keys, everything on a gap), and how an untrusted cache
 * re-reads the sequence. Stall detection has its own tests; the integration suites run this over Redis pub/sub.
 */
import { CacheFreshness } from '../../../src/app/freshness';
import { silentEvents, StoreUnavailableError, type AppEvents } from '../../../src/app/ports';
import { RecordCache } from '../../../src/app/record-cache';
import type { ChangeEvent } from '../../../src/core/events';
import type { KeyRecord } from '../../../src/core/types';
import { fakeHash, InMemoryStore, ManualClock } from '../../support/in-memory';

const NOW = 1_800_000_000_000;

function keyRecord(id: string, userId: string): KeyRecord {
  return {
    id,
    userId,
    secretHash: fakeHash(1),
    scopes: ['vault:read'],
    vaults: ['alpha'],
    ipAllowlist: [],
    expiresAt: null,
    label: id,
    createdAt: NOW,
    updatedAt: NOW,
    revokedAt: null,
  };
}

const A = 'keyAAAAAAAA1';
const B = 'keyBBBBBBBB2';
const C = 'keyCCCCCCCC3';

async function setup() {
  const store = new InMemoryStore();
  store.putKey(keyRecord(A, 'alice'));
  store.putKey(keyRecord(B, 'alice'));
  store.putKey(keyRecord(C, 'bob'));
  store.sequence = 7;
  const flushes: string[] = [];
  const events: AppEvents = { ...silentEvents, cacheFlushed: (cause) => void flushes.push(cause) };
  const cache = new RecordCache(store, events, {
    maxKeys: 100,
    maxUsers: 100,
    maxStalenessMs: 60_000,
    clock: new ManualClock(0),
  });
  const trust: [boolean, string][] = [];
  const applied: [number, boolean][] = [];
  const freshness = new CacheFreshness(store, cache, {
    trustChanged: (trusted, cause) => void trust.push([trusted, cause]),
    eventApplied: (event, gap) => void applied.push([event.seq, gap]),
    stalled: () => {},
  });
  /** Which of the three keys are served from the cache right now. */
  const cached = () => [A, B, C].filter((id) => cache.peekKey(id) !== undefined);
  const loadAll = async () => {
    for (const id of [A, B, C]) await cache.loadKey(id);
  };
  return { store, cache, freshness, flushes, trust, applied, cached, loadAll };
}

const event = (seq: number, type: ChangeEvent['type'], id: string): ChangeEvent =>
  ({ seq, type, id, at: NOW }) as ChangeEvent;

describe('CacheFreshness', () => {
  it('is untrusted until the first reconcile, which reads the sequence, flushes and trusts', async () => {
    const t = await setup();
    expect(t.freshness.trusted).toBe(false);
    expect(await t.freshness.reconcile('subscribed')).toBe(true);
    expect(t.freshness.trusted).toBe(true);
    expect(t.freshness.sequence).toBe(7);
    expect(t.flushes).toEqual(['startup']);
    expect(t.trust).toEqual([[true, 'subscribed']]);
  });

  it('does not trust when the subscription was lost while the sequence was read', async () => {
    const t = await setup();
    expect(await t.freshness.reconcile('subscribed', () => false)).toBe(false);
    expect(t.freshness.trusted).toBe(false);
  });

  it('applies the next event to its key only', async () => {
    const t = await setup();
    await t.freshness.reconcile('subscribed');
    await t.loadAll();
    t.freshness.apply(event(8, 'key.revoked', A));
    expect(t.cached()).toEqual([B, C]);
    expect(t.freshness.sequence).toBe(8);
    expect(t.applied).toEqual([[8, false]]);
    expect(t.flushes).toEqual(['startup']);
  });

  it('applies user.deactivated to every cached key of that user, and only theirs', async () => {
    const t = await setup();
    await t.freshness.reconcile('subscribed');
    await t.loadAll();
    t.freshness.apply(event(8, 'user.deactivated', 'alice'));
    expect(t.cached()).toEqual([C]);
  });

  it.each([
    ['a skipped sequence number (a lost message)', 9],
    ['the same number again (a reset or a late message)', 7],
    ['a lower number (the store was replaced)', 3],
  ])('flushes everything on %s', async (_name, seq) => {
    const t = await setup();
    await t.freshness.reconcile('subscribed');
    await t.loadAll();
    t.freshness.apply(event(seq, 'key.updated', A));
    expect(t.cached()).toEqual([]);
    expect(t.flushes).toEqual(['startup', 'gap']);
    expect(t.applied).toEqual([[seq, true]]);
    expect(t.freshness.sequence).toBe(seq);
  });

  it('flushes everything on a message that is not an event', async () => {
    const t = await setup();
    await t.freshness.reconcile('subscribed');
    await t.loadAll();
    t.freshness.applyUnparseable();
    expect(t.cached()).toEqual([]);
    expect(t.flushes).toEqual(['startup', 'unparseable']);
  });

  it('untrusted: revalidate keeps the cache when the sequence is unchanged, and concurrent callers share one read', async () => {
    const t = await setup();
    await t.freshness.reconcile('subscribed');
    await t.loadAll();
    t.freshness.distrust('heartbeat missed');
    expect(t.trust.at(-1)).toEqual([false, 'heartbeat missed']);
    const reads = t.store.reads.sequence;
    await Promise.all([t.freshness.revalidate(), t.freshness.revalidate(), t.freshness.revalidate()]);
    expect(t.store.reads.sequence).toBe(reads + 1);
    expect(t.cached()).toEqual([A, B, C]);
    expect(t.freshness.trusted).toBe(false);
  });

  it('untrusted: revalidate flushes when the sequence moved (an event was missed)', async () => {
    const t = await setup();
    await t.freshness.reconcile('subscribed');
    await t.loadAll();
    t.freshness.distrust('heartbeat missed');
    t.store.sequence = 8;
    await t.freshness.revalidate();
    expect(t.cached()).toEqual([]);
    expect(t.flushes).toEqual(['startup', 'untrusted']);
    expect(t.freshness.sequence).toBe(8);
  });

  it('after a reconnect the next sequence read flushes even if the number is the same (another server)', async () => {
    const t = await setup();
    await t.freshness.reconcile('subscribed');
    await t.loadAll();
    t.freshness.forgetSequence();
    await t.freshness.reconcile('resubscribed');
    expect(t.cached()).toEqual([]);
    expect(t.flushes).toEqual(['startup', 'reconnect']);
  });

  it('Redis down: reconcile and revalidate reject with StoreUnavailableError and trust nothing', async () => {
    const t = await setup();
    t.store.down = true;
    await expect(t.freshness.reconcile('subscribed')).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(t.freshness.trusted).toBe(false);
    await expect(t.freshness.revalidate()).rejects.toBeInstanceOf(StoreUnavailableError);
    // The failed read is not shared with the next caller: it tries again.
    t.store.down = false;
    await t.freshness.revalidate();
    expect(t.freshness.sequence).toBe(7);
  });
});
