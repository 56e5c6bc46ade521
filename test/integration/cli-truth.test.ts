/**
 * Issue 12 item 7, "the CLI tells the truth": `keys show`/`keys list` report what the owner's live roles let a key
 * do (checked against the real sidecar's answer), every write command has --json, and scripts/check.js exits
 * non-zero on a deny.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import type Redis from 'ioredis';
import { checkToken } from '../support/faults';
import { runCli, type CliOptions } from '../support/cli';
import { startRedis, type RedisInstance } from '../support/redis-server';
import { startHarness, type Harness } from '../support/sidecar-harness';
import { freePort } from '../support/redis-server';

const CHECK_SCRIPT = path.resolve(__dirname, '../../scripts/check.js');
let server: RedisInstance;
let redis: Redis;
let h: Harness;

const cli = (args: string[], options?: CliOptions) => runCli(server.url, args, options);

async function json(args: string[]): Promise<Record<string, unknown>> {
  const result = await cli([...args, '--json']);
  expect(result).toMatchObject({ code: 0, err: [] });
  expect(result.out).toHaveLength(1);
  return JSON.parse(result.out[0] as string) as Record<string, unknown>;
}

beforeAll(async () => {
  server = await startRedis();
  redis = server.client();
  h = await startHarness({ redis: server });
});

afterAll(async () => {
  await h.stop();
  await server.stop();
});

describe('keys show reports effective access', () => {
  test('a key whose owner lost the Developer role says so, and the sidecar agrees', async () => {
    await cli(['users', 'put', 'rita', '--developer', 'alpha', '--developer', 'beta']);
    const key = await json(['keys', 'create', '--user', 'rita', '--vault', 'alpha', '--vault', 'beta']);
    const [keyId, token] = [key.keyId as string, key.token as string];

    const full = await cli(['keys', 'show', keyId]);
    expect(full.out).toContain('status:   active');
    expect(full.out.filter((l) => l.startsWith('effect:'))).toEqual([]);

    // Role lost on one vault: still active, but the lost vault is named.
    await cli(['users', 'put', 'rita', '--developer', 'alpha']);
    const partial = await cli(['keys', 'show', keyId]);
    expect(partial.out).toContain('status:   active');
    expect(partial.out).toContain(
      'effect:   requests to beta are DENIED (role_missing): owner rita lacks Developer there',
    );
    expect((await json(['keys', 'show', keyId])).effectiveAccess).toEqual({
      ownerActive: true,
      vaults: [
        { vaultId: 'alpha', developer: true },
        { vaultId: 'beta', developer: false },
      ],
      deniedEverywhere: null,
    });

    // Role lost everywhere: never a plain "status: active".
    await cli(['users', 'put', 'rita']);
    const none = await cli(['keys', 'show', keyId]);
    expect(none.out).not.toContain('status:   active');
    expect(none.out).toContain('status:   active (but every vault request is denied: role_missing)');
    expect(none.out).toContain(
      'effect:   every vault request is DENIED (role_missing): owner rita holds the Developer role on none of its vaults',
    );
    const list = await cli(['keys', 'list', '--user', 'rita']);
    expect(list.out).toContain('status:   active (but every vault request is denied: role_missing)');
    const listed = JSON.parse((await cli(['keys', 'list', '--user', 'rita', '--json'])).out[0] as string) as {
      effectiveAccess: { deniedEverywhere: string };
    }[];
    expect(listed[0]?.effectiveAccess.deniedEverywhere).toBe('role_missing');

    // What the sidecar answers for that key, once its cache has the new roles.
    const deadline = Date.now() + 5000;
    let reason = '';
    while (Date.now() < deadline) {
      reason = (await checkToken(h.client, token, '', { path: '/v1/vaults/alpha/secrets' })).reason;
      if (reason === 'role_missing') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(reason).toBe('role_missing');
  });

  test('an owner record that is missing or unreadable: every vault request is denied (record_invalid)', async () => {
    await cli(['users', 'put', 'otto', '--developer', 'alpha']);
    const keyId = (await json(['keys', 'create', '--user', 'otto', '--vault', 'alpha'])).keyId as string;
    await redis.set('fortary:user:otto', 'not json');
    const shown = await cli(['keys', 'show', keyId]);
    expect(shown.out).toContain('status:   active (but every vault request is denied: record_invalid)');
    expect((await json(['keys', 'show', keyId])).effectiveAccess).toMatchObject({
      ownerActive: null,
      deniedEverywhere: 'record_invalid',
    });
  });
});

test('every write command accepts --json and prints one JSON object', async () => {
  const put = await json(['users', 'put', 'wanda', '--developer', 'alpha', '--developer', 'beta']);
  expect(put).toEqual({
    userId: 'wanda',
    created: true,
    active: true,
    developerVaults: ['alpha', 'beta'],
    sidecarsNotified: 1,
  });
  const created = await json(['keys', 'create', '--user', 'wanda', '--vault', 'alpha']);
  expect(Object.keys(created).sort()).toEqual(['expiresAt', 'keyId', 'token']);
  const edited = await json(['keys', 'edit', created.keyId as string, '--vault', 'beta', '--label', 'x']);
  expect(edited).toMatchObject({
    key: { keyId: created.keyId, vaults: ['beta'], label: 'x', status: 'active' },
    reactivated: false,
    sidecarsNotified: 1,
  });
  const rotated = await json(['keys', 'rotate', created.keyId as string, '--grace', '1h']);
  expect(Object.keys(rotated).sort()).toEqual(['expiresAt', 'keyId', 'previous', 'token']);
  const revoked = await json(['keys', 'revoke', rotated.keyId as string]);
  expect(revoked).toEqual({
    keyId: rotated.keyId,
    revokedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT.*Z$/),
    alreadyRevoked: false,
    sidecarsNotified: 1,
  });
  expect(await json(['keys', 'revoke', rotated.keyId as string])).toMatchObject({
    alreadyRevoked: true,
    revokedAt: revoked.revokedAt,
  });
  const again = await json(['users', 'put', 'wanda', '--developer', 'alpha']);
  expect(again).toMatchObject({ created: false, developerVaults: ['alpha'] });
  expect(await json(['users', 'deactivate', 'wanda'])).toEqual({
    userId: 'wanda',
    revokedKeys: 2,
    sidecarsNotified: 1,
  });
  // A refusal under --json is still one stderr line and no stdout.
  const refused = await cli(['keys', 'revoke', 'AAAAAAAAAAAA', '--json']);
  expect(refused).toMatchObject({ code: 1, out: [], err: ['fortary-authz: unknown key AAAAAAAAAAAA'] });
});

describe('scripts/check.js exit status', () => {
  function check(args: string[]): Promise<{ code: number; stdout: string }> {
    return new Promise((resolve) => {
      execFile(process.execPath, [CHECK_SCRIPT, ...args], { timeout: 20_000 }, (error, stdout) => {
        resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout });
      });
    });
  }

  test('0 on allow, 1 on deny, 2 on bad usage, 3 when the sidecar does not answer', async () => {
    await cli(['users', 'put', 'carl', '--developer', 'alpha']);
    const token = (await json(['keys', 'create', '--user', 'carl', '--vault', 'alpha'])).token as string;
    const addr = `127.0.0.1:${h.sidecar.grpcPort}`;
    const allow = await check(['--addr', addr, '--token', token, 'GET', '/v1/vaults/alpha/secrets']);
    expect(allow).toMatchObject({ code: 0, stdout: expect.stringMatching(/^ALLOW /) });
    const deny = await check(['--addr', addr, '--token', token, 'GET', '/v1/vaults/beta/secrets']);
    expect(deny).toMatchObject({ code: 1, stdout: expect.stringMatching(/^DENY 403 /) });
    const anonymous = await check(['--addr', addr, 'GET', '/v1/vaults/alpha/secrets']);
    expect(anonymous).toMatchObject({ code: 1, stdout: expect.stringMatching(/^DENY 401 /) });
    expect((await check(['--addr', addr, 'GET'])).code).toBe(2);
    const nobody = await check([
      '--addr',
      `127.0.0.1:${await freePort()}`,
      'GET',
      '/v1/vaults/alpha/secrets',
    ]);
    expect(nobody.code).toBe(3);
  });
});
