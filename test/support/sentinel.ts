/**
 * A private Redis Sentinel deployment for tests: one master, one replica and one or three sentinels
 * (`redis-server <conf> --sentinel`), all on free loopback ports, with short timings so a failover completes in
 * seconds (down-after-milliseconds 1000, failover-timeout 5000). Everything is stopped by stop().
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Redis from 'ioredis';
import { waitFor } from './fixtures';
import { freePort, startRedis, type RedisInstance } from './redis-server';
import { reviveAfterEnd } from '../../src/adapters/redis/connections';

export const MASTER_NAME = 'fortary';

export interface SentinelDeployment {
  /** The data nodes, by their role at start. */
  master: RedisInstance;
  replica: RedisInstance;
  sentinelPorts: number[];
  /** REDIS_SENTINELS for the sidecar. */
  sentinelsEnv: string;
  /** A client that follows the master through Sentinel (closed by stop()). */
  client(): Redis;
  /** A direct client to one sentinel (closed by stop()). */
  sentinel(index?: number): Redis;
  /** The port Sentinel currently names as the master. */
  masterPort(): Promise<number>;
  /** Resolves once Sentinel names `port` as the master. */
  waitForMaster(port: number, timeoutMs: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startSentinels(count: 1 | 3 = 1): Promise<SentinelDeployment> {
  // No diskless-sync delay: a replica (re)syncs at once, on either node.
  const syncNow = ['--repl-diskless-sync-delay', '0'];
  const master = await startRedis(syncNow);
  const replica = await startRedis([...syncNow, '--replicaof', '127.0.0.1', String(master.port)]);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fortary-sentinel-'));
  const procs: ChildProcess[] = [];
  const clients: Redis[] = [];
  const guards: Array<() => void> = [];
  const sentinelPorts: number[] = [];

  const stop = async () => {
    for (const stopGuard of guards) stopGuard();
    for (const c of clients) c.disconnect();
    await Promise.all(
      procs.map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.exitCode !== null || p.signalCode !== null) return resolve();
            p.once('exit', () => resolve());
            p.kill('SIGKILL');
          }),
      ),
    );
    await replica.stop();
    await master.stop();
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    const quorum = count === 1 ? 1 : 2;
    for (let i = 0; i < count; i++) {
      const port = await freePort();
      const file = path.join(dir, `sentinel-${i}.conf`);
      writeFileSync(
        file,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${dir}`,
          `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${master.port} ${quorum}`,
          `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
          `sentinel failover-timeout ${MASTER_NAME} 5000`,
          `sentinel parallel-syncs ${MASTER_NAME} 1`,
          '',
        ].join('\n'),
      );
      procs.push(spawn('redis-server', [file, '--sentinel'], { stdio: 'ignore' }));
      sentinelPorts.push(port);
    }

    const sentinel = (index = 0) => {
      const c = new Redis({
        port: sentinelPorts[index] as number,
        host: '127.0.0.1',
        maxRetriesPerRequest: 1,
      });
      c.on('error', () => {});
      clients.push(c);
      return c;
    };
    const masterPort = async () => {
      const [, port] = (await sentinel().call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER_NAME)) as [
        string,
        string,
      ];
      return Number(port);
    };

    // Ready for a failover: the replica is in sync, every sentinel knows it and (with three) each other.
    const direct = replica.client();
    await waitFor(
      async () => (await direct.info('replication')).includes('master_link_status:up'),
      10_000,
      50,
    );
    const probes = sentinelPorts.map((_, i) => sentinel(i));
    await waitFor(
      async () => {
        for (const probe of probes) {
          const replicas = (await probe
            .call('SENTINEL', 'REPLICAS', MASTER_NAME)
            .catch(() => [])) as string[][];
          const known = replicas.some((fields) => {
            const flags = fields[fields.indexOf('flags') + 1] ?? '';
            return flags === 'slave';
          });
          if (!known) return false;
          if (count > 1) {
            const peers = (await probe.call('SENTINEL', 'SENTINELS', MASTER_NAME)) as unknown[];
            if (peers.length !== count - 1) return false;
          }
        }
        return true;
      },
      15_000,
      100,
    );

    return {
      master,
      replica,
      sentinelPorts,
      sentinelsEnv: sentinelPorts.map((p) => `127.0.0.1:${p}`).join(','),
      client() {
        const c = new Redis({
          sentinels: sentinelPorts.map((port) => ({ host: '127.0.0.1', port })),
          name: MASTER_NAME,
          maxRetriesPerRequest: 1,
          failoverDetector: true,
        });
        c.on('error', () => {});
        // The same ioredis give-up-mid-failover the sidecar guards against would otherwise end the test's writer.
        guards.push(reviveAfterEnd(c, () => undefined));
        clients.push(c);
        return c;
      },
      sentinel,
      masterPort,
      async waitForMaster(port, timeoutMs) {
        await waitFor(async () => (await masterPort()) === port, timeoutMs, 25);
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
