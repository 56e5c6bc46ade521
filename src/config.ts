/**
 * Configuration from the environment, parsed and validated once at startup. Every problem is collected so an
 * operator fixes them in one go; the result is frozen.
 */
import os from 'node:os';
import { cidrProblem, compileCidrs, type CidrList } from './core/network';

export interface HostPort {
  host: string;
  port: number;
}

export interface Config {
  grpc: HostPort;
  health: HostPort | null;
  admin: HostPort | null;
  redis: {
    url: string;
    sentinels: HostPort[] | null;
    sentinelName: string | null;
  };
  roleMaxStalenessMs: number;
  trustedProxies: CidrList;
  openPaths: readonly string[];
  cache: { maxKeys: number; maxUsers: number };
  bcrypt: { concurrency: number; queue: number };
  drainTimeoutMs: number;
  heartbeatMs: number;
  /** Allowed requests of keys expiring within this many ms carry x-fortary-key-expires-at; 0 = never. */
  expiryWarningMs: number;
  /** How often one key's last use is written to Redis, at most. */
  lastUsedFlushMs: number;
  logLevel: string;
  /** The pod name (HOSTNAME, else the host name): the first half of the sidecar's acknowledgement id. */
  hostname: string;
}

export type ConfigResult = { ok: true; config: Readonly<Config> } | { ok: false; problems: string[] };

const DAY_MS = 24 * 60 * 60 * 1000;
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function readConfig(env: NodeJS.ProcessEnv): ConfigResult {
  const problems: string[] = [];
  const p = new EnvParser(env, problems);

  const grpc = p.hostPort('FORTARY_GRPC_ADDR', '0.0.0.0:9191');
  const health = p.optionalHostPort('FORTARY_HEALTH_ADDR', '0.0.0.0:9192');
  const admin = p.optionalHostPort('FORTARY_ADMIN_ADDR', '0.0.0.0:9464');
  const url = p.string('REDIS_URL', 'redis://127.0.0.1:6379');
  if (!/^rediss?:\/\/[^\s]+$/.test(url)) problems.push('REDIS_URL must be a redis:// or rediss:// URL');
  const sentinels = p.hostPortList('REDIS_SENTINELS');
  const sentinelName = env.REDIS_SENTINEL_NAME?.trim() || null;
  if ((sentinels === null) !== (sentinelName === null)) {
    problems.push('REDIS_SENTINELS and REDIS_SENTINEL_NAME must be set together');
  }
  const staleness = p.integer('FORTARY_ROLE_MAX_STALENESS_S', 60, 1, 300);
  const proxies = compileCidrs(p.list('FORTARY_TRUSTED_PROXIES'));
  if (!proxies.ok) {
    for (const cidr of proxies.invalid)
      problems.push(`FORTARY_TRUSTED_PROXIES entry ${cidrProblem(cidr) ?? cidr}`);
  }
  const openPaths = p.list('FORTARY_OPEN_PATHS');
  for (const path of openPaths) {
    if (!/^\/[A-Za-z0-9/_.~-]*(\/\*)?$/.test(path) || path.includes('//') || path.startsWith('/v1/vaults')) {
      problems.push(
        `FORTARY_OPEN_PATHS entry ${JSON.stringify(path)} must be /exact/path or /prefix/* outside /v1/vaults`,
      );
    }
  }
  const cores = os.availableParallelism();
  const config: Config = {
    grpc,
    health,
    admin,
    redis: { url, sentinels, sentinelName },
    roleMaxStalenessMs: staleness * 1000,
    trustedProxies: proxies.ok ? proxies.ranges : [],
    openPaths,
    cache: {
      maxKeys: p.integer('FORTARY_CACHE_MAX_KEYS', 100_000, 1, 10_000_000),
      maxUsers: p.integer('FORTARY_CACHE_MAX_USERS', 100_000, 1, 10_000_000),
    },
    bcrypt: {
      // One core is left to the event loop: bcrypt on every core made valid checks wait for CPU during a flood of
      // wrong secrets (bench: p99 98 ms with 2 of 2 cores, 28 ms with 1). Set it explicitly to use them all.
      concurrency: p.integer('FORTARY_BCRYPT_CONCURRENCY', Math.max(1, cores - 1), 1, 64),
      queue: p.integer('FORTARY_BCRYPT_QUEUE', 32, 0, 10_000),
    },
    drainTimeoutMs: p.integer('FORTARY_DRAIN_TIMEOUT_MS', 10_000, 0, 600_000),
    heartbeatMs: p.integer('FORTARY_HEARTBEAT_MS', 1000, 50, 60_000),
    hostname: env.HOSTNAME?.trim() || os.hostname(),
    expiryWarningMs: p.integer('FORTARY_EXPIRY_WARNING_DAYS', 30, 0, 3650) * DAY_MS,
    lastUsedFlushMs: p.integer('FORTARY_LAST_USED_FLUSH_S', 60, 1, 3600) * 1000,
    logLevel: p.oneOf('FORTARY_LOG_LEVEL', 'info', LOG_LEVELS),
  };
  for (const [name, a, b] of [
    ['FORTARY_HEALTH_ADDR', health, grpc],
    ['FORTARY_ADMIN_ADDR', admin, grpc],
    ['FORTARY_ADMIN_ADDR', admin, health],
  ] as const) {
    if (a !== null && b !== null && a.port !== 0 && a.port === b.port)
      problems.push(`${name} reuses port ${a.port}`);
  }
  if (problems.length > 0) return { ok: false, problems };
  return { ok: true, config: deepFreeze(config) };
}

