/**
 * The sidecar's decision pipeline (real caches, verifier and CheckService) over an in-memory record store, for
 * the in-process benchmarks: what they measure is the app, not Redis or the transport.
 */
import { CheckService } from '../src/app/check';
import { CacheFreshness } from '../src/app/freshness';
import { silentEvents, systemClock, type RecordStore, type SecretCompare } from '../src/app/ports';
import { RecordCache } from '../src/app/record-cache';
import { SecretVerifier, type SecretVerifierOptions } from '../src/app/secret-verifier';

export async function inMemoryCheckService(
  store: RecordStore,
  compare: SecretCompare,
  options: { maxKeys: number } & Partial<SecretVerifierOptions>,
): Promise<{
  service: CheckService;
  cache: RecordCache;
  verifier: SecretVerifier;
  freshness: CacheFreshness;
}> {
  const cache = new RecordCache(store, silentEvents, {
    maxKeys: options.maxKeys,
    maxUsers: options.maxKeys,
    maxStalenessMs: 3_600_000,
  });
  // A benchmark loop never lets the loop watch's timer run: an infinite threshold keeps the stall test on the
  // warm path (it still runs, so its cost is measured) without ever tripping.
  const freshness = new CacheFreshness(
    store,
    cache,
    { trustChanged: () => {}, eventApplied: () => {}, stalled: () => {} },
    { stallMs: Infinity },
  );
  freshness.tick(systemClock.now());
  await freshness.reconcile('bench');
  const verifier = new SecretVerifier(compare, silentEvents, {
    concurrency: 1,
    queue: 1,
    digests: cache.digests,
    ...options,
  });
  const service = new CheckService({
    cache,
    freshness,
    verifier,
    clock: systemClock,
    policy: { trustedProxies: [], openPaths: [] },
  });
  return { service, cache, verifier, freshness };
}
