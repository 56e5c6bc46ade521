/**
 * Validation of the Redis records: a record that breaks the contract is refused whole (→ record_invalid, a 401),
 * and the revocation marker in the hash always wins over what the record says.
 */
import {
  isKeyId,
  isVaultId,
  parseKeyRecord,
  parseUserRecord,
  serializeKeyRecord,
  serializeUserRecord,
  type KeyHashFields,
} from '../../../src/core/records';
import type { KeyRecord, UserRecord } from '../../../src/core/types';

const KEY_ID = 'AbCdEf012345';
const USER_ID = 'user-42@example.com';
const HASH = '$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy';
const NOW = 1_700_000_000_000;

/** A key record as the portal writes it (JSON object, before serialisation). */
function keyJson(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    v: 1,
    id: KEY_ID,
    userId: USER_ID,
    secretHash: HASH,
    scopes: ['vault:read'],
    vaults: ['alpha', 'beta_2', 'c-3'],
    ipAllowlist: ['203.0.113.0/24', '2001:db8::/32'],
    expiresAt: NOW + 365 * 24 * 3600 * 1000,
    label: 'CI deploy key',
    createdAt: NOW - 1000,
    updatedAt: NOW,
    ...over,
  };
}

function without(field: string, json: Record<string, unknown> = keyJson()): Record<string, unknown> {
  const copy = { ...json };
  delete copy[field];
  return copy;
}

const fields = (record: unknown, revokedAt: string | null = null): KeyHashFields => ({
  record: typeof record === 'string' ? record : JSON.stringify(record),
  revokedAt,
});

function userJson(over: Record<string, unknown> = {}): Record<string, unknown> {
  return { v: 1, id: USER_ID, active: true, developerVaults: ['alpha', 'beta_2'], updatedAt: NOW, ...over };
}

describe('parseKeyRecord accepts', () => {
  it('a complete record, exposing every field', () => {
    expect(HASH).toHaveLength(7 + 53);
    expect(parseKeyRecord(KEY_ID, fields(keyJson()))).toEqual({
      ok: true,
      value: {
        id: KEY_ID,
        userId: USER_ID,
        secretHash: HASH,
        scopes: ['vault:read'],
        vaults: ['alpha', 'beta_2', 'c-3'],
        ipAllowlist: ['203.0.113.0/24', '2001:db8::/32'],
        expiresAt: NOW + 365 * 24 * 3600 * 1000,
        label: 'CI deploy key',
        createdAt: NOW - 1000,
        updatedAt: NOW,
        revokedAt: null,
      },
    });
  });

  it.each<[string, Record<string, unknown>]>([
    ['no expiry (null = never expires)', keyJson({ expiresAt: null })],
    ['expiry in the past (the decision, not the parser, refuses it)', keyJson({ expiresAt: NOW - 1 })],
    ['expiry 0', keyJson({ expiresAt: 0 })],
    ['empty IP allowlist (no restriction)', keyJson({ ipAllowlist: [] })],
    ['empty vault allowlist (reaches nothing)', keyJson({ vaults: [] })],
    ['IPv4-mapped IPv6 range', keyJson({ ipAllowlist: ['::ffff:10.0.0.0/104'] })],
    ['empty label', keyJson({ label: '' })],
    ['label of 200 characters', keyJson({ label: 'x'.repeat(200) })],
    ['$2a$ hash', keyJson({ secretHash: HASH.replace('$2b$', '$2a$') })],
    ['$2y$ hash', keyJson({ secretHash: HASH.replace('$2b$', '$2y$') })],
    ['revokedAt null in the record', keyJson({ revokedAt: null })],
    ['unknown extra field (forward compatible)', keyJson({ note: 'hello' })],
    ['1000 vaults', keyJson({ vaults: Array.from({ length: 1000 }, (_, i) => `v${i}`) })],
  ])('%s', (_name, json) => {
    const parsed = parseKeyRecord(KEY_ID, fields(json));
    expect(parsed.ok).toBe(true);
  });

  it('keeps expiresAt exactly (null stays null)', () => {
    const parsed = parseKeyRecord(KEY_ID, fields(keyJson({ expiresAt: null })));
    expect(parsed.ok && parsed.value.expiresAt).toBeNull();
  });
});

