/**
 * Fuzzing the ext_authz Check endpoint over gRPC (docs/hardening.md). This file is the long run; the generator,
 * mutations, oracle, judge and sender are bench/fuzz-*.ts.
 *
 * Cases are generated with fast-check from a seed. Each one is a CheckRequest built field by field with a small wire
 * writer, so it can hold what protobufjs cannot express: duplicate fields and map keys, unknown fields at every
 * level, both header shapes, several Authorization lines, bytes that are not UTF-8. About a sixth of the cases are
 * then mutated at the byte level (bit flips, inserted/deleted/duplicated ranges, huge lengths, truncation), and a
 * few are plain garbage. Each case is sent to a running sidecar, and its answer is checked:
 *
 * - the RPC completes within the deadline (no hang). It either fails closed (INTERNAL for a request that cannot be
 *   decoded, which Envoy turns into status_on_error) or returns a non-empty CheckResponse. That response starts with
 *   `status`, and has `ok_response` exactly when the code is 0. A denial carries a 4xx/5xx `denied_response`, and is
 *   never `internal_error`;
 * - an allow is justified by the ORACLE below, which is written independently of src/: the request carried exactly
 *   one Authorization line, `Bearer <token>`, where the token is the valid token of a seeded key whose owner is
 *   active; the method is GET or HEAD; the vault of the path, read two simple ways, is in that key's allowlist and
 *   in the owner's Developer vaults; and, for a key with an IP allowlist, the client address (the peer, or through
 *   the configured trusted proxy the rightmost untrusted X-Forwarded-For hop) is in it. The request is read with a
 *   trimmed protobufjs schema that has only the fields on this path. It takes every string as bytes and decodes
 *   them as strict UTF-8, and a request it cannot read is never justified;
 * - an allow overwrites x-fortary-key-id/-user-id with the right ids (append false, OVERWRITE_IF_EXISTS_OR_ADD). It
 *   removes `authorization`, every other client-sent x-fortary-* name and a sent x-api-key, and never one of the two
 *   identity headers.
 *
 * The long run (run by hand, not in CI):
 *   npx tsc -p tsconfig.build.json && node dist/bench/fuzz.js --cases 100000 --seed 90210 --concurrency 128
 * starts its own redis-server and the built sidecar (dist/src/main.js) as a child process, seeds the world, fuzzes,
 * then checks that the process is alive, still allows a good request, and counted no internal error. It exits 1
 * on any violation. `--case <k>` replays one case of a seed and prints it (the seed also fixes the world's key ids and
 * tokens, so the bytes are the same). CI runs a fixed-seed sample of the same generator and oracle:
 * test/fuzz/check.fuzz.test.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import Redis from 'ioredis';
import { utf8 } from './fuzz-case-types';
import { caseArbitrary } from './fuzz-cases';
import { judge, repoRoot } from './fuzz-judge';
import { justify } from './fuzz-oracle';
import { freePort, freePorts } from './free-ports';
import { RawCheckClient, runFuzz } from './fuzz-runner';
import { encodeCase, generateCase } from './fuzz-wire';
import { seedWorld, TRUSTED_PROXIES, type SeededKey } from './fuzz-world';

// ---------------------------------------------------------------------------------------------------------------
// The long run: its own redis-server and the built sidecar as a child process
// ---------------------------------------------------------------------------------------------------------------

async function until(what: string, condition: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  // Each attempt is bounded too: a client that never settles must not hang the run.
  const attempt = () =>
    Promise.race([
      condition().catch(() => false),
      new Promise<boolean>((r) => setTimeout(() => r(false), 1000)),
    ]);
  while (!(await attempt())) {
    if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** PING over a raw socket: no client library state to get stuck in. */
function rawPing(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const done = (reply: string) => {
      socket.destroy();
      resolve(reply);
    };
    socket.setTimeout(500, () => done('timeout'));
    socket.once('error', () => done('error'));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (d) => done(d.toString().trim()));
  });
}

