/**
 * The Check pipeline (app/check.ts) with its real collaborators (RecordCache, CacheFreshness, SecretVerifier)
 * over an in-memory record store, a fake secret compare and clocks the test moves: every refusal, the warm path's
 * zero reads, expiry and staleness driven by the clock (no sleeping), and Redis failures answered 503, never 401
 * or allow. The integration suites cover the same paths over a real redis-server, bcrypt and gRPC.
 */
import { CheckService } from '../../../src/app/check';
import { CacheFreshness } from '../../../src/app/freshness';
import { silentEvents } from '../../../src/app/ports';
import { RecordCache } from '../../../src/app/record-cache';
import { SecretVerifier } from '../../../src/app/secret-verifier';
import { isPromise } from '../../../src/app/maybe-async';
import type { Decision } from '../../../src/core/outcome';
import type { AuthzRequest, KeyRecord, UserRecord } from '../../../src/core/types';
import { fakeCompare, fakeHash, InMemoryStore, ManualClock, tokenFor } from '../../support/in-memory';

const NOW = 1_800_000_000_000;
const STALENESS_MS = 60_000;
const KEY = 'keyAAAAAAAA1';
const OTHER = 'keyBBBBBBBB2';

function keyRecord(over: Partial<KeyRecord> = {}): KeyRecord {
  return {
    id: KEY,
    userId: 'alice',
    secretHash: fakeHash(1),
    scopes: ['vault:read'],
    vaults: ['alpha'],
    ipAllowlist: [],
    expiresAt: null,
    label: 'test key',
    createdAt: NOW - 1000,
    updatedAt: NOW - 1000,
    revokedAt: null,
    ...over,
  };
}

function userRecord(over: Partial<UserRecord> = {}): UserRecord {
  return { id: 'alice', active: true, developerVaults: ['alpha', 'beta'], updatedAt: NOW - 1000, ...over };
}

function request(token: string | null, over: Partial<AuthzRequest> = {}): AuthzRequest {
  return {
    method: 'GET',
    path: '/v1/vaults/alpha/secrets/db',
    authorization: token === null ? [] : [`Bearer ${token}`],
    apiKeyHeader: false,
    forwardedFor: undefined,
    source: { kind: 'ip', ip: '203.0.113.7' },
    fortaryHeaders: [],
    requestId: undefined,
    ...over,
  };
}

async function setup() {
  const store = new InMemoryStore();
  store.putKey(keyRecord());
  store.putUser(userRecord());
  /** Wall clock: key expiry. */
  const wall = new ManualClock(NOW);
  /** Monotonic clock: cache lifetimes. */
  const mono = new ManualClock(5_000);
  const compare = fakeCompare(new Map([[fakeHash(1), tokenFor(KEY, 1)]]));
  const cache = new RecordCache(store, silentEvents, {
    maxKeys: 100,
    maxUsers: 100,
    maxStalenessMs: STALENESS_MS,
    clock: mono,
  });
  const freshness = new CacheFreshness(store, cache, {
    trustChanged: () => {},
    eventApplied: () => {},
    stalled: () => {},
  });
  await freshness.reconcile('test');
  const verifier = new SecretVerifier(compare, silentEvents, {
    concurrency: 1,
    queue: 4,
    maxKeys: 100,
    digests: cache.digests,
  });
  const service = new CheckService({
    cache,
    freshness,
    verifier,
    clock: wall,
    policy: { trustedProxies: [], openPaths: [] },
  });
  const check = async (req: AuthzRequest): Promise<Decision> => await service.check(req);
  return { store, wall, mono, compare, cache, freshness, service, check };
}

const TOKEN = tokenFor(KEY, 1);

