/**
 * The `fortary-authz` CLI against private redis-servers: the main paths through the real binary
 * (node bin/fortary-authz.js, dist/ built by Jest's globalSetup), and every refusal in-process through run(), each
 * row checking the exit status, a single stderr line and that Redis is unchanged.
 */
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import bcrypt from 'bcrypt';
import type Redis from 'ioredis';
import { FUNCTION_LIBRARY_VERSION, functionLibrarySource } from '../../src/adapters/redis/function-library';
import { USAGE } from '../../src/cli/main';
import { parseUserRecord } from '../../src/core/records';
import { parseToken } from '../../src/core/token';
import { runBin, runCli, snapshot as snapshotOf, storedKey as storedKeyIn } from '../support/cli';
import { freePort, startRedis, type RedisInstance } from '../support/redis-server';

const ROOT = path.resolve(__dirname, '../..');
const DAY = 24 * 60 * 60 * 1000;
const TOKEN_DOC = readFileSync(path.join(ROOT, 'docs/token-format.md'), 'utf8');
const CONTRACT = readFileSync(path.join(ROOT, 'docs/redis-contract.md'), 'utf8');

let server: RedisInstance;
let redis: Redis;

beforeAll(async () => {
  server = await startRedis();
  redis = server.client();
});

afterAll(async () => {
  await server.stop();
});

/** run() in-process; REDIS_URL points at the private server unless env overrides it. */
const cli = (args: string[], env: Record<string, string> = {}, now?: number) =>
  runCli(server.url, args, { env, ...(now === undefined ? {} : { now }) });

/** The real binary in a child process, with only the environment given here. */
const bin = (args: string[], env: Record<string, string> = {}) => runBin(server.url, args, { env });

const snapshot = (client: Redis = redis) => snapshotOf(client);
const storedKey = (keyId: string, client: Redis = redis) => storedKeyIn(client, keyId);

async function storedUser(userId: string) {
  const parsed = parseUserRecord(userId, (await redis.get(`fortary:user:${userId}`)) ?? '');
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.value;
}

function expectOneErrorLine(stderr: string): string {
  expect(stderr.endsWith('\n')).toBe(true);
  const lines = stderr.slice(0, -1).split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^fortary-authz: \S/);
  return lines[0] as string;
}

/** A TCP server that accepts connections and never answers: a hung Redis. */
async function silentServer(): Promise<{ url: string; close: () => void }> {
  const sockets: net.Socket[] = [];
  const tcp = net.createServer((socket) => void sockets.push(socket));
  await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
  const { port } = tcp.address() as net.AddressInfo;
  return {
    url: `redis://127.0.0.1:${port}`,
    close: () => {
      for (const socket of sockets) socket.destroy();
      tcp.close();
    },
  };
}

