/**
 * config.ts: the environment is read once, every problem is reported at once, and the result is frozen. (The
 * trusted-proxy list has its own file: config-trusted-proxies.test.ts.)
 */
import { formatHostPort, parseHostPort, readConfig, type Config } from '../../src/config';

function config(env: NodeJS.ProcessEnv): Readonly<Config> {
  const result = readConfig(env);
  if (!result.ok) throw new Error(`unexpected problems: ${result.problems.join('; ')}`);
  return result.config;
}

function problems(env: NodeJS.ProcessEnv): string[] {
  const result = readConfig(env);
  return result.ok ? [] : result.problems;
}

describe('readConfig', () => {
  it('has working defaults for an empty environment', () => {
    expect(config({})).toMatchObject({
      grpc: { host: '0.0.0.0', port: 9191 },
      health: { host: '0.0.0.0', port: 9192 },
      admin: { host: '0.0.0.0', port: 9464 },
      redis: { url: 'redis://127.0.0.1:6379', sentinels: null, sentinelName: null },
      roleMaxStalenessMs: 60_000,
      trustedProxies: [],
      openPaths: [],
      cache: { maxKeys: 100_000, maxUsers: 100_000 },
      drainTimeoutMs: 10_000,
      heartbeatMs: 1000,
      logLevel: 'info',
    });
  });

  it('reads each setting (trimmed), and `off` switches the health and admin listeners off', () => {
    const c = config({
      FORTARY_GRPC_ADDR: ' 127.0.0.1:9191 ',
      FORTARY_HEALTH_ADDR: 'off',
      FORTARY_ADMIN_ADDR: '[::1]:9464',
      REDIS_URL: 'rediss://user:pw@redis.example:6380/2',
      REDIS_SENTINELS: 'a:26379, b:26379',
      REDIS_SENTINEL_NAME: 'mymaster',
      FORTARY_ROLE_MAX_STALENESS_S: '5',
      FORTARY_OPEN_PATHS: '/healthz,/public/*',
      FORTARY_CACHE_MAX_KEYS: '10',
      FORTARY_BCRYPT_CONCURRENCY: '3',
      FORTARY_BCRYPT_QUEUE: '0',
      FORTARY_LOG_LEVEL: 'warn',
    });
    expect(c).toMatchObject({
      grpc: { host: '127.0.0.1', port: 9191 },
      health: null,
      admin: { host: '::1', port: 9464 },
      redis: {
        url: 'rediss://user:pw@redis.example:6380/2',
        sentinels: [
          { host: 'a', port: 26379 },
          { host: 'b', port: 26379 },
        ],
        sentinelName: 'mymaster',
      },
      roleMaxStalenessMs: 5000,
      openPaths: ['/healthz', '/public/*'],
      cache: { maxKeys: 10 },
      bcrypt: { concurrency: 3, queue: 0 },
      logLevel: 'warn',
    });
  });

  it('lists every problem at once, one line each', () => {
    const found = problems({
      FORTARY_GRPC_ADDR: 'nowhere',
      REDIS_URL: 'http://redis',
      REDIS_SENTINELS: 'a:26379',
      FORTARY_ROLE_MAX_STALENESS_S: '0',
      FORTARY_CACHE_MAX_KEYS: 'many',
      FORTARY_LOG_LEVEL: 'loud',
      FORTARY_OPEN_PATHS: '/v1/vaults/*',
    });
    expect(found).toEqual([
      expect.stringContaining('FORTARY_GRPC_ADDR'),
      expect.stringContaining('REDIS_URL'),
      expect.stringContaining('REDIS_SENTINEL_NAME'),
      expect.stringContaining('FORTARY_ROLE_MAX_STALENESS_S'),
      expect.stringContaining('FORTARY_OPEN_PATHS'),
      expect.stringContaining('FORTARY_CACHE_MAX_KEYS'),
      expect.stringContaining('FORTARY_LOG_LEVEL'),
    ]);
    for (const line of found) expect(line).not.toContain('\n');
  });

  it('refuses two listeners on one port', () => {
    expect(problems({ FORTARY_GRPC_ADDR: '0.0.0.0:9000', FORTARY_ADMIN_ADDR: '127.0.0.1:9000' })).toEqual([
      'FORTARY_ADMIN_ADDR reuses port 9000',
    ]);
  });

  it('refuses out-of-range and non-integer numbers', () => {
    expect(problems({ FORTARY_HEARTBEAT_MS: '10' })).toEqual([
      'FORTARY_HEARTBEAT_MS must be between 50 and 60000, got 10',
    ]);
    expect(problems({ FORTARY_DRAIN_TIMEOUT_MS: '1e3' })).toEqual([
      'FORTARY_DRAIN_TIMEOUT_MS must be an integer, got "1e3"',
    ]);
  });

  it('is frozen all the way down: nothing can change the configuration after startup', () => {
    const c = config({ REDIS_SENTINELS: 'a:26379', REDIS_SENTINEL_NAME: 'm', FORTARY_OPEN_PATHS: '/x' });
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.grpc)).toBe(true);
    expect(Object.isFrozen(c.redis.sentinels)).toBe(true);
    expect(Object.isFrozen(c.redis.sentinels?.[0])).toBe(true);
    expect(Object.isFrozen(c.openPaths)).toBe(true);
    expect(() => {
      (c as Config).logLevel = 'debug';
    }).toThrow(TypeError);
  });
});

