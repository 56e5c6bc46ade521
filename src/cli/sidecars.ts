/**
 * Which sidecars are live and what they have applied (docs/propagation.md#acknowledgements):
 * - `fortary-authz sidecars [--json]` lists every live sidecar's acknowledgement key;
 * - `--wait [--timeout <N>s|ms]` on the writing commands waits until every live sidecar has applied the write's
 *   event, and exits 3 (the write being durable all the same) when some have not by the deadline.
 *
 * A sidecar is live while its key `fortary:sidecar:<id>` exists: it expires three heartbeats after the last write,
 * by Redis' clock. `lastSeenMs` is how long ago that write was (the key's full TTL minus what remains of it).
 */
import type Redis from 'ioredis';
import { ACK_TTL_HEARTBEATS, type AckRecord } from '../adapters/redis/ack-reporter';
import { SEQUENCE_KEY, SIDECAR_KEY_PREFIX } from '../adapters/redis/keyspace';
import { flagOption, stringOption, type OptionSpec, type OptionValues } from './args';
import type { Context } from './context';
import { CliError, UsageError } from './errors';

/** The write is done and durable, but some live sidecar had not confirmed it by the deadline. */
export const EXIT_UNCONFIRMED = 3;
const DEFAULT_TIMEOUT_MS = 5000;
const MAX_TIMEOUT_MS = 3_600_000;
const POLL_MS = 10;

export interface SidecarRow {
  id: string;
  version: string;
  appliedSeq: number | null;
  lagEvents: number | null;
  lastSeenMs: number;
}

/** sidecars [--json] */
export async function sidecarsCommand(ctx: Context, args: readonly string[]): Promise<void> {
  const { values } = ctx.parse('sidecars', args, { json: { type: 'boolean' } });
  const rows = await ctx.withRedis((redis) => liveSidecars(redis));
  if (flagOption(values, 'json')) {
    ctx.io.out(JSON.stringify(rows));
    return;
  }
  if (rows.length === 0) {
    ctx.io.out('No live sidecar (none has written its acknowledgement in the last 3 heartbeats).');
    return;
  }
  const header = ['id', 'version', 'appliedSeq', 'lagEvents', 'lastSeenMs'];
  const table = [
    header,
    ...rows.map((r) => [
      r.id,
      r.version,
      String(r.appliedSeq ?? '-'),
      String(r.lagEvents ?? '-'),
      String(r.lastSeenMs),
    ]),
  ];
  const widths = header.map((_, i) => Math.max(...table.map((row) => (row[i] ?? '').length)));
  for (const row of table) {
    ctx.io.out(
      row
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    );
  }
}

/** Every live sidecar, ordered by id, with its lag behind the current sequence. */
export async function liveSidecars(redis: Redis): Promise<SidecarRow[]> {
  const keys = await scanAll(redis, `${SIDECAR_KEY_PREFIX}*`);
  const sequence = Number((await redis.get(SEQUENCE_KEY)) ?? 0);
  const rows: SidecarRow[] = [];
  for (const [, ack, pttl] of await readAcks(redis, keys)) {
    if (ack === null || pttl < 0) continue; // expired between SCAN and GET
    rows.push({
      id: ack.id,
      version: ack.version,
      appliedSeq: ack.appliedSeq,
      lagEvents: ack.appliedSeq === null ? null : Math.max(0, sequence - ack.appliedSeq),
      lastSeenMs: Math.max(0, ACK_TTL_HEARTBEATS * ack.heartbeatMs - pttl),
    });
  }
  return rows.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

async function scanAll(redis: Redis, pattern: string): Promise<string[]> {
  const keys = new Set<string>();
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    for (const key of batch) keys.add(key);
    cursor = next;
  } while (cursor !== '0');
  return [...keys];
}

/** [key, parsed acknowledgement (null: gone or unreadable), remaining TTL in ms] for each key, in one round trip. */
async function readAcks(
  redis: Redis,
  keys: readonly string[],
): Promise<Array<[string, AckRecord | null, number]>> {
  if (keys.length === 0) return [];
  const pipeline = redis.pipeline();
  for (const key of keys) pipeline.get(key).pttl(key);
  const replies = (await pipeline.exec()) ?? [];
  return keys.map((key, i) => {
    const [getError, text] = replies[2 * i] ?? [null, null];
    const [ttlError, pttl] = replies[2 * i + 1] ?? [null, -2];
    if (getError || ttlError) throw getError ?? ttlError;
    return [key, parseAck(text), Number(pttl)];
  });
}