describe('CheckService', () => {
  it('allows a valid key; the warm repeat answers synchronously with no store read and no compare', async () => {
    const t = await setup();
    expect(await t.check(request(TOKEN))).toEqual({
      allow: true,
      reason: 'allowed',
      keyId: KEY,
      userId: 'alice',
      vault: 'alpha',
    });
    const reads = { ...t.store.reads };
    const warm = t.service.check(request(TOKEN));
    expect(isPromise(warm)).toBe(false);
    expect(warm).toEqual({ allow: true, reason: 'allowed', keyId: KEY, userId: 'alice', vault: 'alpha' });
    expect(t.store.reads).toEqual(reads);
    expect(t.compare.calls).toBe(1);
  });

  const refusals: [string, (t: Awaited<ReturnType<typeof setup>>) => AuthzRequest, string][] = [
    ['no credentials', () => request(null), 'credentials_missing'],
    ['a malformed token', () => request('fty_nope'), 'token_malformed'],
    ['an unknown key', () => request(tokenFor(OTHER, 2)), 'key_unknown'],
    [
      'a corrupt key record',
      (t) => {
        t.store.keys.set(KEY, { record: '{"v":1,"id":', revokedAt: null });
        return request(TOKEN);
      },
      'record_invalid',
    ],
    [
      'a revoked key',
      (t) => {
        t.store.putKey(keyRecord({ revokedAt: NOW - 1 }));
        return request(TOKEN);
      },
      'key_revoked',
    ],
    [
      'an expired key',
      (t) => {
        t.store.putKey(keyRecord({ expiresAt: NOW }));
        return request(TOKEN);
      },
      'key_expired',
    ],
    ['a wrong secret', () => request(tokenFor(KEY, 9)), 'secret_mismatch'],
    [
      'a deactivated owner',
      (t) => {
        t.store.putUser(userRecord({ active: false }));
        return request(TOKEN);
      },
      'owner_inactive',
    ],
    [
      'an owner record that is gone',
      (t) => {
        t.store.users.clear();
        return request(TOKEN);
      },
      'record_invalid',
    ],
    ['a write with a read-only key', () => request(TOKEN, { method: 'POST' }), 'scope_insufficient'],
    [
      'a vault the key does not list',
      () => request(TOKEN, { path: '/v1/vaults/beta/x' }),
      'vault_not_allowed',
    ],
    [
      'an owner without the role on the vault',
      (t) => {
        t.store.putUser(userRecord({ developerVaults: ['beta'] }));
        return request(TOKEN);
      },
      'role_missing',
    ],
    ['an ambiguous path', () => request(TOKEN, { path: '/v1/vaults/alpha/../beta' }), 'path_rejected'],
  ];

  it.each(refusals)('refuses %s', async (_name, arrange, reason) => {
    const t = await setup();
    const decision = await t.check(arrange(t));
    expect(decision.allow).toBe(false);
    expect(decision.reason).toBe(reason);
  });

  it('a cached key expires at its expiresAt by the clock, without a store read and without sleeping', async () => {
    const t = await setup();
    t.store.putKey(keyRecord({ expiresAt: NOW + 60_000 }));
    expect((await t.check(request(TOKEN))).allow).toBe(true);
    const reads = t.store.reads.key;
    t.wall.set(NOW + 59_999);
    expect(t.service.check(request(TOKEN))).toMatchObject({ allow: true });
    t.wall.set(NOW + 60_000);
    expect(t.service.check(request(TOKEN))).toMatchObject({ allow: false, reason: 'key_expired' });
    expect(t.store.reads.key).toBe(reads);
  });

  it('serves a cached record for maxStalenessMs of the cache clock, then re-reads it', async () => {
    const t = await setup();
    expect((await t.check(request(TOKEN))).allow).toBe(true);
    // The role is withdrawn without an event (the case the staleness bound exists for).
    t.store.putUser(userRecord({ developerVaults: ['beta'] }));
    t.mono.advance(STALENESS_MS - 1);
    expect(t.service.check(request(TOKEN))).toMatchObject({ allow: true });
    t.mono.advance(2);
    expect(await t.check(request(TOKEN))).toMatchObject({ allow: false, reason: 'role_missing' });
    // The key record was re-read as well, and the verified digest survived it: still one compare.
    expect(t.compare.calls).toBe(1);
  });

  it('Redis down: a cold key is answered 503 store_unavailable, a warm key still from the trusted cache', async () => {
    const t = await setup();
    expect((await t.check(request(TOKEN))).allow).toBe(true);
    t.store.down = true;
    expect(await t.check(request(tokenFor(OTHER, 2)))).toMatchObject({
      allow: false,
      reason: 'store_unavailable',
    });
    expect(t.service.check(request(TOKEN))).toMatchObject({ allow: true });
  });

  it('untrusted cache: every Check re-reads the sequence first; Redis down refuses even a warm key with 503', async () => {
    const t = await setup();
    expect((await t.check(request(TOKEN))).allow).toBe(true);
    t.freshness.distrust('test');
    const before = t.store.reads.sequence;
    expect(await t.check(request(TOKEN))).toMatchObject({ allow: true });
    expect(t.store.reads.sequence).toBe(before + 1);
    t.store.down = true;
    expect(await t.check(request(TOKEN))).toMatchObject({ allow: false, reason: 'store_unavailable' });
  });

  it('untrusted cache: a changed sequence flushes it, so a revocation missed on the channel is seen', async () => {
    const t = await setup();
    expect((await t.check(request(TOKEN))).allow).toBe(true);
    t.freshness.distrust('test');
    t.store.putKey(keyRecord({ revokedAt: NOW }));
    t.store.sequence++;
    expect(await t.check(request(TOKEN))).toMatchObject({ allow: false, reason: 'key_revoked' });
  });

  it('an unexpected failure inside the pipeline is internal_error, never a throw or an allow', async () => {
    const t = await setup();
    t.store.getKey = async () => {
      throw new TypeError('boom');
    };
    expect(await t.check(request(TOKEN))).toMatchObject({ allow: false, reason: 'internal_error' });
  });
});
