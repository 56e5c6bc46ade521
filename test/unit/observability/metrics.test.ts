import { Metrics } from '../../../src/observability/metrics';

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

  it('reports the same counts as JSON', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    metrics.decision('allowed', 0.0001);
    const json = await metrics.registry.getMetricsAsJSON();
    const decisions = json.find((m) => m.name === 'fortary_authz_decisions_total');
    expect(decisions?.values.find((v) => v.labels.reason === 'allowed')?.value).toBe(1);
  });
});
