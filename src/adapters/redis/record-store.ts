/**
 * The read side of the Redis contract (docs/redis-contract.md) behind the app's RecordStore port.
 */
import type Redis from 'ioredis';
import type { KeyHashFields } from '../../core/records';
import { StoreUnavailableError, WrongType, type RecordStore } from '../../app/ports';
import { describeRedisError } from './connections';

import { SEQUENCE_KEY, keyHash, userString } from './keyspace';

// Kept importable from here for existing callers; the names are defined in keyspace.ts.
export { EVENTS_CHANNEL, KEY_PREFIX, SEQUENCE_KEY, USER_KEYS_PREFIX, USER_PREFIX } from './keyspace';

/**
 * A connection on which every command has timed out for this long is presumed half-open (the peer vanished without
 * a FIN, e.g. a network partition) and replaced: TCP alone may take minutes to notice.
 */
export const DEAD_CONNECTION_MS = 1000;

export class RedisRecordStore implements RecordStore {
  /** When the current run of timed-out commands began (null: the last command got an answer). */
  private timingOutSince: number | null = null;

  constructor(
    private readonly redis: Redis,
    private readonly onError: (op: string, message: string) => void = () => {},
  ) {}

  async getKey(keyId: string): Promise<KeyHashFields | null | WrongType> {
    const key = keyHash(keyId);
    const reply = await this.call('getKey', key, () => this.redis.hmget(key, 'record', 'revokedAt'));
    if (reply instanceof WrongType) return reply;
    const [record, revokedAt] = reply as [string | null, string | null];
    if (record === null && revokedAt === null) return null;
    return { record, revokedAt };
  }

  async getUser(userId: string): Promise<string | null | WrongType> {
    const key = userString(userId);
    return this.call('getUser', key, () => this.redis.get(key));
  }

  async getSequence(): Promise<number> {
    const reply = await this.call('getSequence', SEQUENCE_KEY, () => this.redis.get(SEQUENCE_KEY));
    if (reply === null) return 0;
    if (reply instanceof WrongType || !/^\d{1,16}$/.test(reply)) {
      // A corrupt sequence cannot prove freshness: treat it like an unavailable store (fail closed).
      throw new StoreUnavailableError(`${SEQUENCE_KEY} is not an integer`);
    }
    return Number(reply);
  }

  private async call<T>(op: string, key: string, command: () => Promise<T>): Promise<T | WrongType> {
    try {
      const reply = await command();
      this.timingOutSince = null;
      return reply;
    } catch (error) {
      if (error instanceof Error && error.message.startsWith('WRONGTYPE')) {
        this.timingOutSince = null;
        // Only on the corrupt path: which type sits there tells one wrong value from the next.
        return new WrongType(await this.redis.type(key).catch(() => 'unknown'));
      }
      const message = describeRedisError(error);
      this.onError(op, message);
      if (error instanceof Error && error.message === 'Command timed out') this.timedOut();
      throw new StoreUnavailableError(`redis ${op} failed: ${message}`, { cause: error });
    }
  }

  private timedOut(): void {
    const now = Date.now();
    if (this.timingOutSince === null) {
      this.timingOutSince = now;
    } else if (now - this.timingOutSince >= DEAD_CONNECTION_MS) {
      this.timingOutSince = null;
      this.onError('reconnect', 'every command timed out for a second: replacing the connection');
      // Ends the socket and, if the peer never answers the FIN, destroys it (ioredis disconnectTimeout); ioredis
      // then reconnects with its usual back-off. A Redis that is merely slow only costs a reconnect.
      this.redis.disconnect(true);
    }
  }
}
