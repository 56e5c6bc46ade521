/**
 * The sidecar as an operator runs it: `node dist/src/main.js`, configured by the environment, probed through
 * grpc.health.v1 and /metrics, stopped with SIGTERM.
 */
import { execFile, spawn } from 'node:child_process';
import http2 from 'node:http2';
import path from 'node:path';
import { promisify } from 'node:util';
import { envoyRequest, makeCheckClient, metadataOf } from '../support/check-client';
import { createKey, putUser, waitFor } from '../support/fixtures';
import { startRedis, freePort, type RedisInstance } from '../support/redis-server';
import { ROOT, spawnSidecar, waitForServing, type SidecarProcess } from '../support/sidecar-process';
import { verdict } from '../support/sidecar-harness';
import { formatToken } from '../../src/core/token';

const run = promisify(execFile);
let redis: RedisInstance;

beforeAll(async () => {
  redis = await startRedis();
  await putUser(redis.client(), { id: 'alice', developerVaults: ['alpha'] });
});

afterAll(async () => {
  await redis.stop();
});

describe('a running sidecar', () => {
  let sidecar: SidecarProcess;
  afterEach(async () => {
    await sidecar?.stop('SIGKILL');
  });

  it('serves health, allows and denies, counts decisions in /metrics, and drains on SIGTERM with exit 0', async () => {
    const key = await createKey(redis.client(), { userId: 'alice', vaults: ['alpha'] });
    sidecar = await spawnSidecar({ REDIS_URL: redis.url });
    await waitForServing(sidecar);
    expect(await sidecar.health('liveness')).toBe('SERVING');
    expect(await sidecar.health('no-such-service')).toMatch(/NOT_FOUND/);

    const client = makeCheckClient(`127.0.0.1:${sidecar.grpcPort}`);
    const allowed = await client(
      envoyRequest({ authorization: `Bearer ${key.token}`, path: '/v1/vaults/alpha/x' }),
    );
    expect(verdict(allowed).allow).toBe(true);
    const denied = await client(
      envoyRequest({ authorization: `Bearer ${key.token}`, path: '/v1/vaults/beta/x' }),
    );
    expect(verdict(denied)).toMatchObject({ allow: false, http: 403, grpc: 7 });
    expect(metadataOf(denied).reason).toBe('vault_not_allowed');
    const missing = await client(envoyRequest({ path: '/v1/vaults/alpha/x' }));
    expect(verdict(missing)).toMatchObject({ allow: false, http: 401 });

    const metrics = await (await fetch(`http://127.0.0.1:${sidecar.adminPort}/metrics`)).text();
    expect(metrics).toMatch(/fortary_authz_decisions_total\{outcome="allow",reason="allowed"\} 1\n/);
    expect(metrics).toMatch(/fortary_authz_decisions_total\{outcome="deny",reason="vault_not_allowed"\} 1\n/);
    expect(metrics).toMatch(
      /fortary_authz_decisions_total\{outcome="deny",reason="credentials_missing"\} 1\n/,
    );
    expect(metrics).toMatch(/fortary_authz_check_duration_seconds_count\{outcome="allow"\} 1\n/);
    expect(metrics).toMatch(/fortary_authz_cache_requests_total\{cache="key",result="miss"\} 1\n/);
    expect(metrics).toMatch(/fortary_authz_subscriber_connected 1\n/);
    expect(metrics).not.toContain(key.keyId);
    expect((await fetch(`http://127.0.0.1:${sidecar.adminPort}/readyz`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${sidecar.adminPort}/healthz`)).status).toBe(200);
    client.close();

    expect(await sidecar.stop('SIGTERM')).toBe(0);
    const logs = sidecar.output();
    expect(logs).toContain('"reason":"vault_not_allowed"');
    expect(logs).not.toContain(key.token);
    expect(logs).not.toContain(key.secretHash);
  });

  it('answers 503 while Redis is unreachable, reports NOT_SERVING, and heals by itself when Redis appears', async () => {
    const port = await freePort();
    sidecar = await spawnSidecar({ REDIS_URL: `redis://127.0.0.1:${port}` });
    await waitFor(async () => (await sidecar.health()) === 'NOT_SERVING', 10_000, 50);
    const client = makeCheckClient(`127.0.0.1:${sidecar.grpcPort}`);
    // A well-formed token needs Redis; a malformed one is refused without it.
    const token = 'Bearer fty_000000000000_' + 'A'.repeat(49);
    const wellFormed = `Bearer ${formatToken('AAAAAAAAAAAA', 'B'.repeat(43))}`;
    const down = await client(envoyRequest({ authorization: wellFormed, path: '/v1/vaults/alpha' }));
    expect(verdict(down)).toMatchObject({ allow: false, http: 503, grpc: 14 });
    expect(metadataOf(down).reason).toBe('store_unavailable');
    expect(verdict(await client(envoyRequest({ authorization: token }))).http).toBe(401);
    expect((await fetch(`http://127.0.0.1:${sidecar.adminPort}/readyz`)).status).toBe(503);

    // Redis appears on the port the sidecar was told about; no restart of the sidecar.
    const server = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: 'ignore' },
    );
    try {
      await waitForServing(sidecar, 5000);
      const answer = await client(envoyRequest({ authorization: wellFormed, path: '/v1/vaults/alpha' }));
      expect(metadataOf(answer).reason).toBe('key_unknown');
    } finally {
      client.close();
      server.kill('SIGKILL');
    }
  });
});

describe('startup', () => {
  it('trusts its cache as soon as Redis answers, with no warning, even with a slow heartbeat', async () => {
    const started = Date.now();
    const sidecar = await spawnSidecar({ REDIS_URL: redis.url, FORTARY_HEARTBEAT_MS: '10000' });
    // The subscriber's reconcile reads through the command connection, which is often ready later; without the
    // nudge when it becomes ready, the first reconcile waited a whole heartbeat after a warning.
    await waitFor(() => sidecar.output().includes('"cache trusted"'), 5000, 20).catch(
      async (error: unknown) => {
        await sidecar.stop('SIGKILL');
        throw error;
      },
    );
    expect(Date.now() - started).toBeLessThan(5000);
    const lines = sidecar
      .output()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { level: string; msg: string });
    expect(lines.filter((line) => line.level !== 'info').map((line) => line.msg)).toEqual([]);
    expect(await sidecar.stop()).toBe(0);
  });
});

