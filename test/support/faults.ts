/**
 * Fault-injection helpers for the propagation and outage suites:
 * - checks with a timestamped, flattened answer, and a loop that keeps checking a set of tokens across a fault;
 * - a TCP proxy in front of redis-server that can freeze single connections (a half-open socket: the peer is
 *   gone but no FIN or RST ever arrives), hold a connection's traffic, drop everything, or point new connections
 *   at another server (a failover behind one address);
 * - log and metric readers for the in-process sidecar.
 */
import net from 'node:net';
import { envoyRequest, metadataOf, type CheckClient, type EnvoyRequestOptions } from './check-client';
import type { Harness } from './sidecar-harness';
import { verdict } from './sidecar-harness';

export const VAULT_PATH = '/v1/vaults/alpha/secrets/db';

export interface Answer {
  label: string;
  /** Date.now() when the request was sent and when its answer came back. */
  sentAt: number;
  doneAt: number;
  allow: boolean;
  /** The sidecar's reason (dynamic metadata), or `rpc_error: …` when the RPC itself failed. */
  reason: string;
  http: number | null;
}

export async function checkToken(
  client: CheckClient,
  token: string,
  label = '',
  request: EnvoyRequestOptions = {},
): Promise<Answer> {
  const sentAt = Date.now();
  try {
    const response = await client(
      envoyRequest({ authorization: `Bearer ${token}`, path: VAULT_PATH, ...request }),
    );
    const v = verdict(response);
    return {
      label,
      sentAt,
      doneAt: Date.now(),
      allow: v.allow,
      reason: v.allow ? 'allowed' : (metadataOf(response).reason ?? `grpc ${v.grpc}`),
      http: v.http,
    };
  } catch (error) {
    return {
      label,
      sentAt,
      doneAt: Date.now(),
      allow: false,
      reason: `rpc_error: ${String(error)}`,
      http: null,
    };
  }
}

/**
 * Polls one token until the answer is a denial whose reason is in `reasons` (any denial when empty), or the
 * timeout passes. Returns the first such answer and how long after `since` it was received.
 */
export async function firstDenial(
  client: CheckClient,
  token: string,
  since: number,
  timeoutMs: number,
  reasons: string[] = [],
): Promise<{ answer: Answer; afterMs: number; checks: number }> {
  let checks = 0;
  for (;;) {
    const answer = await checkToken(client, token);
    checks++;
    if (!answer.allow && (reasons.length === 0 || reasons.includes(answer.reason))) {
      return { answer, afterMs: answer.doneAt - since, checks };
    }
    if (Date.now() - since > timeoutMs) {
      throw new Error(
        `still ${answer.allow ? 'allowed' : answer.reason} ${Date.now() - since} ms later (bound ${timeoutMs} ms)`,
      );
    }
  }
}

export interface CheckLoop {
  answers: Answer[];
  /** Stops the workers and resolves with every answer, in completion order. */
  stop(): Promise<Answer[]>;
}

/**
 * Keeps checking every token (one worker each, `pauseMs` between checks) until stopped. The answers are kept so a
 * test can assert an invariant over the whole run, e.g. "no revoked token was ever allowed".
 */
export function startCheckLoop(
  client: CheckClient,
  tokens: Record<string, string>,
  options: { pauseMs?: number } = {},
): CheckLoop {
  const pauseMs = options.pauseMs ?? 2;
  const answers: Answer[] = [];
  let running = true;
  const workers = Object.entries(tokens).map(async ([label, token]) => {
    while (running) {
      // The label as x-request-id, so the sidecar's decision log lines can be attributed.
      answers.push(await checkToken(client, token, label, { requestId: label }));
      if (pauseMs > 0) await sleep(pauseMs);
    }
  });
  return {
    answers,
    async stop() {
      running = false;
      await Promise.all(workers);
      return answers;
    },
  };
}

/** Counts answers by label and reason, e.g. `{ valid: { allowed: 120, store_unavailable: 8 } }`. */
export function tally(answers: readonly Answer[]): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const a of answers) {
    const byReason = (out[a.label] ??= {});
    const reason = a.reason.startsWith('rpc_error') ? 'rpc_error' : a.reason;
    byReason[reason] = (byReason[reason] ?? 0) + 1;
  }
  return out;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The harness's log lines with `msg === message` (and the given fields), each with its time in epoch ms. */
export function logEntries(
  h: Harness,
  message: string,
  fields: Record<string, unknown> = {},
  fromIndex = 0,
): Array<Record<string, unknown> & { at: number }> {
  return h.logs
    .slice(fromIndex)
    .filter((l) => l.msg === message && Object.entries(fields).every(([k, v]) => l[k] === v))
    .map((l) => ({ ...l, at: Date.parse(String(l.time)) }));
}

/** The value of a counter or gauge child in the sidecar's registry (0 when absent). */
export async function metricValue(
  h: Harness,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const metric = h.sidecar.metrics.registry.getSingleMetric(name);
  if (metric === undefined) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  const match = values.find((v) =>
    Object.entries(labels).every(([k, value]) => (v.labels as Record<string, unknown>)[k] === value),
  );
  return match?.value ?? 0;
}

