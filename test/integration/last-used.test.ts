/**
 * Issue 12 item 1, end to end: real sidecars (in process), a private redis-server, real gRPC Checks, and the real
 * CLI binary reading what the sidecars wrote.
 * - an allow is remembered and written to `fortary:last-used:<keyId>` (time, compared client address, vault) by the
 *   periodic flush, at most once per key per FORTARY_LAST_USED_FLUSH_S however many requests, in pipelined batches;
 * - a warm Check still makes no Redis call (the flush is not on the Check path);
 * - on shutdown the pending uses are written (drain);
 * - several sidecars never move a key's last use back (the compare happens in Redis);
 * - `keys show --json` gives lastUsedAt/lastUsedIp/lastUsedVault, `keys list` prints it, `--unused-for` filters.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { envoyRequest } from '../support/check-client';
import { createKey, DAY_MS, putUser, revokeKey, waitFor, type CreatedKey } from '../support/fixtures';
import { startRedis, type RedisInstance } from '../support/redis-server';
import { redisCommandsDuring } from '../support/redis-work';
import { startHarness, verdict, type Harness } from '../support/sidecar-harness';

const BIN = path.resolve(__dirname, '../../bin/fortary-authz.js');
const HOUR = 3_600_000;

let redis: RedisInstance;

beforeAll(async () => {
  redis = await startRedis();
  const admin = redis.client();
  await putUser(admin, { id: 'alice', developerVaults: ['alpha', 'beta'] });
  await putUser(admin, { id: 'bob', developerVaults: ['alpha'] });
});

afterAll(async () => {
  await redis.stop();
});

const harnesses: Harness[] = [];
afterEach(async () => {
  await Promise.all(harnesses.splice(0).map((h) => h.stop()));
});

async function sidecar(env: Record<string, string>, clock?: { now(): number }): Promise<Harness> {
  const h = await startHarness({
    redis,
    env: { FORTARY_TRUSTED_PROXIES: '10.200.0.0/16', ...env },
    ...(clock ? { clock } : {}),
  });
  harnesses.push(h);
  return h;
}

async function allow(h: Harness, key: CreatedKey, options: Parameters<typeof envoyRequest>[0] = {}) {
  const response = await h.client(
    envoyRequest({ authorization: `Bearer ${key.token}`, path: '/v1/vaults/alpha/items', ...options }),
  );
  expect(verdict(response).allow).toBe(true);
}

const stored = async (keyId: string) => redis.client().hgetall(`fortary:last-used:${keyId}`);

function bin(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { env: { PATH: process.env.PATH ?? '', REDIS_URL: redis.url }, timeout: 20_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

test('an allow is written by the flush: time, the trusted X-Forwarded-For hop, the vault', async () => {
  const admin = redis.client();
  const key = await createKey(admin, { userId: 'alice', vaults: ['alpha', 'beta'] });
  const h = await sidecar({ FORTARY_LAST_USED_FLUSH_S: '1' });
  const before = Date.now();
  await allow(h, key, { path: '/v1/vaults/alpha/x' });
  await allow(h, key, {
    path: '/v1/vaults/beta/y',
    sourceIp: '10.200.0.5',
    forwardedFor: '203.0.113.9, 198.51.100.20, 10.200.0.7',
  });
  // The two uses may fall into one interval or two; either way the later one is what stays.
  await waitFor(async () => (await stored(key.keyId)).vault === 'beta', 5000);
  const entry = await stored(key.keyId);
  // The last of the two uses, with the address the IP rules compare (not the forged leftmost hop, not the proxy).
  expect(entry).toEqual({ at: expect.stringMatching(/^\d+$/), ip: '198.51.100.20', vault: 'beta' });
  expect(Number(entry.at)).toBeGreaterThanOrEqual(before);
  expect(Number(entry.at)).toBeLessThanOrEqual(Date.now());
  expect(
    await h.sidecar.metrics.registry.getSingleMetricAsString('fortary_authz_last_used_writes_total'),
  ).toMatch(/result="written"} [1-9]/);
});

test('a warm Check still makes no Redis call; a busy key is written once per interval, in one batch', async () => {
  const admin = redis.client();
  const keys = await Promise.all(
    [1, 2, 3].map(() => createKey(admin, { userId: 'alice', vaults: ['alpha'] })),
  );
  const h = await sidecar({ FORTARY_LAST_USED_FLUSH_S: '3600' });
  for (const key of keys) await allow(h, key);
  const warm = await redisCommandsDuring(admin, async () => {
    for (let i = 0; i < 30; i++) for (const key of keys) await allow(h, key);
  });
  expect(warm).toEqual({});

  const fast = await sidecar({ FORTARY_LAST_USED_FLUSH_S: '1' });
  for (const key of keys) await allow(fast, key);
  await waitFor(async () => (await Promise.all(keys.map((k) => stored(k.keyId)))).every((e) => e.at), 5000);
  const started = Date.now();
  let requests = 0;
  const commands = await redisCommandsDuring(admin, async () => {
    // ~2.5 intervals of steady traffic on three keys.
    while (Date.now() - started < 2500) {
      for (const key of keys) await allow(fast, key);
      requests += keys.length;
    }
  });
  expect(requests).toBeGreaterThan(30);
  // At most one write per key per elapsed interval (+1 for the partial interval at each end).
  const intervals = Math.ceil((Date.now() - started) / 1000) + 1;
  expect(commands.fcall ?? 0).toBeGreaterThan(0);
  expect(commands.fcall).toBeLessThanOrEqual(keys.length * intervals);
  expect(
    Object.keys(commands).filter((name) => name !== 'fcall' && name !== 'hget' && name !== 'hset'),
  ).toEqual([]);
});

test('on shutdown the pending uses are written (drain), long before the interval', async () => {
  const key = await createKey(redis.client(), { userId: 'alice', vaults: ['alpha'] });
  const h = await sidecar({ FORTARY_LAST_USED_FLUSH_S: '3600' });
  await allow(h, key);
  expect(await stored(key.keyId)).toEqual({});
  await h.stop();
  harnesses.splice(harnesses.indexOf(h), 1);
  expect(await stored(key.keyId)).toMatchObject({ ip: '203.0.113.7', vault: 'alpha' });
});

test('several sidecars never move a key back: an older use written later is ignored', async () => {
  const key = await createKey(redis.client(), { userId: 'alice', vaults: ['alpha', 'beta'] });
  const now = Date.now();
  const ahead = await sidecar({ FORTARY_LAST_USED_FLUSH_S: '3600' }, { now: () => Date.now() });
  const behind = await sidecar({ FORTARY_LAST_USED_FLUSH_S: '3600' }, { now: () => Date.now() - HOUR });
  await allow(ahead, key, { path: '/v1/vaults/alpha/a' });
  await allow(behind, key, { path: '/v1/vaults/beta/b', sourceIp: '198.51.100.77' });
  // The newer use is written first, the older one after it.
  await ahead.stop();
  await behind.stop();
  harnesses.length = 0;
  const entry = await stored(key.keyId);
  expect(entry).toMatchObject({ ip: '203.0.113.7', vault: 'alpha' });
  expect(Number(entry.at)).toBeGreaterThanOrEqual(now);
  // The function itself: an older or equal time changes nothing, a newer one replaces all three fields.
  const admin = redis.client();
  const call = (at: number, ip: string) =>
    admin.call(
      'FCALL',
      'fortary_touch_last_used',
      '1',
      `fortary:last-used:${key.keyId}`,
      String(at),
      ip,
      'alpha',
    );
  expect(await call(Number(entry.at), '192.0.2.1')).toBe(0);
  expect(await call(Number(entry.at) - 1, '192.0.2.1')).toBe(0);
  expect((await stored(key.keyId)).ip).toBe('203.0.113.7');
  expect(await call(Number(entry.at) + 1, '192.0.2.1')).toBe(1);
  expect(await stored(key.keyId)).toEqual({
    at: String(Number(entry.at) + 1),
    ip: '192.0.2.1',
    vault: 'alpha',
  });
  await expect(
    admin.call('FCALL', 'fortary_touch_last_used', '1', `fortary:key:${key.keyId}`, '1', '', ''),
  ).rejects.toThrow(/not a last-used key/);
});

describe('the CLI shows last use', () => {
  let used: CreatedKey;
  let idle: CreatedKey;
  let stale: CreatedKey;
  let revoked: CreatedKey;

  beforeAll(async () => {
    const admin = redis.client();
    used = await createKey(admin, { userId: 'bob', vaults: ['alpha'] });
    idle = await createKey(admin, { userId: 'bob', vaults: ['alpha'] });
    stale = await createKey(admin, { userId: 'bob', vaults: ['alpha'] });
    revoked = await createKey(admin, { userId: 'bob', vaults: ['alpha'] });
    const h = await startHarness({ redis, env: { FORTARY_LAST_USED_FLUSH_S: '3600' } });
    await allow(h, used, { sourceIp: '2001:db8:0::7' });
    await h.stop();
    // A use 40 days ago, as an earlier sidecar would have written it; and a revoked key that was never used.
    await admin.call(
      'FCALL',
      'fortary_touch_last_used',
      '1',
      `fortary:last-used:${stale.keyId}`,
      String(Date.now() - 40 * DAY_MS),
      '198.51.100.1',
      'alpha',
    );
    await revokeKey(admin, revoked.keyId);
  });

  test('keys show --json: lastUsedAt (ISO 8601), lastUsedIp, lastUsedVault; null when never used', async () => {
    const shown = await bin(['keys', 'show', used.keyId, '--json']);
    expect(shown).toMatchObject({ code: 0, stderr: '' });
    const view = JSON.parse(shown.stdout) as Record<string, unknown>;
    expect(view).toMatchObject({ lastUsedIp: '2001:db8::7', lastUsedVault: 'alpha' });
    expect(view.lastUsedAt).toBe(new Date(Number((await stored(used.keyId)).at)).toISOString());
    const never = JSON.parse((await bin(['keys', 'show', idle.keyId, '--json'])).stdout) as Record<
      string,
      unknown
    >;
    expect(never).toMatchObject({ lastUsedAt: null, lastUsedIp: null, lastUsedVault: null });
  });

  test('keys show and keys list print the last use', async () => {
    const shown = await bin(['keys', 'show', used.keyId]);
    expect(shown.stdout).toMatch(/^last used: \d{4}-\d\d-\d\dT[\d:.]+Z from 2001:db8::7 on vault alpha$/m);
    expect((await bin(['keys', 'show', idle.keyId])).stdout).toMatch(/^last used: never$/m);
    const listed = await bin(['keys', 'list', '--user', 'bob']);
    expect(listed.stdout.match(/^last used: /gm)).toHaveLength(4);
    const json = JSON.parse((await bin(['keys', 'list', '--user', 'bob', '--json'])).stdout) as Array<
      Record<string, unknown>
    >;
    expect(json.find((v) => v.keyId === stale.keyId)).toMatchObject({ lastUsedIp: '198.51.100.1' });
  });

  test('keys list --unused-for <N>d: working keys whose last use (or creation) is that old', async () => {
    const list = async (days: string) =>
      (
        JSON.parse(
          (await bin(['keys', 'list', '--user', 'bob', '--unused-for', days, '--json'])).stdout,
        ) as Array<{
          keyId: string;
        }>
      ).map((v) => v.keyId);
    // Used 40 days ago: unused for 30 days, not for 60. Keys created now never count as unused for a day.
    expect(await list('30d')).toEqual([stale.keyId]);
    expect(await list('60d')).toEqual([]);
    const human = await bin(['keys', 'list', '--user', 'bob', '--unused-for', '60d']);
    expect(human.stdout.trim()).toBe('User bob has no key that works and went unused for 60 days.');
    const bad = await bin(['keys', 'list', '--user', 'bob', '--unused-for', '30']);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/--unused-for must be <days>d/);
  });
});
