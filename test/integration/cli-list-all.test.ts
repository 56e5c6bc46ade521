/**
 * Issue 12 item 4, across users: `keys list --expiring-within <N>d` (and `--unused-for <N>d`) without `--user`, through
 * the real binary against a private redis-server. What it lists (active keys whose expiry falls within the window,
 * of every user), in which order (soonest expiry first, ties by key id, no expiry last), that it walks the keyspace
 * with SCAN over several pages and never KEYS, what it does with records that break the contract (skipped, one
 * stderr line each, exit 0), and that the documented operator ACL is enough and `+scan` is needed.
 */
import type Redis from 'ioredis';
import { userKeysSet } from '../../src/adapters/redis/keyspace';
import { serializeKeyRecord } from '../../src/core/records';
import { runBin, runCli, snapshot } from '../support/cli';
import { createKey, DAY_MS, putUser, randomBase62, revokeKey } from '../support/fixtures';
import { startRedis, type RedisInstance } from '../support/redis-server';
import { redisCommandsDuring } from '../support/redis-work';
import { readFileSync } from 'node:fs';
import path from 'node:path';

const CONTRACT = readFileSync(path.resolve(__dirname, '../../docs/redis-contract.md'), 'utf8');

let server: RedisInstance;
let admin: Redis;

beforeAll(async () => {
  server = await startRedis();
  admin = server.client();
});

afterAll(async () => {
  await server.stop();
});

const bin = (args: string[], url = server.url) => runBin(url, args);

interface Listed {
  keyId: string;
  userId: string;
  status: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
  effectiveAccess: { deniedEverywhere: string | null };
}

async function listJson(args: string[], url = server.url): Promise<Listed[]> {
  const result = await bin(['keys', 'list', ...args, '--json'], url);
  expect(result).toMatchObject({ code: 0, stderr: '' });
  return JSON.parse(result.stdout) as Listed[];
}

/** Key records written straight to Redis in one pipeline (a large keyspace without a bcrypt hash each). */
async function bulkKeys(userId: string, count: number, expiresAt: number | null): Promise<string[]> {
  const ids = Array.from({ length: count }, () => randomBase62(12));
  const now = Date.now();
  const pipeline = admin.pipeline();
  for (const id of ids) {
    const record = serializeKeyRecord({
      id,
      userId,
      secretHash: `$2b$04$${'a'.repeat(53)}`,
      scopes: ['vault:read'],
      vaults: ['alpha'],
      ipAllowlist: [],
      expiresAt,
      label: '',
      createdAt: now,
      updatedAt: now,
    });
    pipeline.hset(`fortary:key:${id}`, 'record', record).sadd(`fortary:user-keys:${userId}`, id);
  }
  await pipeline.exec();
  return ids;
}