describe('the binary, main paths', () => {
  let keyA: string;
  let tokenA: string;
  let keyB: string;

  beforeAll(async () => {
    await redis.flushall();
    await redis.function('FLUSH');
  });

  test.each([[['--help']], [['help']], [['-h']], [['keys', 'create', '--help']], [['keys', '--help']]])(
    '%j prints the usage to stdout and exits 0',
    async (args) => {
      const result = await bin(args);
      expect(result).toMatchObject({ code: 0, stdout: `${USAGE}\n`, stderr: '' });
    },
  );

  test('setup loads the function library once, then reports it current', async () => {
    expect(await bin(['setup'])).toMatchObject({ code: 0, stdout: 'loaded\n', stderr: '' });
    expect(await bin(['setup'])).toMatchObject({ code: 0, stdout: 'current\n', stderr: '' });
  });

  test('setup never downgrades: a newer library (a later release rolling out) stays loaded', async () => {
    const newer = `${Number(FUNCTION_LIBRARY_VERSION.split('.')[0]) + 1}`;
    const source = functionLibrarySource().replace(/^local VERSION = '.*'$/m, `local VERSION = '${newer}'`);
    await redis.call('FUNCTION', 'LOAD', 'REPLACE', source);
    try {
      expect(await bin(['setup'])).toMatchObject({ code: 0, stdout: 'newer\n', stderr: '' });
      expect(await redis.call('FCALL_RO', 'fortary_version', '0')).toBe(newer);
    } finally {
      await redis.call('FUNCTION', 'LOAD', 'REPLACE', functionLibrarySource());
    }
  });

  test('users put creates and replaces a user', async () => {
    const created = await bin(['users', 'put', 'alice', '--developer', 'v1']);
    expect(created).toMatchObject({ code: 0, stderr: '' });
    expect(created.stdout).toContain('Created user alice: active, Developer on v1.');
    const updated = await bin([
      'users',
      'put',
      'alice',
      '--developer',
      'v1',
      '--developer',
      'v2',
      '--developer',
      'v1',
    ]);
    expect(updated.stdout).toContain('Updated user alice: active, Developer on v1, v2.');
    expect(await storedUser('alice')).toMatchObject({ active: true, developerVaults: ['v1', 'v2'] });
  });

  test('keys create --json prints one line; the record holds a bcrypt hash of the whole token', async () => {
    const before = Date.now();
    const result = await bin([
      'keys',
      'create',
      '--user',
      'alice',
      '--vault',
      'v1',
      '--vault',
      'v2',
      '--ip',
      '203.0.113.0/24',
      '--label',
      'CI key',
      '--json',
    ]);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    const printed = JSON.parse(lines[0] as string) as { keyId: string; token: string; expiresAt: string };
    expect(Object.keys(printed)).toEqual(['keyId', 'token', 'expiresAt']);
    expect(parseToken(printed.token)).toMatchObject({ keyId: printed.keyId });
    const expiresAt = Date.parse(printed.expiresAt);
    expect(expiresAt).toBeGreaterThanOrEqual(before + 365 * DAY);
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + 365 * DAY);

    const record = await storedKey(printed.keyId);
    expect(record).toMatchObject({
      userId: 'alice',
      scopes: ['vault:read'],
      vaults: ['v1', 'v2'],
      ipAllowlist: ['203.0.113.0/24'],
      expiresAt,
      label: 'CI key',
      revokedAt: null,
    });
    expect(record.createdAt).toBe(record.updatedAt);
    expect(record.secretHash.startsWith('$2b$04$')).toBe(true);
    expect(await bcrypt.compare(printed.token, record.secretHash)).toBe(true);
    expect(await bcrypt.compare(parseToken(printed.token)?.secret ?? '', record.secretHash)).toBe(false);
    expect(await redis.hkeys(`fortary:key:${printed.keyId}`)).toEqual(['record']);
    expect(await redis.smembers('fortary:user-keys:alice')).toEqual([printed.keyId]);
    keyA = printed.keyId;
    tokenA = printed.token;
  });

  test('the token matches the scanner pattern and checksum verifier in docs/token-format.md', () => {
    const pattern = /```regex\n(.*)\n```/.exec(TOKEN_DOC)?.[1] as string;
    const scanner = new RegExp(pattern, 'g');
    expect(`export API_KEY="${tokenA}" # ci`.match(scanner)).toEqual([tokenA]);
    expect(`x${tokenA}`.match(scanner)).toBeNull();
    const code = /```js\n([\s\S]*?)```/.exec(TOKEN_DOC)?.[1] as string;
    const isFortaryToken = new Function(`${code}\nreturn isFortaryToken;`)() as (token: string) => boolean;
    expect(isFortaryToken(tokenA)).toBe(true);
    const example = /```text\n.*\n(fty_\S+)\n```/.exec(TOKEN_DOC)?.[1] as string;
    expect(parseToken(example)).not.toBeNull();
    expect(isFortaryToken(example)).toBe(true);
    const typo = tokenA.slice(0, 30) + (tokenA[30] === 'a' ? 'b' : 'a') + tokenA.slice(31);
    expect(isFortaryToken(typo)).toBe(false);
    expect(parseToken(typo)).toBeNull();
  });

  test('keys create prints the key id, token, expiry and that the token is shown once', async () => {
    const result = await bin([
      'keys',
      'create',
      '--user',
      'alice',
      '--vault',
      'v1',
      '--expires-at',
      '2031-06-30',
    ]);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    const token = /^token: +(fty_\S+)$/m.exec(result.stdout)?.[1] as string;
    keyB = parseToken(token)?.keyId as string;
    expect(result.stdout).toMatch(new RegExp(`^key: +${keyB}$`, 'm'));
    expect(result.stdout).toMatch(/^expires: +2031-06-30T00:00:00\.000Z$/m);
    expect(result.stdout).toMatch(/will not be shown again/);
    expect((await storedKey(keyB)).expiresAt).toBe(Date.UTC(2031, 5, 30));
  });

  test('keys show prints everything but the secret', async () => {
    const human = await bin(['keys', 'show', keyA]);
    expect(human).toMatchObject({ code: 0, stderr: '' });
    expect(human.stdout).not.toMatch(/fty_|\$2b\$/);
    for (const line of [
      `key:      ${keyA}`,
      'user:     alice',
      'status:   active',
      'scopes:   vault:read',
      'vaults:   v1, v2',
      'ips:      203.0.113.0/24',
      'label:    CI key',
      'revoked:  no',
    ]) {
      expect(human.stdout.split('\n')).toContain(line);
    }
    const json = await bin(['keys', 'show', keyA, '--json']);
    expect(json.stdout).not.toMatch(/fty_|\$2b\$|secretHash/);
    const view = JSON.parse(json.stdout) as Record<string, unknown>;
    const record = await storedKey(keyA);
    expect(view).toEqual({
      keyId: keyA,
      userId: 'alice',
      status: 'active',
      scopes: ['vault:read'],
      vaults: ['v1', 'v2'],
      ipAllowlist: ['203.0.113.0/24'],
      expiresAt: new Date(record.expiresAt as number).toISOString(),
      label: 'CI key',
      createdAt: new Date(record.createdAt).toISOString(),
      updatedAt: new Date(record.updatedAt).toISOString(),
      revokedAt: null,
      rotatedTo: null,
      rotatedFrom: null,
      effectiveAccess: {
        ownerActive: true,
        vaults: [
          { vaultId: 'v1', developer: true },
          { vaultId: 'v2', developer: true },
        ],
        deniedEverywhere: null,
      },
      lastUsedAt: null,
      lastUsedIp: null,
      lastUsedVault: null,
    });
  });

  test('keys edit changes vaults, IPs, expiry and label in place; never the secret', async () => {
    const before = await storedKey(keyA);
    const result = await bin([
      'keys',
      'edit',
      keyA,
      '--vault',
      'v2',
      '--ip',
      '198.51.100.0/24',
      '--ip',
      '2001:db8::/32',
      '--expires-in',
      '30d',
      '--label',
      'renamed',
    ]);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toContain(`Updated key ${keyA}.`);
    const after = await storedKey(keyA);
    expect(after).toMatchObject({
      vaults: ['v2'],
      ipAllowlist: ['198.51.100.0/24', '2001:db8::/32'],
      label: 'renamed',
      secretHash: before.secretHash,
      createdAt: before.createdAt,
      userId: 'alice',
    });
    expect(after.updatedAt).toBeGreaterThan(before.updatedAt);
    expect(Math.abs((after.expiresAt as number) - (Date.now() + 30 * DAY))).toBeLessThan(60_000);

    expect((await bin(['keys', 'edit', keyA, '--no-ip-restriction', '--no-expiry'])).code).toBe(0);
    expect(await storedKey(keyA)).toMatchObject({
      ipAllowlist: [],
      expiresAt: null,
      vaults: ['v2'],
      label: 'renamed',
    });
    expect(await bcrypt.compare(tokenA, (await storedKey(keyA)).secretHash)).toBe(true);
  });

  test('keys edit refuses an expiry in the past (issue 12: revoke is the way to stop a key)', async () => {
    const edit = await bin(['keys', 'edit', keyB, '--expires-at', '2020-01-01T00:00:00Z']);
    expect(edit.code).toBe(2);
    expect(expectOneErrorLine(edit.stderr)).toMatch(/is in the past; to stop a key now, use 'keys revoke'$/);
    const shown = JSON.parse((await bin(['keys', 'show', keyB, '--json'])).stdout) as { status: string };
    expect(shown.status).toBe('active');
  });

  test('keys list shows the user’s keys oldest first', async () => {
    const result = await bin(['keys', 'list', '--user', 'alice', '--json']);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).not.toMatch(/fty_|\$2b\$/);
    const views = JSON.parse(result.stdout) as { keyId: string; createdAt: string }[];
    expect(views.map((v) => v.keyId)).toEqual([keyA, keyB]);
    const human = await bin(['keys', 'list', '--user', 'alice']);
    expect(human.stdout).toMatch(new RegExp(`key: +${keyA}[\\s\\S]*\\n\\nkey: +${keyB}`));
  });

  test('keys revoke reaches a subscribed sidecar and is permanent', async () => {
    const subscriber = server.client();
    const messages: string[] = [];
    subscriber.on('message', (_channel: string, message: string) => messages.push(message));
    await subscriber.subscribe('fortary:events');
    const result = await bin(['keys', 'revoke', keyA]);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toContain(`Revoked key ${keyA}.`);
    expect(result.stdout).toContain('1 sidecar(s) received the event.');
    const deadline = Date.now() + 2000;
    while (messages.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(JSON.parse(messages[0] as string)).toMatchObject({ type: 'key.revoked', id: keyA });
    await subscriber.unsubscribe();

    const revokedAt = (await storedKey(keyA)).revokedAt;
    expect(revokedAt).not.toBeNull();
    expect(JSON.parse((await bin(['keys', 'show', keyA, '--json'])).stdout)).toMatchObject({
      status: 'revoked',
      revokedAt: new Date(revokedAt as number).toISOString(),
    });
    const again = await bin(['keys', 'revoke', keyA]);
    expect(again.stdout).toContain('was already revoked');
    expect((await storedKey(keyA)).revokedAt).toBe(revokedAt);
    const edit = await bin(['keys', 'edit', keyA, '--label', 'back']);
    expect(edit.code).toBe(1);
    expect(expectOneErrorLine(edit.stderr)).toMatch(/is revoked/);
  });

  test('users deactivate revokes the remaining keys; the user can no longer get keys', async () => {
    const result = await bin(['users', 'deactivate', 'alice']);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toContain('Deactivated user alice; its 2 key(s) are revoked.');
    expect(await storedUser('alice')).toMatchObject({ active: false, developerVaults: ['v1', 'v2'] });
    expect((await storedKey(keyB)).revokedAt).not.toBeNull();
    const refused = await bin(['keys', 'create', '--user', 'alice', '--vault', 'v1']);
    expect(refused.code).toBe(1);
    expect(expectOneErrorLine(refused.stderr)).toBe('fortary-authz: user alice is not active');
    // Reactivating the user does not bring the keys back.
    expect((await bin(['users', 'put', 'alice', '--developer', 'v1'])).code).toBe(0);
    expect(JSON.parse((await bin(['keys', 'show', keyB, '--json'])).stdout)).toMatchObject({
      status: 'revoked',
    });
  });

  test('users put --inactive deactivates: the keys are revoked', async () => {
    const created = JSON.parse(
      (await bin(['keys', 'create', '--user', 'alice', '--vault', 'v1', '--json'])).stdout,
    );
    const result = await bin(['users', 'put', 'alice', '--developer', 'v1', '--inactive']);
    expect(result.stdout).toContain('all of its keys are revoked');
    expect((await storedKey(created.keyId)).revokedAt).not.toBeNull();
  });

  test('bad input: exit 2, one line on stderr, nothing on stdout', async () => {
    const result = await bin(['keys', 'create', '--user', 'alice']);
    expect(result).toMatchObject({ code: 2, stdout: '' });
    expect(expectOneErrorLine(result.stderr)).toBe(
      'fortary-authz: keys create: at least one --vault is required',
    );
  });

  test('an unreachable Redis fails in one line within about three seconds', async () => {
    const closed = `redis://127.0.0.1:${await freePort()}`;
    const refused = await bin(['keys', 'revoke', 'AAAAAAAAAAAA'], { REDIS_URL: closed });
    expect(refused).toMatchObject({ code: 1, stdout: '' });
    expect(expectOneErrorLine(refused.stderr)).toMatch(/cannot connect to Redis at .*ECONNREFUSED/);

    const hung = await silentServer();
    try {
      const result = await bin(['--redis', hung.url, 'keys', 'show', 'AAAAAAAAAAAA']);
      expect(result).toMatchObject({ code: 1, stdout: '' });
      expect(expectOneErrorLine(result.stderr)).toMatch(/cannot connect to Redis .*no answer within 3000 ms/);
      expect(result.ms).toBeLessThan(4500);
    } finally {
      hung.close();
    }
  });

  test('a password in the URL never appears in messages', async () => {
    const result = await bin(['keys', 'show', 'AAAAAAAAAAAA'], {
      REDIS_URL: `redis://:hunter2@127.0.0.1:${await freePort()}`,
    });
    expect(result.code).toBe(1);
    expect(result.stderr).not.toContain('hunter2');
    expect(result.stderr).toContain('redis://***@127.0.0.1');
  });
});

