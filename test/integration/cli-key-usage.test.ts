/**
 * Issue 12, the CLI side of items 1 and 4, through the real binary (node bin/fortary-authz.js) against a private
 * redis-server: `keys list --expiring-within <N>d`, and last use in `keys show` / `keys list` / `--unused-for`.
 * Refusals go through run() in-process: exit 2, one stderr line, Redis unchanged.
 */
import type Redis from 'ioredis';
import { runBin, runCli } from '../support/cli';
import { startRedis, type RedisInstance } from '../support/redis-server';

const DAY = 24 * 60 * 60 * 1000;

let server: RedisInstance;
let redis: Redis;

beforeAll(async () => {
  server = await startRedis();
  redis = server.client();
});

afterAll(async () => {
  await server.stop();
});

const bin = (args: string[]) => runBin(server.url, args);
const inProcess = (args: string[]) => runCli(server.url, args);

async function createKey(user: string, expiry: string[]): Promise<string> {
  const result = await bin(['keys', 'create', '--user', user, '--vault', 'alpha', ...expiry, '--json']);
  expect(result).toMatchObject({ code: 0, stderr: '' });
  return (JSON.parse(result.stdout) as { keyId: string }).keyId;
}

async function snapshot(): Promise<string> {
  const keys = ((await redis.keys('*')) as string[]).sort();
  const values = await Promise.all(keys.map(async (k) => [k, await redis.dump(k)]));
  return JSON.stringify(values);
}

describe('keys list --expiring-within <N>d (item 4)', () => {
  let soon: string;
  let later: string;
  let never: string;
  let expired: string;
  let revoked: string;

  beforeAll(async () => {
    expect((await bin(['users', 'put', 'erin', '--developer', 'alpha'])).code).toBe(0);
    soon = await createKey('erin', ['--expires-in', '5d']);
    later = await createKey('erin', ['--expires-in', '90d']);
    never = await createKey('erin', ['--no-expiry']);
    expired = await createKey('erin', ['--expires-in', '1d']);
    await redis.hset(
      `fortary:key:${expired}`,
      'record',
      JSON.stringify({
        ...(JSON.parse((await redis.hget(`fortary:key:${expired}`, 'record')) as string) as object),
        expiresAt: Date.now() - DAY,
      }),
    );
    revoked = await createKey('erin', ['--expires-in', '3d']);
    expect((await bin(['keys', 'revoke', revoked])).code).toBe(0);
  });

  test('lists only the keys that work now and expire within the window', async () => {
    const result = await bin(['keys', 'list', '--user', 'erin', '--expiring-within', '30d', '--json']);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    const views = JSON.parse(result.stdout) as Array<{ keyId: string; status: string; expiresAt: string }>;
    expect(views.map((v) => v.keyId)).toEqual([soon]);
    expect(views[0]?.status).toBe('active');
    const wide = await bin(['keys', 'list', '--user', 'erin', '--expiring-within', '100d', '--json']);
    expect((JSON.parse(wide.stdout) as Array<{ keyId: string }>).map((v) => v.keyId).sort()).toEqual(
      [soon, later].sort(),
    );
    expect([never, expired, revoked].some((id) => wide.stdout.includes(id))).toBe(false);
  });

  test('the human form says when nothing expires soon', async () => {
    const result = await bin(['keys', 'list', '--user', 'erin', '--expiring-within', '1d']);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout.trim()).toBe('User erin has no key that expires within 1 day.');
  });

  test.each([['30'], ['0d'], ['-3d'], ['1w'], ['36501d'], ['']])(
    '--expiring-within %j is a usage error: one line, exit 2, nothing changed',
    async (value) => {
      const before = await snapshot();
      const result = await inProcess(['keys', 'list', '--user', 'erin', `--expiring-within=${value}`]);
      expect(result.code).toBe(2);
      expect(result.err).toHaveLength(1);
      expect(result.err[0]).toMatch(/--expiring-within must be <days>d/);
      expect(result.out).toEqual([]);
      expect(await snapshot()).toBe(before);
    },
  );
});
