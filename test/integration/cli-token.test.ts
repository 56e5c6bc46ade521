/**
 * Issue 12 item 3, through the CLI against a real redis-server: `keys revoke` and `keys show` take a whole token
 * (or one on standard input) in place of the key id, and no output or error message ever carries a token's secret.
 */
import type Redis from 'ioredis';
import { formatToken, parseToken } from '../../src/core/token';
import { oneErrorLine, runBin, runCli, snapshot, storedKey, type CliOptions } from '../support/cli';
import { randomBase62 } from '../support/fixtures';
import { startRedis, type RedisInstance } from '../support/redis-server';

let server: RedisInstance;
let redis: Redis;

const cli = (args: string[], options?: CliOptions) => runCli(server.url, args, options);

async function newToken(): Promise<{ keyId: string; token: string; secretPart: string }> {
  const result = await cli(['keys', 'create', '--user', 'alice', '--vault', 'v1', '--json']);
  expect(result).toMatchObject({ code: 0, err: [] });
  const token = (JSON.parse(result.out[0] as string) as { token: string }).token;
  const parsed = parseToken(token);
  if (parsed === null) throw new Error('create printed no valid token');
  return { keyId: parsed.keyId, token, secretPart: token.slice('fty_'.length + 12 + 1) };
}

/** The token's secret and checksum, or any 8-character run of them, never appear in `text`. */
function expectNoSecret(text: string, secretPart: string): void {
  for (let i = 0; i + 8 <= secretPart.length; i++) expect(text).not.toContain(secretPart.slice(i, i + 8));
}

beforeAll(async () => {
  server = await startRedis();
  redis = server.client();
  expect((await cli(['users', 'put', 'alice', '--developer', 'v1'])).code).toBe(0);
});

afterAll(async () => {
  await server.stop();
});

test('keys create still prints the new token in full, once', async () => {
  const human = await cli(['keys', 'create', '--user', 'alice', '--vault', 'v1']);
  const line = human.out.find((l) => l.startsWith('token:'));
  expect(parseToken((line ?? '').replace(/^token: +/, ''))).not.toBeNull();
  expect(human.out.filter((l) => l.includes('fty_'))).toHaveLength(1);
});

test('keys show and keys revoke accept the whole token (the real binary), never printing its secret', async () => {
  const { keyId, token, secretPart } = await newToken();
  const shown = await runBin(server.url, ['keys', 'show', token, '--json']);
  expect(shown).toMatchObject({ code: 0, stderr: '' });
  expect(JSON.parse(shown.stdout)).toMatchObject({ keyId, status: 'active' });

  const revoked = await runBin(server.url, ['keys', 'revoke', token]);
  expect(revoked).toMatchObject({ code: 0, stderr: '' });
  expect(revoked.stdout).toContain(`Revoked key ${keyId}.`);
  expectNoSecret(revoked.stdout + shown.stdout, secretPart);
  expect((await storedKey(redis, keyId)).revokedAt).not.toBeNull();
});

test('--token-stdin reads the token from standard input (the real binary)', async () => {
  const { keyId, token, secretPart } = await newToken();
  const shown = await runBin(server.url, ['keys', 'show', '--token-stdin'], { stdin: `${token}\n` });
  expect(shown).toMatchObject({ code: 0, stderr: '' });
  expect(shown.stdout).toContain(`key:      ${keyId}`);
  const revoked = await runBin(server.url, ['keys', 'revoke', '--token-stdin'], { stdin: token });
  expect(revoked).toMatchObject({ code: 0, stderr: '' });
  expect(revoked.stdout).toContain(`Revoked key ${keyId}.`);
  expectNoSecret(shown.stdout + revoked.stdout, secretPart);
  expect((await storedKey(redis, keyId)).revokedAt).not.toBeNull();
});

