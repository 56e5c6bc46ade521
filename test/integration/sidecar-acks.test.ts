/**
 * Acknowledgements (issue 11, items 2-4): real sidecar processes write which event they have applied, the real
 * CLI binary lists them (`sidecars [--json]`) and waits for them (`--wait`), as the documented operator user.
 * A SIGSTOPped sidecar makes `--wait --timeout 1s` exit 3 naming it, the write being durable all the same.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type Redis from 'ioredis';
import { makeCheckClient, type CheckClient } from '../support/check-client';
import { createKey, putUser, waitFor, type CreatedKey } from '../support/fixtures';
import { checkToken, cleanupRegistry } from '../support/faults';
import { startRedis, type RedisInstance } from '../support/redis-server';
import { spawnSidecar, waitForServing, type SidecarProcess } from '../support/sidecar-process';

const ROOT = path.resolve(__dirname, '../..');
const BIN = path.join(ROOT, 'bin/fortary-authz.js');
const CONTRACT = readFileSync(path.join(ROOT, 'docs/redis-contract.md'), 'utf8');
const PROPAGATION = readFileSync(path.join(ROOT, 'docs/propagation.md'), 'utf8');
const VERSION = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string })
  .version;
const ROW_FIELDS = ['appliedSeq', 'id', 'lagEvents', 'lastSeenMs', 'version'];
const WAIT_FIELDS = ['applied', 'elapsedMs', 'pending', 'seq', 'sidecars'];

const cleanups = cleanupRegistry();
let server: RedisInstance;
let admin: Redis;
let operatorUrl: string;
const sidecars: SidecarProcess[] = [];
const clients: CheckClient[] = [];

interface BinResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The real binary as the documented operator user. */
function bin(args: string[]): Promise<BinResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { env: { PATH: process.env.PATH ?? '', REDIS_URL: operatorUrl, FORTARY_BCRYPT_COST: '4' } },
      (error, stdout, stderr) =>
        resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

async function listed(): Promise<Array<Record<string, any>>> {
  const result = await bin(['sidecars', '--json']);
  expect(result).toMatchObject({ code: 0, stderr: '' });
  return JSON.parse(result.stdout) as Array<Record<string, any>>;
}

const seq = async () => Number(await admin.get('fortary:events:seq'));

/** A key every sidecar has verified and cached. */
async function cachedKey(): Promise<CreatedKey> {
  const key = await createKey(admin, { userId: 'alice', vaults: ['alpha'] });
  for (const c of clients) {
    await waitFor(async () => (await checkToken(c, key.token)).allow, 3000);
  }
  return key;
}

beforeAll(async () => {
  server = await startRedis();
  admin = server.client();
  const line = CONTRACT.split('\n').find((l) => l.startsWith('ACL SETUSER fortary-operator')) as string;
  await admin.call(...(line.replace('CHANGE-ME', 'op-secret').split(' ') as [string, ...string[]]));
  operatorUrl = `redis://fortary-operator:op-secret@127.0.0.1:${server.port}`;
  await putUser(admin, { id: 'alice', developerVaults: ['alpha'] });
  // The default heartbeat (1 s): a sidecar stays live for 3 s without writing, longer than --timeout 1s.
  for (let i = 0; i < 3; i++) {
    const sidecar = await spawnSidecar({
      REDIS_URL: server.url,
      FORTARY_LOG_LEVEL: 'warn',
      HOSTNAME: `pod-${i}`,
    });
    sidecars.push(sidecar);
    await waitForServing(sidecar);
    clients.push(makeCheckClient(`127.0.0.1:${sidecar.grpcPort}`));
  }
}, 60_000);

afterAll(async () => {
  for (const c of clients) c.close();
  for (const sidecar of sidecars) {
    sidecar.proc.kill('SIGCONT');
    await sidecar.stop('SIGKILL');
  }
  await server.stop();
});

