/**
 * The column-laid key cache: every record field round-trips, freshness and LRU order are kept, and a verified
 * digest outlives its record's freshness but never a change of hash.
 */
import { randomBytes } from 'node:crypto';
import { KeyTable } from '../../../src/app/key-table';
import type { CompiledKey } from '../../../src/core/decide';
import { compileCidrs } from '../../../src/core/network';

const HASH_A = `$2b$04$${'a'.repeat(53)}`;
const HASH_B = `$2b$04$${'b'.repeat(53)}`;
const NOW = 1_000;
const LATER = NOW + 60_000;

function key(id: string, overrides: Partial<CompiledKey> = {}): CompiledKey {
  return {
    id,
    userId: 'owner-1',
    secretHash: HASH_A,
    readScope: true,
    vaults: ['alpha'],
    ipRanges: [],
    expiresAt: null,
    revokedAt: null,
    ...overrides,
  };
}

const digest = () => randomBytes(32).toString('latin1');

describe('KeyTable records', () => {
  it('gives back every field it was given', () => {
    const table = new KeyTable(10);
    const ranges = compileCidrs(['10.0.0.0/8', '2001:db8::/32']);
    if (!ranges.ok) throw new Error('bad test CIDRs');
    const full = key('k1', {
      userId: 'owner-7',
      secretHash: HASH_B,
      readScope: false,
      vaults: ['x', 'y'],
      ipRanges: ranges.ranges,
      expiresAt: 1_900_000_000_123,
      revokedAt: 1_800_000_000_456,
    });
    table.set('k1', full, LATER, true);
    table.set('k2', key('k2'), LATER, true);
    expect(table.get('k1', NOW)).toEqual(full);
    expect(table.get('k1', NOW)?.ipRanges).toBe(full.ipRanges);
    expect(table.get('k1', NOW)?.vaults).toBe(full.vaults);
    expect(table.get('k2', NOW)).toEqual(key('k2'));
    expect(table.get('k3', NOW)).toBeUndefined();
  });

  it('serves a record only until its lifetime ends', () => {
    const table = new KeyTable(10);
    table.set('k1', key('k1'), LATER, true);
    expect(table.get('k1', LATER - 1)).toBeDefined();
    expect(table.get('k1', LATER)).toBeUndefined();
  });

  it('stops serving invalidated records: one key, one owner, or all', () => {
    const table = new KeyTable(10);
    table.set('k1', key('k1'), LATER, true);
    table.set('k2', key('k2', { userId: 'owner-2' }), LATER, true);
    table.set('k3', key('k3', { userId: 'owner-2' }), LATER, true);
    table.set('k4', key('k4', { userId: 'owner-3' }), LATER, true);
    table.invalidate('k1');
    expect(table.get('k1', NOW)).toBeUndefined();
    expect(table.get('k2', NOW)).toBeDefined();
    table.invalidateOwner('owner-2');
    expect(table.get('k2', NOW)).toBeUndefined();
    expect(table.get('k3', NOW)).toBeUndefined();
    expect(table.get('k4', NOW)).toBeDefined();
    table.invalidateAll();
    expect(table.get('k4', NOW)).toBeUndefined();
    // A reload makes a record servable again.
    table.set('k4', key('k4', { userId: 'owner-3' }), LATER, true);
    expect(table.get('k4', NOW)?.userId).toBe('owner-3');
  });

  it('a load that raced an invalidation neither replaces a cached record nor becomes servable', () => {
    const table = new KeyTable(10);
    table.set('k1', key('k1', { revokedAt: 5 }), LATER, true);
    table.set('k1', key('k1', { revokedAt: null }), LATER, false);
    expect(table.get('k1', NOW)?.revokedAt).toBe(5);
    table.set('k2', key('k2'), LATER, false);
    expect(table.get('k2', NOW)).toBeUndefined();
    expect(table.size).toBe(2);
  });

  it('evicts the least recently used key when full, and reuses deleted slots', () => {
    const table = new KeyTable(3);
    for (const id of ['k1', 'k2', 'k3']) table.set(id, key(id), LATER, true);
    table.get('k1', NOW); // k2 is now the least recently used
    table.set('k4', key('k4'), LATER, true);
    expect(table.get('k2', NOW)).toBeUndefined();
    expect(table.size).toBe(3);
    table.delete('k3');
    table.set('k5', key('k5'), LATER, true);
    for (const id of ['k1', 'k4', 'k5']) expect(table.get(id, NOW)?.id).toBe(id);
    expect(table.size).toBe(3);
  });

  it('keeps every record intact across column growth', () => {
    const table = new KeyTable(5000);
    const n = 4500; // grows 1024 -> 2048 -> 4096 -> 5000
    for (let i = 0; i < n; i++) {
      table.set(`k${i}`, key(`k${i}`, { expiresAt: i, userId: `u${i % 7}` }), LATER, true);
      table.rememberDigest(`k${i}`, HASH_A, String.fromCharCode(i % 256).repeat(32));
    }
    const wrong: number[] = [];
    for (let i = 0; i < n; i++) {
      const got = table.get(`k${i}`, NOW);
      const verified = table.checkDigest(`k${i}`, HASH_A, String.fromCharCode(i % 256).repeat(32));
      if (got?.id !== `k${i}` || got.expiresAt !== i || got.userId !== `u${i % 7}` || verified !== 'ok')
        wrong.push(i);
    }
    expect(wrong).toEqual([]);
    expect(table.get('k4499', NOW)).toEqual(key('k4499', { expiresAt: 4499, userId: 'u5' }));
  });

  it('refuses a size that is not a positive integer', () => {
    expect(() => new KeyTable(0)).toThrow(/positive integer/);
    expect(() => new KeyTable(1.5)).toThrow(/positive integer/);
  });
});