function parseAck(text: unknown): AckRecord | null {
  if (typeof text !== 'string') return null;
  try {
    const value = JSON.parse(text) as Partial<AckRecord>;
    if (typeof value.id !== 'string' || typeof value.version !== 'string') return null;
    if (typeof value.heartbeatMs !== 'number' || !(value.heartbeatMs > 0)) return null;
    const applied = value.appliedSeq;
    if (applied !== null && !(typeof applied === 'number' && Number.isSafeInteger(applied))) return null;
    return { id: value.id, version: value.version, appliedSeq: applied, heartbeatMs: value.heartbeatMs };
  } catch {
    return null;
  }
}

/** The options `--wait` adds to a writing command. */
export const WAIT_OPTIONS: OptionSpec = {
  wait: { type: 'boolean' },
  timeout: { type: 'string' },
  json: { type: 'boolean' },
};

/** null without --wait; --timeout needs --wait (--json alone prints the write's own result, see write-result.ts). */
export function waitRequest(
  command: string,
  values: OptionValues,
): { timeoutMs: number; json: boolean } | null {
  const timeout = stringOption(values, 'timeout');
  const json = flagOption(values, 'json');
  if (!flagOption(values, 'wait')) {
    if (timeout !== undefined) throw new UsageError(`${command}: --timeout needs --wait`);
    return null;
  }
  return { timeoutMs: timeout === undefined ? DEFAULT_TIMEOUT_MS : parseTimeout(timeout), json };
}

function parseTimeout(text: string): number {
  const match = /^([1-9][0-9]{0,9})(ms|s)$/.exec(text);
  const ms = match === null ? NaN : Number(match[1]) * (match[2] === 's' ? 1000 : 1);
  if (!(ms <= MAX_TIMEOUT_MS)) {
    throw new UsageError(`--timeout must be <N>s or <N>ms, at most 3600s (e.g. 5s, 500ms)`);
  }
  return ms;
}

export interface WaitResult {
  seq: number;
  sidecars: number;
  applied: number;
  pending: string[];
  elapsedMs: number;
}

/**
 * Called right after the write, on its connection: reads the sequence (the write's event, or a later one if
 * another write followed at once; waiting for that covers the write's) and polls the live sidecars' keys until
 * each has applied it or the deadline passes. A sidecar whose key disappears meanwhile (stopped) stops counting.
 */
export async function waitForSidecars(
  redis: Redis,
  timeoutMs: number,
  now: () => number = () => Math.round(performance.now()),
): Promise<WaitResult> {
  const started = now();
  const seq = Number((await redis.get(SEQUENCE_KEY)) ?? 0);
  let live = new Map((await liveSidecars(redis)).map((row) => [row.id, row.appliedSeq]));
  for (;;) {
    const pending = [...live].filter(([, applied]) => applied === null || applied < seq).map(([id]) => id);
    const elapsedMs = now() - started;
    if (pending.length === 0 || elapsedMs >= timeoutMs) {
      return { seq, sidecars: live.size, applied: live.size - pending.length, pending, elapsedMs };
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(POLL_MS, timeoutMs - elapsedMs)));
    const acks = await readAcks(
      redis,
      pending.map((id) => SIDECAR_KEY_PREFIX + id),
    );
    const next = new Map(live);
    for (const [key, ack, pttl] of acks) {
      const id = key.slice(SIDECAR_KEY_PREFIX.length);
      if (ack === null || pttl < 0) next.delete(id);
      else next.set(id, ack.appliedSeq);
    }
    live = next;
  }
}

/**
 * Prints the outcome (`applied on 6/6 sidecars in 3 ms`, or the JSON object with `extra` fields first) and, when
 * some live sidecar has not confirmed, fails with exit status 3 saying that the write is durable all the same.
 */
export function reportWait(
  ctx: Context,
  result: WaitResult,
  options: { json: boolean; timeoutMs: number; what: string; extra?: Record<string, unknown> },
): void {
  if (options.json) {
    ctx.io.out(JSON.stringify({ ...options.extra, ...result }));
  } else {
    ctx.io.out(`applied on ${result.applied}/${result.sidecars} sidecars in ${result.elapsedMs} ms`);
  }
  if (result.pending.length > 0) {
    throw new CliError(
      `not confirmed within ${options.timeoutMs} ms by ${result.pending.length} of ${result.sidecars} sidecars: ` +
        `${result.pending.join(', ')}; ${options.what} is durable in Redis and they will apply it when they catch up`,
      EXIT_UNCONFIRMED,
    );
  }
}
