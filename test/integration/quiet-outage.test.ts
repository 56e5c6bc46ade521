/**
 * Quiet outages (issue 11, item 6): while Redis is down the sidecar used to log every reconnect attempt of both
 * connections, about five warnings a second. Now it logs the change of state at once, then at most one summary
 * per connection every 5 s with the count, and one line when each connection works again.
 */
import { sleep } from '../support/faults';
import { checkToken, cleanupRegistry } from '../support/faults';
import { createKey, putUser, waitFor } from '../support/fixtures';
import { startHarness } from '../support/sidecar-harness';

const cleanups = cleanupRegistry();

it('a Redis outage of 6 s: a bounded number of warning lines, with the failure counts, and one recovery line per connection', async () => {
  const h = await startHarness();
  cleanups.push(() => h.stop());
  await putUser(h.admin, { id: 'alice', developerVaults: ['alpha'] });
  const key = await createKey(h.admin, { userId: 'alice', vaults: ['alpha'] });
  expect((await checkToken(h.client, key.token)).reason).toBe('allowed');
  const from = h.logs.length;

  await h.redis.kill();
  const downAt = Date.now();
  // Traffic during the outage: refused with 503, one decision line each (info), no warning each.
  while (Date.now() - downAt < 6000) {
    expect((await checkToken(h.client, key.token)).reason).toBe('store_unavailable');
    await sleep(100);
  }
  await h.redis.restart();
  // The private Redis restarts empty: the key is gone (401), which proves the sidecar reads Redis again.
  await waitFor(async () => (await checkToken(h.client, key.token)).reason === 'key_unknown', 5000, 50);
  await sleep(200);

  const lines = h.logs.slice(from).filter((l) => l.msg !== 'check');
  const warnings = lines.filter((l) => l.level === 'warn');
  // State changes: cache not trusted, the first error of each connection; then per connection at most one
  // summary per 5 s (one each in 6 s, two if the restart landed late). Before: about 30 lines for 6 s.
  expect(warnings.length).toBeGreaterThanOrEqual(3);
  expect(warnings.length).toBeLessThanOrEqual(7);
  const summaries = warnings.filter((l) => String(l.msg).endsWith('(still failing)'));
  expect(summaries.length).toBeGreaterThanOrEqual(1);
  for (const summary of summaries) {
    expect(summary).toMatchObject({
      source: expect.any(String),
      failures: expect.any(Number),
      downMs: expect.any(Number),
    });
    expect(summary.failures as number).toBeGreaterThanOrEqual(2);
  }
  const restored = lines.filter(
    (l) => l.msg === 'redis connection restored' || l.msg === 'event subscription restored',
  );
  expect(restored.map((l) => l.source).sort()).toEqual(['command', 'subscriber']);
  for (const line of restored) {
    expect(line.level).toBe('info');
    expect(line.failures as number).toBeGreaterThanOrEqual(5);
    expect(line.downMs as number).toBeGreaterThanOrEqual(5000);
  }
  expect(lines.some((l) => l.msg === 'cache trusted')).toBe(true);
}, 30_000);