describe('fortary-authz sidecars', () => {
  test('--json lists each running sidecar with exactly id, version, appliedSeq, lagEvents, lastSeenMs', async () => {
    const current = await seq();
    await waitFor(async () => (await listed()).filter((r) => r.appliedSeq === current).length === 3, 5000);
    const rows = await listed();
    expect(rows.map((r) => r.id)).toEqual([
      expect.stringMatching(/^pod-0@\d{4}-\d\d-\d\dT/),
      expect.stringMatching(/^pod-1@/),
      expect.stringMatching(/^pod-2@/),
    ]);
    for (const row of rows) {
      expect(Object.keys(row).sort()).toEqual(ROW_FIELDS);
      expect(row).toMatchObject({ version: VERSION, appliedSeq: current, lagEvents: 0 });
      expect(row.lastSeenMs).toBeGreaterThanOrEqual(0);
      expect(row.lastSeenMs).toBeLessThanOrEqual(3000);
    }
    // An event the sidecars have applied is reflected at once (they write as soon as they apply it).
    await createKey(admin, { userId: 'alice', vaults: ['alpha'] });
    const next = await seq();
    await waitFor(
      async () => (await listed()).every((r) => r.appliedSeq === next && r.lagEvents === 0),
      1000,
    );
  });

  test('without --json: one header line and one row per sidecar', async () => {
    const result = await bin(['sidecars']);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^id\s+version\s+appliedSeq\s+lagEvents\s+lastSeenMs$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/)[0])).toEqual([
      expect.stringMatching(/^pod-0@/),
      expect.stringMatching(/^pod-1@/),
      expect.stringMatching(/^pod-2@/),
    ]);
  });
});