class EnvParser {
  constructor(
    private readonly env: NodeJS.ProcessEnv,
    private readonly problems: string[],
  ) {}

  string(name: string, fallback: string): string {
    const value = this.env[name];
    return value === undefined || value.trim() === '' ? fallback : value.trim();
  }

  list(name: string): string[] {
    const value = this.env[name];
    if (value === undefined || value.trim() === '') return [];
    return value
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
  }

  integer(name: string, fallback: number, min: number, max: number): number {
    const text = this.env[name];
    if (text === undefined || text.trim() === '') return fallback;
    if (!/^\d+$/.test(text.trim())) {
      this.problems.push(`${name} must be an integer, got ${JSON.stringify(text)}`);
      return fallback;
    }
    const value = Number(text.trim());
    if (value < min || value > max) {
      this.problems.push(`${name} must be between ${min} and ${max}, got ${value}`);
      return fallback;
    }
    return value;
  }

  oneOf(name: string, fallback: string, allowed: string[]): string {
    const value = this.string(name, fallback);
    if (!allowed.includes(value)) this.problems.push(`${name} must be one of ${allowed.join(', ')}`);
    return value;
  }

  hostPort(name: string, fallback: string): HostPort {
    const value = this.string(name, fallback);
    const parsed = parseHostPort(value);
    if (parsed === null) {
      this.problems.push(`${name} must be host:port, got ${JSON.stringify(value)}`);
      return { host: '0.0.0.0', port: 0 };
    }
    return parsed;
  }

  /** `off` disables the listener. */
  optionalHostPort(name: string, fallback: string): HostPort | null {
    return this.string(name, fallback) === 'off' ? null : this.hostPort(name, fallback);
  }

  hostPortList(name: string): HostPort[] | null {
    const entries = this.list(name);
    if (entries.length === 0) return null;
    const parsed = entries.map(parseHostPort);
    const bad = entries.filter((_, i) => parsed[i] === null);
    if (bad.length > 0) this.problems.push(`${name} entries must be host:port, got ${bad.join(', ')}`);
    return parsed.filter((x): x is HostPort => x !== null);
  }
}

export function parseHostPort(text: string): HostPort | null {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(text);
  if (match === null) return null;
  const port = Number(match[2]);
  if (port > 65535) return null;
  return { host: (match[1] as string).replace(/^\[|\]$/g, ''), port };
}

export function formatHostPort({ host, port }: HostPort): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const child of Object.values(value)) deepFreeze(child);
    // ipaddr.js objects inside trustedProxies are frozen too: nothing may mutate config after startup.
    Object.freeze(value);
  }
  return value;
}
