/**
 * Keeps an outage from flooding the log. ioredis reports every failed reconnect attempt (about two a second per
 * connection while Redis is down); logging each one buried the two lines that matter, the change of state. So:
 * - the first failure of a source (a connection) since it last worked is logged at once, as before;
 * - repeats are counted, and summarised in one line at most every `intervalMs`, with the count and the last error;
 * - when the source works again, one line says so with the total count and how long it was down.
 * Counters (fortary_authz_redis_errors_total) still count every failure.
 */
import type { Logger } from 'pino';

export const QUIET_LOG_INTERVAL_MS = 5000;

interface Episode {
  startedAt: number;
  lastLineAt: number;
  total: number;
  /** Failures since the last line, with the last one's details. */
  unlogged: number;
  last: Record<string, unknown>;
  message: string;
}

export class QuietLog {
  private readonly episodes = new Map<string, Episode>();

  constructor(
    private readonly logger: Logger,
    private readonly intervalMs: number = QUIET_LOG_INTERVAL_MS,
    private readonly now: () => number = Date.now,
  ) {}

  /** A failure of `source` (e.g. "command", "subscriber"). */
  failure(source: string, message: string, details: Record<string, unknown> = {}): void {
    const now = this.now();
    const episode = this.episodes.get(source);
    if (episode === undefined) {
      this.episodes.set(source, {
        startedAt: now,
        lastLineAt: now,
        total: 1,
        unlogged: 0,
        last: details,
        message,
      });
      this.logger.warn({ source, ...details }, message);
      return;
    }
    episode.total++;
    episode.unlogged++;
    episode.last = details;
    episode.message = message;
    if (now - episode.lastLineAt < this.intervalMs) return;
    this.logger.warn(
      {
        source,
        ...details,
        failures: episode.unlogged,
        total: episode.total,
        downMs: now - episode.startedAt,
      },
      `${message} (still failing)`,
    );
    episode.lastLineAt = now;
    episode.unlogged = 0;
  }

  /** `source` works again: ends its episode with one line, if it had one. */
  recovered(source: string, message: string): void {
    const episode = this.episodes.get(source);
    if (episode === undefined) return;
    this.episodes.delete(source);
    this.logger.info({ source, failures: episode.total, downMs: this.now() - episode.startedAt }, message);
  }
}
