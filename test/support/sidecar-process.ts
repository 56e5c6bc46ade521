/**
 * Runs the built sidecar exactly as `npm start` does (node dist/src/main.js) on free ports, for end-to-end tests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { freePorts } from './redis-server';
import { waitFor } from './fixtures';

export const ROOT = path.resolve(__dirname, '../..');

export interface SidecarProcess {
  proc: ChildProcess;
  grpcPort: number;
  healthPort: number;
  adminPort: number;
  output(): string;
  exited: Promise<number | null>;
  health(service?: string): Promise<string>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export async function spawnSidecar(env: Record<string, string>): Promise<SidecarProcess> {
  const [grpcPort, healthPort, adminPort] = (await freePorts(3)) as [number, number, number];
  const proc = spawn(process.execPath, [path.join(ROOT, 'dist/src/main.js')], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      FORTARY_GRPC_ADDR: `127.0.0.1:${grpcPort}`,
      FORTARY_HEALTH_ADDR: `127.0.0.1:${healthPort}`,
      FORTARY_ADMIN_ADDR: `127.0.0.1:${adminPort}`,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const healthClient = makeHealthClient(`127.0.0.1:${healthPort}`);
  const health = (service = '') =>
    new Promise<string>((resolve) => {
      healthClient.Check(
        { service },
        { deadline: Date.now() + 1000 },
        (error: unknown, reply: { status: string }) =>
          resolve(error ? `error: ${(error as Error).message}` : reply.status),
      );
    });
  return {
    proc,
    grpcPort,
    healthPort,
    adminPort,
    output: () => out,
    exited,
    health,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      healthClient.close();
      if (proc.exitCode === null) proc.kill(signal);
      return exited;
    },
  };
}

function makeHealthClient(address: string): any {
  const definition = protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String, defaults: true });
  const pkg = grpc.loadPackageDefinition(definition) as any;
  // The client exists before the sidecar listens: with grpc-js' default reconnect backoff (1 s, x1.6 per refused
  // attempt) a sidecar that takes a few seconds to start on a busy CI machine would next be tried after the wait
  // below has given up. Retry the connection every few hundred ms instead.
  return new pkg.grpc.health.v1.Health(address, grpc.credentials.createInsecure(), {
    'grpc.initial_reconnect_backoff_ms': 100,
    'grpc.max_reconnect_backoff_ms': 500,
  });
}

export async function waitForServing(sidecar: SidecarProcess, timeoutMs = 10_000): Promise<void> {
  try {
    await waitFor(async () => (await sidecar.health()) === 'SERVING', timeoutMs, 50);
  } catch (error) {
    // Say why: a sidecar that exited, or what it printed, is the diagnosis.
    const state = sidecar.proc.exitCode === null ? 'still running' : `exited ${sidecar.proc.exitCode}`;
    throw new Error(
      `${(error as Error).message}: sidecar ${state}; last health answer: ${await sidecar.health()}; output:\n${sidecar.output().slice(-4000)}`,
    );
  }
}