describe('KeyTable digests', () => {
  it('answers only for the digest it kept, and only for the same hash', () => {
    const table = new KeyTable(10);
    const right = digest();
    table.set('k1', key('k1'), LATER, true);
    expect(table.checkDigest('k1', HASH_A, right)).toBeUndefined();
    table.rememberDigest('k1', HASH_A, right);
    expect(table.checkDigest('k1', HASH_A, right)).toBe('ok');
    expect(table.checkDigest('k1', HASH_A, digest())).toBe('mismatch');
    expect(table.checkDigest('k1', HASH_B, right)).toBeUndefined();
    expect(table.checkDigest('k2', HASH_A, right)).toBeUndefined();
    expect(table.checkDigest('k1', HASH_A, right.slice(1))).toBe(undefined);
  });

  it('keeps a digest only for a cached key with that hash', () => {
    const table = new KeyTable(10);
    table.rememberDigest('k1', HASH_A, digest());
    expect(table.size).toBe(0);
    table.set('k1', key('k1'), LATER, true);
    table.rememberDigest('k1', HASH_B, digest());
    expect(table.checkDigest('k1', HASH_B, digest())).toBeUndefined();
  });

  it('outlives the record: lifetime over, invalidation, flush, and a stale-load slot', () => {
    const table = new KeyTable(10);
    const right = digest();
    table.set('k1', key('k1'), LATER, true);
    table.rememberDigest('k1', HASH_A, right);
    table.invalidate('k1');
    table.invalidateOwner('owner-1');
    table.invalidateAll();
    expect(table.get('k1', LATER + 1)).toBeUndefined();
    expect(table.checkDigest('k1', HASH_A, right)).toBe('ok');
    // The reloaded record has the same hash: still verified.
    table.set('k1', key('k1', { vaults: ['beta'] }), LATER, true);
    expect(table.checkDigest('k1', HASH_A, right)).toBe('ok');
    // A key first seen by a load that raced an invalidation still keeps the digest of that load's bcrypt.
    table.set('k2', key('k2'), LATER, false);
    table.rememberDigest('k2', HASH_A, right);
    expect(table.checkDigest('k2', HASH_A, right)).toBe('ok');
  });

  it('is dropped when the record comes back with another hash, when deleted, and when evicted', () => {
    const table = new KeyTable(2);
    const right = digest();
    table.set('k1', key('k1'), LATER, true);
    table.rememberDigest('k1', HASH_A, right);
    table.set('k1', key('k1', { secretHash: HASH_B }), LATER, true);
    expect(table.checkDigest('k1', HASH_B, right)).toBeUndefined();
    // Going back to the old hash does not revive the old digest either.
    table.set('k1', key('k1'), LATER, true);
    expect(table.checkDigest('k1', HASH_A, right)).toBeUndefined();

    table.rememberDigest('k1', HASH_A, right);
    table.delete('k1');
    table.set('k1', key('k1'), LATER, true);
    expect(table.checkDigest('k1', HASH_A, right)).toBeUndefined();

    table.rememberDigest('k1', HASH_A, right);
    table.set('k2', key('k2'), LATER, true);
    table.set('k3', key('k3'), LATER, true); // evicts k1
    table.set('k1', key('k1'), LATER, true);
    expect(table.checkDigest('k1', HASH_A, right)).toBeUndefined();
  });

  it('a reused slot starts without the previous key’s digest', () => {
    const table = new KeyTable(1);
    const right = digest();
    table.set('k1', key('k1'), LATER, true);
    table.rememberDigest('k1', HASH_A, right);
    table.set('k2', key('k2'), LATER, true); // same slot, same hash
    expect(table.checkDigest('k2', HASH_A, right)).toBeUndefined();
  });
});
