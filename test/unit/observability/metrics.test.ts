import { Histogram, Registry } from 'prom-client';
import { Metrics, outcomeOf } from '../../../src/observability/metrics';
import type { DenyReason } from '../../../src/core/outcome';

async function series(metrics: Metrics): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const line of (await metrics.registry.metrics()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    out.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return out;
}

describe('Metrics', () => {
  it('reports every decision and cache lookup made before a scrape, once', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    for (let i = 0; i < 5; i++) metrics.decision('allowed', 0.0001);
    metrics.decision('key_unknown', 0.0002);
    metrics.decision('overloaded', 0.003);
    for (let i = 0; i < 3; i++) metrics.keyHit.inc();
    metrics.keyMiss.inc();
    metrics.userHit.inc();
    let s = await series(metrics);
    expect(s.get('fortary_authz_decisions_total{outcome="allow",reason="allowed"}')).toBe(5);
    expect(s.get('fortary_authz_decisions_total{outcome="deny",reason="key_unknown"}')).toBe(1);
    expect(s.get('fortary_authz_decisions_total{outcome="error",reason="overloaded"}')).toBe(1);
    expect(s.get('fortary_authz_check_duration_seconds_count{outcome="allow"}')).toBe(5);
    expect(s.get('fortary_authz_cache_requests_total{cache="key",result="hit"}')).toBe(3);
    expect(s.get('fortary_authz_cache_requests_total{cache="key",result="miss"}')).toBe(1);
    expect(s.get('fortary_authz_cache_requests_total{cache="user",result="hit"}')).toBe(1);

    // A second scrape adds only what happened in between.
    metrics.decision('allowed', 0.0001);
    metrics.keyHit.inc();
    s = await series(metrics);
    expect(s.get('fortary_authz_decisions_total{outcome="allow",reason="allowed"}')).toBe(6);
    expect(s.get('fortary_authz_cache_requests_total{cache="key",result="hit"}')).toBe(4);
    s = await series(metrics);
    expect(s.get('fortary_authz_decisions_total{outcome="allow",reason="allowed"}')).toBe(6);
  });

  it('exports the duration histogram exactly as a stock prom-client Histogram fed the same values', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    const registry = new Registry();
    const stock = new Histogram({
      name: 'fortary_authz_check_duration_seconds',
      help: 'Time from a decoded CheckRequest to its answer.',
      labelNames: ['outcome'] as const,
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5],
      registers: [registry],
    });
    const name = 'fortary_authz_check_duration_seconds';
    // Identical text, except that sums may differ in the last bits (the same values added in another order).
    const same = async () => {
      const ours = (await metrics.registry.getSingleMetricAsString(name)).split('\n');
      const theirs = (await registry.getSingleMetricAsString(name)).split('\n');
      expect(ours.length).toBe(theirs.length);
      ours.forEach((line, i) => {
        const other = theirs[i] as string;
        if (line.includes('_sum{')) {
          expect(line.slice(0, line.lastIndexOf(' '))).toBe(other.slice(0, other.lastIndexOf(' ')));
          expect(Number(line.slice(line.lastIndexOf(' ')))).toBeCloseTo(
            Number(other.slice(other.lastIndexOf(' '))),
            12,
          );
        } else expect(line).toBe(other);
      });
    };
    const feed = (reason: DenyReason | 'allowed', seconds: number) => {
      metrics.decision(reason, seconds);
      stock.observe({ outcome: outcomeOf(reason) }, seconds);
    };
    // Bounds exactly, between, below the first and above the last.
    for (const s of [0, 0.00005, 0.00007, 0.0001, 0.001, 0.0049, 0.5, 0.75, 12]) feed('allowed', s);
    feed('key_unknown', 0.0003);
    await same();
    // Later observations add to what was exported.
    for (let i = 0; i < 100; i++) feed(i % 3 === 0 ? 'overloaded' : 'allowed', (i % 17) * 0.0007);
    await same();
  });

  it('reports the same counts as JSON', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    metrics.decision('allowed', 0.0001);
    const json = await metrics.registry.getMetricsAsJSON();
    const decisions = json.find((m) => m.name === 'fortary_authz_decisions_total');
    expect(decisions?.values.find((v) => v.labels.reason === 'allowed')?.value).toBe(1);
  });
});
