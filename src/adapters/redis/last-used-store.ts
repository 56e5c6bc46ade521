/**
 * Writes keys' last use to Redis (docs/redis-contract.md, "Last use"): one `FCALL fortary_touch_last_used` per key,
 * all in one pipeline. The function names the real Redis key (`fortary:last-used:<keyId>`), so the sidecar's ACL can
 * grant writes to those keys and nothing else; it keeps whichever time is later, so sidecars never move it back.
 */
import type Redis from 'ioredis';
import type { LastUse, LastUseStore } from '../../app/last-used';
import { lastUsedHash } from './keyspace';

export const TOUCH_LAST_USED = 'fortary_touch_last_used';

export class RedisLastUseStore implements LastUseStore {
  constructor(
    private readonly redis: Redis,
    private readonly reportError: (error: unknown) => void,
  ) {}

  /** Resolves to how many FCALLs failed, naming each key through `refused` (the recorder retries them). */
  async write(uses: readonly LastUse[], refused: (keyId: string, error: unknown) => void): Promise<number> {
    if (uses.length === 0) return 0;
    const pipeline = this.redis.pipeline();
    for (const use of uses) {
      pipeline.call(
        'FCALL',
        TOUCH_LAST_USED,
        '1',
        lastUsedHash(use.keyId),
        String(use.at),
        use.ip,
        use.vault,
      );
    }
    const results = (await pipeline.exec()) ?? [];
    let failed = 0;
    let first: unknown = null;
    uses.forEach((use, i) => {
      // An entry without a reply counts as refused: it is retried, never assumed written.
      const [error] = results[i] ?? [new Error('no reply to the last-used write')];
      if (error === null) return;
      failed++;
      first ??= error;
      refused(use.keyId, error);
    });
    if (failed === uses.length) throw first ?? new Error('no reply to the last-used pipeline');
    if (first !== null) this.reportError(first);
    return failed;
  }
}
