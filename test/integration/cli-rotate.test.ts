/**
 * Issue 12 item 2: `keys rotate`, through the CLI against a real redis-server, and end to end against the real
 * sidecar over gRPC: the successor works at once, the old token keeps working through the grace period (the
 * sidecar learns the shortened expiry from the event, not from a reload) and is denied when it ends.
 */
import type Redis from 'ioredis';
import { parseToken } from '../../src/core/token';
import { oneErrorLine, runBin, runCli, snapshot, storedKey, type CliOptions } from '../support/cli';
import { checkToken, EVENT_BOUND_MS, firstDenial } from '../support/faults';
import { startRedis, type RedisInstance } from '../support/redis-server';
import { startHarness, type Harness } from '../support/sidecar-harness';

const DAY = 24 * 60 * 60 * 1000;
const HOUR = 60 * 60 * 1000;
let server: RedisInstance;
let redis: Redis;

const cli = (args: string[], options?: CliOptions) => runCli(server.url, args, options);

interface Rotation {
  keyId: string;
  token: string;
  expiresAt: string | null;
  previous: { keyId: string; expiresAt: string };
}

async function createKey(args: string[] = []): Promise<{ keyId: string; token: string }> {
  const result = await cli(['keys', 'create', '--user', 'alice', '--vault', 'alpha', '--json', ...args]);
  expect(result).toMatchObject({ code: 0, err: [] });
  return JSON.parse(result.out[0] as string) as { keyId: string; token: string };
}

async function rotate(keyId: string, args: string[] = []): Promise<Rotation> {
  const result = await cli(['keys', 'rotate', keyId, '--json', ...args]);
  expect(result).toMatchObject({ code: 0, err: [] });
  expect(result.out).toHaveLength(1);
  return JSON.parse(result.out[0] as string) as Rotation;
}

beforeAll(async () => {
  server = await startRedis();
  redis = server.client();
  expect((await cli(['users', 'put', 'alice', '--developer', 'alpha', '--developer', 'beta'])).code).toBe(0);
});

afterAll(async () => {
  await server.stop();
});

