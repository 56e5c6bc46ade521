/**
 * The sidecar under the least-privilege Redis ACLs of docs/redis-acl.md, against a private redis-server 7. The
 * `ACL SETUSER` lines are taken from the document and fed to redis-cli exactly as printed:
 * - `fortary-sidecar` (recommended): the real sidecar connects as it, allows and denies, receives revocation and
 *   deactivation events, writes its acknowledgement key, and Redis logs no refusal for it; a missing function
 *   library is a warning, not an outage; every other write, every function that writes, reading the
 *   acknowledgements, and everything beyond its records is refused with nothing changed;
 * - `fortary-sidecar-revoker` (documented alternative): the same, plus `fortary_revoke`, and the trade-off the
 *   document states is pinned: its HSETNX can mint a key the sidecar allows, and a function is not rolled back
 *   when a selector is missing.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import bcrypt from 'bcrypt';
import Redis from 'ioredis';
import { FUNCTION_LIBRARY_VERSION } from '../../src/adapters/redis/function-library';
import { serializeKeyRecord } from '../../src/core/records';
import { formatToken } from '../../src/core/token';
import { envoyRequest, metadataOf } from '../support/check-client';
import { createKey, putUser, randomBase62, revokeKey, waitFor, type CreatedKey } from '../support/fixtures';
import { startRedis, type RedisInstance } from '../support/redis-server';
import { startHarness, verdict, type Harness } from '../support/sidecar-harness';

const ROOT = path.resolve(__dirname, '../..');
const DOC = readFileSync(path.join(ROOT, 'docs/redis-acl.md'), 'utf8');
const OPERATIONS = readFileSync(path.join(ROOT, 'docs/operations.md'), 'utf8');
const PASSWORD = 'acl-test-Pw-7e1c';
const SIDECAR = 'fortary-sidecar';
const REVOKER = 'fortary-sidecar-revoker';
const REVOKE_SELECTOR_INCR = "'(+incr %RW~fortary:events:seq)'";

let server: RedisInstance;
let admin: Redis;
const clients: Redis[] = [];
let good: CreatedKey;
let libraryDump: Buffer;

/** The one `ACL SETUSER <user> …` line of the document, with the test password. */
function documentedAcl(user: string): string {
  const lines = DOC.split('\n').filter((line) => line.startsWith(`ACL SETUSER ${user} `));
  if (lines.length !== 1) throw new Error(`docs/redis-acl.md has ${lines.length} ACL lines for ${user}`);
  return (lines[0] as string).replace('>CHANGE-ME', `>${PASSWORD}`);
}

/** Feeds `input` to redis-cli on standard input, as the document tells operators to. */
function redisCli(input: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const proc = spawn('redis-cli', ['-p', String(server.port)], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
    proc.on('error', reject);
    proc.on('exit', () => resolve(out.trim()));
    proc.stdin.end(`${input}\n`);
  });
}