describe('--wait', () => {
  test('keys revoke <id> --wait --json: every live sidecar applied, in the documented shape', async () => {
    const key = await cachedKey();
    const result = await bin(['keys', 'revoke', key.keyId, '--wait', '--json']);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    const report = JSON.parse(result.stdout) as Record<string, any>;
    // Exactly the shape: keyId, then the wait's fields.
    expect(Object.keys(report)).toEqual(['keyId', 'seq', 'sidecars', 'applied', 'pending', 'elapsedMs']);
    expect(report).toMatchObject({
      keyId: key.keyId,
      seq: await seq(),
      sidecars: 3,
      applied: 3,
      pending: [],
    });
    expect(report.elapsedMs).toBeLessThan(1000);
    for (const c of clients) expect((await checkToken(c, key.token)).reason).toBe('key_revoked');
  });

  test('a SIGSTOPped sidecar: --timeout 1s exits 3 naming it, stderr says the revocation is durable; it applies on SIGCONT', async () => {
    const key = await cachedKey();
    const stopped = sidecars[1] as SidecarProcess;
    const [stoppedRow] = (await listed()).filter((r) => r.id.startsWith('pod-1@'));
    stopped.proc.kill('SIGSTOP');
    cleanups.push(() => stopped.proc.kill('SIGCONT'));
    const result = await bin(['keys', 'revoke', key.keyId, '--wait', '--json', '--timeout', '1s']);
    expect(result.code).toBe(3);
    const report = JSON.parse(result.stdout) as Record<string, any>;
    expect(report).toMatchObject({
      keyId: key.keyId,
      seq: await seq(),
      sidecars: 3,
      applied: 2,
      pending: [stoppedRow?.id],
    });
    expect(report.elapsedMs).toBeGreaterThanOrEqual(1000);
    const lines = result.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^fortary-authz: not confirmed within 1000 ms by 1 of 3 sidecars: pod-1@/);
    expect(lines[0]).toContain('the revocation is durable in Redis');
    expect(await admin.hget(`fortary:key:${key.keyId}`, 'revokedAt')).toMatch(/^\d+$/);

    stopped.proc.kill('SIGCONT');
    const revokedSeq = await seq();
    await waitFor(async () => (await listed()).every((r) => r.appliedSeq >= revokedSeq), 3000);
    expect((await checkToken(clients[1] as CheckClient, key.token)).reason).toBe('key_revoked');
  });

  test('human output: applied on 3/3 sidecars, for keys revoke, keys edit, users put and users deactivate', async () => {
    const key = await cachedKey();
    const other = await cachedKey();
    await putUser(admin, { id: 'carol', developerVaults: ['alpha'] });
    for (const args of [
      ['keys', 'edit', other.keyId, '--label', 'renamed', '--wait'],
      [
        'users',
        'put',
        'carol',
        '--developer',
        'alpha',
        '--developer',
        'beta',
        '--wait',
        '--timeout',
        '3000ms',
      ],
      ['keys', 'revoke', key.keyId, '--wait'],
      ['users', 'deactivate', 'carol', '--wait'],
    ]) {
      const result = await bin(args);
      expect({ args, ...result }).toMatchObject({ args, code: 0, stderr: '' });
      expect(result.stdout.trimEnd().split('\n').at(-1)).toMatch(/^applied on 3\/3 sidecars in \d+ ms$/);
    }
  });

  test('--wait --json on the other writes: exactly the wait fields', async () => {
    const key = await cachedKey();
    for (const args of [
      ['keys', 'edit', key.keyId, '--label', 'json', '--wait', '--json'],
      ['users', 'put', 'dave', '--wait', '--json'],
      ['users', 'deactivate', 'dave', '--wait', '--json'],
    ]) {
      const result = await bin(args);
      expect({ args, ...result }).toMatchObject({ args, code: 0, stderr: '' });
      const report = JSON.parse(result.stdout) as Record<string, any>;
      expect(Object.keys(report).sort()).toEqual(WAIT_FIELDS);
      expect(report).toMatchObject({ sidecars: 3, applied: 3, pending: [] });
    }
  });

  test.each([
    [['keys', 'revoke', 'AAAAAAAAAAAA', '--timeout', '1s'], /--timeout needs --wait/],
    [['keys', 'revoke', 'AAAAAAAAAAAA', '--wait', '--timeout', '5m'], /--timeout must be <N>s or <N>ms/],
    [['keys', 'revoke', 'AAAAAAAAAAAA', '--wait', '--timeout', '0s'], /--timeout must be/],
    [['keys', 'revoke', 'AAAAAAAAAAAA', '--wait', '--timeout', '3601s'], /at most 3600s/],
    [['users', 'deactivate', 'alice', '--timeout'], /--timeout needs a value/],
  ])('bad input %j: exit 2, one line, nothing written', async (args, message) => {
    const before = await seq();
    const result = await bin(args);
    expect(result).toMatchObject({ code: 2, stdout: '' });
    expect(result.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(message)]);
    expect(await seq()).toBe(before);
  });

  test('the documented redis-cli check: revoke, read the sequence, list every live sidecar with its appliedSeq', async () => {
    const key = await cachedKey();
    const section = PROPAGATION.slice(PROPAGATION.indexOf('The same check from `redis-cli`'));
    const script = /```sh\n([\s\S]*?)```/.exec(section)?.[1] as string;
    expect(script).toContain('FCALL fortary_revoke');
    const output = await new Promise<string>((resolve, reject) =>
      execFile(
        'bash',
        ['-c', script.replace('<keyId>', key.keyId)],
        { env: { PATH: process.env.PATH ?? '', OPERATOR_URL: operatorUrl } },
        (error, stdout) => (error ? reject(error) : resolve(stdout)),
      ),
    );
    const [receivers, sequence, ...rows] = output.trimEnd().split('\n');
    expect(receivers).toBe('3');
    expect(Number(sequence)).toBe(await seq());
    expect(rows).toHaveLength(3);
    for (const row of rows) {
      expect(row).toMatch(/^fortary:sidecar:pod-\d@\S+ \{.*"appliedSeq":\d+.*\} ttl=\d+$/);
    }
    expect((await checkToken(clients[0] as CheckClient, key.token)).reason).toBe('key_revoked');
  });

  test('a sidecar shut down removes its acknowledgement at once: it is no longer listed or waited for', async () => {
    const leaving = sidecars[2] as SidecarProcess;
    expect(await leaving.stop('SIGTERM')).toBe(0);
    const rows = await listed();
    expect(rows.map((r) => r.id)).toEqual([
      expect.stringMatching(/^pod-0@/),
      expect.stringMatching(/^pod-1@/),
    ]);
    const result = await bin(['users', 'put', 'erin', '--wait', '--json']);
    expect(JSON.parse(result.stdout)).toMatchObject({ sidecars: 2, applied: 2, pending: [] });
  });
});
