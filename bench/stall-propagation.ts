/**
 * Time to apply a revocation after a 300 ms stall (not a test). One sidecar process (node dist/src/main.js, the
 * deployment's environment), one gRPC channel, a cached and allowed key. Per trial: SIGSTOP the sidecar, queue a
 * Check on the channel, revoke the key (FCALL fortary_revoke returns), queue two more Checks, keep the sidecar
 * stopped for 300 ms in all, SIGCONT. Reported: how long after SIGCONT the queued Checks were answered (their
 * denial is the revocation applied), and how many Checks sent after the revocation returned were allowed (must
 * be 0).
 *
 *   npx tsc -p tsconfig.build.json && node dist/bench/stall-propagation.js
 *
 * STALL_TRIALS (default 30), STALL_MS (default 300); STALL_MAIN: another build's dist/src/main.js to compare.
 */
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import Redis from 'ioredis';
import { ensureFunctionLibrary } from '../src/adapters/redis/function-library';
import {
  installCleanupHandlers,
  makeTempDir,
  sleep,
  startRedis,
  startSidecar,
  stopChild,
} from './bench-support';
import { checkRequestBytes } from './envoy-request';
import { createKeys, putUser } from './seed';

const CHECK_PATH = '/envoy.service.auth.v3.Authorization/Check';
const identity = (b: Buffer) => b;

/** Whether an encoded CheckResponse allows: the code in its google.rpc.Status (field 1, its field 1) is 0 or absent. */
function allows(bytes: Buffer): boolean {
  let pos = 0;
  const varint = (): number => {
    let value = 0;
    for (let shift = 0; ; shift += 7) {
      const b = bytes[pos++];
      if (b === undefined) throw new Error('truncated CheckResponse');
      value += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return value;
    }
  };
  while (pos < bytes.length) {
    const tag = varint();
    if ((tag & 7) === 0) {
      varint();
      continue;
    }
    if ((tag & 7) !== 2) throw new Error(`unexpected wire type in CheckResponse`);
    const length = varint();
    if (tag >>> 3 !== 1) {
      pos += length;
      continue;
    }
    const end = pos + length;
    while (pos < end) {
      const inner = varint();
      if (inner === 0x08) return varint() === 0;
      if ((inner & 7) === 0) varint();
      else pos += varint();
    }
    return true;
  }
  return true;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

async function main(): Promise<void> {
  installCleanupHandlers();
  const trials = Number(process.env.STALL_TRIALS ?? 30);
  const stallMs = Number(process.env.STALL_MS ?? 300);
  const server = await startRedis(makeTempDir());
  const redis = new Redis(server.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
  const main = process.env.STALL_MAIN;
  const sidecar = await startSidecar(server.url, main === undefined ? {} : { main });
  const client = new grpc.Client(sidecar.grpcTarget, grpc.credentials.createInsecure());
  const check = (bytes: Buffer) =>
    new Promise<{ allow: boolean; at: number }>((resolve, reject) =>
      client.makeUnaryRequest<Buffer, Buffer>(
        CHECK_PATH,
        identity,
        identity,
        bytes,
        { deadline: Date.now() + 10_000 },
        (error, response) =>
          error !== null || response === undefined
            ? reject(error)
            : resolve({ allow: allows(response), at: performance.now() }),
      ),
    );
  try {
    await ensureFunctionLibrary(redis);
    await putUser(redis, 'bench-stall');
    const keys = await createKeys(redis, 'bench-stall', trials, 4);
    const afterResume: number[] = [];
    const afterRevoke: number[] = [];
    let staleAllows = 0;
    let beforeAllowed = 0;
    for (const key of keys) {
      const bytes = checkRequestBytes({ authorization: `Bearer ${key.token}` });
      if (!(await check(bytes)).allow || !(await check(bytes)).allow) throw new Error('warm-up: not allowed');
      const stoppedAt = performance.now();
      sidecar.proc.kill('SIGSTOP');
      const before = check(bytes);
      await redis.call('FCALL', 'fortary_revoke', '1', key.keyId);
      const revokedAt = performance.now();
      const after = [check(bytes), check(bytes)];
      await sleep(Math.max(0, stallMs - (performance.now() - stoppedAt)));
      sidecar.proc.kill('SIGCONT');
      const resumedAt = performance.now();
      const answers = await Promise.all(after);
      if ((await before).allow) beforeAllowed++;
      staleAllows += answers.filter((a) => a.allow).length;
      const applied = Math.max(...answers.map((a) => a.at));
      afterResume.push(applied - resumedAt);
      afterRevoke.push(applied - revokedAt);
      await sleep(50);
    }
    const resume = [...afterResume].sort((a, b) => a - b);
    const revoke = [...afterRevoke].sort((a, b) => a - b);
    const fmt = (v: number) => v.toFixed(2);
    console.log(`\nRevocation during a ${stallMs} ms SIGSTOP, ${trials} trials, one channel`);
    console.log('| measure | p50 ms | p99 ms | max ms |');
    console.log('|---|---|---|---|');
    console.log(
      `| SIGCONT -> queued Checks answered (denied) | ${fmt(percentile(resume, 50))} | ${fmt(percentile(resume, 99))} | ${fmt(resume[resume.length - 1] as number)} |`,
    );
    console.log(
      `| revoke returned -> queued Checks answered | ${fmt(percentile(revoke, 50))} | ${fmt(percentile(revoke, 99))} | ${fmt(revoke[revoke.length - 1] as number)} |`,
    );
    console.log(
      `Checks sent after the revocation returned and allowed: ${staleAllows} of ${2 * trials}; ` +
        `the Check queued before it, allowed: ${beforeAllowed} of ${trials}`,
    );
  } finally {
    client.close();
    redis.disconnect();
    await stopChild(sidecar.proc);
    await stopChild(server.proc);
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(
      `stall bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  },
);
