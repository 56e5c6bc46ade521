/**
 * The `fortary` function library against a private redis-server: each function's effect, refusals that write
 * nothing, permanent revocation, the event format and sequence, idempotent loading, and the emergency commands
 * exactly as docs/redis-contract.md prints them, run through the redis-cli binary.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import bcrypt from 'bcrypt';
import type Redis from 'ioredis';
import {
  ensureFunctionLibrary,
  FUNCTION_LIBRARY_VERSION,
  functionLibrarySource,
} from '../../src/adapters/redis/function-library';
import {
  parseKeyRecord,
  parseUserRecord,
  serializeKeyRecord,
  serializeUserRecord,
} from '../../src/core/records';
import type { KeyRecord, UserRecord } from '../../src/core/types';
import { startRedis, type RedisInstance } from '../support/redis-server';

const exec = promisify(execFile);
const ROOT = path.resolve(__dirname, '../..');
const CONTRACT = readFileSync(path.join(ROOT, 'docs/redis-contract.md'), 'utf8');
const HASH = bcrypt.hashSync('fty_not-a-real-token', 4);
const EVENT =
  /^\{"seq":(\d+),"type":"(key\.revoked|key\.updated|user\.updated|user\.deactivated)","id":"([^"]+)","at":(\d+)\}$/;

let server: RedisInstance;
let redis: Redis;
let subscriber: Redis;
let received: string[] = [];
/** The highest sequence number the subscriber has seen since the last FLUSHALL. */
let lastSeq = 0;
let nextKey = 0;

beforeAll(async () => {
  server = await startRedis();
  redis = server.client();
  subscriber = server.client();
  subscriber.on('message', (_channel: string, message: string) => {
    received.push(message);
    const { seq } = JSON.parse(message) as { seq?: unknown };
    if (typeof seq === 'number') lastSeq = seq;
  });
  await subscriber.subscribe('fortary:events');
});

afterAll(async () => {
  await server.stop();
});

beforeEach(async () => {
  await settle();
  await redis.flushall();
  lastSeq = 0;
  await ensureFunctionLibrary(redis);
});

/** Waits until the subscriber got every event published so far, then forgets them. */
async function settle(): Promise<void> {
  const target = Number((await redis.get('fortary:events:seq')) ?? 0);
  const deadline = Date.now() + 2000;
  while (lastSeq < target && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  received = [];
}

function keyId(): string {
  nextKey++;
  return `key${String(nextKey).padStart(9, '0')}`;
}

function user(id: string, overrides: Partial<UserRecord> = {}): UserRecord {
  return { id, active: true, developerVaults: ['v1', 'v2'], updatedAt: 1_700_000_000_000, ...overrides };
}

function key(id: string, userId: string, overrides: Partial<KeyRecord> = {}): Omit<KeyRecord, 'revokedAt'> {
  return {
    id,
    userId,
    secretHash: HASH,
    scopes: ['vault:read'],
    vaults: ['v1'],
    ipAllowlist: [],
    expiresAt: null,
    label: 'test',
    createdAt: 1_700_000_000_000,
    updatedAt: 1_700_000_000_000,
    ...overrides,
  };
}

const putUser = (record: UserRecord) =>
  redis.fcall('fortary_put_user', 1, record.id, serializeUserRecord(record));
const putKey = (record: Omit<KeyRecord, 'revokedAt'>, mode: 'create' | 'edit') =>
  redis.fcall('fortary_put_key', 1, record.id, serializeKeyRecord(record), mode);

/** Everything in the database, to prove a refusal wrote nothing. */
async function snapshot(): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const name of (await redis.keys('*')).sort()) {
    const type = await redis.type(name);
    if (type === 'string') out[name] = await redis.get(name);
    else if (type === 'hash') out[name] = await redis.hgetall(name);
    else if (type === 'set') out[name] = (await redis.smembers(name)).sort();
    else out[name] = type;
  }
  return out;
}