describe('every user: keys that work now and stop working within the window', () => {
  const now = Date.now();
  let aliceSoon: string;
  let bobSooner: string;
  let carolEdge: string;
  let tieA: string;
  let tieB: string;
  let far: string;
  let never: string;
  let expired: string;
  let revoked: string;
  let deactivated: string;
  let roleless: string;

  beforeAll(async () => {
    await admin.flushall();
    for (const id of ['alice', 'bob', 'carol', 'dave', 'erin'])
      await putUser(admin, { id, developerVaults: ['alpha'] });
    aliceSoon = (await createKey(admin, { userId: 'alice', expiresAt: now + 5 * DAY_MS })).keyId;
    bobSooner = (await createKey(admin, { userId: 'bob', expiresAt: now + 3 * DAY_MS })).keyId;
    // Still inside a 30-day window when the command runs a few seconds later.
    carolEdge = (await createKey(admin, { userId: 'carol', expiresAt: now + 30 * DAY_MS - 60_000 })).keyId;
    // The same expiry on two keys of two users: ordered by key id.
    const tie = now + 10 * DAY_MS;
    tieA = (await createKey(admin, { userId: 'alice', expiresAt: tie, keyId: `AAAA${randomBase62(8)}` }))
      .keyId;
    tieB = (await createKey(admin, { userId: 'carol', expiresAt: tie, keyId: `zzzz${randomBase62(8)}` }))
      .keyId;
    far = (await createKey(admin, { userId: 'bob', expiresAt: now + 90 * DAY_MS })).keyId;
    never = (await createKey(admin, { userId: 'carol', expiresAt: null })).keyId;
    expired = (await createKey(admin, { userId: 'alice', expiresAt: now - DAY_MS })).keyId;
    revoked = (await createKey(admin, { userId: 'bob', expiresAt: now + 2 * DAY_MS })).keyId;
    await revokeKey(admin, revoked);
    // Deactivating a user revokes its keys: they already stopped working.
    deactivated = (await createKey(admin, { userId: 'dave', expiresAt: now + 2 * DAY_MS })).keyId;
    expect((await bin(['users', 'deactivate', 'dave'])).code).toBe(0);
    // The key works as a record, but its owner lost the role: listed, with the effective access saying so.
    roleless = (await createKey(admin, { userId: 'erin', expiresAt: now + 20 * DAY_MS })).keyId;
    await putUser(admin, { id: 'erin', developerVaults: [] });
  });

  test('lists the matching keys of all users, soonest expiry first, ties by key id', async () => {
    const listed = await listJson(['--expiring-within', '30d']);
    expect(listed.map((v) => v.keyId)).toEqual([bobSooner, aliceSoon, tieA, tieB, roleless, carolEdge]);
    expect(listed.map((v) => v.userId)).toEqual(['bob', 'alice', 'alice', 'carol', 'erin', 'carol']);
    expect(listed.every((v) => v.status === 'active')).toBe(true);
    for (const excluded of [far, never, expired, revoked, deactivated])
      expect(listed.map((v) => v.keyId)).not.toContain(excluded);
    expect(listed.find((v) => v.keyId === roleless)?.effectiveAccess.deniedEverywhere).toBe('role_missing');

    const wide = await listJson(['--expiring-within', '100d']);
    expect(wide.map((v) => v.keyId)).toEqual([bobSooner, aliceSoon, tieA, tieB, roleless, carolEdge, far]);
    expect((await listJson(['--expiring-within', '1d'])).map((v) => v.keyId)).toEqual([]);
  });

  test('each entry is exactly what keys list --user prints for that key (same --json shape)', async () => {
    const all = await listJson(['--expiring-within', '30d']);
    for (const user of ['alice', 'bob', 'carol', 'erin']) {
      const own = await listJson(['--user', user, '--expiring-within', '30d']);
      expect(own.length).toBeGreaterThan(0);
      for (const view of own) expect(all.find((v) => v.keyId === view.keyId)).toEqual(view);
    }
  });

  test('the human form: the keys in the same order, or one line saying there is none', async () => {
    const human = await bin(['keys', 'list', '--expiring-within', '30d']);
    expect(human).toMatchObject({ code: 0, stderr: '' });
    expect([...human.stdout.matchAll(/^key: +(\w+)$/gm)].map((m) => m[1])).toEqual([
      bobSooner,
      aliceSoon,
      tieA,
      tieB,
      roleless,
      carolEdge,
    ]);
    expect(human.stdout).toMatch(/^user: +erin\nstatus: +active \(but every vault request is denied/m);
    const none = await bin(['keys', 'list', '--expiring-within', '1d']);
    expect(none).toMatchObject({ code: 0, stderr: '', stdout: 'No key of any user expires within 1 day.\n' });
  });

  test('--unused-for works across users too, alone or with --expiring-within', async () => {
    // A use 40 days ago, as a sidecar would have written it (keys created now count as used at creation).
    await admin.call(
      'FCALL',
      'fortary_touch_last_used',
      '1',
      `fortary:last-used:${aliceSoon}`,
      String(Date.now() - 40 * DAY_MS),
      '198.51.100.1',
      'alpha',
    );
    await admin.call(
      'FCALL',
      'fortary_touch_last_used',
      '1',
      `fortary:last-used:${far}`,
      String(Date.now() - 50 * DAY_MS),
      '198.51.100.2',
      'alpha',
    );
    const unused = await listJson(['--unused-for', '30d']);
    expect(unused.map((v) => v.keyId)).toEqual([aliceSoon, far]);
    expect(unused[0]?.lastUsedAt).toBe(
      new Date(Number(await admin.hget(`fortary:last-used:${aliceSoon}`, 'at'))).toISOString(),
    );
    expect((await listJson(['--unused-for', '30d', '--expiring-within', '30d'])).map((v) => v.keyId)).toEqual(
      [aliceSoon],
    );
    expect((await listJson(['--unused-for', '45d'])).map((v) => v.keyId)).toEqual([far]);
    const none = await bin(['keys', 'list', '--unused-for', '60d', '--expiring-within', '30d']);
    expect(none.stdout).toBe(
      'No key of any user expires within 30 days and works and went unused for 60 days.\n',
    );
  });

  test('without --user and without a filter: a usage error, one line, exit 2, nothing changed', async () => {
    const before = await snapshot(admin);
    for (const args of [
      ['keys', 'list'],
      ['keys', 'list', '--json'],
    ]) {
      const result = await runCli(server.url, args);
      expect(result).toMatchObject({ code: 2, out: [] });
      expect(result.err).toEqual([
        'fortary-authz: keys list: missing --user (or give --expiring-within <N>d or --unused-for <N>d to search every user)',
      ]);
    }
    for (const value of ['30', '0d', '1w', '36501d']) {
      const result = await runCli(server.url, ['keys', 'list', `--expiring-within=${value}`]);
      expect(result).toMatchObject({ code: 2, out: [] });
      expect(result.err).toHaveLength(1);
      expect(result.err[0]).toMatch(/--expiring-within must be <days>d/);
    }
    expect(await snapshot(admin)).toEqual(before);
  });
});

test('a keyspace of several SCAN pages: SCAN, never KEYS; every match found once, reads pipelined', async () => {
  await admin.flushall();
  await putUser(admin, { id: 'bulk', developerVaults: ['alpha'] });
  const now = Date.now();
  await bulkKeys('bulk', 1800, now + 200 * DAY_MS);
  const soon = (await bulkKeys('bulk', 40, now + 7 * DAY_MS)).sort();
  let listed: Listed[] = [];
  const commands = await redisCommandsDuring(admin, async () => {
    listed = await listJson(['--expiring-within', '30d']);
  });
  expect(listed.map((v) => v.keyId).sort()).toEqual(soon);
  expect(new Set(listed.map((v) => v.keyId)).size).toBe(listed.length);
  expect(commands.keys).toBeUndefined();
  // Several pages (COUNT 500), each read with one HGETALL per key, in pipelines.
  expect(commands.scan).toBeGreaterThanOrEqual(4);
  expect(commands.hgetall).toBeGreaterThanOrEqual(1840);
  // One user record for the one owner, however many keys it has.
  expect(commands.get).toBe(1);
});

test('records that break the contract: skipped, one stderr line naming each, exit 0, the rest listed', async () => {
  await admin.flushall();
  await putUser(admin, { id: 'alice', developerVaults: ['alpha'] });
  const good = (await createKey(admin, { userId: 'alice', expiresAt: Date.now() + 3 * DAY_MS })).keyId;
  const badJson = randomBase62(12);
  await admin.hset(`fortary:key:${badJson}`, 'record', '{"v":1,"id":');
  const wrongType = randomBase62(12);
  await admin.set(`fortary:key:${wrongType}`, 'not a hash');
  const markerOnly = randomBase62(12);
  await admin.hset(`fortary:key:${markerOnly}`, 'revokedAt', '1');
  await admin.hset('fortary:key:not-a-key-id', 'record', '{}');

  const before = await snapshot(admin);
  const result = await bin(['keys', 'list', '--expiring-within', '30d', '--json']);
  expect(result.code).toBe(0);
  expect((JSON.parse(result.stdout) as Listed[]).map((v) => v.keyId)).toEqual([good]);
  const lines = result.stderr.trimEnd().split('\n').sort();
  expect(lines).toHaveLength(4);
  expect(lines).toEqual(
    [
      `fortary-authz: skipped key ${badJson}: its record is invalid (record is not JSON)`,
      `fortary-authz: skipped key ${wrongType}: its record cannot be read (WRONGTYPE Operation against a key holding the wrong kind of value)`,
      `fortary-authz: skipped key ${markerOnly}: its record is invalid (hash has no record field)`,
      'fortary-authz: skipped Redis key "fortary:key:not-a-key-id": not a key id',
    ].sort(),
  );
  expect(await snapshot(admin)).toEqual(before);
});

test('one user with a filter: an invalid record is skipped with one stderr line, exit 0; without a filter shown', async () => {
  await admin.flushall();
  await putUser(admin, { id: 'alice', developerVaults: ['alpha'] });
  const good = (await createKey(admin, { userId: 'alice', expiresAt: Date.now() + 3 * DAY_MS })).keyId;
  const badJson = randomBase62(12);
  await admin.hset(`fortary:key:${badJson}`, 'record', '{"v":1,"id":');
  await admin.sadd(userKeysSet('alice'), badJson);

  const before = await snapshot(admin);
  const filtered = await bin(['keys', 'list', '--user', 'alice', '--expiring-within', '30d', '--json']);
  expect(filtered.code).toBe(0);
  expect((JSON.parse(filtered.stdout) as Listed[]).map((v) => v.keyId)).toEqual([good]);
  expect(filtered.stderr).toBe(
    `fortary-authz: skipped key ${badJson}: its record is invalid (record is not JSON)\n`,
  );

  const all = await bin(['keys', 'list', '--user', 'alice', '--json']);
  expect(all.code).toBe(0);
  expect(all.stderr).toBe('');
  expect(
    (JSON.parse(all.stdout) as Array<{ keyId: string; status: string }>)
      .map((v) => [v.keyId, v.status])
      .sort(),
  ).toEqual(
    [
      [good, 'active'],
      [badJson, 'invalid'],
    ].sort(),
  );
  expect(await snapshot(admin)).toEqual(before);
});

describe('ACL: the documented operator user is enough; without +scan one clear line', () => {
  const operatorLine = () =>
    (CONTRACT.split('\n').find((l) => l.startsWith('ACL SETUSER fortary-operator')) as string).replace(
      'CHANGE-ME',
      'op-secret',
    );
  const url = (user: string) => `redis://${user}:op-secret@127.0.0.1:${server.port}`;

  beforeAll(async () => {
    await admin.flushall();
    await putUser(admin, { id: 'alice', developerVaults: ['alpha'] });
    await createKey(admin, { userId: 'alice', expiresAt: Date.now() + 3 * DAY_MS });
  });

  test('fortary-operator lists across users', async () => {
    await admin.call(...(operatorLine().split(' ') as [string, ...string[]]));
    expect(await listJson(['--expiring-within', '30d'], url('fortary-operator'))).toHaveLength(1);
    expect(
      await listJson(['--unused-for', '1d', '--expiring-within', '30d'], url('fortary-operator')),
    ).toEqual([]);
  });

  test('the same user without +scan: refused in one line (exit 1), so +scan is what this needs', async () => {
    const line = operatorLine().replace('fortary-operator', 'operator-noscan').replace(' +scan', '');
    expect(line).not.toContain('+scan');
    await admin.call(...(line.split(' ') as [string, ...string[]]));
    const result = await bin(['keys', 'list', '--expiring-within', '30d'], url('operator-noscan'));
    expect(result).toMatchObject({ code: 1, stdout: '' });
    expect(result.stderr).toMatch(/^fortary-authz: Redis at redis:\/\/\*\*\*@[\d.:]+: NOPERM .*'scan'.*\n$/);
    // The per-user list does not scan.
    expect((await bin(['keys', 'list', '--user', 'alice'], url('operator-noscan'))).code).toBe(0);
  });
});
