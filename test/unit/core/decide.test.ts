/**
 * Rules 2–6 as pure functions: keyStateDenial (revoked, expired) and accessDenial (owner active, source IP, scope,
 * vault, Developer role). One row per reason, plus the allow rows, built from small builders so every row differs
 * from a passing request in exactly the way it names.
 */
import {
  accessDecision,
  accessDenial,
  compileKey,
  compileUser,
  expiryToAnnounce,
  keyStateDenial,
  type AccessPolicy,
  type Denial,
} from '../../../src/core/decide';
import { compileCidrs } from '../../../src/core/network';
import type { DenyReason } from '../../../src/core/outcome';
import type { AuthzRequest, KeyRecord, UserRecord } from '../../../src/core/types';

const NOW = 1_700_000_000_000;

function keyRecord(over: Partial<KeyRecord> = {}): KeyRecord {
  return {
    id: 'AbCdEf012345',
    userId: 'user-1',
    secretHash: '$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy',
    scopes: ['vault:read'],
    vaults: ['alpha'],
    ipAllowlist: [],
    expiresAt: null,
    label: 'test',
    createdAt: NOW - 1000,
    updatedAt: NOW - 1000,
    revokedAt: null,
    ...over,
  };
}

function userRecord(over: Partial<UserRecord> = {}): UserRecord {
  return { id: 'user-1', active: true, developerVaults: ['alpha'], updatedAt: NOW - 1000, ...over };
}

function request(over: Partial<AuthzRequest> = {}): AuthzRequest {
  return {
    method: 'GET',
    path: '/v1/vaults/alpha/secrets/db-password',
    authorization: ['Bearer x'],
    apiKeyHeader: false,
    forwardedFor: undefined,
    source: { kind: 'ip', ip: '203.0.113.7' },
    fortaryHeaders: [],
    requestId: undefined,
    ...over,
  };
}

function policy(over: { trustedProxies?: string[]; openPaths?: string[] } = {}): AccessPolicy {
  const compiled = compileCidrs(over.trustedProxies ?? []);
  if (!compiled.ok) throw new Error('bad test proxies');
  return { trustedProxies: compiled.ranges, openPaths: over.openPaths ?? [] };
}

interface Row {
  req?: Partial<AuthzRequest>;
  key?: Partial<KeyRecord>;
  user?: Partial<UserRecord>;
  policy?: { trustedProxies?: string[]; openPaths?: string[] };
}

function access(row: Row): Denial | null {
  return accessDenial(
    request(row.req),
    compileKey(keyRecord(row.key)),
    compileUser(userRecord(row.user)),
    policy(row.policy),
  );
}

const reasonOf = (denial: Denial | null): DenyReason | 'allowed' =>
  denial === null ? 'allowed' : denial.reason;

describe('keyStateDenial (rule 2: revoked, expired)', () => {
  it.each<[string, Partial<KeyRecord>, DenyReason | 'allowed']>([
    ['live key, no expiry', {}, 'allowed'],
    ['expiry one ms in the future', { expiresAt: NOW + 1 }, 'allowed'],
    ['expiry a year away', { expiresAt: NOW + 365 * 86_400_000 }, 'allowed'],
    // expiresAt is the first instant at which the key no longer works.
    ['expiry exactly now', { expiresAt: NOW }, 'key_expired'],
    ['expiry one ms ago', { expiresAt: NOW - 1 }, 'key_expired'],
    ['expiry at the epoch', { expiresAt: 0 }, 'key_expired'],
    ['revoked', { revokedAt: NOW - 60_000 }, 'key_revoked'],
    ['revoked at the epoch (0 is a time, not "unset")', { revokedAt: 0 }, 'key_revoked'],
    ['revoked in the future (takes effect at once anyway)', { revokedAt: NOW + 60_000 }, 'key_revoked'],
    [
      'revoked and expired: revocation is reported',
      { revokedAt: NOW - 1, expiresAt: NOW - 1 },
      'key_revoked',
    ],
  ])('%s → %s', (_name, over, expected) => {
    expect(reasonOf(keyStateDenial(keyRecord(over), NOW))).toBe(expected);
  });
});