describe('draining', () => {
  it('on SIGTERM reports NOT_SERVING, finishes the check in flight, then exits 0', async () => {
    // A cost-13 hash keeps the first check busy in bcrypt for a few hundred milliseconds.
    const slow = await createKey(redis.client(), { userId: 'alice', vaults: ['alpha'], cost: 13 });
    const sidecar = await spawnSidecar({ REDIS_URL: redis.url });
    try {
      await waitForServing(sidecar);
      const client = makeCheckClient(`127.0.0.1:${sidecar.grpcPort}`);
      const inFlight = client(
        envoyRequest({ authorization: `Bearer ${slow.token}`, path: '/v1/vaults/alpha' }),
      );
      await new Promise((r) => setTimeout(r, 50));
      sidecar.proc.kill('SIGTERM');
      await waitFor(async () => (await sidecar.health()) === 'NOT_SERVING', 2000, 10);
      expect(verdict(await inFlight).allow).toBe(true);
      client.close();
      expect(await sidecar.exited).toBe(0);
    } finally {
      await sidecar.stop('SIGKILL');
    }
  });
});

describe('draining past FORTARY_DRAIN_TIMEOUT_MS', () => {
  it('cuts a call that would never finish once the drain time is up, and still exits 0', async () => {
    const sidecar = await spawnSidecar({ REDIS_URL: redis.url, FORTARY_DRAIN_TIMEOUT_MS: '500' });
    try {
      await waitForServing(sidecar);
      // A request whose body never ends and that has no deadline: only the forced shutdown ends it.
      const session = http2.connect(`http://127.0.0.1:${sidecar.grpcPort}`);
      session.on('error', () => undefined);
      const stream = session.request(
        {
          ':method': 'POST',
          ':path': '/envoy.service.auth.v3.Authorization/Check',
          'content-type': 'application/grpc',
          te: 'trailers',
        },
        { endStream: false },
      );
      stream.on('error', () => undefined);
      const closed = new Promise<void>((resolve) => stream.on('close', () => resolve()));
      stream.write(Buffer.from([0, 0, 0, 1, 0]));
      await new Promise((r) => setTimeout(r, 100));
      const started = Date.now();
      sidecar.proc.kill('SIGTERM');
      expect(await sidecar.exited).toBe(0);
      const took = Date.now() - started;
      await closed;
      session.destroy();
      expect(took).toBeGreaterThanOrEqual(450);
      expect(took).toBeLessThan(5000);
      expect(sidecar.output()).toContain('"msg":"stopped"');
    } finally {
      await sidecar.stop('SIGKILL');
    }
  });
});

describe('startup failure', () => {
  it('exits 1 with one fatal log line when its gRPC port is taken, instead of lingering', async () => {
    const first = await spawnSidecar({ REDIS_URL: redis.url });
    await waitForServing(first);
    const second = spawn(process.execPath, [path.join(ROOT, 'dist/src/main.js')], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        REDIS_URL: redis.url,
        FORTARY_GRPC_ADDR: `127.0.0.1:${first.grpcPort}`,
        FORTARY_HEALTH_ADDR: 'off',
        FORTARY_ADMIN_ADDR: 'off',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    second.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => second.once('exit', resolve));
    await first.stop();
    expect(code).toBe(1);
    expect(out).toMatch(/"level":"fatal".*EADDRINUSE/);
  });
});

describe('configuration', () => {
  it('lists every problem and exits 1 without starting', async () => {
    const result = await run(process.execPath, [path.join(ROOT, 'dist/src/main.js')], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        FORTARY_GRPC_ADDR: 'nonsense',
        REDIS_URL: 'http://example',
        FORTARY_ROLE_MAX_STALENESS_S: '301',
        FORTARY_TRUSTED_PROXIES: '10.0.0.0/33',
        REDIS_SENTINELS: 'a:1',
        FORTARY_LOG_LEVEL: 'loud',
      },
    }).then(
      () => ({ code: 0, stderr: '' }),
      (error: { code: number; stderr: string }) => ({ code: error.code, stderr: error.stderr }),
    );
    expect(result.code).toBe(1);
    const lines = result.stderr.trim().split('\n');
    expect(lines).toEqual([
      expect.stringContaining('FORTARY_GRPC_ADDR'),
      expect.stringContaining('REDIS_URL'),
      expect.stringContaining('REDIS_SENTINELS and REDIS_SENTINEL_NAME'),
      expect.stringContaining('FORTARY_ROLE_MAX_STALENESS_S must be between 1 and 300'),
      expect.stringContaining('FORTARY_TRUSTED_PROXIES'),
      expect.stringContaining('FORTARY_LOG_LEVEL'),
    ]);
  });
});
