/**
 * REDIS_URL with a password and `rediss://` TLS, against a real TLS redis-server: the sidecar connects, decides,
 * and never prints the password; a wrong password leaves it NOT_SERVING and answering 503.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Redis from 'ioredis';
import { readFileSync } from 'node:fs';
import { envoyRequest, makeCheckClient, metadataOf } from '../support/check-client';
import { createKey, putUser, waitFor } from '../support/fixtures';
import { freePort } from '../support/redis-server';
import { verdict } from '../support/sidecar-harness';
import { spawnSidecar, waitForServing, type SidecarProcess } from '../support/sidecar-process';

const PASSWORD = 'tls-test-pw-3f9c1a';
let dir: string;
let port: number;
let server: ChildProcess;
let admin: Redis;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'fortary-tls-'));
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
      '-keyout',
      path.join(dir, 'key.pem'),
      '-out',
      path.join(dir, 'cert.pem'),
    ],
    { stdio: 'ignore' },
  );
  port = await freePort();
  server = spawn(
    'redis-server',
    [
      '--port',
      '0',
      '--tls-port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--tls-cert-file',
      path.join(dir, 'cert.pem'),
      '--tls-key-file',
      path.join(dir, 'key.pem'),
      '--tls-ca-cert-file',
      path.join(dir, 'cert.pem'),
      '--tls-auth-clients',
      'no',
      '--requirepass',
      PASSWORD,
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      dir,
    ],
    { stdio: 'ignore' },
  );
  admin = new Redis({
    host: '127.0.0.1',
    port,
    password: PASSWORD,
    tls: { ca: readFileSync(path.join(dir, 'cert.pem')) },
    maxRetriesPerRequest: 1,
  });
  await waitFor(async () => (await admin.ping().catch(() => '')) === 'PONG', 5000, 50);
  await putUser(admin, { id: 'alice', developerVaults: ['alpha'] });
});

afterAll(async () => {
  admin.disconnect();
  server.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

describe('Redis over TLS with a password', () => {
  let sidecar: SidecarProcess;
  afterEach(async () => {
    await sidecar?.stop('SIGKILL');
  });

  it('connects with rediss://:password@host, decides, and never logs the password', async () => {
    const key = await createKey(admin, { userId: 'alice', vaults: ['alpha'] });
    sidecar = await spawnSidecar({
      REDIS_URL: `rediss://:${PASSWORD}@127.0.0.1:${port}`,
      NODE_EXTRA_CA_CERTS: path.join(dir, 'cert.pem'),
    });
    await waitForServing(sidecar);
    const client = makeCheckClient(`127.0.0.1:${sidecar.grpcPort}`);
    const answer = await client(
      envoyRequest({ authorization: `Bearer ${key.token}`, path: '/v1/vaults/alpha' }),
    );
    expect(verdict(answer).allow).toBe(true);
    client.close();
    await sidecar.stop('SIGTERM');
    expect(sidecar.output()).not.toContain(PASSWORD);
  });

  it('with a wrong password stays NOT_SERVING, answers 503, and does not echo the password', async () => {
    const key = await createKey(admin, { userId: 'alice', vaults: ['alpha'] });
    const wrong = 'wrong-pw-77aa';
    sidecar = await spawnSidecar({
      REDIS_URL: `rediss://:${wrong}@127.0.0.1:${port}`,
      NODE_EXTRA_CA_CERTS: path.join(dir, 'cert.pem'),
    });
    await waitFor(async () => (await sidecar.health()) === 'NOT_SERVING', 10_000, 50);
    const client = makeCheckClient(`127.0.0.1:${sidecar.grpcPort}`);
    const answer = await client(
      envoyRequest({ authorization: `Bearer ${key.token}`, path: '/v1/vaults/alpha' }),
    );
    expect(verdict(answer)).toMatchObject({ allow: false, http: 503 });
    expect(metadataOf(answer).reason).toBe('store_unavailable');
    client.close();
    await sidecar.stop('SIGTERM');
    expect(sidecar.output()).not.toContain(wrong);
  });
});