describe('accessDenial (rules 3–6)', () => {
  const ALLOWLIST = ['203.0.113.0/24', '2001:db8::/32'];

  const ROWS: [string, Row, DenyReason | 'allowed'][] = [
    // --- allowed
    ['GET on an allowed vault', {}, 'allowed'],
    ['HEAD on an allowed vault', { req: { method: 'HEAD' } }, 'allowed'],
    ['GET on the vault itself', { req: { path: '/v1/vaults/alpha' } }, 'allowed'],
    ['GET with a query string', { req: { path: '/v1/vaults/alpha/items?limit=10' } }, 'allowed'],
    ['key on several vaults', { key: { vaults: ['beta', 'alpha'] } }, 'allowed'],

    // --- rule 6: owner active (401)
    ['owner deactivated', { user: { active: false } }, 'owner_inactive'],
    // Owner state comes first: a deactivated owner's key is dead whatever the request.
    [
      'owner deactivated, request otherwise bad',
      { user: { active: false }, req: { method: 'DELETE', path: '/v1/vaults/beta' } },
      'owner_inactive',
    ],

    // --- rule 5: source IP
    ['no allowlist: any peer', { req: { source: { kind: 'ip', ip: '198.51.100.1' } } }, 'allowed'],
    ['no allowlist: Unix socket peer', { req: { source: { kind: 'none', detail: 'pipe' } } }, 'allowed'],
    ['allowlist: peer inside (IPv4)', { key: { ipAllowlist: ALLOWLIST } }, 'allowed'],
    [
      'allowlist: peer inside (IPv6)',
      { key: { ipAllowlist: ALLOWLIST }, req: { source: { kind: 'ip', ip: '2001:db8::5' } } },
      'allowed',
    ],
    [
      'allowlist: IPv4-mapped peer inside the IPv4 range',
      { key: { ipAllowlist: ALLOWLIST }, req: { source: { kind: 'ip', ip: '::ffff:203.0.113.9' } } },
      'allowed',
    ],
    [
      'allowlist: peer outside',
      { key: { ipAllowlist: ALLOWLIST }, req: { source: { kind: 'ip', ip: '198.51.100.1' } } },
      'ip_not_allowed',
    ],
    [
      'allowlist: IPv6 peer outside',
      { key: { ipAllowlist: ALLOWLIST }, req: { source: { kind: 'ip', ip: '2001:db9::5' } } },
      'ip_not_allowed',
    ],
    [
      'allowlist: Unix socket peer (no IP) refused',
      { key: { ipAllowlist: ALLOWLIST }, req: { source: { kind: 'none', detail: 'pipe' } } },
      'ip_not_allowed',
    ],
    [
      'allowlist: forged XFF ignored without trusted proxies',
      {
        key: { ipAllowlist: ALLOWLIST },
        req: { source: { kind: 'ip', ip: '198.51.100.1' }, forwardedFor: '203.0.113.7' },
      },
      'ip_not_allowed',
    ],
    [
      'allowlist: XFF believed from a trusted proxy',
      {
        key: { ipAllowlist: ALLOWLIST },
        policy: { trustedProxies: ['10.0.0.0/8'] },
        req: { source: { kind: 'ip', ip: '10.0.0.2' }, forwardedFor: '6.6.6.6, 203.0.113.7' },
      },
      'allowed',
    ],
    [
      'allowlist: trusted proxy relays an outside client',
      {
        key: { ipAllowlist: ALLOWLIST },
        policy: { trustedProxies: ['10.0.0.0/8'] },
        req: { source: { kind: 'ip', ip: '10.0.0.2' }, forwardedFor: '203.0.113.7, 198.51.100.1' },
      },
      'ip_not_allowed',
    ],
    [
      'allowlist: garbage XFF hop from a trusted proxy',
      {
        key: { ipAllowlist: ALLOWLIST },
        policy: { trustedProxies: ['10.0.0.0/8'] },
        req: { source: { kind: 'ip', ip: '10.0.0.2' }, forwardedFor: 'unknown' },
      },
      'ip_not_allowed',
    ],
    // IP is checked before scope: a write from outside the network learns only that the network is wrong.
    [
      'allowlist: peer outside and a write method',
      {
        key: { ipAllowlist: ALLOWLIST },
        req: { method: 'POST', source: { kind: 'ip', ip: '198.51.100.1' } },
      },
      'ip_not_allowed',
    ],

    // --- rule 3: scope vault:read = GET and HEAD only
    ...['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'CONNECT', 'PROPFIND', ''].map(
      (method): [string, Row, DenyReason] => [
        `method ${JSON.stringify(method)}`,
        { req: { method } },
        'scope_insufficient',
      ],
    ),
    // HTTP methods are case-sensitive (RFC 9110 §9.1) and Envoy passes them as sent: `get` is not GET.
    ['lowercase get', { req: { method: 'get' } }, 'scope_insufficient'],
    ['lowercase head', { req: { method: 'head' } }, 'scope_insufficient'],
    ['mixed-case Get', { req: { method: 'Get' } }, 'scope_insufficient'],
    ['GET with trailing space', { req: { method: 'GET ' } }, 'scope_insufficient'],
    ['key without vault:read (not producible by records.ts)', { key: { scopes: [] } }, 'scope_insufficient'],
    [
      'write method on an open path',
      { req: { method: 'POST', path: '/v1/me' }, policy: { openPaths: ['/v1/me'] } },
      'scope_insufficient',
    ],

    // --- rule 4: the vault
    ['path rejected (dot segment)', { req: { path: '/v1/vaults/alpha/../beta' } }, 'path_rejected'],
    ['path rejected (encoded slash)', { req: { path: '/v1/vaults/alpha%2f..%2fbeta' } }, 'path_rejected'],
    ['path names no vault', { req: { path: '/v1/other' } }, 'vault_missing'],
    ['vault collection itself', { req: { path: '/v1/vaults' } }, 'vault_missing'],
    ['vault collection with a slash', { req: { path: '/v1/vaults/' } }, 'vault_missing'],
    ['root', { req: { path: '/' } }, 'vault_missing'],
    ['/v1/me not configured open', { req: { path: '/v1/me' } }, 'vault_missing'],
    ['open exact path', { req: { path: '/v1/me' }, policy: { openPaths: ['/v1/me'] } }, 'allowed'],
    [
      'open exact path with a query',
      { req: { path: '/v1/me?x=1' }, policy: { openPaths: ['/v1/me'] } },
      'allowed',
    ],
    [
      'open exact path does not open below it',
      { req: { path: '/v1/me/keys' }, policy: { openPaths: ['/v1/me'] } },
      'vault_missing',
    ],
    [
      'open exact path does not open a trailing slash',
      { req: { path: '/v1/me/' }, policy: { openPaths: ['/v1/me'] } },
      'vault_missing',
    ],
    [
      'open prefix: the base',
      { req: { path: '/v1/status' }, policy: { openPaths: ['/v1/status/*'] } },
      'allowed',
    ],
    [
      'open prefix: below it',
      { req: { path: '/v1/status/db' }, policy: { openPaths: ['/v1/status/*'] } },
      'allowed',
    ],
    [
      'open prefix: not a sibling',
      { req: { path: '/v1/statusx' }, policy: { openPaths: ['/v1/status/*'] } },
      'vault_missing',
    ],
    [
      'open prefix: case matters',
      { req: { path: '/V1/status' }, policy: { openPaths: ['/v1/status/*'] } },
      'vault_missing',
    ],
    [
      'open prefix cannot be escaped with dot segments',
      { req: { path: '/v1/status/../vaults/beta' }, policy: { openPaths: ['/v1/status/*'] } },
      'path_rejected',
    ],
    [
      'open paths never open a vault',
      { req: { path: '/v1/vaults/beta' }, policy: { openPaths: ['/v1/*', '/v1/vaults/beta'] } },
      'vault_not_allowed',
    ],
    ['vault not in the allowlist', { req: { path: '/v1/vaults/beta/items' } }, 'vault_not_allowed'],
    ['vault id is a prefix of the allowed one', { req: { path: '/v1/vaults/alph' } }, 'vault_not_allowed'],
    ['allowed id is a prefix of the vault', { req: { path: '/v1/vaults/alpha2' } }, 'vault_not_allowed'],
    ['vault ids are case-sensitive', { req: { path: '/v1/vaults/ALPHA' } }, 'vault_not_allowed'],
    ['key with an empty vault allowlist', { key: { vaults: [] } }, 'vault_not_allowed'],
    // Vault before role: the owner's roles are not disclosed for vaults the key cannot reach.
    [
      'vault not allowed and no role',
      { req: { path: '/v1/vaults/beta' }, user: { developerVaults: [] } },
      'vault_not_allowed',
    ],

    // --- rule 6: Developer role on the vault
    ['owner lacks Developer on the vault', { user: { developerVaults: [] } }, 'role_missing'],
    ['owner has Developer elsewhere only', { user: { developerVaults: ['beta'] } }, 'role_missing'],
    ['owner role case differs', { user: { developerVaults: ['Alpha'] } }, 'role_missing'],
    ['role needed even for HEAD', { req: { method: 'HEAD' }, user: { developerVaults: [] } }, 'role_missing'],
  ];

  it.each(ROWS)('%s → %s', (_name, row, expected) => {
    expect(reasonOf(access(row))).toBe(expected);
  });

  it('the table has allow rows and at least one row for every reason accessDenial can give', () => {
    expect(new Set(ROWS.map(([, , expected]) => expected))).toEqual(
      new Set([
        'allowed',
        'owner_inactive',
        'ip_not_allowed',
        'scope_insufficient',
        'path_rejected',
        'vault_missing',
        'vault_not_allowed',
        'role_missing',
      ]),
    );
  });

  it('a denial carries a short detail and never echoes an unbounded method', () => {
    const denial = access({ req: { method: 'X'.repeat(10_000) } });
    expect(denial?.reason).toBe('scope_insufficient');
    expect(denial?.detail.length).toBeLessThan(100);
  });
});

