/**
 * No stale allow after a stall (issue 11). When the sidecar's event loop stops (SIGSTOP, a GC pause, CFS
 * throttling, a CPU-bound task) while a revocation is published, Node may answer the Checks queued on the gRPC
 * connection before it reads the pub/sub message. Every Check sent after the revocation returned must be denied
 * once the stall ends. Real redis-server, the real sidecar, a real grpc-js client on ONE channel (as Envoy keeps
 * a few long-lived multiplexed connections).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { checkRequestBytes, decodeCheckResponse, envoyRequest, metadataOf } from '../support/check-client';
import { createKey, putUser, revokeKey, type CreatedKey } from '../support/fixtures';
import { checkToken, cleanupRegistry, metricValue, sleep, VAULT_PATH } from '../support/faults';
import { startRedis, type RedisInstance } from '../support/redis-server';
import { spawnSidecar, waitForServing } from '../support/sidecar-process';
import { makeCheckClient } from '../support/check-client';
import { startHarness, verdict } from '../support/sidecar-harness';

const cleanups = cleanupRegistry();

async function redisServer(): Promise<RedisInstance> {
  const server = await startRedis();
  cleanups.push(() => server.stop());
  return server;
}

/** allowed / the sidecar's denial reason / the RPC error. */
function outcome(bytes: Buffer): string {
  const response = decodeCheckResponse(bytes);
  return verdict(response).allow ? 'allowed' : (metadataOf(response).reason ?? 'denied');
}

describe('a stalled sidecar denies a key revoked during the stall', () => {
  it.each([100, 300, 1000])(
    'SIGSTOP %i ms with Checks queued on the same channel before and after the revocation: every Check sent after the revocation returned is denied after SIGCONT',
    async (stopMs) => {
      const redis = await redisServer();
      const admin = redis.client();
      const sidecar = await spawnSidecar({
        REDIS_URL: redis.url,
        FORTARY_LOG_LEVEL: 'warn',
      });
      cleanups.push(() => sidecar.stop('SIGKILL'));
      await waitForServing(sidecar);
      await putUser(admin, { id: 'alice', developerVaults: ['alpha'] });
      const key: CreatedKey = await createKey(admin, { userId: 'alice', vaults: ['alpha'] });
      const c = makeCheckClient(`127.0.0.1:${sidecar.grpcPort}`);
      cleanups.push(() => c.close());
      expect((await checkToken(c, key.token)).reason).toBe('allowed');
      expect((await checkToken(c, key.token)).reason).toBe('allowed');

      sidecar.proc.kill('SIGSTOP');
      await sleep(20);
      const queuedBefore = checkToken(c, key.token, 'before');
      await sleep(10);
      expect(await revokeKey(admin, key.keyId)).toBe(1);
      const revokedAt = Date.now();
      const queuedAfter = [checkToken(c, key.token, 'after-1'), checkToken(c, key.token, 'after-2')];
      await sleep(stopMs);
      sidecar.proc.kill('SIGCONT');

      const after = await Promise.all(queuedAfter);
      for (const answer of after) {
        expect(answer.sentAt).toBeGreaterThanOrEqual(revokedAt);
        expect({ label: answer.label, reason: answer.reason }).toEqual({
          label: answer.label,
          reason: 'key_revoked',
        });
      }
      // Sent before the revocation, answered after it: denied as well (it was answered after the stall).
      expect((await queuedBefore).allow).toBe(false);
      expect((await checkToken(c, key.token)).reason).toBe('key_revoked');
      // The sidecar is still serving other keys afterwards.
      const other = await createKey(admin, { userId: 'alice', vaults: ['alpha'] });
      expect((await checkToken(c, other.token)).reason).toBe('allowed');
    },
  );

  it('event loop blocked 300 ms in process while a revocation is published: no Check sent after the revocation returned is allowed, and the cache is trusted again afterwards', async () => {
    const h = await startHarness();
    cleanups.push(() => h.stop());
    await putUser(h.admin, { id: 'alice', developerVaults: ['alpha'] });
    const key = await createKey(h.admin, { userId: 'alice', vaults: ['alpha'] });
    const valid = await createKey(h.admin, { userId: 'alice', vaults: ['alpha'] });
    expect((await checkToken(h.client, valid.token)).reason).toBe('allowed');

    // The far side runs in its own process: this one, which hosts the sidecar, is about to block.
    const child = spawn(process.execPath, [path.join(__dirname, '../support/stall-client.js')], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    cleanups.push(() => child.kill('SIGKILL'));
    const out = readline.createInterface({ input: child.stdout });
    const replies: Array<Record<string, any>> = [];
    const waiters: Array<(line: Record<string, any>) => void> = [];
    out.on('line', (line) => {
      const parsed = JSON.parse(line) as Record<string, any>;
      const waiter = waiters.shift();
      if (waiter) waiter(parsed);
      else replies.push(parsed);
    });
    const reply = () =>
      new Promise<Record<string, any>>((resolve) =>
        replies.length > 0 ? resolve(replies.shift() as Record<string, any>) : waiters.push(resolve),
      );
    const request = checkRequestBytes(
      envoyRequest({ authorization: `Bearer ${key.token}`, path: VAULT_PATH }),
    );
    child.stdin.write(
      JSON.stringify({
        grpc: `127.0.0.1:${h.sidecar.grpcPort}`,
        redis: h.redis.url,
        keyId: key.keyId,
        request: request.toString('base64'),
        leadMs: 40,
      }) + '\n',
    );
    const ready = await reply();
    expect(ready.error).toBeUndefined();
    expect(outcome(Buffer.from(ready.ready.answer, 'base64'))).toBe('allowed');

    child.stdin.write('go\n');
    const stallStart = Date.now();
    while (Date.now() - stallStart < 300) {
      // A CPU-bound task: the sidecar's event loop runs nothing meanwhile.
    }
    const stallEnd = Date.now();

    const { result } = await reply();
    // The premise: the revocation was committed (and returned) while this process was blocked.
    expect(result.receivers).toBe(1);
    expect(result.revokeStartedAt).toBeGreaterThanOrEqual(stallStart);
    expect(result.revokeReturnedAt).toBeLessThan(stallEnd);
    for (const answer of result.after) {
      expect(answer.sentAt).toBeGreaterThanOrEqual(result.revokeReturnedAt);
      expect(answer.error).toBeNull();
      expect(outcome(Buffer.from(answer.answer, 'base64'))).toBe('key_revoked');
    }
    expect(result.before.error).toBeNull();
    expect(outcome(Buffer.from(result.before.answer, 'base64'))).not.toBe('allowed');

    // The stall was counted, and the cache is trusted again once the subscription caught up: warm Checks no
    // longer read the sequence.
    expect(await metricValue(h, 'fortary_authz_event_loop_stalls_total')).toBeGreaterThanOrEqual(1);
    await sleep(100);
    const gets = async () => Number(/cmdstat_get:calls=(\d+)/.exec(await h.admin.info('commandstats'))?.[1]);
    const getsBefore = await gets();
    expect((await checkToken(h.client, valid.token)).reason).toBe('allowed');
    expect((await checkToken(h.client, key.token)).reason).toBe('key_revoked');
    for (let i = 0; i < 5; i++) expect((await checkToken(h.client, valid.token)).reason).toBe('allowed');
    expect(await gets()).toBe(getsBefore);
  });
});