describe('a fresh Redis and ACLs', () => {
  let fresh: RedisInstance;
  let admin: Redis;

  beforeAll(async () => {
    fresh = await startRedis();
    admin = fresh.client();
  });

  afterAll(async () => {
    await fresh.stop();
  });

  test('the first write loads the function library', async () => {
    const result = await bin(['users', 'put', 'bob', '--developer', 'v1'], { REDIS_URL: fresh.url });
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(await admin.call('FCALL_RO', 'fortary_version', '0')).toBeTruthy();
  });

  test('the documented operator ACL: refused in one line without FUNCTION LOAD, everything works after setup', async () => {
    await admin.flushall();
    await admin.function('FLUSH');
    const line = CONTRACT.split('\n').find((l) => l.startsWith('ACL SETUSER fortary-operator')) as string;
    await admin.call(...(line.replace('CHANGE-ME', 'op-secret').split(' ') as [string, ...string[]]));
    await admin.set(
      'fortary:user:bob',
      '{"v":1,"id":"bob","active":true,"developerVaults":["v1"],"updatedAt":1}',
    );
    const operator = { REDIS_URL: `redis://fortary-operator:op-secret@127.0.0.1:${fresh.port}` };

    const before = await snapshot(admin);
    const refused = await bin(['keys', 'create', '--user', 'bob', '--vault', 'v1'], operator);
    expect(refused).toMatchObject({ code: 1, stdout: '' });
    expect(expectOneErrorLine(refused.stderr)).toMatch(
      /^fortary-authz: cannot load the Redis function library: NOPERM .*function\|load/,
    );
    expect(await snapshot(admin)).toEqual(before);

    expect((await bin(['setup'], { REDIS_URL: fresh.url })).stdout).toBe('loaded\n');
    const created = await bin(['keys', 'create', '--user', 'bob', '--vault', 'v1', '--json'], operator);
    expect(created).toMatchObject({ code: 0, stderr: '' });
    const { keyId } = JSON.parse(created.stdout) as { keyId: string };
    for (const args of [
      ['users', 'put', 'bob', '--developer', 'v1', '--developer', 'v2'],
      ['keys', 'show', keyId],
      ['keys', 'list', '--user', 'bob'],
      ['keys', 'edit', keyId, '--vault', 'v2'],
      ['keys', 'revoke', keyId],
      ['users', 'deactivate', 'bob'],
      ['setup'],
    ]) {
      expect(await bin(args, operator)).toMatchObject({ code: 0, stderr: '' });
    }
  });
});