/** Waits until `count` events arrived (pub/sub is asynchronous) and returns them parsed. */
async function events(count: number): Promise<{ seq: number; type: string; id: string; at: number }[]> {
  const deadline = Date.now() + 2000;
  while (received.length < count && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  expect(received).toHaveLength(count);
  return received.map((message) => {
    const match = EVENT.exec(message);
    if (match === null) throw new Error(`not an event: ${message}`);
    return { seq: Number(match[1]), type: match[2] as string, id: match[3] as string, at: Number(match[4]) };
  });
}

async function seq(): Promise<number> {
  return Number((await redis.get('fortary:events:seq')) ?? 0);
}

async function storedKey(id: string) {
  const fields = await redis.hgetall(`fortary:key:${id}`);
  return parseKeyRecord(id, { record: fields.record ?? null, revokedAt: fields.revokedAt ?? null });
}

/** Expects a refusal with this message that changed nothing and published nothing. */
async function expectRefused(call: () => Promise<unknown>, message: RegExp): Promise<void> {
  const before = await snapshot();
  await expect(call()).rejects.toThrow(message);
  expect(await snapshot()).toEqual(before);
  await new Promise((r) => setTimeout(r, 20));
  expect(received).toEqual([]);
}

describe('loading', () => {
  test('loads when missing, then reports current; the loaded version is the constant', async () => {
    await redis.function('FLUSH');
    expect(await ensureFunctionLibrary(redis)).toBe('loaded');
    expect(await ensureFunctionLibrary(redis)).toBe('current');
    expect(await redis.call('FCALL_RO', 'fortary_version', '0')).toBe(FUNCTION_LIBRARY_VERSION);
    expect(functionLibrarySource()).toContain(`local VERSION = '${FUNCTION_LIBRARY_VERSION}'`);
  });

  /** This library's source under another version (a stand-in for the code of an older or newer release). */
  const libraryAt = (version: string) => ({
    version,
    source: functionLibrarySource().replace(/^local VERSION = '.*'$/m, `local VERSION = '${version}'`),
  });
  const loadedVersion = async () => String(await redis.call('FCALL_RO', 'fortary_version', '0'));
  const loadedCode = async () => {
    const list = (await redis.call('FUNCTION', 'LIST', 'WITHCODE')) as unknown[][];
    const entry = list.find((lib) => lib[1] === 'fortary') ?? [];
    return String(entry[entry.indexOf('library_code') + 1]);
  };
  // The next release: the first component bumped (works whether versions stay integers or grow parts).
  const NEWER = `${Number(FUNCTION_LIBRARY_VERSION.split('.')[0]) + 1}`;

  test('only ever upgrades: a newer library stays, an older one is replaced', async () => {
    await redis.function('FLUSH');
    // A pod of the next release loads its library first...
    expect(await ensureFunctionLibrary(redis, libraryAt(NEWER))).toBe('loaded');
    const newerCode = await loadedCode();
    expect(newerCode).toContain(`local VERSION = '${NEWER}'`);
    // ...and this release's loader (sidecar reconnect, CLI write) leaves it alone, however often it runs.
    expect(await ensureFunctionLibrary(redis)).toBe('newer');
    expect(await ensureFunctionLibrary(redis)).toBe('newer');
    expect(await loadedVersion()).toBe(NEWER);
    expect(await loadedCode()).toBe(newerCode);
    // This release on an older library: upgraded once, then current.
    await redis.call('FUNCTION', 'LOAD', 'REPLACE', libraryAt('0').source);
    expect(await ensureFunctionLibrary(redis)).toBe('loaded');
    expect(await loadedVersion()).toBe(FUNCTION_LIBRARY_VERSION);
    expect(await ensureFunctionLibrary(redis)).toBe('current');
    // ...and the next release's loader replaces it in turn.
    expect(await ensureFunctionLibrary(redis, libraryAt(NEWER))).toBe('loaded');
    expect(await loadedVersion()).toBe(NEWER);
    await redis.function('FLUSH');
  });

  test('versions compare numerically, not as strings; a malformed loaded version is replaced', async () => {
    await redis.function('FLUSH');
    await ensureFunctionLibrary(redis, libraryAt('10'));
    expect(await ensureFunctionLibrary(redis, libraryAt('9'))).toBe('newer');
    expect(await ensureFunctionLibrary(redis, libraryAt('10.0'))).toBe('current');
    expect(await ensureFunctionLibrary(redis, libraryAt('10.1'))).toBe('loaded');
    expect(await loadedVersion()).toBe('10.1');
    await redis.call('FUNCTION', 'LOAD', 'REPLACE', libraryAt('older').source);
    expect(await ensureFunctionLibrary(redis)).toBe('loaded');
    expect(await loadedVersion()).toBe(FUNCTION_LIBRARY_VERSION);
  });

  test('concurrent loaders on a fresh Redis all succeed', async () => {
    await redis.function('FLUSH');
    const clients = [server.client(), server.client(), server.client()];
    const results = await Promise.all(clients.map((c) => ensureFunctionLibrary(c)));
    expect(results).toContain('loaded');
    expect(await ensureFunctionLibrary(redis)).toBe('current');
  });

  test('fortary_version is read-only (no-writes) and advances nothing', async () => {
    expect(await redis.call('FCALL_RO', 'fortary_version', '0')).toBe(FUNCTION_LIBRARY_VERSION);
    expect(await seq()).toBe(0);
  });
});

describe('fortary_revoke', () => {
  test('refuses an unknown key and writes nothing', async () => {
    await expectRefused(
      () => redis.fcall('fortary_revoke', 1, 'nosuchkey123'),
      /^ERR unknown key nosuchkey123$/,
    );
  });

  test('sets revokedAt, publishes key.revoked with the next seq and returns the receivers', async () => {
    await putUser(user('alice'));
    const id = keyId();
    await putKey(key(id, 'alice'), 'create');
    await settle();
    const seqBefore = await seq();
    const before = Date.now();
    expect(await redis.fcall('fortary_revoke', 1, id)).toBe(1);
    const after = Date.now();

    const revokedAt = await redis.hget(`fortary:key:${id}`, 'revokedAt');
    expect(revokedAt).toMatch(/^\d{13}$/);
    expect(Number(revokedAt)).toBeGreaterThanOrEqual(before - 1000);
    expect(Number(revokedAt)).toBeLessThanOrEqual(after + 1000);
    const [event] = await events(1);
    expect(event).toEqual({ seq: seqBefore + 1, type: 'key.revoked', id, at: Number(revokedAt) });
    const parsed = await storedKey(id);
    expect(parsed.ok && parsed.value.revokedAt).toBe(Number(revokedAt));
  });

  test('revoking again keeps the first time and still publishes; receivers counts every subscriber', async () => {
    await putUser(user('alice'));
    const id = keyId();
    await putKey(key(id, 'alice'), 'create');
    await redis.fcall('fortary_revoke', 1, id);
    const first = await redis.hget(`fortary:key:${id}`, 'revokedAt');
    const second = server.client();
    await second.subscribe('fortary:events');
    await new Promise((r) => setTimeout(r, 5));
    await settle();
    expect(await redis.fcall('fortary_revoke', 1, id)).toBe(2);
    expect(await redis.hget(`fortary:key:${id}`, 'revokedAt')).toBe(first);
    const [event] = await events(1);
    expect(event?.type).toBe('key.revoked');
    expect(event?.seq).toBe(await seq());
    await second.unsubscribe();
  });
});

describe('fortary_put_key', () => {
  test('create writes only the record, indexes the key and publishes key.updated', async () => {
    await putUser(user('alice'));
    await settle();
    const id = keyId();
    expect(await putKey(key(id, 'alice'), 'create')).toBe(1);
    expect(await redis.hkeys(`fortary:key:${id}`)).toEqual(['record']);
    expect(await redis.smembers('fortary:user-keys:alice')).toEqual([id]);
    const parsed = await storedKey(id);
    expect(parsed).toEqual({ ok: true, value: { ...key(id, 'alice'), revokedAt: null } });
    const [event] = await events(1);
    expect(event).toMatchObject({ seq: 2, type: 'key.updated', id });
  });

  test.each([
    ['an existing key', 'exists', /^ERR key exists$/],
    ['an unknown user', 'unknown-user', /^ERR unknown user nobody$/],
    ['an inactive user', 'inactive', /^ERR user is not active$/],
    ['a record whose id differs', 'id-mismatch', /^ERR record id does not match the key id$/],
    ['a record that is not JSON', 'not-json', /^ERR record is not a JSON object$/],
    ['a bad mode', 'mode', /^ERR usage/],
  ])('create refuses %s', async (_name, situation, message) => {
    await putUser(user('alice'));
    await putUser(user('carol'));
    await redis.fcall('fortary_put_user', 1, 'carol', serializeUserRecord(user('carol', { active: false })));
    const id = keyId();
    await putKey(key(id, 'alice'), 'create');
    await settle();
    const other = keyId();
    const calls: Record<string, () => Promise<unknown>> = {
      exists: () => putKey(key(id, 'alice', { label: 'second' }), 'create'),
      'unknown-user': () => putKey(key(other, 'nobody'), 'create'),
      inactive: () => putKey(key(other, 'carol'), 'create'),
      'id-mismatch': () =>
        redis.fcall('fortary_put_key', 1, other, serializeKeyRecord(key(id, 'alice')), 'create'),
      'not-json': () => redis.fcall('fortary_put_key', 1, other, '{nope', 'create'),
      mode: () => redis.fcall('fortary_put_key', 1, other, serializeKeyRecord(key(other, 'alice')), 'upsert'),
    };
    await expectRefused(calls[situation] as () => Promise<unknown>, message);
  });

  test('edit replaces the record and keeps the index', async () => {
    await putUser(user('alice'));
    const id = keyId();
    await putKey(key(id, 'alice'), 'create');
    await settle();
    const edited = key(id, 'alice', {
      vaults: ['v2'],
      ipAllowlist: ['10.0.0.0/8'],
      updatedAt: 1_700_000_000_001,
    });
    expect(await putKey(edited, 'edit')).toBe(1);
    expect(await storedKey(id)).toEqual({ ok: true, value: { ...edited, revokedAt: null } });
    expect(await redis.hkeys(`fortary:key:${id}`)).toEqual(['record']);
    expect((await events(1))[0]).toMatchObject({ type: 'key.updated', id });
  });

  test.each([
    ['an unknown key', 'unknown', /^ERR unknown key /],
    ['a revoked key', 'revoked', /^ERR key is revoked$/],
    ['a change of owner', 'owner', /^ERR the owner of a key cannot change$/],
    ['a change of secret', 'secret', /^ERR the secret of a key cannot change$/],
  ])('edit refuses %s', async (_name, situation, message) => {
    await putUser(user('alice'));
    await putUser(user('bob'));
    const id = keyId();
    await putKey(key(id, 'alice'), 'create');
    if (situation === 'revoked') await redis.fcall('fortary_revoke', 1, id);
    await settle();
    const calls: Record<string, () => Promise<unknown>> = {
      unknown: () => putKey(key(keyId(), 'alice'), 'edit'),
      revoked: () => putKey(key(id, 'alice', { label: 'after revocation' }), 'edit'),
      owner: () => putKey(key(id, 'bob'), 'edit'),
      secret: () => putKey(key(id, 'alice', { secretHash: bcrypt.hashSync('other', 4) }), 'edit'),
    };
    await expectRefused(calls[situation] as () => Promise<unknown>, message);
  });
});

describe('revocation is permanent', () => {
  test('a later edit fails and leaves revokedAt; a direct rewrite of the record keeps it too', async () => {
    await putUser(user('alice'));
    const id = keyId();
    await putKey(key(id, 'alice'), 'create');
    await redis.fcall('fortary_revoke', 1, id);
    const revokedAt = await redis.hget(`fortary:key:${id}`, 'revokedAt');

    await expect(putKey(key(id, 'alice', { label: 'try again' }), 'edit')).rejects.toThrow(/key is revoked/);
    expect(await redis.hget(`fortary:key:${id}`, 'revokedAt')).toBe(revokedAt);

    // The portal rewriting the record field directly, as the contract allows for `record`.
    await redis.hset(
      `fortary:key:${id}`,
      'record',
      serializeKeyRecord(key(id, 'alice', { label: 'portal' })),
    );
    expect(await redis.hget(`fortary:key:${id}`, 'revokedAt')).toBe(revokedAt);
    const parsed = await storedKey(id);
    expect(parsed.ok && parsed.value.label).toBe('portal');
    expect(parsed.ok && parsed.value.revokedAt).toBe(Number(revokedAt));

    // Reactivating the owner does not bring the key back either.
    await putUser(user('alice', { active: false }));
    await putUser(user('alice'));
    expect(await redis.hget(`fortary:key:${id}`, 'revokedAt')).toBe(revokedAt);
  });
});

describe('fortary_put_user', () => {
  test('stores the record and publishes user.updated', async () => {
    const record = user('alice', { developerVaults: [] });
    expect(await putUser(record)).toBe(1);
    expect(await redis.get('fortary:user:alice')).toBe(serializeUserRecord(record));
    expect((await events(1))[0]).toEqual(
      expect.objectContaining({ seq: 1, type: 'user.updated', id: 'alice' }),
    );
  });

  test('a record with active=false revokes the keys and publishes user.deactivated', async () => {
    await putUser(user('alice'));
    const [a, b] = [keyId(), keyId()];
    await putKey(key(a, 'alice'), 'create');
    await putKey(key(b, 'alice'), 'create');
    await settle();
    await putUser(user('alice', { active: false }));
    expect(await redis.hget(`fortary:key:${a}`, 'revokedAt')).toMatch(/^\d{13}$/);
    expect(await redis.hget(`fortary:key:${b}`, 'revokedAt')).toMatch(/^\d{13}$/);
    expect((await events(1))[0]).toMatchObject({ type: 'user.deactivated', id: 'alice' });
  });

  test.each([
    [
      'a record for another id',
      () => redis.fcall('fortary_put_user', 1, 'alice', serializeUserRecord(user('bob'))),
    ],
    ['a record that is not JSON', () => redis.fcall('fortary_put_user', 1, 'alice', 'not json')],
    ['a record without active', () => redis.fcall('fortary_put_user', 1, 'alice', '{"v":1,"id":"alice"}')],
    [
      'a bad user id',
      () => redis.fcall('fortary_put_user', 1, '-alice', '{"v":1,"id":"-alice","active":true}'),
    ],
  ])('refuses %s', async (_name, call) => {
    await expectRefused(call, /^ERR /);
  });
});

describe('fortary_deactivate_user', () => {
  test('refuses an unknown user and writes nothing', async () => {
    await expectRefused(
      () => redis.fcall('fortary_deactivate_user', 1, 'nobody'),
      /^ERR unknown user nobody$/,
    );
  });

  test('marks the user inactive, revokes every existing key once, publishes one event', async () => {
    await redis.set(
      'fortary:user:alice',
      '{"v":1,"id":"alice","active":true,"developerVaults":[],"updatedAt":1700000000000,"email":"a@example.com"}',
    );
    const [live, earlier] = [keyId(), keyId()];
    await putKey(key(live, 'alice'), 'create');
    await putKey(key(earlier, 'alice'), 'create');
    await redis.fcall('fortary_revoke', 1, earlier);
    const earlierAt = await redis.hget(`fortary:key:${earlier}`, 'revokedAt');
    await redis.sadd('fortary:user-keys:alice', 'danglingKey1'); // indexed but never written
    await settle();
    const seqBefore = await seq();

    expect(await redis.fcall('fortary_deactivate_user', 1, 'alice')).toBe(1);

    const [event] = await events(1);
    expect(event).toMatchObject({ seq: seqBefore + 1, type: 'user.deactivated', id: 'alice' });
    const text = (await redis.get('fortary:user:alice')) as string;
    // An empty list stays a JSON array (cjson would write {}), times stay integers, unknown fields survive.
    expect(text).toContain('"developerVaults":[]');
    expect(text).toContain('"email":"a@example.com"');
    expect(parseUserRecord('alice', text)).toEqual({
      ok: true,
      value: { id: 'alice', active: false, developerVaults: [], updatedAt: event?.at },
    });
    expect(await redis.hget(`fortary:key:${live}`, 'revokedAt')).toBe(String(event?.at));
    expect(await redis.hget(`fortary:key:${earlier}`, 'revokedAt')).toBe(earlierAt);
    expect(await redis.exists('fortary:key:danglingKey1')).toBe(0);
  });

  test('keeps a non-empty vault list and replaces an unreadable record with a valid inactive one', async () => {
    await putUser(user('alice', { developerVaults: ['v1', 'v2'] }));
    await redis.fcall('fortary_deactivate_user', 1, 'alice');
    const alice = parseUserRecord('alice', (await redis.get('fortary:user:alice')) as string);
    expect(alice.ok && alice.value.developerVaults).toEqual(['v1', 'v2']);

    await redis.set('fortary:user:bob', 'corrupt');
    await redis.fcall('fortary_deactivate_user', 1, 'bob');
    const bob = parseUserRecord('bob', (await redis.get('fortary:user:bob')) as string);
    expect(bob.ok && bob.value).toMatchObject({ active: false, developerVaults: [] });
  });
});

describe('events', () => {
  test('concurrent calls from several clients publish seq 1..n in order, one per change', async () => {
    const clients = [redis, server.client(), server.client(), server.client()];
    await putUser(user('alice'));
    const ids = Array.from({ length: 20 }, () => keyId());
    await Promise.all(
      ids.map((id, i) =>
        (clients[i % clients.length] as Redis).fcall(
          'fortary_put_key',
          1,
          id,
          serializeKeyRecord(key(id, 'alice')),
          'create',
        ),
      ),
    );
    await Promise.all(
      ids.map((id, i) => (clients[(i + 1) % clients.length] as Redis).fcall('fortary_revoke', 1, id)),
    );
    const all = await events(41);
    expect(all.map((e) => e.seq)).toEqual(Array.from({ length: 41 }, (_, i) => i + 1));
    expect(await seq()).toBe(41);
    for (let i = 1; i < all.length; i++)
      expect((all[i] as { at: number }).at).toBeGreaterThanOrEqual((all[i - 1] as { at: number }).at);
  });
});

describe('emergency revocation as documented', () => {
  /** The single documented line that starts with `prefix`, with <url> and <keyId> filled in. */
  function documented(prefix: string, id: string): string {
    const lines = CONTRACT.split('\n').filter((line) => line.startsWith(prefix));
    expect(lines).toHaveLength(1);
    return (lines[0] as string).replaceAll('<url>', server.url).replaceAll('<keyId>', id);
  }

  async function sh(command: string): Promise<string> {
    const { stdout } = await exec('bash', ['-c', command], { timeout: 10_000 });
    return stdout;
  }

  async function revokedKey(): Promise<string> {
    await putUser(user('alice'));
    const id = keyId();
    await putKey(key(id, 'alice'), 'create');
    await settle();
    return id;
  }

  test('redis-cli FCALL fortary_revoke prints the receivers and revokes', async () => {
    const id = await revokedKey();
    const command = documented('redis-cli -u <url> FCALL fortary_revoke 1 <keyId>', id);
    expect(command).toBe(`redis-cli -u ${server.url} FCALL fortary_revoke 1 ${id}`);
    expect((await sh(command)).trim()).toBe('1');
    expect(await redis.hget(`fortary:key:${id}`, 'revokedAt')).toMatch(/^\d{13}$/);
    expect((await events(1))[0]).toMatchObject({ type: 'key.revoked', id, seq: await seq() });
    expect((await sh(documented('redis-cli -u <url> FCALL', 'nosuchkey123'))).trim()).toBe(
      'ERR unknown key nosuchkey123',
    );
  });

  test('the EVAL fallback does the same through redis-cli', async () => {
    const id = await revokedKey();
    const seqBefore = await seq();
    expect((await sh(documented('redis-cli -u <url> EVAL', id))).trim()).toBe('1');
    const revokedAt = await redis.hget(`fortary:key:${id}`, 'revokedAt');
    expect(revokedAt).toMatch(/^\d{13}$/);
    expect((await events(1))[0]).toEqual({
      seq: seqBefore + 1,
      type: 'key.revoked',
      id,
      at: Number(revokedAt),
    });
    // Again: the first time is kept; an unknown or malformed id is refused without writing.
    await sh(documented('redis-cli -u <url> EVAL', id));
    expect(await redis.hget(`fortary:key:${id}`, 'revokedAt')).toBe(revokedAt);
    const before = await snapshot();
    expect((await sh(documented('redis-cli -u <url> EVAL', 'nosuchkey123'))).trim()).toBe(
      'ERR unknown key nosuchkey123',
    );
    expect((await sh(documented('redis-cli -u <url> EVAL', 'short'))).trim()).toBe('ERR not a key id');
    expect(await snapshot()).toEqual(before);
  });

  test('the last resort (MULTI, no seq in the message) marks the key and advances the sequence', async () => {
    const id = await revokedKey();
    const seqBefore = await seq();
    const block = /```sh\n(redis-cli -u <url> EXISTS[\s\S]*?)```/.exec(CONTRACT)?.[1];
    expect(block).toContain('MULTI');
    const output = await sh((block as string).replaceAll('<url>', server.url).replaceAll('<keyId>', id));
    expect(output.split('\n')[0]).toBe('1');
    expect(await redis.hget(`fortary:key:${id}`, 'revokedAt')).toMatch(/^\d{13}$/);
    expect(await seq()).toBe(seqBefore + 1);
    const deadline = Date.now() + 2000;
    while (received.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(received.map((m) => JSON.parse(m))).toEqual([{ type: 'key.revoked', id }]);
  });
});