describe('compileKey / compileUser', () => {
  it('keeps what the rules read and nothing else (100,000 of these are cached)', () => {
    const key = compileKey(
      keyRecord({ vaults: ['alpha', 'beta'], ipAllowlist: ['10.0.0.0/8'], label: 'x', revokedAt: null }),
    );
    expect(Object.keys(key).sort()).toEqual(
      ['expiresAt', 'id', 'ipRanges', 'readScope', 'revokedAt', 'secretHash', 'userId', 'vaults'].sort(),
    );
    expect(key.vaults).toEqual(['alpha', 'beta']);
    expect(key.ipRanges).toHaveLength(1);
    expect(key.readScope).toBe(true);
    expect(compileKey(keyRecord({ scopes: [] })).readScope).toBe(false);
    expect(compileUser(userRecord({ developerVaults: ['x'] })).developerVaults).toEqual(['x']);
  });

  it('hands equal lists and ids through the sharing hook', () => {
    const seen: unknown[] = [];
    const share = {
      list: (values: readonly string[]) => (seen.push(values), values),
      text: (value: string) => (seen.push(value), value),
    };
    compileKey(keyRecord({ vaults: ['alpha'], userId: 'owner-1' }), share);
    compileUser(userRecord({ id: 'owner-1', developerVaults: ['alpha'] }), share);
    expect(seen).toEqual(['owner-1', ['alpha'], 'owner-1', ['alpha']]);
  });

  it('refuses an invalid CIDR loudly (records.ts must have caught it)', () => {
    expect(() => compileKey(keyRecord({ ipAllowlist: ['10.0.0.1/33'] }))).toThrow(/invalid CIDR/);
  });
});

