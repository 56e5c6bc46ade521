/**
 * Last use survives a Redis that refuses writes for a while: a real sidecar (in process) connected as the documented
 * `fortary-sidecar` ACL user, except that its last-use selector covers only some keys (`fortary:last-used:A*`), so
 * one pipelined batch is partly refused (NOPERM per command), exactly as a transient error on some writes would be;
 * then with no last-use selector at all, so a whole batch is refused. Once the ACL is restored, the next flush writes
 * the uses Redis refused, with the time, address and vault they had, without any new request, and never replaces a
 * newer use recorded meanwhile.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type Redis from 'ioredis';
import { envoyRequest } from '../support/check-client';
import { metricValue } from '../support/faults';
import { createKey, putUser, randomBase62, waitFor, type CreatedKey } from '../support/fixtures';
import { startRedis, type RedisInstance } from '../support/redis-server';
import { startHarness, verdict, type Harness } from '../support/sidecar-harness';

const DOC = readFileSync(path.resolve(__dirname, '../../docs/redis-acl.md'), 'utf8');
const USER = 'sidecar-flaky';
const PASSWORD = 'flaky-secret';
const LAST_USED_SELECTOR = '(+fcall|fortary_touch_last_used +hget +hset %RW~fortary:last-used:*)';

let server: RedisInstance;
let admin: Redis;
let h: Harness | undefined;

/** `ACL SETUSER …` as the words redis-cli would pass (a quoted selector is one word). */
function aclWords(line: string): [string, ...string[]] {
  return [...line.matchAll(/'([^']*)'|(\S+)/g)].map((m) => m[1] ?? (m[2] as string)) as [string, ...string[]];
}

/** The documented sidecar user, its last-use selector narrowed to keys whose id starts with A. */
async function createFlakyUser(): Promise<void> {
  const line = DOC.split('\n').find((l) => l.startsWith('ACL SETUSER fortary-sidecar ')) as string;
  expect(line).toContain(`'${LAST_USED_SELECTOR}'`);
  const narrowed = line
    .replace('fortary-sidecar', USER)
    .replace('>CHANGE-ME', `>${PASSWORD}`)
    .replace(LAST_USED_SELECTOR, LAST_USED_SELECTOR.replace('last-used:*', 'last-used:A*'));
  expect(await admin.call(...aclWords(narrowed))).toBe('OK');
}

const stored = (keyId: string) => admin.hgetall(`fortary:last-used:${keyId}`);
const metric = (name: string, labels: Record<string, string> = {}) => metricValue(h as Harness, name, labels);

async function allow(key: CreatedKey, sourceIp: string, vault = 'alpha'): Promise<void> {
  const response = await (h as Harness).client(
    envoyRequest({ authorization: `Bearer ${key.token}`, path: `/v1/vaults/${vault}/items`, sourceIp }),
  );
  expect(verdict(response).allow).toBe(true);
}

const keyStartingWith = (letter: string) =>
  createKey(admin, { userId: 'alice', vaults: ['alpha', 'beta'], keyId: letter + randomBase62(11) });

beforeAll(async () => {
  server = await startRedis();
  admin = server.client();
  await putUser(admin, { id: 'alice', developerVaults: ['alpha', 'beta'] });
  await createFlakyUser();
  h = await startHarness({
    redis: { ...server, url: `redis://${USER}:${PASSWORD}@127.0.0.1:${server.port}` },
    env: { FORTARY_LAST_USED_FLUSH_S: '1' },
  });
});

afterAll(async () => {
  await h?.stop();
  await server.stop();
});

test('writes Redis refused in a partly failed batch are written at a later flush, newer uses winning', async () => {
  const a = await keyStartingWith('A');
  const b = await keyStartingWith('B');
  const c = await keyStartingWith('C');
  const before = Date.now();
  await allow(a, '192.0.2.1');
  await allow(b, '192.0.2.2');
  await allow(c, '192.0.2.3');
  const usedBy = Date.now();

  // A's write is allowed, B's and C's are refused with NOPERM, at least once each, in the same pipelines.
  await waitFor(async () => (await stored(a.keyId)).ip === '192.0.2.1', 5000);
  await waitFor(
    async () => (await metric('fortary_authz_last_used_writes_total', { result: 'failed' })) >= 2,
    5000,
  );
  expect(await stored(b.keyId)).toEqual({});
  expect(await stored(c.keyId)).toEqual({});
  const aclLog = (await admin.call('ACL', 'LOG')) as unknown[];
  expect(JSON.stringify(aclLog)).toContain(`fortary:last-used:${b.keyId}`);

  // C is used again, later and elsewhere, while its older use waits for a retry: the newer one must win.
  await allow(c, '198.51.100.9', 'beta');
  // Let at least one more flush refuse B and C, so the retry does not hinge on a single interval.
  const failedSoFar = await metric('fortary_authz_last_used_writes_total', { result: 'failed' });
  await waitFor(
    async () =>
      (await metric('fortary_authz_last_used_writes_total', { result: 'failed' })) >= failedSoFar + 2,
    5000,
  );

  const restoredAt = Date.now();
  expect(await admin.call('ACL', 'SETUSER', USER, LAST_USED_SELECTOR)).toBe('OK');
  await waitFor(
    async () => (await stored(b.keyId)).at !== undefined && (await stored(c.keyId)).at !== undefined,
    5000,
  );

  // B: the use it had before Redis refused it, written without any new request.
  const bEntry = await stored(b.keyId);
  expect(bEntry).toMatchObject({ ip: '192.0.2.2', vault: 'alpha' });
  expect(Number(bEntry.at)).toBeGreaterThanOrEqual(before);
  expect(Number(bEntry.at)).toBeLessThanOrEqual(usedBy);
  // C: the newer use, not the refused older one.
  const cEntry = await stored(c.keyId);
  expect(cEntry).toMatchObject({ ip: '198.51.100.9', vault: 'beta' });
  expect(Number(cEntry.at)).toBeGreaterThan(usedBy);
  expect(Number(cEntry.at)).toBeLessThanOrEqual(restoredAt);
  expect(await metric('fortary_authz_last_used_dropped_total')).toBe(0);
});

test('a batch Redis refuses whole is written once Redis takes writes again', async () => {
  // No last-use selector at all: every FCALL of the batch is refused (the sidecar keeps reading and deciding).
  expect(await admin.call('ACL', 'SETUSER', USER, 'clearselectors')).toBe('OK');
  const d = await keyStartingWith('D');
  const failedBefore = await metric('fortary_authz_last_used_writes_total', { result: 'failed' });
  await allow(d, '192.0.2.44');
  await waitFor(
    async () =>
      (await metric('fortary_authz_last_used_writes_total', { result: 'failed' })) >= failedBefore + 2,
    5000,
  );
  expect(await stored(d.keyId)).toEqual({});
  expect(await admin.call('ACL', 'SETUSER', USER, LAST_USED_SELECTOR)).toBe('OK');
  await waitFor(async () => (await stored(d.keyId)).ip === '192.0.2.44', 5000);
  expect(await metric('fortary_authz_last_used_dropped_total')).toBe(0);
});