describe('keys rotate (CLI and records)', () => {
  test('copies owner, scope, vaults, IPs and label; links both; shortens the old expiry to now + grace', async () => {
    const old = await createKey(['--vault', 'beta', '--ip', '203.0.113.0/24', '--label', 'CI deploy']);
    const before = Date.now();
    const rotation = await rotate(old.keyId, ['--grace', '12h']);
    const after = Date.now();

    expect(Object.keys(rotation).sort()).toEqual(['expiresAt', 'keyId', 'previous', 'token']);
    expect(Object.keys(rotation.previous).sort()).toEqual(['expiresAt', 'keyId']);
    expect(parseToken(rotation.token)?.keyId).toBe(rotation.keyId);
    expect(rotation.previous.keyId).toBe(old.keyId);

    const [oldRecord, newRecord] = [
      await storedKey(redis, old.keyId),
      await storedKey(redis, rotation.keyId),
    ];
    expect(newRecord).toMatchObject({
      userId: 'alice',
      scopes: oldRecord.scopes,
      vaults: ['alpha', 'beta'],
      ipAllowlist: ['203.0.113.0/24'],
      label: 'CI deploy',
      rotatedFrom: old.keyId,
      revokedAt: null,
    });
    expect(oldRecord).toMatchObject({ rotatedTo: rotation.keyId, revokedAt: null });
    expect(oldRecord.expiresAt).toBeGreaterThanOrEqual(before + 12 * HOUR);
    expect(oldRecord.expiresAt).toBeLessThanOrEqual(after + 12 * HOUR);
    expect(rotation.previous.expiresAt).toBe(new Date(oldRecord.expiresAt as number).toISOString());
    // A fresh default expiry for the successor (365 days).
    expect(newRecord.expiresAt).toBeGreaterThanOrEqual(before + 365 * DAY);
    expect(rotation.expiresAt).toBe(new Date(newRecord.expiresAt as number).toISOString());
    expect(newRecord.secretHash).not.toBe(oldRecord.secretHash);
    expect(await redis.smembers('fortary:user-keys:alice')).toEqual(
      expect.arrayContaining([old.keyId, rotation.keyId]),
    );

    // keys show names the links, human and JSON.
    const shownOld = await cli(['keys', 'show', old.keyId]);
    expect(shownOld.out).toContain(`rotated to:   ${rotation.keyId} (this key stops at its expiry)`);
    const shownNew = JSON.parse(
      (await cli(['keys', 'show', rotation.keyId, '--json'])).out[0] as string,
    ) as Record<string, unknown>;
    expect(shownNew).toMatchObject({ rotatedFrom: old.keyId, rotatedTo: null });
  });

  test('the default grace is 7 days, and never later than the old expiry', async () => {
    const soon = await createKey(['--expires-in', '2d']);
    const soonExpiry = (await storedKey(redis, soon.keyId)).expiresAt;
    const rotation = await rotate(soon.keyId);
    expect((await storedKey(redis, soon.keyId)).expiresAt).toBe(soonExpiry);
    expect(rotation.previous.expiresAt).toBe(new Date(soonExpiry as number).toISOString());

    const later = await createKey();
    const before = Date.now();
    await rotate(later.keyId);
    const expiresAt = (await storedKey(redis, later.keyId)).expiresAt as number;
    expect(expiresAt).toBeGreaterThanOrEqual(before + 7 * DAY);
    expect(expiresAt).toBeLessThan(before + 7 * DAY + 60_000);
  });

  test('no expiry stays no expiry unless a flag asks; expiry flags set the successor’s', async () => {
    const forever = await createKey(['--no-expiry']);
    const rotation = await rotate(forever.keyId, ['--grace', '1h']);
    expect(rotation.expiresAt).toBeNull();
    expect((await storedKey(redis, rotation.keyId)).expiresAt).toBeNull();
    // The old key had none: it now ends with the grace period.
    expect((await storedKey(redis, forever.keyId)).expiresAt).not.toBeNull();

    const flagged = await rotate(rotation.keyId, ['--expires-at', '2031-06-30']);
    expect(flagged.expiresAt).toBe('2031-06-30T00:00:00.000Z');
    const days = await rotate(flagged.keyId, ['--expires-in', '30d']);
    expect(Date.parse(days.expiresAt as string)).toBeGreaterThan(Date.now() + 29 * DAY);
  });

  test('the real binary prints the token once, the previous key and the sidecar line', async () => {
    const old = await createKey();
    const result = await runBin(server.url, ['keys', 'rotate', old.keyId, '--grace', '30m']);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    const tokens = result.stdout.match(/fty_\S+/g) ?? [];
    expect(tokens).toHaveLength(1);
    expect(parseToken(tokens[0] as string)).not.toBeNull();
    expect(result.stdout).toContain(`Rotated key ${old.keyId}: its successor is`);
    expect(result.stdout).toMatch(
      new RegExp(`previous: ${old.keyId} keeps working until \\S+Z, then expires`),
    );
    expect(result.stdout).toMatch(/sidecar/);
  });

  describe('refusals change nothing', () => {
    test.each<[string, (ids: Record<string, string>) => string[], number, RegExp, CliOptions?]>([
      [
        'a revoked key',
        (k) => [k.revoked as string],
        1,
        /^key \w{12} is revoked; a revoked key cannot be rotated \(create a new key instead\)$/,
      ],
      [
        'an expired key',
        (k) => [k.expiring as string],
        1,
        /^key \w{12} expired at \S+; an expired key cannot be rotated/,
        { now: Date.now() + 3 * DAY },
      ],
      [
        'a key rotated already',
        (k) => [k.rotated as string],
        1,
        /^key \w{12} was already rotated to \w{12}; rotate \w{12} instead$/,
      ],
      ['an unknown key', () => ['AAAAAAAAAAAA'], 1, /^unknown key AAAAAAAAAAAA$/],
      ['a bad key id', () => ['short'], 2, /"short" is not a key id/],
      ['no key id', () => [], 2, /keys rotate: missing <keyId>/],
      ['a bad grace', (k) => [k.live as string, '--grace', '7'], 2, /^--grace must be <N>d, <N>h or <N>m/],
      ['a grace in seconds', (k) => [k.live as string, '--grace', '30s'], 2, /^--grace must be/],
      [
        'a grace over a year',
        (k) => [k.live as string, '--grace', '366d'],
        2,
        /^--grace must be .* at most 365 days/,
      ],
      ['a zero-padded grace', (k) => [k.live as string, '--grace', '07d'], 2, /^--grace must be/],
      ['an expiry in the past', (k) => [k.live as string, '--expires-at', '2020-01-01'], 2, /is in the past/],
      [
        'two expiry flags',
        (k) => [k.live as string, '--no-expiry', '--expires-in', '5d'],
        2,
        /exclude each other/,
      ],
      [
        'an unknown flag',
        (k) => [k.live as string, '--vault', 'beta'],
        2,
        /keys rotate: unknown option --vault/,
      ],
      [
        'an owner who lost a vault',
        (k) => [k.lost as string],
        1,
        /^user alice does not hold the Developer role on vault gamma$/,
      ],
    ])('%s', async (...row) => {
      // A rest parameter: with five named ones Jest would pass `done` to rows of four.
      const [, argsOf, code, message, options] = row;
      const ids = {
        revoked: (await createKey()).keyId,
        expiring: (await createKey(['--expires-in', '1d'])).keyId,
        rotated: (await createKey()).keyId,
        live: (await createKey()).keyId,
        lost: '',
      };
      await cli(['keys', 'revoke', ids.revoked]);
      await rotate(ids.rotated);
      expect(
        (
          await cli([
            'users',
            'put',
            'alice',
            '--developer',
            'alpha',
            '--developer',
            'beta',
            '--developer',
            'gamma',
          ])
        ).code,
      ).toBe(0);
      ids.lost = (await createKey(['--vault', 'gamma'])).keyId;
      expect((await cli(['users', 'put', 'alice', '--developer', 'alpha', '--developer', 'beta'])).code).toBe(
        0,
      );

      const before = await snapshot(redis);
      const result = await cli(['keys', 'rotate', ...argsOf(ids)], options);
      expect(result.code).toBe(code);
      expect(result.out).toEqual([]);
      expect(oneErrorLine(result)).toMatch(message);
      expect(await snapshot(redis)).toEqual(before);
    });

    test('the function itself refuses a revoked key and a grace that would extend the old key', async () => {
      const key = await createKey(['--expires-in', '1d']);
      const asRead = (await redis.hget(`fortary:key:${key.keyId}`, 'record')) as string;
      const record = JSON.parse(asRead) as Record<string, unknown>;
      const successor = { ...record, id: 'NNNNNNNNNNNN', rotatedFrom: key.keyId };
      const call = (old: Record<string, unknown>) =>
        redis.fcall(
          'fortary_rotate_key',
          2,
          key.keyId,
          'NNNNNNNNNNNN',
          asRead,
          JSON.stringify(old),
          JSON.stringify(successor),
        );
      const before = await snapshot(redis);
      const extended = {
        ...record,
        rotatedTo: 'NNNNNNNNNNNN',
        expiresAt: (record.expiresAt as number) + DAY,
      };
      await expect(call(extended)).rejects.toThrow('the grace period cannot extend the key');
      const rekeyed = {
        ...record,
        rotatedTo: 'NNNNNNNNNNNN',
        secretHash: (record.secretHash as string).replace(/.$/, 'x'),
      };
      await expect(call(rekeyed)).rejects.toThrow('the secret of a key cannot change');
      await expect(call({ ...record, rotatedTo: 'OTHEROTHEROT' })).rejects.toThrow('must link each other');
      expect(await snapshot(redis)).toEqual(before);
      await cli(['keys', 'revoke', key.keyId]);
      const revokedSnapshot = await snapshot(redis);
      await expect(call({ ...record, rotatedTo: 'NNNNNNNNNNNN' })).rejects.toThrow('key is revoked');
      expect(await snapshot(redis)).toEqual(revokedSnapshot);
    });
  });
});