describe('accessDecision names the vault it granted (decision logs, last used)', () => {
  const decide = (row: Row) =>
    accessDecision(
      request(row.req),
      compileKey(keyRecord(row.key)),
      compileUser(userRecord(row.user)),
      policy(row.policy),
    );
  it('a vault path grants that vault', () => {
    expect(decide({ req: { path: '/v1/vaults/alpha/items?x=1' } })).toEqual({
      reason: 'allowed',
      vault: 'alpha',
    });
  });
  it('an operator-opened path grants no vault', () => {
    expect(decide({ req: { path: '/v1/me' }, policy: { openPaths: ['/v1/me'] } })).toEqual({
      reason: 'allowed',
      vault: null,
    });
  });
  it('a denial is the same denial accessDenial gives', () => {
    const row: Row = { req: { path: '/v1/vaults/beta' } };
    expect(decide(row)).toEqual(access(row));
  });
});

describe('expiryToAnnounce (the in-band expiry warning)', () => {
  const DAY = 86_400_000;
  it.each<[string, number | null, number, number | null]>([
    ['no expiry', null, 30 * DAY, null],
    ['expiring within the window', NOW + 10 * DAY, 30 * DAY, NOW + 10 * DAY],
    ['expiring exactly at the window edge', NOW + 30 * DAY, 30 * DAY, NOW + 30 * DAY],
    ['expiring one ms after the window', NOW + 30 * DAY + 1, 30 * DAY, null],
    ['expiring in a year', NOW + 365 * DAY, 30 * DAY, null],
    ['expiring in one ms', NOW + 1, 30 * DAY, NOW + 1],
    ['a window of 0 turns it off', NOW + 1, 0, null],
  ])('%s', (_name, expiresAt, windowMs, expected) => {
    expect(expiryToAnnounce(expiresAt, NOW, windowMs)).toBe(expected);
  });
});