function connectAs(user: string): Redis {
  const client = new Redis({
    host: '127.0.0.1',
    port: server.port,
    username: user,
    password: PASSWORD,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  client.on('error', () => {});
  clients.push(client);
  return client;
}

const urlFor = (user: string) => `redis://${user}:${PASSWORD}@127.0.0.1:${server.port}`;

/** Every key with its type and value, and the loaded libraries: what "nothing changed" compares. */
async function snapshot(): Promise<string> {
  const keys = ((await admin.keys('*')) as string[]).sort();
  const out: unknown[] = [];
  for (const key of keys) {
    const type = await admin.type(key);
    let value: unknown;
    if (type === 'string') value = await admin.get(key);
    else if (type === 'hash') value = await admin.hgetall(key);
    else if (type === 'set') value = ((await admin.smembers(key)) as string[]).sort();
    else value = type;
    out.push([key, type, value]);
  }
  out.push(await admin.call('FUNCTION', 'LIST'));
  return JSON.stringify(out);
}

/** `ACL LOG` entries for one user, as `reason:object` strings. */
async function aclRefusals(user: string): Promise<string[]> {
  const entries = (await admin.call('ACL', 'LOG')) as unknown[][];
  const refusals: string[] = [];
  for (const entry of entries) {
    const fields: Record<string, unknown> = {};
    for (let i = 0; i < entry.length; i += 2) fields[String(entry[i])] = entry[i + 1];
    if (fields.username === user) refusals.push(`${String(fields.reason)}:${String(fields.object)}`);
  }
  return refusals;
}

async function gauge(h: Harness, name: string): Promise<number | undefined> {
  const metric = h.sidecar.metrics.registry.getSingleMetric(name);
  return (await metric?.get())?.values[0]?.value;
}

async function decide(h: Harness, token: string, vault = 'alpha') {
  const response = await h.client(
    envoyRequest({ authorization: `Bearer ${token}`, path: `/v1/vaults/${vault}/items` }),
  );
  return { ...verdict(response), reason: metadataOf(response).reason };
}

/** A complete, valid key record for `userId`, and the token it accepts: what only writers should be able to make. */
async function forgedKey(userId: string): Promise<{ keyId: string; token: string; record: string }> {
  const keyId = randomBase62(12);
  const token = formatToken(keyId, randomBase62(43));
  const now = Date.now();
  const record = serializeKeyRecord({
    id: keyId,
    userId,
    secretHash: await bcrypt.hash(token, 4),
    scopes: ['vault:read'],
    vaults: ['alpha'],
    ipAllowlist: [],
    expiresAt: null,
    label: 'forged',
    createdAt: now,
    updatedAt: now,
  });
  return { keyId, token, record };
}

beforeAll(async () => {
  server = await startRedis();
  admin = server.client();
  await putUser(admin, { id: 'alice', developerVaults: ['alpha'] });
  await putUser(admin, { id: 'bob', developerVaults: ['alpha'] });
  good = await createKey(admin, { userId: 'alice', vaults: ['alpha'] });
  libraryDump = (await admin.callBuffer('FUNCTION', 'DUMP')) as Buffer;
  expect(await redisCli(documentedAcl(SIDECAR))).toBe('OK');
  expect(await redisCli(documentedAcl(REVOKER))).toBe('OK');
});

afterAll(async () => {
  await Promise.all(clients.map((client) => client.quit().catch(() => client.disconnect())));
  await server.stop();
});

/** [label, command]: each must be refused with NOPERM for the user, changing nothing. Commands are built lazily. */
type Row = [string, () => string[]];
const existingKey = () => good.keyId;

function refusalRows(): Row[] {
  return [
    ['SET a user record', () => ['SET', 'fortary:user:alice', '{"v":1}']],
    ['SET a new key', () => ['SET', 'fortary:key:x', 'y']],
    ['HSET a key record', () => ['HSET', `fortary:key:${existingKey()}`, 'record', '{"v":1}']],
    ['HDEL a revocation', () => ['HDEL', `fortary:key:${existingKey()}`, 'revokedAt']],
    ['DEL a key', () => ['DEL', `fortary:key:${existingKey()}`]],
    ['UNLINK a user', () => ['UNLINK', 'fortary:user:alice']],
    ['EXPIRE a key', () => ['EXPIRE', `fortary:key:${existingKey()}`, '1']],
    ['RENAME a key', () => ['RENAME', `fortary:key:${existingKey()}`, 'fortary:key:zzzzzzzzzzzz']],
    ['SADD to a key index', () => ['SADD', 'fortary:user-keys:alice', 'zzzzzzzzzzzz']],
    ['FLUSHALL', () => ['FLUSHALL']],
    ['EVAL a write', () => ['EVAL', "return redis.call('SET', KEYS[1], 'x')", '1', 'fortary:user:alice']],
    [
      'FCALL fortary_put_user',
      () => ['FCALL', 'fortary_put_user', '1', 'mallory', '{"id":"mallory","active":true}'],
    ],
    [
      'FCALL fortary_put_key (edit)',
      () => ['FCALL', 'fortary_put_key', '1', existingKey(), '{"id":"x","userId":"alice"}', 'edit'],
    ],
    ['FCALL fortary_deactivate_user', () => ['FCALL', 'fortary_deactivate_user', '1', 'bob']],
    ['FCALL_RO a writing function', () => ['FCALL_RO', 'fortary_revoke', '1', existingKey()]],
    [
      'FUNCTION LOAD',
      () => [
        'FUNCTION',
        'LOAD',
        'REPLACE',
        "#!lua name=evil\nredis.register_function('x', function() return 1 end)",
      ],
    ],
    ['FUNCTION DELETE', () => ['FUNCTION', 'DELETE', 'fortary']],
    ['FUNCTION FLUSH', () => ['FUNCTION', 'FLUSH']],
    ['FUNCTION RESTORE', () => ['FUNCTION', 'RESTORE', 'x']],
    ['HGETALL a key (not needed)', () => ['HGETALL', `fortary:key:${existingKey()}`]],
    ['KEYS', () => ['KEYS', '*']],
    ['SCAN', () => ['SCAN', '0']],
    ['GET an unrelated key', () => ['GET', 'other:secret']],
    ['PSUBSCRIBE *', () => ['PSUBSCRIBE', '*']],
    ['SUBSCRIBE another channel', () => ['SUBSCRIBE', 'other']],
    ['CONFIG GET', () => ['CONFIG', 'GET', 'requirepass']],
    ['CONFIG SET', () => ['CONFIG', 'SET', 'save', '']],
    ['ACL LIST', () => ['ACL', 'LIST']],
    ['ACL SETUSER', () => ['ACL', 'SETUSER', 'mallory', 'on', '>x', '~*', '+@all']],
    ['CLIENT LIST', () => ['CLIENT', 'LIST']],
    ['CLIENT KILL', () => ['CLIENT', 'KILL', 'TYPE', 'normal']],
    ['MONITOR', () => ['MONITOR']],
    ['SHUTDOWN', () => ['SHUTDOWN', 'NOSAVE']],
    ['SELECT another database', () => ['SELECT', '1']],
    ['SET outside its acknowledgement key', () => ['SET', 'fortary:events:seq', '1']],
    ['DEL outside its acknowledgement key', () => ['DEL', 'fortary:user:alice']],
    ['GET an acknowledgement (write only)', () => ['GET', 'fortary:sidecar:other']],
    ['SET … GET on an acknowledgement (a read)', () => ['SET', 'fortary:sidecar:other', 'x', 'GET']],
    [
      'FCALL fortary_touch_last_used on a key record',
      () => ['FCALL', 'fortary_touch_last_used', '1', `fortary:key:${existingKey()}`, '1', '', ''],
    ],
    [
      'HSET a key record (the last-use selector is for last-use keys only)',
      () => ['HSET', `fortary:key:${existingKey()}`, 'revokedAt', 'x'],
    ],
    [
      'FCALL fortary_revoke named like a last-use key',
      () => ['FCALL', 'fortary_revoke', '1', 'fortary:last-used:x'],
    ],
    ['DEL a last-use key', () => ['DEL', `fortary:last-used:${existingKey()}`]],
  ];
}

async function expectRefused(user: string, command: string[]): Promise<void> {
  const client = connectAs(user);
  const before = await snapshot();
  const [name, ...args] = command as [string, ...string[]];
  await expect(client.call(name, ...args)).rejects.toThrow(/NOPERM/);
  expect(await snapshot()).toBe(before);
}

describe(`${SIDECAR} (recommended: read only)`, () => {
  test('the documented line grants exactly the reads, the channel and the version check', async () => {
    const info = (await admin.call('ACL', 'GETUSER', SIDECAR)) as unknown[];
    const fields: Record<string, unknown> = {};
    for (let i = 0; i < info.length; i += 2) fields[String(info[i])] = info[i + 1];
    expect(fields.flags).toContain('on');
    expect(new Set(String(fields.commands).split(' '))).toEqual(
      new Set([
        '-@all',
        '+hmget',
        '+get',
        '+type',
        '+subscribe',
        '+ping',
        '+info',
        '+client|setname',
        '+fcall_ro|fortary_version',
        '+set',
        '+del',
      ]),
    );
    expect(String(fields.keys).split(' ').sort()).toEqual(
      ['%R~fortary:events:seq', '%R~fortary:key:*', '%R~fortary:user:*', '%W~fortary:sidecar:*'].sort(),
    );
    expect(fields.channels).toBe('&fortary:events');
    // One selector: the last-use write, and only on fortary:last-used:* keys.
    const selectors = (fields.selectors as unknown[][]).map((sel) => {
      const f: Record<string, unknown> = {};
      for (let i = 0; i < sel.length; i += 2) f[String(sel[i])] = sel[i + 1];
      return `${String(f.commands).split(' ').sort().join(' ')} ${String(f.keys)}`;
    });
    expect(selectors).toEqual(['+fcall|fortary_touch_last_used +hget +hset -@all ~fortary:last-used:*']);
  });

  test('reads records, the sequence and the library version, and subscribes to the events', async () => {
    const client = connectAs(SIDECAR);
    expect(await client.hmget(`fortary:key:${good.keyId}`, 'record', 'revokedAt')).toEqual([
      expect.stringContaining(good.keyId),
      null,
    ]);
    expect(await client.get('fortary:user:alice')).toContain('"alice"');
    expect(await client.get('fortary:events:seq')).toMatch(/^\d+$/);
    expect(await client.call('FCALL_RO', 'fortary_version', '0')).toBe(FUNCTION_LIBRARY_VERSION);
    // Its one write: a key's last use, through the function that only moves it forward.
    const lastUsed = `fortary:last-used:${good.keyId}`;
    expect(
      await client.call('FCALL', 'fortary_touch_last_used', '1', lastUsed, '5', '192.0.2.1', 'alpha'),
    ).toBe(1);
    expect(
      await client.call('FCALL', 'fortary_touch_last_used', '1', lastUsed, '4', '192.0.2.2', 'alpha'),
    ).toBe(0);
    expect(await admin.hgetall(lastUsed)).toEqual({ at: '5', ip: '192.0.2.1', vault: 'alpha' });
    await admin.del(lastUsed);
    const subscriber = connectAs(SIDECAR);
    await subscriber.subscribe('fortary:events');
  });

  test('the sidecar runs under it: decides, follows revocation and deactivation events, and is never refused', async () => {
    await admin.call('ACL', 'LOG', 'RESET');
    const h = await startHarness({
      redis: server,
      env: { REDIS_URL: urlFor(SIDECAR), FORTARY_LAST_USED_FLUSH_S: '1' },
    });
    try {
      await waitFor(async () => (await gauge(h, 'fortary_authz_subscriber_connected')) === 1);
      expect(h.logs.find((l) => l.msg === 'redis function library checked')).toMatchObject({
        state: 'current',
      });
      const victim = await createKey(admin, { userId: 'alice', vaults: ['alpha'] });
      const bobs = await createKey(admin, { userId: 'bob', vaults: ['alpha'] });
      expect(await decide(h, good.token)).toMatchObject({ allow: true, reason: 'allowed' });
      expect(await decide(h, victim.token)).toMatchObject({ allow: true });
      expect(await decide(h, bobs.token)).toMatchObject({ allow: true });
      expect(await decide(h, good.token, 'beta')).toMatchObject({
        allow: false,
        http: 403,
        reason: 'vault_not_allowed',
      });
      expect(await decide(h, formatToken(randomBase62(12), randomBase62(43)))).toMatchObject({
        allow: false,
        http: 401,
        reason: 'key_unknown',
      });
      // Both keys are cached (staleness bound 60 s): only the events can make these denials appear this soon.
      await revokeKey(admin, victim.keyId);
      await admin.call('FCALL', 'fortary_deactivate_user', '1', 'bob');
      await waitFor(async () => (await decide(h, victim.token)).reason === 'key_revoked', 3000);
      await waitFor(async () => (await decide(h, bobs.token)).allow === false, 3000);
      expect(await decide(h, good.token)).toMatchObject({ allow: true });
      // The periodic last-use write goes through under this user too.
      await waitFor(
        async () => (await admin.hget(`fortary:last-used:${good.keyId}`, 'vault')) === 'alpha',
        5000,
      );
      // Its acknowledgement reports the deactivation's sequence: the one write this user may make.
      const seq = Number(await admin.get('fortary:events:seq'));
      const ackKeys = async () => (await admin.keys('fortary:sidecar:*')) as string[];
      await waitFor(async () => {
        const [key] = await ackKeys();
        return key !== undefined && JSON.parse((await admin.get(key)) as string).appliedSeq === seq;
      }, 3000);
      const [ackKey] = await ackKeys();
      expect(await admin.pttl(ackKey as string)).toBeGreaterThan(0);
      expect(await aclRefusals(SIDECAR)).toEqual([]);
      expect(h.logText()).not.toMatch(/NOPERM|could not load|could not write last use/);
      await h.stop();
      // Shutdown removes it.
      expect(await ackKeys()).toEqual([]);
    } finally {
      await h.stop();
    }
  });

  test('a record of the wrong Redis type is refused and logged with its type, with no refused TYPE', async () => {
    await admin.call('ACL', 'LOG', 'RESET');
    const h = await startHarness({ redis: server, env: { REDIS_URL: urlFor(SIDECAR) } });
    try {
      const broken = await createKey(admin, { userId: 'alice', vaults: ['alpha'] });
      await admin.del(`fortary:key:${broken.keyId}`);
      await admin.set(`fortary:key:${broken.keyId}`, 'not a hash');
      expect(await decide(h, broken.token)).toMatchObject({
        allow: false,
        http: 401,
        reason: 'record_invalid',
      });
      const line = h.logs.find(
        (l) => l.msg === 'corrupt record in redis: denying it' && l.id === broken.keyId,
      );
      expect(line).toMatchObject({ kind: 'key', error: expect.stringContaining('string') });
      expect(await aclRefusals(SIDECAR)).toEqual([]);
    } finally {
      await h.stop();
    }
  });

  test('a missing function library: the refused FUNCTION LOAD is one warning, decisions are unaffected', async () => {
    await admin.call('FUNCTION', 'FLUSH');
    await admin.call('ACL', 'LOG', 'RESET');
    const h = await startHarness({ redis: server, env: { REDIS_URL: urlFor(SIDECAR) } });
    try {
      await waitFor(() =>
        h.logs.some((l) => String(l.msg).startsWith('could not load the redis function library')),
      );
      const warning = h.logs.find((l) => String(l.msg).startsWith('could not load'));
      expect(warning).toMatchObject({
        level: 'warn',
        error: expect.stringMatching(/NOPERM.*function\|load/),
      });
      expect(await decide(h, good.token)).toMatchObject({ allow: true });
      expect(await decide(h, good.token, 'beta')).toMatchObject({
        allow: false,
        reason: 'vault_not_allowed',
      });
      expect(await aclRefusals(SIDECAR)).toEqual(['command:function|load']);
    } finally {
      await h.stop();
      await admin.call('FUNCTION', 'RESTORE', libraryDump);
    }
  });

  test.each(refusalRows())('refused, nothing changed: %s', async (_label, command) => {
    await expectRefused(SIDECAR, command());
  });

  test('the runbook (docs/operations.md "Emergency revoke"): with this user redis-cli prints NOPERM and exits 0, with -e it exits 1; nothing is revoked', async () => {
    const victim = await createKey(admin, { userId: 'alice', vaults: ['alpha'] });
    const run = (extra: string[]) =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const args = [
          ...extra,
          '--user',
          SIDECAR,
          '--pass',
          PASSWORD,
          '--no-auth-warning',
          '-p',
          String(server.port),
        ];
        const proc = spawn('redis-cli', [...args, 'FCALL', 'fortary_revoke', '1', victim.keyId]);
        let out = '';
        proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
        proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
        proc.on('exit', (code) => resolve({ code, out: out.trim() }));
      });
    const nopermLine = "NOPERM this user has no permissions to run the 'fcall' command";
    expect(await run([])).toEqual({ code: 0, out: nopermLine });
    expect(await run(['-e'])).toEqual({ code: 1, out: nopermLine });
    expect(OPERATIONS).toContain(nopermLine);
    expect(await admin.hget(`fortary:key:${victim.keyId}`, 'revokedAt')).toBeNull();
  });

  test('refused, nothing changed: HSETNX of a record on an unused id, PUBLISH, INCR and FCALL fortary_revoke', async () => {
    const forged = await forgedKey('alice');
    for (const command of [
      ['HSETNX', `fortary:key:${forged.keyId}`, 'record', forged.record],
      ['PUBLISH', 'fortary:events', '{"seq":1,"type":"key.revoked","id":"x"}'],
      ['INCR', 'fortary:events:seq'],
      ['FCALL', 'fortary_revoke', '1', good.keyId],
    ]) {
      await expectRefused(SIDECAR, command);
    }
  });
});

