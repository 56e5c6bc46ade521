/**
 * Issue 12 item 5, through the CLI against a real redis-server: CIDRs with host bits or zero-padded prefixes, past
 * expiries, reviving an expired key, and labels (code points, control and bidi characters). Every refusal exits
 * non-zero with one stderr line and leaves Redis byte-for-byte unchanged.
 */
import type Redis from 'ioredis';
import { USAGE } from '../../src/cli/main';
import { parseToken } from '../../src/core/token';
import { oneErrorLine, runCli, snapshot, storedKey, type CliOptions } from '../support/cli';
import { startRedis, type RedisInstance } from '../support/redis-server';

const DAY = 24 * 60 * 60 * 1000;
let server: RedisInstance;
let redis: Redis;
let keyId: string;

const cli = (args: string[], options?: CliOptions) => runCli(server.url, args, options);

async function createKey(args: string[] = [], options?: CliOptions): Promise<string> {
  const result = await cli(
    ['keys', 'create', '--user', 'alice', '--vault', 'v1', '--json', ...args],
    options,
  );
  expect(result).toMatchObject({ code: 0, err: [] });
  return (parseToken((JSON.parse(result.out[0] as string) as { token: string }).token) ?? { keyId: '' })
    .keyId;
}

beforeAll(async () => {
  server = await startRedis();
  redis = server.client();
  expect((await cli(['users', 'put', 'alice', '--developer', 'v1'])).code).toBe(0);
  keyId = await createKey();
});

afterAll(async () => {
  await server.stop();
});

describe('refusals change nothing', () => {
  const create = ['keys', 'create', '--user', 'alice', '--vault', 'v1'];
  test.each([
    [
      'IPv4 host bits',
      [...create, '--ip', '1.2.3.4/8'],
      /^--ip "1\.2\.3\.4\/8" is not a CIDR range: host bits are set \(did you mean 1\.0\.0\.0\/8\?\)$/,
    ],
    [
      'IPv4 host bits on edit',
      ['keys', 'edit', '$KEY', '--ip', '10.200.0.1/16'],
      /did you mean 10\.200\.0\.0\/16\?/,
    ],
    [
      'IPv6 host bits',
      [...create, '--ip', '2001:db8::1/32'],
      /host bits are set \(did you mean 2001:db8::\/32\?\)$/,
    ],
    [
      'a zero-padded prefix',
      [...create, '--ip', '10.0.0.0/08'],
      /"10\.0\.0\.0\/08" is not a CIDR range: the prefix length must be a decimal number without leading zeros$/,
    ],
    [
      'a zero-padded IPv6 prefix',
      ['keys', 'edit', '$KEY', '--ip', '2001:db8::/032'],
      /without leading zeros$/,
    ],
    [
      'an edit expiry in the past',
      ['keys', 'edit', '$KEY', '--expires-at', '2020-01-01'],
      /^--expires-at 2020-01-01 is in the past; to stop a key now, use 'keys revoke'$/,
    ],
    [
      'an edit expiry of right now',
      ['keys', 'edit', '$KEY', '--expires-at', '$NOW'],
      /is in the past; to stop a key now, use 'keys revoke'$/,
    ],
    [
      '--reactivate without an expiry',
      ['keys', 'edit', '$KEY', '--reactivate'],
      /--reactivate needs a new expiry/,
    ],
    [
      '--reactivate on a key that has not expired',
      ['keys', 'edit', '$KEY', '--reactivate', '--expires-in', '5d'],
      /has not expired; --reactivate is only for expired keys$/,
    ],
    [
      'a right-to-left override in a label',
      [...create, '--label', 'invoice\u202Etxt.exe'],
      /^--label contains a bidi character \(U\+202E\)$/,
    ],
    [
      'a bidi isolate in an edited label',
      ['keys', 'edit', '$KEY', '--label', 'a\u2067b'],
      /^--label contains a bidi character \(U\+2067\)$/,
    ],
    [
      'an escape sequence in a label',
      [...create, '--label', 'a\u001b[31mred'],
      /^--label contains a control character \(U\+001B\)$/,
    ],
    ['a C1 control in a label', [...create, '--label', 'a\u0085b'], /control character \(U\+0085\)$/],
    [
      '201 code points of label',
      [...create, '--label', '😀'.repeat(201)],
      /^--label is longer than 200 characters$/,
    ],
  ])('%s', async (_name, template, message) => {
    const now = Date.now();
    const args = template.map((a) => (a === '$KEY' ? keyId : a === '$NOW' ? new Date(now).toISOString() : a));
    const before = await snapshot(redis);
    const result = await cli(args, { now });
    expect(result.code).not.toBe(0);
    expect(result.out).toEqual([]);
    expect(oneErrorLine(result)).toMatch(message);
    expect(await snapshot(redis)).toEqual(before);
  });
});