/** One client connection through the proxy and its upstream. */
interface ProxiedConnection {
  client: net.Socket;
  upstream: net.Socket;
  /** The first bytes the client sent (ioredis sends `CLIENT SETNAME <connectionName>` first). */
  hello: string;
  frozen: boolean;
  held: Buffer[] | null;
}

/**
 * A byte-level TCP proxy in front of a redis-server. Freezing a connection stops reading and writing on both of
 * its sockets, exactly like a peer that vanished without a FIN: the sidecar's socket stays "connected", writes
 * are accepted by the kernel, nothing ever comes back. New connections are not affected.
 */
export class RedisProxy {
  private readonly connections = new Set<ProxiedConnection>();
  private server: net.Server | null = null;
  port = 0;

  private constructor(private targetPort: number) {}

  static async start(targetPort: number): Promise<RedisProxy> {
    const proxy = new RedisProxy(targetPort);
    await proxy.listen();
    return proxy;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  private listen(): Promise<void> {
    const server = net.createServer((client) => this.accept(client));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        this.port = (server.address() as net.AddressInfo).port;
        resolve();
      });
    });
  }

  private accept(client: net.Socket): void {
    const upstream = net.connect(this.targetPort, '127.0.0.1');
    // As Redis and ioredis do: without it, Nagle + delayed ACK hold small replies and events back ~40 ms.
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const conn: ProxiedConnection = { client, upstream, hello: '', frozen: false, held: null };
    this.connections.add(conn);
    client.on('data', (data: Buffer) => {
      if (conn.hello.length < 512) conn.hello += data.toString('latin1');
      if (conn.frozen) return;
      if (conn.held !== null) conn.held.push(data);
      else upstream.write(data);
    });
    upstream.on('data', (data: Buffer) => {
      if (!conn.frozen) client.write(data);
    });
    const end = () => {
      if (conn.frozen) return;
      this.connections.delete(conn);
      client.destroy();
      upstream.destroy();
    };
    for (const socket of [client, upstream]) {
      socket.on('error', end);
      socket.on('close', end);
    }
  }

  private matching(marker: string): ProxiedConnection[] {
    return [...this.connections].filter((c) => !c.frozen && c.hello.includes(marker));
  }

  /** Freezes every open connection whose client named itself with `marker`; returns how many. */
  freeze(marker: string): number {
    const found = this.matching(marker);
    for (const c of found) {
      c.frozen = true;
      c.client.pause();
      c.upstream.pause();
    }
    return found.length;
  }

  /** Holds (buffers) what matching clients send until release(); their connections stay open. */
  hold(marker: string): number {
    const found = this.matching(marker);
    for (const c of found) c.held ??= [];
    return found.length;
  }

  release(): void {
    for (const c of this.connections) {
      if (c.held === null) continue;
      for (const data of c.held) c.upstream.write(data);
      c.held = null;
    }
  }

  /** New connections go to another server from now on (a failover behind one address). */
  retarget(port: number): void {
    this.targetPort = port;
  }

  /** Closes every connection, frozen ones included (both ends see the connection go away). */
  dropAll(): void {
    for (const c of this.connections) {
      c.client.destroy();
      c.upstream.destroy();
    }
    this.connections.clear();
  }

  async close(): Promise<void> {
    this.dropAll();
    const server = this.server;
    this.server = null;
    if (server !== null) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/** A sample from a sidecar's /metrics text, e.g. `fortary_authz_cache_flushes_total{cause="gap"}`; 0 when absent. */
export async function scrapeMetric(
  adminPort: number,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== '{' && line[name.length] !== ' ')) continue;
    if (wanted.every((w) => line.includes(w))) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** `CLIENT LIST` as objects (`id`, `name`, `sub`, `flags`, ...). */
export async function clientList(redis: {
  call(...args: string[]): Promise<unknown>;
}): Promise<Array<Record<string, string>>> {
  const text = String(await redis.call('CLIENT', 'LIST'));
  return text
    .trim()
    .split('\n')
    .map((line) =>
      Object.fromEntries(
        line
          .trim()
          .split(' ')
          .map((kv) => kv.split('=', 2) as [string, string]),
      ),
    );
}

/** The ids of the sidecar subscriber connections Redis currently has (named by ioredis' connectionName). */
export async function subscriberIds(redis: { call(...args: string[]): Promise<unknown> }): Promise<string[]> {
  return (await clientList(redis))
    .filter((c) => c.name === 'fortary-authz-subscriber' && c.sub === '1')
    .map((c) => c.id as string);
}

/** Requirement bounds of issue 3, shared by the propagation, fault and Sentinel suites. */
export const REVOKE_BOUND_MS = 100;
export const EVENT_BOUND_MS = 1000;
export const RECOVERY_BOUND_MS = 2000;

/**
 * A registry of everything a test started, stopped in reverse order after each test whatever happens. Call once
 * at the top level of a suite; push a stopper for each process or loop the test starts.
 */
export function cleanupRegistry(): Array<() => Promise<unknown> | unknown> {
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  afterEach(async () => {
    while (cleanups.length > 0) {
      const cleanup = cleanups.pop() as () => Promise<unknown>;
      await Promise.resolve()
        .then(cleanup)
        .catch(() => undefined);
    }
  });
  return cleanups;
}
