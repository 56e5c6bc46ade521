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
import { sleep, startSidecar, stopChild } from './bench-support';
import { checkRequestBytes } from './envoy-request';
import { CheckChannel, percentile, runBench, withBenchRedis } from './revocation-support';
import { createKeys, putUser } from './seed';

runBench('stall bench', async () => {
  const trials = Number(process.env.STALL_TRIALS ?? 30);
  const stallMs = Number(process.env.STALL_MS ?? 300);
  const main = process.env.STALL_MAIN;
  await withBenchRedis(async (redis, server) => {
    const sidecar = await startSidecar(server.url, main === undefined ? {} : { main });
    const channel = new CheckChannel(sidecar.grpcTarget);
    const check = async (bytes: Buffer) => {
      const { code, at } = await channel.check(bytes, 10_000);
      return { allow: code === 0, at };
    };
    try {
      await putUser(redis, 'bench-stall');
      const keys = await createKeys(redis, 'bench-stall', trials, 4);
      const afterResume: number[] = [];
      const afterRevoke: number[] = [];
      let staleAllows = 0;
      let beforeAllowed = 0;
      for (const key of keys) {
        const bytes = checkRequestBytes({ authorization: `Bearer ${key.token}` });
        if (!(await check(bytes)).allow || !(await check(bytes)).allow)
          throw new Error('warm-up: not allowed');
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
      channel.close();
      await stopChild(sidecar.proc);
    }
  });
});