describe('parseKeyRecord refuses a corrupt record', () => {
  const REQUIRED = [
    'v',
    'id',
    'userId',
    'secretHash',
    'scopes',
    'vaults',
    'ipAllowlist',
    'expiresAt',
    'label',
    'createdAt',
    'updatedAt',
  ];

  it.each(REQUIRED.map((f) => [f]))('missing field %s', (field) => {
    expect(parseKeyRecord(KEY_ID, fields(without(field)))).toMatchObject({ ok: false });
  });

  it.each<[string, KeyHashFields]>([
    ['no record field in the hash', { record: null, revokedAt: null }],
    ['unparseable JSON', fields('{"v":1,')],
    ['empty string', fields('')],
    ['JSON null', fields('null')],
    ['JSON array', fields('[]')],
    ['JSON string', fields('"record"')],
    ['JSON number', fields('42')],
    ['JSON with a trailing comma', fields(JSON.stringify(keyJson()).replace(/}$/, ',}'))],
  ])('%s', (_name, hash) => {
    expect(parseKeyRecord(KEY_ID, hash)).toMatchObject({ ok: false });
  });

  it.each<[string, Record<string, unknown>]>([
    // version and identity
    ['v as a string', { v: '1' }],
    ['v 2 (unknown version)', { v: 2 }],
    ['v 0', { v: 0 }],
    ['id does not match the Redis key', { id: 'ZZZZZZZZZZZZ' }],
    ['id in another case', { id: KEY_ID.toLowerCase() }],
    ['id as a number', { id: 12 }],
    ['userId as a number', { userId: 42 }],
    ['userId empty', { userId: '' }],
    ['userId with a space', { userId: 'user 42' }],
    ['userId with a colon (Redis key injection)', { userId: 'u:1' }],
    ['userId 129 characters', { userId: 'u'.repeat(129) }],
    // secret hash
    ['secretHash not bcrypt', { secretHash: 'plaintext-secret' }],
    ['secretHash truncated', { secretHash: HASH.slice(0, -1) }],
    ['secretHash unknown bcrypt variant', { secretHash: HASH.replace('$2b$', '$2x$') }],
    ['secretHash null', { secretHash: null }],
    // scopes
    ['scopes as a string', { scopes: 'vault:read' }],
    ['scopes empty', { scopes: [] }],
    ['unknown scope', { scopes: ['vault:write'] }],
    ['unknown scope next to a known one', { scopes: ['vault:read', 'admin'] }],
    ['scope in another case', { scopes: ['VAULT:READ'] }],
    ['scope as a number', { scopes: [1] }],
    ['scopes null', { scopes: null }],
    // vaults
    ['vaults as a string', { vaults: 'alpha' }],
    ['vault with a slash', { vaults: ['alpha/x'] }],
    ['vault with dot segments', { vaults: ['../beta'] }],
    ['empty vault id', { vaults: [''] }],
    ['vault id null', { vaults: [null] }],
    ['vault id with a dot', { vaults: ['alpha.'] }],
    ['vault id non-ASCII', { vaults: ['\u0430lpha'] }],
    ['vault id starting with a dash', { vaults: ['-alpha'] }],
    ['vault id of 65 characters', { vaults: ['a'.repeat(65)] }],
    ['1001 vaults', { vaults: Array.from({ length: 1001 }, (_, i) => `v${i}`) }],
    // IP allowlist
    ['ipAllowlist as a string', { ipAllowlist: '10.0.0.0/8' }],
    ['invalid CIDR (prefix 33)', { ipAllowlist: ['10.0.0.1/33'] }],
    ['address without a prefix', { ipAllowlist: ['10.0.0.1'] }],
    ['octal CIDR', { ipAllowlist: ['010.0.0.1/8'] }],
    ['one invalid CIDR among valid ones', { ipAllowlist: ['10.0.0.0/8', 'bad'] }],
    ['CIDR with a zone id', { ipAllowlist: ['fe80::1%eth0/64'] }],
    ['ipAllowlist null', { ipAllowlist: null }],
    // expiry
    ['expiresAt as an ISO date string', { expiresAt: '2030-01-01T00:00:00Z' }],
    ['expiresAt as a numeric string', { expiresAt: String(NOW) }],
    ['expiresAt negative', { expiresAt: -1 }],
    ['expiresAt fractional', { expiresAt: NOW + 0.5 }],
    ['expiresAt beyond safe integers', { expiresAt: 1e300 }],
    ['expiresAt boolean', { expiresAt: true }],
    ['expiresAt object', { expiresAt: {} }],
    // label and timestamps
    ['label as a number', { label: 5 }],
    ['label of 201 characters', { label: 'x'.repeat(201) }],
    ['label null', { label: null }],
    ['createdAt as a string', { createdAt: '2024-01-01' }],
    ['updatedAt null', { updatedAt: null }],
    ['updatedAt negative', { updatedAt: -5 }],
    // revokedAt inside the record
    ['revokedAt as a string', { revokedAt: 'yes' }],
    ['revokedAt as true', { revokedAt: true }],
    ['revokedAt negative', { revokedAt: -5 }],
    ['revokedAt fractional', { revokedAt: 1.5 }],
  ])('%s', (_name, over) => {
    expect(parseKeyRecord(KEY_ID, fields(keyJson(over)))).toMatchObject({ ok: false });
  });

  it('reports every problem at once', () => {
    const parsed = parseKeyRecord(KEY_ID, fields(keyJson({ v: 2, scopes: [], label: 7 })));
    expect(parsed).toMatchObject({ ok: false });
    if (parsed.ok) return;
    expect(parsed.error).toContain('v must be 1');
    expect(parsed.error).toContain('scopes');
    expect(parsed.error).toContain('label');
  });
});