describe('expiry arithmetic (fixed clock)', () => {
  const now = Date.UTC(2030, 0, 15, 12, 0, 0);

  beforeAll(async () => {
    await redis.flushall();
    await cli(['users', 'put', 'erin', '--developer', 'v1']);
  });

  test.each([
    [[], now + 365 * DAY],
    [['--expires-in', '1d'], now + DAY],
    [['--expires-in', '90d'], now + 90 * DAY],
    [['--expires-at', '2030-01-16'], Date.UTC(2030, 0, 16)],
    [['--expires-at', '2030-02-28T23:59:59Z'], Date.UTC(2030, 1, 28, 23, 59, 59)],
    [['--expires-at', '2030-01-15T14:30:00.250+02:00'], Date.UTC(2030, 0, 15, 12, 30, 0, 250)],
    [['--expires-at', '2030-01-15T07:00-05:30'], Date.UTC(2030, 0, 15, 12, 30)],
    [['--expires-at', '2032-02-29'], Date.UTC(2032, 1, 29)],
    [['--no-expiry'], null],
  ])('keys create %j expires at %p', async (flags, expected) => {
    const result = await cli(
      ['keys', 'create', '--user', 'erin', '--vault', 'v1', '--json', ...flags],
      {},
      now,
    );
    expect(result).toMatchObject({ code: 0, err: [] });
    const { keyId, expiresAt } = JSON.parse(result.out[0] as string) as {
      keyId: string;
      expiresAt: string | null;
    };
    expect(expiresAt).toBe(expected === null ? null : new Date(expected).toISOString());
    expect((await storedKey(keyId)).expiresAt).toBe(expected);
  });
});