describe('refused references change nothing and never echo the secret', () => {
  let key: { keyId: string; token: string; secretPart: string };
  beforeAll(async () => {
    key = await newToken();
  });

  const badChecksum = (t: string) => t.slice(0, -1) + (t.endsWith('A') ? 'B' : 'A');
  test.each<[string, (t: string) => string[], string | undefined, number, RegExp]>([
    [
      'a token with a bad checksum',
      (t) => ['keys', 'revoke', badChecksum(t)],
      undefined,
      2,
      /^the token is not a valid Fortary token/,
    ],
    [
      'a truncated token',
      (t) => ['keys', 'show', t.slice(0, -5)],
      undefined,
      2,
      /^the token is not a valid Fortary token/,
    ],
    [
      'a token on stdin with a bad checksum',
      () => ['keys', 'revoke', '--token-stdin'],
      'BAD',
      2,
      /^--token-stdin: standard input is not a valid Fortary token/,
    ],
    [
      'two tokens on stdin',
      () => ['keys', 'revoke', '--token-stdin'],
      'TWO',
      2,
      /expected one token, found several words$/,
    ],
    ['an empty stdin', () => ['keys', 'revoke', '--token-stdin'], '\n', 2, /standard input is empty$/],
    ['a token and --token-stdin', (t) => ['keys', 'revoke', '--token-stdin', t], 'GOOD', 2, /not both$/],
    ['no key at all', () => ['keys', 'revoke'], undefined, 2, /missing <keyId\|token> \(or --token-stdin\)$/],
    [
      'a token whose secret is not the key’s',
      () => ['keys', 'revoke', 'FORGED'],
      undefined,
      1,
      /but its secret is not that key's; nothing was changed/,
    ],
    [
      'a forged token for show',
      () => ['keys', 'show', 'FORGED'],
      undefined,
      1,
      /but its secret is not that key's/,
    ],
    [
      'a token as an unknown flag',
      (t) => ['keys', 'revoke', `--${t}`],
      undefined,
      2,
      /unknown option --fty_\w{12}_\[redacted\]$/,
    ],
    ['a token as a flag value', (t) => ['keys', 'revoke', '--tok', t], undefined, 2, /unknown option --tok/],
    [
      'a token as a boolean flag value',
      (t) => ['keys', 'show', `--json=${t}`],
      undefined,
      2,
      /--json does not take a value/,
    ],
    [
      'a token as a second argument',
      (t) => ['keys', 'revoke', t, t],
      undefined,
      2,
      /unexpected argument 'fty_\w{12}_\[redacted\]'$/,
    ],
    ['a token for keys edit', (t) => ['keys', 'edit', t, '--label', 'x'], undefined, 2, /is not a key id/],
    [
      'a token as a label',
      (t) => ['keys', 'create', '--user', 'alice', '--vault', 'v1', '--label', `ci ${t}`],
      undefined,
      2,
      /--label looks like it contains an API token/,
    ],
    [
      'a token as --user',
      (t) => ['keys', 'create', '--user', t, '--vault', 'v1'],
      undefined,
      2,
      /is not a user id/,
    ],
    [
      'a token as --vault',
      (t) => ['keys', 'create', '--user', 'alice', '--vault', t],
      undefined,
      2,
      /is not a vault id/,
    ],
    [
      'a token as --ip',
      (t) => ['keys', 'create', '--user', 'alice', '--vault', 'v1', '--ip', t],
      undefined,
      2,
      /is not a CIDR range/,
    ],
    [
      'a token as --expires-at',
      (t) => ['keys', 'create', '--user', 'alice', '--vault', 'v1', '--expires-at', t],
      undefined,
      2,
      /is not an ISO-8601/,
    ],
    [
      'a token as --expires-in',
      (t) => ['keys', 'create', '--user', 'alice', '--vault', 'v1', '--expires-in', t],
      undefined,
      2,
      /--expires-in must be/,
    ],
    ['a token as a user id', (t) => ['users', 'put', t], undefined, 2, /is not a user id/],
    ['a token to deactivate', (t) => ['users', 'deactivate', t], undefined, 2, /is not a user id/],
    ['a token to list', (t) => ['keys', 'list', '--user', t], undefined, 2, /is not a user id/],
    ['a token as the command', (t) => [t], undefined, 2, /unknown command/],
    ['a token as the subcommand', (t) => ['keys', t], undefined, 2, /unknown subcommand/],
    [
      'a token as the Redis URL',
      (t) => ['--redis', t, 'keys', 'show', 'AAAAAAAAAAAA'],
      undefined,
      2,
      /is not a Redis URL/,
    ],
    [
      'a token as a Redis password',
      (t) => ['--redis', `redis://:${t}@127.0.0.1:1`, 'keys', 'show', 'AAAAAAAAAAAA'],
      undefined,
      1,
      /cannot connect/,
    ],
    [
      'a token as a Redis host',
      (t) => ['--redis', `redis://${t}:6379`, 'keys', 'show', 'AAAAAAAAAAAA'],
      undefined,
      1,
      /cannot connect/,
    ],
  ])('%s', async (_name, argsOf, stdinKind, exitCode, message) => {
    const { token, secretPart, keyId } = key;
    const forged = formatToken(keyId, randomBase62(43));
    const args = argsOf(token).map((a) => (a === 'FORGED' ? forged : a));
    const stdin =
      { BAD: badChecksum(token), TWO: `${token} ${token}`, GOOD: token }[stdinKind ?? ''] ?? stdinKind;
    const before = await snapshot(redis);
    const result = await cli(args, stdin === undefined ? {} : { stdin });
    expect(result.code).toBe(exitCode);
    expect(oneErrorLine(result)).toMatch(message);
    expect(result.out).toEqual([]);
    expectNoSecret(result.err.join('\n'), secretPart);
    expectNoSecret(result.err.join('\n'), forged.slice(17));
    expect(await snapshot(redis)).toEqual(before);
  });

  test('the real binary redacts too (an unknown flag carrying a token)', async () => {
    const result = await runBin(server.url, ['keys', 'revoke', key.keyId, `--secret=${key.token}`]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^fortary-authz: keys revoke: unknown option --secret\n$/);
    expectNoSecret(result.stderr + result.stdout, key.secretPart);
  });
});