describe('revocation marker', () => {
  it.each<[string, string | null, unknown, number | null]>([
    ['no marker, record not revoked', null, undefined, null],
    ['no marker, record revokedAt null', null, null, null],
    ['no marker, record revoked', null, NOW - 5, NOW - 5],
    ['marker set, record says nothing', String(NOW), undefined, NOW],
    ['marker set, record says null (the marker wins)', String(NOW), null, NOW],
    ['marker set, record has another time (the marker wins)', String(NOW), NOW - 5, NOW],
    ['marker 0 still revokes', '0', null, 0],
    ['marker of 16 digits', '1234567890123456', null, 1234567890123456],
  ])('%s', (_name, marker, recordRevokedAt, expected) => {
    const json = recordRevokedAt === undefined ? keyJson() : keyJson({ revokedAt: recordRevokedAt });
    const parsed = parseKeyRecord(KEY_ID, fields(json, marker));
    expect(parsed).toMatchObject({ ok: true, value: { revokedAt: expected } });
  });

  it.each([
    ['empty', ''],
    ['word', 'yes'],
    ['negative', '-1'],
    ['fractional', '1.5'],
    ['leading space', ' 123'],
    ['trailing newline', '123\n'],
    ['17 digits', '12345678901234567'],
    ['exponent', '1e12'],
    ['hex', '0x10'],
  ])('a bad marker (%s) makes the record invalid rather than un-revoked', (_name, marker) => {
    expect(parseKeyRecord(KEY_ID, fields(keyJson(), marker))).toMatchObject({ ok: false });
  });

  it('a bad marker refuses the key even when the record field is missing', () => {
    expect(parseKeyRecord(KEY_ID, { record: null, revokedAt: 'x' })).toMatchObject({ ok: false });
  });
});

describe('parseUserRecord', () => {
  it('accepts a valid user record', () => {
    expect(parseUserRecord(USER_ID, JSON.stringify(userJson()))).toEqual({
      ok: true,
      value: { id: USER_ID, active: true, developerVaults: ['alpha', 'beta_2'], updatedAt: NOW },
    });
  });

  it('accepts an inactive user with no roles (the decision refuses it)', () => {
    const parsed = parseUserRecord(USER_ID, JSON.stringify(userJson({ active: false, developerVaults: [] })));
    expect(parsed).toMatchObject({ ok: true, value: { active: false, developerVaults: [] } });
  });

  it.each<[string, string]>([
    ['unparseable JSON', '{"v":1'],
    ['empty string', ''],
    ['JSON null', 'null'],
    ['JSON array', '[]'],
    ['missing v', JSON.stringify(without('v', userJson()))],
    ['v 2', JSON.stringify(userJson({ v: 2 }))],
    ['id mismatch', JSON.stringify(userJson({ id: 'someone-else' }))],
    ['missing id', JSON.stringify(without('id', userJson()))],
    ['missing active', JSON.stringify(without('active', userJson()))],
    ['active as a string', JSON.stringify(userJson({ active: 'true' }))],
    ['active as 1', JSON.stringify(userJson({ active: 1 }))],
    ['active null', JSON.stringify(userJson({ active: null }))],
    ['missing developerVaults', JSON.stringify(without('developerVaults', userJson()))],
    ['developerVaults as a string', JSON.stringify(userJson({ developerVaults: 'alpha' }))],
    [
      'developerVaults with an invalid id',
      JSON.stringify(userJson({ developerVaults: ['alpha', '../beta'] })),
    ],
    ['developerVaults as an object', JSON.stringify(userJson({ developerVaults: { alpha: true } }))],
    ['missing updatedAt', JSON.stringify(without('updatedAt', userJson()))],
    ['updatedAt as a string', JSON.stringify(userJson({ updatedAt: String(NOW) }))],
  ])('refuses %s', (_name, text) => {
    expect(parseUserRecord(USER_ID, text)).toMatchObject({ ok: false });
  });
});

