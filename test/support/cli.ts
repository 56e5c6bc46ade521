/**
 * Helpers for tests of the `fortary-authz` CLI: run() in-process (stdin and clock injectable) or the real binary
 * in a child process, plus a snapshot of everything in a Redis to prove a refusal changed nothing.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import type Redis from 'ioredis';
import { run } from '../../src/cli/main';
import { parseKeyRecord } from '../../src/core/records';
import type { KeyRecord } from '../../src/core/types';

export const BIN = path.resolve(__dirname, '../../bin/fortary-authz.js');

export interface CliResult {
  code: number;
  out: string[];
  err: string[];
}

export interface CliOptions {
  env?: Record<string, string>;
  now?: number;
  stdin?: string;
}

/** run() in-process against `redisUrl`, bcrypt cost 4. */
export async function runCli(redisUrl: string, args: string[], options: CliOptions = {}): Promise<CliResult> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await run(args, {
    out: (line) => out.push(line),
    err: (line) => err.push(line),
    env: { REDIS_URL: redisUrl, FORTARY_BCRYPT_COST: '4', ...options.env },
    ...(options.now === undefined ? {} : { now: () => options.now as number }),
    ...(options.stdin === undefined ? {} : { readStdin: () => Promise.resolve(options.stdin as string) }),
  });
  return { code, out, err };
}

export interface BinResult {
  code: number;
  stdout: string;
  stderr: string;
  /** From the spawn to the exit. */
  ms: number;
}

/** The real binary in a child process, with only PATH, REDIS_URL, a low bcrypt cost and `env`. */
export function runBin(
  redisUrl: string,
  args: string[],
  options: { env?: Record<string, string>; stdin?: string } = {},
): Promise<BinResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [BIN, ...args],
      {
        env: { PATH: process.env.PATH ?? '', REDIS_URL: redisUrl, FORTARY_BCRYPT_COST: '4', ...options.env },
        timeout: 20_000,
      },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
        resolve({ code, stdout, stderr, ms: Date.now() - started });
      },
    );
    child.stdin?.end(options.stdin ?? '');
  });
}

/** Everything in the database. */
export async function snapshot(client: Redis): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const name of (await client.keys('*')).sort()) {
    const type = await client.type(name);
    if (type === 'string') out[name] = await client.get(name);
    else if (type === 'hash') out[name] = await client.hgetall(name);
    else if (type === 'set') out[name] = (await client.smembers(name)).sort();
    else out[name] = type;
  }
  return out;
}

export async function storedKey(client: Redis, keyId: string): Promise<KeyRecord> {
  const fields = await client.hgetall(`fortary:key:${keyId}`);
  const parsed = parseKeyRecord(keyId, {
    record: fields.record ?? null,
    revokedAt: fields.revokedAt ?? null,
  });
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.value;
}

/** The single stderr line of a failed command, without the `fortary-authz: ` prefix. */
export function oneErrorLine(result: CliResult): string {
  expect(result.err).toHaveLength(1);
  expect(result.err[0]).toMatch(/^fortary-authz: \S/);
  return (result.err[0] as string).slice('fortary-authz: '.length);
}
