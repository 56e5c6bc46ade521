/**
 * Private redis-server processes for tests: each on a free loopback port, with no persistence, killed when the
 * test is done. Tests never touch a Redis they did not start.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import Redis from 'ioredis';
import { freePort } from '../../bench/free-ports';

// One implementation of port choice for tests and benches (the bench build cannot import test/).
export { freePort, freePorts } from '../../bench/free-ports';

export interface RedisInstance {
  port: number;
  url: string;
  /** A fresh command client; closed by stop(). */
  client(): Redis;
  /** Stops the process (SIGKILL when `hard`), keeping the port for restart(). */
  kill(hard?: boolean): Promise<void>;
  /** Starts the server again on the same port (empty: nothing is persisted unless `args` ask for it). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startRedis(extraArgs: string[] = []): Promise<RedisInstance> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fortary-redis-'));
  const clients: Redis[] = [];
  let proc: ChildProcess | null = null;

  const launch = async () => {
    proc = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        dir,
        ...extraArgs,
      ],
      { stdio: 'ignore' },
    );
    await waitForPing(port);
  };
  await launch();

  const kill = async (hard = false) => {
    const p = proc;
    if (p === null || p.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
    p.kill(hard ? 'SIGKILL' : 'SIGTERM');
    await exited;
    proc = null;
  };

  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    client() {
      const c = new Redis(port, '127.0.0.1', { lazyConnect: false, maxRetriesPerRequest: 1 });
      clients.push(c);
      return c;
    },
    kill,
    restart: launch,
    async stop() {
      for (const c of clients) c.disconnect();
      await kill(true);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function waitForPing(port: number, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('error', () => resolve(false));
      socket.once('connect', () => socket.write('PING\r\n'));
      socket.once('data', (data) => {
        socket.destroy();
        resolve(data.toString().startsWith('+PONG'));
      });
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`redis-server on port ${port} did not answer PING within ${timeoutMs} ms`);
}
