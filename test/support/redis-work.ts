/**
 * Counts the Redis commands a piece of work caused, from the server's own INFO commandstats.
 *
 * The sidecar also talks to Redis by itself: heartbeat PINGs, its acknowledgement (a SET of its own
 * `fortary:sidecar:*` key every heartbeat and after every event: the only SET its ACL allows, so no request can
 * cause one), and after a heartbeat that came back late (a loaded CI machine) a re-subscribe with its reconcile read. Those are not the request's doing, so a measurement during
 * which a (re)subscribe happened is taken again; work that really reaches Redis shows up in every attempt.
 */
import type Redis from 'ioredis';

const NOT_COUNTED = new Set(['info', 'ping', 'set']);
const ATTEMPTS = 3;

async function commandStats(admin: Redis): Promise<Map<string, number>> {
  const stats = new Map<string, number>();
  for (const match of (await admin.info('commandstats')).matchAll(/^cmdstat_([\w|]+):calls=(\d+)/gm)) {
    stats.set(match[1] as string, Number(match[2]));
  }
  return stats;
}

function delta(before: Map<string, number>, after: Map<string, number>): Map<string, number> {
  const changed = new Map<string, number>();
  for (const [name, calls] of after) {
    const more = calls - (before.get(name) ?? 0);
    if (more !== 0) changed.set(name, more);
  }
  return changed;
}

/**
 * Runs `work` and returns the commands it caused by name (INFO, PING and SET excluded), retrying the measurement when
 * the sidecar re-subscribed meanwhile. `work` must be repeatable.
 */
export async function redisCommandsDuring(
  admin: Redis,
  work: () => Promise<void>,
): Promise<Record<string, number>> {
  let last = new Map<string, number>();
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    const before = await commandStats(admin);
    await work();
    const changed = delta(before, await commandStats(admin));
    const resubscribed = changed.has('subscribe');
    for (const name of NOT_COUNTED) changed.delete(name);
    last = changed;
    if (!resubscribed) break;
  }
  return Object.fromEntries(last);
}
