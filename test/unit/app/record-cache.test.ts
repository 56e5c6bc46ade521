/**
 * The record cache's memory sharing: equal vault lists and owner ids are held once across cached records. The
 * store is an in-memory map of record texts (this tests the cache's bookkeeping, not Redis; the integration
 * suites cover the real store).
 */
import { silentEvents, type RecordStore } from '../../../src/app/ports';
import { RecordCache } from '../../../src/app/record-cache';
import { serializeKeyRecord, serializeUserRecord } from '../../../src/core/records';

const NOW = 1_800_000_000_000;
const HASH = `$2b$04$${'a'.repeat(53)}`;

function keyText(id: string, userId: string, vaults: string[]): string {
  return serializeKeyRecord({
    id,
    userId,
    secretHash: HASH,
    scopes: ['vault:read'],
    vaults,
    ipAllowlist: [],
    expiresAt: null,
    label: `key ${id}`,
    createdAt: NOW,
    updatedAt: NOW,
  });
}

function cacheOver(keys: Record<string, string>, users: Record<string, string> = {}): RecordCache {
  const store: RecordStore = {
    getKey: async (id) => (keys[id] === undefined ? null : { record: keys[id] as string, revokedAt: null }),
    getUser: async (id) => users[id] ?? null,
    getSequence: async () => 1,
  };
  return new RecordCache(store, silentEvents, { maxKeys: 100, maxUsers: 100, maxStalenessMs: 60_000 });
}

async function compiled(cache: RecordCache, keyId: string) {
  const entry = await cache.loadKey(keyId);
  if (entry.kind !== 'key') throw new Error(`${keyId}: ${entry.kind}`);
  return entry.key;
}

describe('RecordCache sharing', () => {
  it('keys with equal vault lists and the same owner share one list and one id string', async () => {
    const cache = cacheOver({
      AAAAAAAAAAAA: keyText('AAAAAAAAAAAA', 'owner-1', ['alpha', 'beta']),
      BBBBBBBBBBBB: keyText('BBBBBBBBBBBB', 'owner-1', ['alpha', 'beta']),
      CCCCCCCCCCCC: keyText('CCCCCCCCCCCC', 'owner-2', ['beta', 'alpha']),
    });
    const [a, b, c] = [
      await compiled(cache, 'AAAAAAAAAAAA'),
      await compiled(cache, 'BBBBBBBBBBBB'),
      await compiled(cache, 'CCCCCCCCCCCC'),
    ];
    expect(a.vaults).toBe(b.vaults);
    expect(a.vaults).toEqual(['alpha', 'beta']);
    // Order is kept: a different order is a different (equally valid) list.
    expect(c.vaults).toEqual(['beta', 'alpha']);
    expect(c.vaults).not.toBe(a.vaults);
    expect(Object.isFrozen(a.vaults)).toBe(true);
    expect(a.userId).toBe('owner-1');
    expect(c.userId).toBe('owner-2');
  });

  it("a user's developer list is shared with equal key lists", async () => {
    const cache = cacheOver(
      { AAAAAAAAAAAA: keyText('AAAAAAAAAAAA', 'owner-1', ['alpha']) },
      {
        'owner-1': serializeUserRecord({
          id: 'owner-1',
          active: true,
          developerVaults: ['alpha'],
          updatedAt: NOW,
        }),
      },
    );
    const key = await compiled(cache, 'AAAAAAAAAAAA');
    const user = await cache.loadUser('owner-1');
    if (user.kind !== 'user') throw new Error(user.kind);
    expect(user.user.developerVaults).toBe(key.vaults);
    expect(user.user.active).toBe(true);
  });
});
