/**
 * RecordCache lifetimes run on the Clock it is given (monotonic ms in production), so expiry is driven by moving
 * a clock, not by sleeping: valid keys and users live maxStalenessMs, unknown ids missingTtlMs.
 */
import { silentEvents } from '../../../src/app/ports';
import { RecordCache } from '../../../src/app/record-cache';
import { fakeHash, InMemoryStore, ManualClock } from '../../support/in-memory';

const NOW = 1_800_000_000_000;
const KEY = 'keyAAAAAAAA1';
const GONE = 'keyZZZZZZZZ9';

function setup() {
  const store = new InMemoryStore();
  store.putKey({
    id: KEY,
    userId: 'alice',
    secretHash: fakeHash(1),
    scopes: ['vault:read'],
    vaults: ['alpha'],
    ipAllowlist: [],
    expiresAt: null,
    label: 'k',
    createdAt: NOW,
    updatedAt: NOW,
    revokedAt: null,
  });
  store.putUser({ id: 'alice', active: true, developerVaults: ['alpha'], updatedAt: NOW });
  const clock = new ManualClock(1_000);
  const cache = new RecordCache(store, silentEvents, {
    maxKeys: 10,
    maxUsers: 10,
    maxStalenessMs: 10_000,
    missingTtlMs: 2_000,
    clock,
  });
  return { store, clock, cache };
}

describe('RecordCache on its clock', () => {
  it('serves a key record until maxStalenessMs have passed on the clock', async () => {
    const { clock, cache } = setup();
    await cache.loadKey(KEY);
    clock.advance(9_999);
    expect(cache.peekKey(KEY)).toMatchObject({ kind: 'key' });
    clock.advance(1);
    expect(cache.peekKey(KEY)).toBeUndefined();
  });

  it('serves a user record until maxStalenessMs have passed on the clock', async () => {
    const { clock, cache } = setup();
    await cache.loadUser('alice');
    clock.advance(10_000);
    expect(cache.peekUser('alice')).toMatchObject({ kind: 'user' });
    clock.advance(1);
    expect(cache.peekUser('alice')).toBeUndefined();
  });

  it('remembers an unknown key for missingTtlMs only, then asks the store again', async () => {
    const { store, clock, cache } = setup();
    expect(await cache.loadKey(GONE)).toEqual({ kind: 'missing' });
    clock.advance(2_000);
    expect(cache.peekKey(GONE)).toEqual({ kind: 'missing' });
    clock.advance(1);
    expect(cache.peekKey(GONE)).toBeUndefined();
    const reads = store.reads.key;
    await cache.loadKey(GONE);
    expect(store.reads.key).toBe(reads + 1);
  });

  it('does not move on its own: without the clock advancing, nothing expires however long the test takes', async () => {
    const { cache } = setup();
    await cache.loadKey(KEY);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(cache.peekKey(KEY)).toMatchObject({ kind: 'key' });
  });
});
