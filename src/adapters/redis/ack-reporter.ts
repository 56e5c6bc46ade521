/**
 * Acknowledgements: each sidecar keeps one key, `fortary:sidecar:<id>`, saying which event sequence its cache has
 * applied (docs/propagation.md#acknowledgements). Written on every heartbeat and as soon as an event or a reconcile
 * advances the sequence; it expires after three heartbeats, so a sidecar that stopped (or froze) drops out of
 * `fortary-authz sidecars` by itself. The key's TTL is measured by Redis' clock, so no two clocks are compared.
 *
 * Writes are fire-and-forget on the command connection: at most one in flight, the latest state written after it.
 * A failed write is counted, never logged (Redis trouble is logged once by the connection) and never retried
 * sooner than the next trigger.
 */
import type Redis from 'ioredis';
import { SIDECAR_KEY_PREFIX } from './keyspace';

export interface SidecarIdentity {
  /** `<hostname>@<process start, ISO-8601>`: the pod name, and which of its processes. */
  id: string;
  version: string;
}

/** What `fortary-authz sidecars` and `--wait` read (docs/redis-contract.md). */
export interface AckRecord {
  id: string;
  version: string;
  /** The last event sequence the cache reflects; null before the first reconcile. */
  appliedSeq: number | null;
  /** The write interval; the key lives for 3 of them. */
  heartbeatMs: number;
}

export const ACK_TTL_HEARTBEATS = 3;

export class AckReporter {
  private timer: NodeJS.Timeout | null = null;
  private writing = false;
  private again = false;
  private closed = false;
  private readonly key: string;

  constructor(
    private readonly redis: Redis,
    private readonly identity: SidecarIdentity,
    private readonly appliedSeq: () => number | null,
    private readonly heartbeatMs: number,
    private readonly onError: () => void,
  ) {
    this.key = SIDECAR_KEY_PREFIX + identity.id;
  }

  start(): void {
    this.timer = setInterval(() => this.report(), this.heartbeatMs);
    this.timer.unref();
  }

  /** The applied sequence may have moved (an event, a reconcile, a reconnect): write it now. */
  report(): void {
    if (this.closed || this.redis.status !== 'ready') return;
    if (this.writing) {
      this.again = true;
      return;
    }
    this.writing = true;
    const record: AckRecord = {
      id: this.identity.id,
      version: this.identity.version,
      appliedSeq: this.appliedSeq(),
      heartbeatMs: this.heartbeatMs,
    };
    this.redis
      .set(this.key, JSON.stringify(record), 'PX', ACK_TTL_HEARTBEATS * this.heartbeatMs)
      .catch(() => this.onError())
      .finally(() => {
        this.writing = false;
        if (this.again) {
          this.again = false;
          this.report();
        }
      });
  }

  /** Shutdown: remove the key, so `--wait` stops counting this sidecar at once rather than 3 heartbeats later. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== null) clearInterval(this.timer);
    if (this.redis.status !== 'ready') return;
    await this.redis.del(this.key).catch(() => this.onError());
  }
}