describe('refusals (in-process): exit status, one stderr line, Redis unchanged', () => {
  let KEY: string;
  let REVOKED: string;
  const CORRUPT = 'c0rruptK3y00';
  let DEAD: string;

  beforeAll(async () => {
    await redis.flushall();
    await cli(['users', 'put', 'alice', '--developer', 'v1', '--developer', 'v2']);
    await cli(['users', 'put', 'carol', '--developer', 'v1', '--inactive']);
    KEY = (
      JSON.parse(
        (await cli(['keys', 'create', '--user', 'alice', '--vault', 'v1', '--json'])).out[0] as string,
      ) as { keyId: string }
    ).keyId;
    REVOKED = (
      JSON.parse(
        (await cli(['keys', 'create', '--user', 'alice', '--vault', 'v1', '--json'])).out[0] as string,
      ) as { keyId: string }
    ).keyId;
    await cli(['keys', 'revoke', REVOKED]);
    await redis.hset(`fortary:key:${CORRUPT}`, 'record', 'not json');
    await redis.set('fortary:key:wr0ngTyp3Key', 'a string where a hash belongs');
    DEAD = `redis://127.0.0.1:${await freePort()}`;
  });

  const create = ['keys', 'create', '--user', 'alice', '--vault', 'v1'];
  type Row = [string, string[], number, RegExp, Record<string, string>?];
  const rows: Row[] = [
    // the command line
    ['no command', [], 2, /missing command/],
    ['an unknown command', ['frobnicate'], 2, /unknown command "frobnicate"/],
    ['an unknown global option', ['--verbose', 'setup'], 2, /unknown option --verbose/],
    ['--redis without a value', ['--redis'], 2, /--redis needs a value/],
    [
      '--redis that is not a Redis URL',
      ['--redis', 'http://127.0.0.1:6379', 'keys', 'show', '$KEY'],
      2,
      /is not a Redis URL/,
    ],
    ['--redis that is not a URL', ['--redis', 'nonsense', 'setup'], 2, /nonsense is not a Redis URL/],
    [
      'REDIS_URL that is not a Redis URL',
      ['keys', 'list', '--user', 'alice'],
      2,
      /is not a Redis URL/,
      { REDIS_URL: 'mysql://db' },
    ],
    [
      '--redis given twice',
      ['--redis', '$URL', 'setup', '--redis', '$URL'],
      2,
      /--redis given more than once/,
    ],
    ['setup with an argument', ['setup', 'now'], 2, /unexpected argument 'now'/],
    ['keys without a subcommand', ['keys'], 2, /keys: missing subcommand/],
    ['an unknown keys subcommand', ['keys', 'delete', '$KEY'], 2, /keys: unknown subcommand "delete"/],
    ['users without a subcommand', ['users'], 2, /users: missing subcommand/],
    ['an unknown users subcommand', ['users', 'remove', 'alice'], 2, /users: unknown subcommand "remove"/],
    // keys create
    ['create without --user', ['keys', 'create', '--vault', 'v1'], 2, /missing --user/],
    [
      'create with a bad user id',
      ['keys', 'create', '--user', 'al ice', '--vault', 'v1'],
      2,
      /--user "al ice" is not a user id/,
    ],
    ['create without --vault', ['keys', 'create', '--user', 'alice'], 2, /at least one --vault is required/],
    ['create with a bad vault id', [...create, '--vault', 'v/2'], 2, /--vault "v\/2" is not a vault id/],
    [
      'create with a CIDR prefix too long',
      [...create, '--ip', '10.0.0.0/33'],
      2,
      /--ip "10.0.0.0\/33" is not a CIDR/,
    ],
    ['create with an address without prefix', [...create, '--ip', '10.1.2.3'], 2, /is not a CIDR/],
    ['create with shorthand IPv4', [...create, '--ip', '10.1/16'], 2, /is not a CIDR/],
    ['create with an IPv6 prefix too long', [...create, '--ip', '2001:db8::/129'], 2, /is not a CIDR/],
    ['create with a host name', [...create, '--ip', 'example.com/24'], 2, /is not a CIDR/],
    ['create with --expires-in 0d', [...create, '--expires-in', '0d'], 2, /--expires-in must be <days>d/],
    ['create with --expires-in without unit', [...create, '--expires-in', '30'], 2, /--expires-in must be/],
    ['create with --expires-in negative', [...create, '--expires-in=-5d'], 2, /--expires-in must be/],
    ['create with --expires-in fractional', [...create, '--expires-in', '1.5d'], 2, /--expires-in must be/],
    ['create with --expires-in in hours', [...create, '--expires-in', '12h'], 2, /--expires-in must be/],
    ['create with --expires-in too far', [...create, '--expires-in', '36501d'], 2, /--expires-in must be/],
    [
      'create with a word for a date',
      [...create, '--expires-at', 'tomorrow'],
      2,
      /"tomorrow" is not an ISO-8601/,
    ],
    [
      'create with a date that does not exist',
      [...create, '--expires-at', '2031-02-30'],
      2,
      /is not an ISO-8601/,
    ],
    ['create with month 13', [...create, '--expires-at', '2031-13-01'], 2, /is not an ISO-8601/],
    [
      'create with a date-time without zone',
      [...create, '--expires-at', '2031-01-01T00:00:00'],
      2,
      /is not an ISO-8601/,
    ],
    ['create with hour 24', [...create, '--expires-at', '2031-01-01T24:00Z'], 2, /is not an ISO-8601/],
    ['create with a space for T', [...create, '--expires-at', '2031-01-01 10:00Z'], 2, /is not an ISO-8601/],
    ['create with a US date', [...create, '--expires-at', '01/02/2031'], 2, /is not an ISO-8601/],
    [
      'create with a past date',
      [...create, '--expires-at', '2020-01-01'],
      2,
      /--expires-at 2020-01-01 is in the past/,
    ],
    [
      'create with a past date-time',
      [...create, '--expires-at', '2020-01-01T00:00:00Z'],
      2,
      /is in the past/,
    ],
    [
      'create with --no-expiry and --expires-in',
      [...create, '--no-expiry', '--expires-in', '30d'],
      2,
      /exclude each other/,
    ],
    [
      'create with --expires-at and --expires-in',
      [...create, '--expires-at', '2031-01-01', '--expires-in', '30d'],
      2,
      /exclude each other/,
    ],
    [
      'create with --expires-at and --no-expiry',
      [...create, '--expires-at', '2031-01-01', '--no-expiry'],
      2,
      /exclude each other/,
    ],
    [
      'create with --expires-in twice',
      [...create, '--expires-in', '30d', '--expires-in', '40d'],
      2,
      /--expires-in given more than once/,
    ],
    [
      'create with a label too long',
      [...create, '--label', 'x'.repeat(201)],
      2,
      /--label is longer than 200/,
    ],
    [
      'create with a newline in the label',
      [...create, '--label', 'a\nb'],
      2,
      /--label contains a control character \(U\+000A\)/,
    ],
    [
      'create with an unknown flag',
      [...create, '--scope', 'vault:write'],
      2,
      /keys create: unknown option --scope/,
    ],
    [
      'create with a flag missing its value',
      ['keys', 'create', '--vault', 'v1', '--user'],
      2,
      /--user needs a value/,
    ],
    [
      'create with a flag for a value',
      ['keys', 'create', '--user', '--vault', 'v1'],
      2,
      /--user needs a value/,
    ],
    ['create with --user twice', [...create, '--user', 'bob'], 2, /--user given more than once/],
    [
      'create with a positional argument',
      ['keys', 'create', 'extra', '--user', 'alice', '--vault', 'v1'],
      2,
      /unexpected argument 'extra'/,
    ],
    ['create with a value for --json', [...create, '--json=yes'], 2, /--json does not take a value/],
    [
      'create with bcrypt cost 3',
      create,
      2,
      /FORTARY_BCRYPT_COST must be an integer from 4 to 15/,
      { FORTARY_BCRYPT_COST: '3' },
    ],
    ['create with bcrypt cost 16', create, 2, /FORTARY_BCRYPT_COST/, { FORTARY_BCRYPT_COST: '16' }],
    ['create with bcrypt cost ten', create, 2, /FORTARY_BCRYPT_COST/, { FORTARY_BCRYPT_COST: 'ten' }],
    [
      'create for an unknown user',
      ['keys', 'create', '--user', 'nobody', '--vault', 'v1'],
      1,
      /^fortary-authz: unknown user nobody$/,
    ],
    [
      'create for an inactive user',
      ['keys', 'create', '--user', 'carol', '--vault', 'v1'],
      1,
      /user carol is not active/,
    ],
    [
      'create on a vault the user is not Developer of',
      [...create, '--vault', 'v9'],
      1,
      /user alice does not hold the Developer role on vault v9$/,
    ],
    [
      'create with Redis unreachable',
      [...create, '--redis', '$DEAD'],
      1,
      /cannot connect to Redis at redis:\/\/127\.0\.0\.1:\d+: connect ECONNREFUSED/,
    ],
    // keys edit
    ['edit without a key id', ['keys', 'edit', '--label', 'x'], 2, /keys edit: missing <keyId>/],
    ['edit with a bad key id', ['keys', 'edit', 'short', '--label', 'x'], 2, /"short" is not a key id/],
    ['edit with nothing to change', ['keys', 'edit', '$KEY'], 2, /nothing to change/],
    [
      'edit with --ip and --no-ip-restriction',
      ['keys', 'edit', '$KEY', '--ip', '10.0.0.0/8', '--no-ip-restriction'],
      2,
      /--ip and --no-ip-restriction exclude each other/,
    ],
    ['edit with a bad CIDR', ['keys', 'edit', '$KEY', '--ip', '300.0.0.0/8'], 2, /is not a CIDR/],
    [
      'edit with a bad vault id',
      ['keys', 'edit', '$KEY', '--vault', '-v1'],
      2,
      /--vault needs a value|is not a vault id/,
    ],
    [
      'edit with a bad vault id (=)',
      ['keys', 'edit', '$KEY', '--vault=_v1'],
      2,
      /--vault "_v1" is not a vault id/,
    ],
    [
      'edit with two expiry flags',
      ['keys', 'edit', '$KEY', '--no-expiry', '--expires-at', '2031-01-01'],
      2,
      /exclude each other/,
    ],
    [
      'edit with a bad date',
      ['keys', 'edit', '$KEY', '--expires-at', '2031-01-01T10:00'],
      2,
      /is not an ISO-8601/,
    ],
    [
      'edit with a bad --expires-in',
      ['keys', 'edit', '$KEY', '--expires-in', 'soon'],
      2,
      /--expires-in must be/,
    ],
    [
      'edit with an unknown flag',
      ['keys', 'edit', '$KEY', '--user', 'bob'],
      2,
      /keys edit: unknown option --user/,
    ],
    [
      'edit with a second positional',
      ['keys', 'edit', '$KEY', '$KEY', '--label', 'x'],
      2,
      /unexpected argument/,
    ],
    [
      'edit of an unknown key',
      ['keys', 'edit', 'AAAAAAAAAAAA', '--label', 'x'],
      1,
      /^fortary-authz: unknown key AAAAAAAAAAAA$/,
    ],
    [
      'edit of a revoked key',
      ['keys', 'edit', '$REVOKED', '--label', 'x'],
      1,
      /is revoked; a revoked key cannot be edited/,
    ],
    [
      'edit to a vault the owner is not Developer of',
      ['keys', 'edit', '$KEY', '--vault', 'v9'],
      1,
      /does not hold the Developer role on vault v9/,
    ],
    [
      'edit of an unreadable record',
      ['keys', 'edit', CORRUPT, '--label', 'x'],
      1,
      /the stored record of key c0rruptK3y00 is invalid/,
    ],
    // keys revoke
    ['revoke without a key id', ['keys', 'revoke'], 2, /keys revoke: missing <keyId\|token>/],
    ['revoke with a bad key id', ['keys', 'revoke', 'fty_abc'], 2, /is not a valid Fortary token/],
    ['revoke with two key ids', ['keys', 'revoke', '$KEY', '$REVOKED'], 2, /unexpected argument/],
    [
      'revoke of an unknown key',
      ['keys', 'revoke', 'AAAAAAAAAAAA'],
      1,
      /^fortary-authz: unknown key AAAAAAAAAAAA$/,
    ],
    [
      'revoke with Redis unreachable',
      ['keys', 'revoke', '$KEY'],
      1,
      /cannot connect to Redis/,
      { REDIS_URL: '$DEAD' },
    ],
    // keys show / list
    ['show with a bad key id', ['keys', 'show', 'AAAAAAAAAAA!'], 2, /is not a key id/],
    ['show with an unknown flag', ['keys', 'show', '$KEY', '--secret'], 2, /unknown option --secret/],
    ['show of an unknown key', ['keys', 'show', 'AAAAAAAAAAAA'], 1, /unknown key AAAAAAAAAAAA/],
    ['show of an unreadable record', ['keys', 'show', CORRUPT], 1, /is invalid: record is not JSON/],
    [
      'show of a key stored with the wrong type',
      ['keys', 'show', 'wr0ngTyp3Key'],
      1,
      /^fortary-authz: Redis at redis:\/\/127\.0\.0\.1:\d+: WRONGTYPE/,
    ],
    ['list without --user', ['keys', 'list'], 2, /missing --user/],
    ['list with a bad user id', ['keys', 'list', '--user', '@alice'], 2, /is not a user id/],
    ['list of an unknown user', ['keys', 'list', '--user', 'nobody'], 1, /unknown user nobody/],
    [
      'list with Redis unreachable',
      ['keys', 'list', '--user', 'alice', '--redis', '$DEAD'],
      1,
      /cannot connect to Redis/,
    ],
    // users
    ['users put without a user id', ['users', 'put'], 2, /users put: missing <userId>/],
    ['users put with a bad user id', ['users', 'put', 'a/b'], 2, /"a\/b" is not a user id/],
    [
      'users put with a bad vault id',
      ['users', 'put', 'dave', '--developer', 'v 1'],
      2,
      /--developer "v 1" is not a vault id/,
    ],
    ['users put with an unknown flag', ['users', 'put', 'dave', '--active'], 2, /unknown option --active/],
    ['users put with two user ids', ['users', 'put', 'dave', 'erin'], 2, /unexpected argument 'erin'/],
    [
      'users put with Redis unreachable',
      ['users', 'put', 'dave', '--redis', '$DEAD'],
      1,
      /cannot connect to Redis/,
    ],
    ['users deactivate without a user id', ['users', 'deactivate'], 2, /missing <userId>/],
    ['users deactivate with a bad user id', ['users', 'deactivate', '.x'], 2, /is not a user id/],
    [
      'users deactivate of an unknown user',
      ['users', 'deactivate', 'nobody'],
      1,
      /^fortary-authz: unknown user nobody$/,
    ],
  ];

  test.each(rows)('%s', async (_name, args, code, message, env = {}) => {
    const fill = (text: string) =>
      text
        .replaceAll('$KEY', KEY)
        .replaceAll('$REVOKED', REVOKED)
        .replaceAll('$DEAD', DEAD)
        .replaceAll('$URL', server.url);
    const filledEnv = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, fill(v)]));
    const before = await snapshot();
    const result = await cli(args.map(fill), filledEnv);
    expect(result.err).toHaveLength(1);
    expect(result.err[0]).toMatch(/^fortary-authz: \S[^\n]*$/);
    expect(result.err[0]).toMatch(message);
    expect(result.code).toBe(code);
    expect(result.out).toEqual([]);
    expect(await snapshot()).toEqual(before);
  });
});