function httpGet(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

function argument(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<void> {
  const seed = Number(argument('seed') ?? Math.floor(Math.random() * 2 ** 31));
  const cases = Number(argument('cases') ?? 100_000);
  const concurrency = Number(argument('concurrency') ?? 128);
  const only = argument('case');
  const root = repoRoot();
  const redisPort = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fortary-fuzz-'));
  const children: ChildProcess[] = [];
  const stop = () => {
    for (const c of children.reverse()) if (c.exitCode === null) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const redisServer = spawn(
      'redis-server',
      ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(redisServer);
    let redisOutput = '';
    redisServer.stdout?.on('data', (d: Buffer) => (redisOutput = (redisOutput + d.toString()).slice(-4000)));
    redisServer.stderr?.on('data', (d: Buffer) => (redisOutput = (redisOutput + d.toString()).slice(-4000)));
    await until('redis-server answers PING', async () => {
      if (redisServer.exitCode !== null) throw new Error(`redis-server exited: ${redisOutput}`);
      return (await rawPing(redisPort)) === '+PONG';
    });
    const admin = new Redis(redisPort, '127.0.0.1', { maxRetriesPerRequest: 1 });
    admin.on('error', () => {});
    const world = await seedWorld(admin, seed);
    if (only !== undefined) {
      const c = generateCase(caseArbitrary(world), seed, Number(only));
      const bytes = encodeCase(c);
      console.log(
        JSON.stringify(
          { case: Number(only), seed, bytes: bytes.toString('hex'), oracle: justify(world, bytes) },
          null,
          2,
        ),
      );
      admin.disconnect();
      return;
    }
    const [grpcPort, adminPort] = (await freePorts(2)) as [number, number];
    let sidecarOutput = '';
    const sidecar = spawn(process.execPath, [path.join(root, 'dist/src/main.js')], {
      cwd: root,
      env: {
        PATH: process.env.PATH ?? '',
        REDIS_URL: `redis://127.0.0.1:${redisPort}`,
        FORTARY_GRPC_ADDR: `127.0.0.1:${grpcPort}`,
        FORTARY_ADMIN_ADDR: `127.0.0.1:${adminPort}`,
        FORTARY_HEALTH_ADDR: 'off',
        FORTARY_TRUSTED_PROXIES: TRUSTED_PROXIES.join(','),
        FORTARY_LOG_LEVEL: 'warn',
        // e.g. --cpu-prof --cpu-prof-dir=/tmp/prof to profile the sidecar under fuzzing.
        NODE_OPTIONS: process.env.FUZZ_SIDECAR_NODE_OPTIONS ?? '',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(sidecar);
    sidecar.stdout?.on(
      'data',
      (d: Buffer) => (sidecarOutput = (sidecarOutput + d.toString()).slice(-20_000)),
    );
    sidecar.stderr?.on(
      'data',
      (d: Buffer) => (sidecarOutput = (sidecarOutput + d.toString()).slice(-20_000)),
    );
    let exited: number | null | undefined;
    sidecar.once('exit', (code) => (exited = code));
    await until('the sidecar is ready', async () => {
      if (exited !== undefined) throw new Error(`the sidecar exited (${String(exited)}): ${sidecarOutput}`);
      return (await httpGet(`http://127.0.0.1:${adminPort}/readyz`)).status === 200;
    }).catch((error: unknown) => {
      throw new Error(`${(error as Error).message}\n${sidecarOutput}`);
    });

    const report = await runFuzz({
      address: `127.0.0.1:${grpcPort}`,
      world,
      cases,
      seed,
      concurrency,
      progress: (done) => process.stderr.write(`fuzz: ${done}/${cases}\n`),
    });

    const after: string[] = [];
    if (exited !== undefined) after.push(`the sidecar exited (${String(exited)})`);
    const probe = new RawCheckClient(`127.0.0.1:${grpcPort}`);
    const open = world.keys.find((k) => k.name === 'open') as SeededKey;
    const good = encodeCase({
      garbage: null,
      method: utf8('GET'),
      path: utf8('/v1/vaults/alpha/x'),
      source: { kind: 'socket', ip: '203.0.113.7', port: true },
      lines: [{ name: 'authorization', value: utf8(`Bearer ${open.token}`) }],
      altLines: [],
      shape: 'headers',
      duplicate: 'none',
      extras: [],
      reversed: false,
      mutations: [],
    });
    const verdict = judge(world, good, await probe.send(good));
    probe.close();
    if (verdict.outcome !== 'allow' || verdict.problem !== null)
      after.push(`a good request afterwards: ${verdict.outcome} ${verdict.problem ?? ''}`);
    const metrics = (await httpGet(`http://127.0.0.1:${adminPort}/metrics`)).body;
    const internal =
      /fortary_authz_decisions_total\{[^}]*reason="internal_error"[^}]*\} (\d+)/.exec(metrics)?.[1] ?? '0';
    if (internal !== '0') after.push(`${internal} internal_error decisions counted`);
    const errors = sidecarOutput
      .split('\n')
      .filter((l) => /"level":"(error|fatal)"/.test(l) && !/corrupt record/.test(l));
    if (errors.length > 0) after.push(`error log lines: ${errors.slice(0, 3).join(' | ')}`);

    console.log(JSON.stringify({ ...report, afterwards: after.length === 0 ? 'ok' : after }, null, 2));
    admin.disconnect();
    if (report.violationCount > 0 || after.length > 0) process.exitCode = 1;
  } finally {
    stop();
  }
}

if (require.main === module) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