describe('serialisation round trip', () => {
  it('parseKeyRecord(serializeKeyRecord(k)) gives k back, not revoked', () => {
    const key: Omit<KeyRecord, 'revokedAt'> = {
      id: KEY_ID,
      userId: USER_ID,
      secretHash: HASH,
      scopes: ['vault:read'],
      vaults: ['alpha'],
      ipAllowlist: ['10.0.0.0/8'],
      expiresAt: null,
      label: 'x',
      createdAt: NOW,
      updatedAt: NOW,
    };
    expect(parseKeyRecord(KEY_ID, { record: serializeKeyRecord(key), revokedAt: null })).toEqual({
      ok: true,
      value: { ...key, revokedAt: null },
    });
  });

  it('keeps the rotation links (issue 12) through a round trip, and refuses links that are not key ids', () => {
    const key: Omit<KeyRecord, 'revokedAt'> = {
      id: KEY_ID,
      userId: USER_ID,
      secretHash: HASH,
      scopes: ['vault:read'],
      vaults: ['alpha'],
      ipAllowlist: [],
      expiresAt: null,
      label: '',
      createdAt: NOW,
      updatedAt: NOW,
      rotatedTo: 'BBBBBBBBBBBB',
      rotatedFrom: 'CCCCCCCCCCCC',
    };
    const text = serializeKeyRecord(key);
    expect(JSON.parse(text)).toMatchObject({ rotatedTo: 'BBBBBBBBBBBB', rotatedFrom: 'CCCCCCCCCCCC' });
    expect(parseKeyRecord(KEY_ID, { record: text, revokedAt: null })).toEqual({
      ok: true,
      value: { ...key, revokedAt: null },
    });
    expect(JSON.parse(serializeKeyRecord({ ...key, rotatedTo: null, rotatedFrom: null }))).not.toHaveProperty(
      'rotatedTo',
    );
    for (const bad of ['short', 42, '../xxxxxxxxx']) {
      const parsed = parseKeyRecord(KEY_ID, {
        record: JSON.stringify({ ...JSON.parse(text), rotatedTo: bad }),
        revokedAt: null,
      });
      expect(parsed).toEqual({ ok: false, error: 'rotatedTo must be a key id or null' });
    }
    const nulls = parseKeyRecord(KEY_ID, {
      record: JSON.stringify({ ...JSON.parse(text), rotatedTo: null, rotatedFrom: null }),
      revokedAt: null,
    });
    expect(nulls.ok).toBe(true);
  });

  it('parseUserRecord(serializeUserRecord(u)) gives u back', () => {
    const user: UserRecord = { id: USER_ID, active: false, developerVaults: ['alpha'], updatedAt: NOW };
    expect(parseUserRecord(USER_ID, serializeUserRecord(user))).toEqual({ ok: true, value: user });
  });
});

describe('id predicates', () => {
  it.each<[unknown, boolean]>([
    [KEY_ID, true],
    ['AbCdEf01234', false],
    ['AbCdEf0123456', false],
    ['AbCdEf01234_', false],
    [12, false],
  ])('isKeyId(%j) is %s', (value, expected) => {
    expect(isKeyId(value)).toBe(expected);
  });

  it.each<[unknown, boolean]>([
    ['alpha', true],
    ['a', true],
    ['A_b-9', true],
    ['a'.repeat(64), true],
    ['a'.repeat(65), false],
    ['', false],
    ['_alpha', false],
    ['alpha.', false],
    ['al%70ha', false],
    ['alpha/x', false],
    [null, false],
  ])('isVaultId(%j) is %s', (value, expected) => {
    expect(isVaultId(value)).toBe(expected);
  });
});