describe(`${REVOKER} (documented alternative, not recommended)`, () => {
  test('the documented line scopes FCALL, HSETNX and INCR to their own keys with selectors', async () => {
    const info = (await admin.call('ACL', 'GETUSER', REVOKER)) as unknown[];
    const fields: Record<string, unknown> = {};
    for (let i = 0; i < info.length; i += 2) fields[String(info[i])] = info[i + 1];
    const selectors = (fields.selectors as unknown[][]).map((s) => {
      const f: Record<string, unknown> = {};
      for (let i = 0; i < s.length; i += 2) f[String(s[i])] = s[i + 1];
      return `${String(f.commands).split(' ').sort().join(' ')} ${String(f.keys)}`;
    });
    expect(selectors.sort()).toEqual(
      [
        '+fcall|fortary_revoke -@all ~????????????',
        '+exists +hsetnx -@all ~fortary:key:*',
        '+incr -@all ~fortary:events:seq',
        '+fcall|fortary_touch_last_used +hget +hset -@all ~fortary:last-used:*',
      ].sort(),
    );
  });

  test('the sidecar runs under it, and the credential revokes a key the sidecar then refuses', async () => {
    await admin.call('ACL', 'LOG', 'RESET');
    const h = await startHarness({ redis: server, env: { REDIS_URL: urlFor(REVOKER) } });
    try {
      await waitFor(async () => (await gauge(h, 'fortary_authz_subscriber_connected')) === 1);
      const victim = await createKey(admin, { userId: 'alice', vaults: ['alpha'] });
      expect(await decide(h, victim.token)).toMatchObject({ allow: true });
      const receivers = await connectAs(REVOKER).call('FCALL', 'fortary_revoke', '1', victim.keyId);
      expect(receivers).toBeGreaterThanOrEqual(1);
      await waitFor(async () => (await decide(h, victim.token)).reason === 'key_revoked', 3000);
      expect(await decide(h, good.token)).toMatchObject({ allow: true });
      expect(await aclRefusals(REVOKER)).toEqual([]);
    } finally {
      await h.stop();
    }
  });

  test.each([
    ...refusalRows(),
    [
      'HSETNX on a bare 12-character key (the FCALL-only pattern)',
      () => ['HSETNX', 'abcdefghijkl', 'f', 'v'],
    ],
    ['INCR another key', () => ['INCR', 'fortary:user:alice']],
    ['PUBLISH on another channel', () => ['PUBLISH', 'other', 'x']],
  ] as Row[])('refused, nothing changed: %s', async (_label, command) => {
    await expectRefused(REVOKER, command());
  });

  test('the trade-off the document states: HSETNX on an unused id mints a key that the sidecar allows', async () => {
    const h = await startHarness({ redis: server, env: { REDIS_URL: urlFor(SIDECAR) } });
    try {
      const forged = await forgedKey('alice');
      expect(await decide(h, forged.token)).toMatchObject({ allow: false, reason: 'key_unknown' });
      const created = await connectAs(REVOKER).hsetnx(`fortary:key:${forged.keyId}`, 'record', forged.record);
      expect(created).toBe(1);
      // The unknown id was remembered for at most 5 s; wait that out rather than announcing the forgery.
      await waitFor(async () => (await decide(h, forged.token)).allow, 8000, 250);
    } finally {
      await h.stop();
    }
  }, 20_000);

  test('without the +incr selector a revocation is half-written: revokedAt set, no event (functions do not roll back)', async () => {
    const line = documentedAcl(REVOKER);
    expect(line).toContain(REVOKE_SELECTOR_INCR);
    const partial = line.replace(REVOKER, 'fortary-partial').replace(` ${REVOKE_SELECTOR_INCR}`, '');
    expect(await redisCli(partial)).toBe('OK');
    const victim = await createKey(admin, { userId: 'alice', vaults: ['alpha'] });
    const seq = await admin.get('fortary:events:seq');
    await expect(
      connectAs('fortary-partial').call('FCALL', 'fortary_revoke', '1', victim.keyId),
    ).rejects.toThrow(/can't run this command/);
    expect(await admin.hget(`fortary:key:${victim.keyId}`, 'revokedAt')).toMatch(/^\d+$/);
    expect(await admin.get('fortary:events:seq')).toBe(seq);
  });
});
