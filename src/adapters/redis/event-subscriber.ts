/**
 * Listens on `fortary:events` over its own connection and keeps the cache honest (docs/propagation.md):
 * - every (re)subscribe is confirmed, then reconciled against `fortary:events:seq` before the cache is trusted;
 * - a PING on the subscriber connection every heartbeat notices a half-open socket within a few seconds, and
 *   forces a reconnect;
 * - between a disconnect and the next reconcile the cache is not trusted (requests re-validate, see freshness.ts).
 */
import type Redis from 'ioredis';
import { parseEvent, type ChangeEvent } from '../../core/events';
import type { CacheFreshness } from '../../app/freshness';
import { describeRedisError } from './connections';
import { EVENTS_CHANNEL } from './keyspace';

export interface SubscriberHooks {
  connected(connected: boolean): void;
  event(event: ChangeEvent | null, receivedAt: number): void;
  warn(message: string, details?: Record<string, unknown>): void;
  /** The connection or its reconcile failed; repeats while Redis is down (the sidecar summarises them). */
  failure(message: string, details: Record<string, unknown>): void;
}

export interface SubscriberOptions {
  heartbeatMs: number;
}

export class EventSubscriber {
  private heartbeat: NodeJS.Timeout | null = null;
  private pingOutstanding = false;
  private reconciling = false;
  /** A 'ready' arrived while a reconcile was running: subscribe again once it is done. */
  private subscribeAgain = false;
  /** Advanced on every sign of a lost connection, so a reconcile can tell it outlived its connection. */
  private connection = 0;
  private closed = false;
  private subscribedOnce = false;
  /** Reconciles that failed before the first one succeeded (the first is the usual startup race). */
  private startupFailures = 0;

  constructor(
    private readonly redis: Redis,
    private readonly freshness: CacheFreshness,
    private readonly hooks: SubscriberHooks,
    private readonly options: SubscriberOptions,
  ) {}

  start(): void {
    this.redis.on('ready', () => void this.subscribe());
    this.redis.on('message', (channel: string, message: string) => this.onMessage(channel, message));
    for (const event of ['close', 'end', 'reconnecting'] as const) {
      this.redis.on(event, () => this.lost(`subscriber ${event}`));
    }
    this.redis.on('error', (error: unknown) => {
      this.hooks.failure('redis subscriber error', { error: describeRedisError(error) });
      this.lost('subscriber error');
    });
    this.heartbeat = setInterval(() => void this.beat(), this.options.heartbeatMs);
    this.heartbeat.unref();
    this.redis.connect().catch(() => {
      // ioredis keeps retrying on its own; the error was already reported through the 'error' event.
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.heartbeat !== null) clearInterval(this.heartbeat);
    this.freshness.distrust('shutdown');
    await this.redis.quit().catch(() => undefined);
    // Also after QUIT: it leaves ioredis' Sentinel failover-detector connections open.
    this.redis.disconnect();
  }

  /**
   * The event loop stalled: events may sit unread in this connection's socket. SUBSCRIBE again and reconcile: its
   * reply comes after every message Redis sent before it, so once it is back the subscription has caught up.
   */
  resync(cause: string): void {
    if (this.closed || this.redis.status !== 'ready') return; // the reconnect reconciles anyway
    if (this.reconciling) {
      // The running reconcile started before the stall; freshness refuses its verdict, and this repeats it.
      this.subscribeAgain = true;
      return;
    }
    void this.subscribe(cause);
  }

  private async subscribe(reason?: string): Promise<void> {
    if (this.closed) return;
    if (this.reconciling) {
      // This 'ready' is a new connection: the running reconcile belongs to an older one and will not trust it.
      this.subscribeAgain = true;
      return;
    }
    this.reconciling = true;
    this.subscribeAgain = false;
    const connection = this.connection;
    const current = () => connection === this.connection && this.redis.status === 'ready';
    try {
      await this.redis.subscribe(EVENTS_CHANNEL);
      // Subscribed first, then read the sequence: anything published before this point shows up as a change.
      const cause = reason ?? (this.subscribedOnce ? 'resubscribe' : 'subscribe');
      // If the connection dropped meanwhile, the live one may not be subscribed: do not trust the cache for it.
      if (await this.freshness.reconcile(cause, current)) {
        this.subscribedOnce = true;
        this.hooks.connected(true);
      } else {
        this.subscribeAgain = true;
      }
    } catch (error) {
      // At startup this connection is often ready before the command connection the reconcile reads through;
      // storeReady() retries as soon as that one is up, so only a failure beyond that first one is news.
      if (this.subscribedOnce || ++this.startupFailures > 1) {
        this.hooks.failure('event subscription not reconciled; retrying', {
          error: describeRedisError(error),
        });
      }
      this.freshness.distrust('reconcile failed');
      // Retry on the next heartbeat (or storeReady) rather than spinning.
    } finally {
      this.reconciling = false;
    }
    if (this.subscribeAgain && !this.closed && this.redis.status === 'ready') void this.subscribe();
  }

  /** The command connection became ready: an unreconciled subscription is reconciled now, not at the next heartbeat. */
  storeReady(): void {
    if (this.closed || this.freshness.trusted || this.reconciling || this.redis.status !== 'ready') return;
    void this.subscribe();
  }

  private onMessage(channel: string, message: string): void {
    if (channel !== EVENTS_CHANNEL) return;
    const receivedAt = Date.now();
    const event = parseEvent(message);
    if (event === null) {
      this.hooks.warn('unparseable event; cache flushed', { length: message.length });
      this.freshness.applyUnparseable();
    } else {
      this.freshness.apply(event);
    }
    this.hooks.event(event, receivedAt);
  }

  private async beat(): Promise<void> {
    if (this.closed || this.redis.status !== 'ready') return;
    if (!this.freshness.trusted && !this.reconciling) {
      void this.subscribe();
      return;
    }
    if (this.pingOutstanding) {
      // The previous PING never came back within a heartbeat: the socket is half-open or Redis is stuck.
      this.lost('heartbeat timeout');
      this.redis.disconnect(true);
      return;
    }
    this.pingOutstanding = true;
    try {
      await this.redis.ping();
    } catch {
      this.lost('heartbeat failed');
    } finally {
      this.pingOutstanding = false;
    }
  }

  private lost(cause: string): void {
    this.connection++;
    if (this.closed) return;
    this.freshness.distrust(cause);
    this.hooks.connected(false);
  }
}
