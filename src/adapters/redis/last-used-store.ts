/**
 * Writes keys' last use to Redis (docs/redis-contract.md, "Last use"): one `FCALL fortary_touch_last_used` per key,
 * pipelined WRITES_PER_PIPELINE at a time. The function names the real Redis key (`fortary:last-used:<keyId>`), so the
 * sidecar's ACL can grant writes to those keys and nothing else; it keeps whichever time is later, so sidecars never
 * move it back.
 */
import type Redis from 'ioredis';
import type { LastUse, LastUseStore } from '../../app/last-used';
import { lastUsedHash } from './keyspace';

export const TOUCH_LAST_USED = 'fortary_touch_last_used';

/**
 * FCALLs per pipeline; the next pipeline is sent when Redis has answered the previous one. ioredis holds ~2 KB of
 * heap per queued command until its reply: a 10,000-key flush sent as one pipeline held ~21 MiB at once, long enough
 * for it to be promoted to V8's old generation, and raised the sidecar's peak RSS by ~50 MiB in the 100,000-key
 * bench. 500 hold ~1 MiB; 10,000 writes take as long either way (~250-300 ms on loopback).
 */
export const WRITES_PER_PIPELINE = 500;

export class RedisLastUseStore implements LastUseStore {
  constructor(
    private readonly redis: Redis,
    private readonly reportError: (error: unknown) => void,
  ) {}

  /** Resolves to how many FCALLs failed, naming each key through `refused` (the recorder retries them). */
  async write(uses: readonly LastUse[], refused: (keyId: string, error: unknown) => void): Promise<number> {
    let failed = 0;
    let first: unknown = null;
    for (let start = 0; start < uses.length; start += WRITES_PER_PIPELINE) {
      const chunk = uses.slice(start, start + WRITES_PER_PIPELINE);
      let results: [error: Error | null, result: unknown][];
      try {
        results = (await this.pipeline(chunk).exec()) ?? [];
      } catch (error) {
        // Nothing sent: the recorder retries the whole batch.
        if (start === 0) throw error;
        // The connection failed midway (lost, timed out): this pipeline and the ones not sent yet are retried at the
        // next flush, without trying the rest now on a connection that just failed.
        for (let i = start; i < uses.length; i++) refused((uses[i] as LastUse).keyId, error);
        failed += uses.length - start;
        first ??= error;
        break;
      }
      chunk.forEach((use, i) => {
        // An entry without a reply counts as refused: it is retried, never assumed written.
        const [error] = results[i] ?? [new Error('no reply to the last-used write')];
        if (error === null) return;
        failed++;
        first ??= error;
        refused(use.keyId, error);
      });
    }
    if (failed === uses.length && uses.length > 0)
      throw first ?? new Error('no reply to the last-used pipeline');
    if (first !== null) this.reportError(first);
    return failed;
  }

  private pipeline(uses: readonly LastUse[]): ReturnType<Redis['pipeline']> {
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
    return pipeline;
  }
}