describe('scripts/build-if-needed.js', () => {
  let root: string;
  let staleReason: () => string | null;

  beforeAll(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'fortary-build-'));
    mkdirSync(path.join(root, 'scripts'));
    cpSync(path.join(ROOT, 'scripts/build-if-needed.js'), path.join(root, 'scripts/build-if-needed.js'));
    mkdirSync(path.join(root, 'src/cli'), { recursive: true });
    writeFileSync(path.join(root, 'src/main.ts'), '');
    writeFileSync(path.join(root, 'src/cli/main.ts'), '');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const script = require(path.join(root, 'scripts/build-if-needed.js')) as {
      staleReason: () => string | null;
    };
    staleReason = script.staleReason;
  });

  afterAll(() => rmSync(root, { recursive: true, force: true }));

  test('builds when an entry point is missing or older than a source, not otherwise', () => {
    expect(staleReason()).toBe('dist/src/main.js is missing');
    mkdirSync(path.join(root, 'dist/src/cli'), { recursive: true });
    writeFileSync(path.join(root, 'dist/src/main.js'), '');
    expect(staleReason()).toBe('dist/src/cli/main.js is missing');
    writeFileSync(path.join(root, 'dist/src/cli/main.js'), '');
    const past = new Date(Date.now() - 60_000);
    utimesSync(path.join(root, 'dist/src/cli/main.js'), past, past);
    expect(staleReason()).toBe('dist/src/cli/main.js is older than src/');
    const future = new Date(Date.now() + 60_000);
    utimesSync(path.join(root, 'dist/src/cli/main.js'), future, future);
    utimesSync(path.join(root, 'dist/src/main.js'), future, future);
    expect(staleReason()).toBeNull();
  });
});