describe('keys rotate end to end (real sidecar, real gRPC Check)', () => {
  let h: Harness;
  let offset = 0;

  beforeAll(async () => {
    h = await startHarness({ redis: server, clock: { now: () => Date.now() + offset } });
  });

  afterAll(async () => {
    await h.stop();
  });

  test('the successor is allowed at once; the old token until the grace period ends, then denied', async () => {
    const old = await createKey();
    for (let i = 0; i < 2; i++) expect((await checkToken(h.client, old.token)).reason).toBe('allowed');

    const rotation = await rotate(old.keyId, ['--grace', '1h']);
    expect((await checkToken(h.client, rotation.token)).reason).toBe('allowed');
    expect((await checkToken(h.client, old.token)).reason).toBe('allowed');

    // Just inside the grace period, the old token still works; just after it, it does not.
    const graceEnd = Date.parse(rotation.previous.expiresAt);
    offset = graceEnd - Date.now() - 60_000;
    expect((await checkToken(h.client, old.token)).reason).toBe('allowed');
    offset = graceEnd - Date.now() + 1000;
    // The sidecar had the old record cached with a 365-day expiry; the rotation's event replaces it.
    const denial = await firstDenial(h.client, old.token, Date.now(), EVENT_BOUND_MS, ['key_expired']);
    expect(denial.answer).toMatchObject({ allow: false, http: 401, reason: 'key_expired' });
    expect((await checkToken(h.client, rotation.token)).reason).toBe('allowed');
  });
});