test('network forms are stored as given, and 200 emoji fit a label (code points, not UTF-16 units)', async () => {
  const id = await createKey([
    '--ip',
    '1.0.0.0/8',
    '--ip',
    '2001:db8::/32',
    '--ip',
    '1.2.3.4/32',
    '--label',
    '😀'.repeat(200),
  ]);
  expect(await storedKey(redis, id)).toMatchObject({
    ipAllowlist: ['1.0.0.0/8', '2001:db8::/32', '1.2.3.4/32'],
    label: '😀'.repeat(200),
  });
});

test('an expired key gets a new expiry only with --reactivate, and the CLI says it works again', async () => {
  const created = Date.now();
  const id = await createKey(['--expires-in', '1d'], { now: created });
  const later = created + 2 * DAY;
  const before = await snapshot(redis);

  const refused = await cli(['keys', 'edit', id, '--expires-in', '30d'], { now: later });
  expect(refused.code).toBe(1);
  expect(oneErrorLine(refused)).toBe(
    `key ${id} expired at ${new Date(created + DAY).toISOString()}; a new expiry would make it work again: add --reactivate if that is intended`,
  );
  const noExpiry = await cli(['keys', 'edit', id, '--no-expiry'], { now: later });
  expect(oneErrorLine(noExpiry)).toMatch(/add --reactivate/);
  expect(await snapshot(redis)).toEqual(before);

  // Other fields of an expired key stay editable without reviving it.
  const relabel = await cli(['keys', 'edit', id, '--label', 'old'], { now: later });
  expect(relabel.code).toBe(0);
  expect(relabel.out).toContain('status:   expired');

  const revived = await cli(['keys', 'edit', id, '--expires-in', '30d', '--reactivate'], { now: later });
  expect(revived).toMatchObject({ code: 0, err: [] });
  expect(revived.out).toContain(`Key ${id} had expired; it is reactivated and works again.`);
  expect(revived.out).toContain('status:   active');
  expect((await storedKey(redis, id)).expiresAt).toBe(later + 30 * DAY);
});

test('a label stored before these rules is printed with its bidi characters made visible', async () => {
  const fields = await redis.hgetall(`fortary:key:${keyId}`);
  const record = JSON.parse(fields.record as string) as Record<string, unknown>;
  await redis.hset(`fortary:key:${keyId}`, 'record', JSON.stringify({ ...record, label: 'exe.\u202Etxt' }));
  const shown = await cli(['keys', 'show', keyId]);
  expect(shown.out).toContain('label:    exe.<U+202E>txt');
  expect(shown.out.join('\n')).not.toContain('\u202E');
});

test('help states the limits', () => {
  for (const text of [
    '200 Unicode characters',
    'U+202A-U+202E',
    'no host bits',
    'did you mean 1.0.0.0/8?',
    'leading zeros',
    '--reactivate',
    '1-36500',
    'at most 1000',
  ]) {
    expect(USAGE).toContain(text);
  }
});

test('a stored record with host bits is shown as invalid, naming the entry and its network form', async () => {
  const id = await createKey();
  const fields = await redis.hgetall(`fortary:key:${id}`);
  const record = JSON.parse(fields.record as string) as Record<string, unknown>;
  await redis.hset(`fortary:key:${id}`, 'record', JSON.stringify({ ...record, ipAllowlist: ['10.0.0.1/8'] }));
  const shown = await cli(['keys', 'show', id]);
  expect(shown.code).toBe(1);
  expect(oneErrorLine(shown)).toBe(
    `the stored record of key ${id} is invalid: ipAllowlist entry "10.0.0.1/8" is not a CIDR range: host bits are set (did you mean 10.0.0.0/8?)`,
  );
});
