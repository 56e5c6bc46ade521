/**
 * The read side of the Redis contract (docs/redis-contract.md) behind the app's RecordStore port.
 */
import type Redis from 'ioredis';
import type { KeyHashFields } from '../../core/records';
import { StoreUnavailableError, WRONG_TYPE, type RecordStore } from '../../app/ports';
import { describeRedisError } from './connections';

export const KEY_PREFIX = 'fortary:key:';
export const USER_PREFIX = 'fortary:user:';
export const USER_KEYS_PREFIX = 'fortary:user-keys:';
export const SEQUENCE_KEY = 'fortary:events:seq';
export const EVENTS_CHANNEL = 'fortary:events';

export class RedisRecordStore implements RecordStore {
  constructor(
    private readonly redis: Redis,
    private readonly onError: (op: string, message: string) => void = () => {},
  ) {}

  async getKey(keyId: string): Promise<KeyHashFields | null | typeof WRONG_TYPE> {
    const reply = await this.call('getKey', () =>
      this.redis.hmget(KEY_PREFIX + keyId, 'record', 'revokedAt'),
    );
    if (reply === WRONG_TYPE) return WRONG_TYPE;
    const [record, revokedAt] = reply as [string | null, string | null];
    if (record === null && revokedAt === null) return null;
    return { record, revokedAt };
  }

  async getUser(userId: string): Promise<string | null | typeof WRONG_TYPE> {
    return this.call('getUser', () => this.redis.get(USER_PREFIX + userId));
  }

  async getSequence(): Promise<number> {
    const reply = await this.call('getSequence', () => this.redis.get(SEQUENCE_KEY));
    if (reply === null) return 0;
    if (reply === WRONG_TYPE || !/^\d{1,16}$/.test(reply)) {
      // A corrupt sequence cannot prove freshness: treat it like an unavailable store (fail closed).
      throw new StoreUnavailableError(`${SEQUENCE_KEY} is not an integer`);
    }
    return Number(reply);
  }

  private async call<T>(op: string, command: () => Promise<T>): Promise<T | typeof WRONG_TYPE> {
    try {
      return await command();
    } catch (error) {
      if (error instanceof Error && error.message.startsWith('WRONGTYPE')) return WRONG_TYPE;
      const message = describeRedisError(error);
      this.onError(op, message);
      throw new StoreUnavailableError(`redis ${op} failed: ${message}`, { cause: error });
    }
  }
}
