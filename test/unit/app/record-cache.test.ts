/**
 * The record cache's memory sharing: equal vault lists and owner ids are held once across cached records. The
 * store is an in-memory map of record texts (this tests the cache's bookkeeping, not Redis; the integration
 * suites cover the real store).
 */
import { silentEvents, type RecordStore } from '../../../src/app/ports';
import { RecordCache } from '../../../src/app/record-cache';
import { SecretVerifier } from '../../../src/app/secret-verifier';
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

function cacheOver(
  keys: Record<string, string>,
  users: Record<string, string> = {},
  maxKeys = 100,
): RecordCache {
  const store: RecordStore = {
    getKey: async (id) => (keys[id] === undefined ? null : { record: keys[id] as string, revokedAt: null }),
    getUser: async (id) => users[id] ?? null,
    getSequence: async () => 1,
  };
  return new RecordCache(store, silentEvents, { maxKeys, maxUsers: 100, maxStalenessMs: 60_000 });
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

describe('RecordCache keeps verified digests beside the records', () => {
  const TOKEN = 'the-right-token';

  function setup(keys: Record<string, string>, maxKeys = 100) {
    const cache = cacheOver(keys, {}, maxKeys);
    let bcrypts = 0;
    const verifier = new SecretVerifier(
      async (token) => {
        bcrypts++;
        return token === TOKEN;
      },
      silentEvents,
      { concurrency: 1, queue: 10, maxKeys: 100, digests: cache.digests },
    );
    return { cache, verifier, bcrypts: () => bcrypts };
  }

  it('a flush, an owner change or a key event costs a Redis read, not another bcrypt', async () => {
    const { cache, verifier, bcrypts } = setup({
      AAAAAAAAAAAA: keyText('AAAAAAAAAAAA', 'owner-1', ['alpha']),
    });
    const key = await compiled(cache, 'AAAAAAAAAAAA');
    expect(await verifier.verify('AAAAAAAAAAAA', TOKEN, key.secretHash)).toBe('ok');
    expect(bcrypts()).toBe(1);
    for (const invalidate of [
      () => cache.flushAll('test'),
      () => cache.invalidateUser('owner-1'),
      () => cache.invalidateKey('AAAAAAAAAAAA'),
    ]) {
      invalidate();
      expect(cache.peekKey('AAAAAAAAAAAA')).toBeUndefined();
      const reloaded = await compiled(cache, 'AAAAAAAAAAAA');
      expect(verifier.verify('AAAAAAAAAAAA', TOKEN, reloaded.secretHash)).toBe('ok');
      expect(verifier.verify('AAAAAAAAAAAA', 'a-wrong-token', reloaded.secretHash)).toBe('mismatch');
    }
    expect(bcrypts()).toBe(1);
  });

  it('a deleted key loses its digest: recreated with the same hash, it is verified with bcrypt again', async () => {
    const keys: Record<string, string> = { AAAAAAAAAAAA: keyText('AAAAAAAAAAAA', 'owner-1', ['alpha']) };
    const { cache, verifier, bcrypts } = setup(keys);
    expect(
      await verifier.verify('AAAAAAAAAAAA', TOKEN, (await compiled(cache, 'AAAAAAAAAAAA')).secretHash),
    ).toBe('ok');
    const record = keys.AAAAAAAAAAAA as string;
    delete keys.AAAAAAAAAAAA;
    cache.invalidateKey('AAAAAAAAAAAA');
    expect((await cache.loadKey('AAAAAAAAAAAA')).kind).toBe('missing');
    expect(cache.peekKey('AAAAAAAAAAAA')).toEqual({ kind: 'missing' });
    keys.AAAAAAAAAAAA = record;
    cache.invalidateKey('AAAAAAAAAAAA');
    const again = await compiled(cache, 'AAAAAAAAAAAA');
    expect(await verifier.verify('AAAAAAAAAAAA', TOKEN, again.secretHash)).toBe('ok');
    expect(bcrypts()).toBe(2);
  });

  it('a flood of unknown key ids does not evict cached keys or their digests', async () => {
    const ids = Array.from({ length: 10 }, (_, i) => `KEY${String(i).padStart(9, '0')}`);
    const { cache, verifier, bcrypts } = setup(
      Object.fromEntries(ids.map((id) => [id, keyText(id, 'owner-1', ['a'])])),
      10,
    );
    for (const id of ids)
      expect(await verifier.verify(id, TOKEN, (await compiled(cache, id)).secretHash)).toBe('ok');
    for (let i = 0; i < 1000; i++)
      expect((await cache.loadKey(`UNKNOWN${String(i).padStart(5, '0')}`)).kind).toBe('missing');
    for (const id of ids) {
      const entry = cache.peekKey(id);
      if (entry?.kind !== 'key') throw new Error(`${id} was evicted`);
      expect(verifier.verify(id, TOKEN, entry.key.secretHash)).toBe('ok');
    }
    expect(bcrypts()).toBe(10);
  });
});