describe('host:port', () => {
  it.each([
    ['127.0.0.1:9191', { host: '127.0.0.1', port: 9191 }],
    ['[::1]:80', { host: '::1', port: 80 }],
    ['redis.example:6379', { host: 'redis.example', port: 6379 }],
  ])('parses %s and formats it back', (text, parsed) => {
    expect(parseHostPort(text)).toEqual(parsed);
    expect(formatHostPort(parsed)).toBe(text);
  });

  it.each(['9191', 'host:', 'host:65536', '::1:80', 'a b:1'])('refuses %s', (text) => {
    expect(parseHostPort(text)).toBeNull();
  });
});

describe('FORTARY_EXPIRY_WARNING_DAYS and FORTARY_LAST_USED_FLUSH_S', () => {
  it('default to 30 days and 60 s', () => {
    const result = readConfig({});
    expect(result).toMatchObject({
      ok: true,
      config: { expiryWarningMs: 30 * 86_400_000, lastUsedFlushMs: 60_000 },
    });
  });

  it('accept 0 days (off) and the bounds of the flush interval', () => {
    expect(readConfig({ FORTARY_EXPIRY_WARNING_DAYS: '0', FORTARY_LAST_USED_FLUSH_S: '1' })).toMatchObject({
      ok: true,
      config: { expiryWarningMs: 0, lastUsedFlushMs: 1000 },
    });
    expect(readConfig({ FORTARY_LAST_USED_FLUSH_S: '3600' })).toMatchObject({
      ok: true,
      config: { lastUsedFlushMs: 3_600_000 },
    });
  });

  it('refuse values out of range or not integers, listing every problem', () => {
    const result = readConfig({
      FORTARY_EXPIRY_WARNING_DAYS: '-1',
      FORTARY_LAST_USED_FLUSH_S: '0',
      FORTARY_ROLE_MAX_STALENESS_S: 'soon',
    });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problems).toEqual(
      expect.arrayContaining([
        'FORTARY_EXPIRY_WARNING_DAYS must be an integer, got "-1"',
        'FORTARY_LAST_USED_FLUSH_S must be between 1 and 3600, got 0',
        'FORTARY_ROLE_MAX_STALENESS_S must be an integer, got "soon"',
      ]),
    );
    expect(readConfig({ FORTARY_LAST_USED_FLUSH_S: '3601' })).toEqual({
      ok: false,
      problems: ['FORTARY_LAST_USED_FLUSH_S must be between 1 and 3600, got 3601'],
    });
    expect(readConfig({ FORTARY_EXPIRY_WARNING_DAYS: '30d' })).toEqual({
      ok: false,
      problems: ['FORTARY_EXPIRY_WARNING_DAYS must be an integer, got "30d"'],
    });
  });
});
