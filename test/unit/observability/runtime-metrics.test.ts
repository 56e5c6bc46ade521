import { PerformanceObserver } from 'node:perf_hooks';
import { Registry } from 'prom-client';
import { Metrics } from '../../../src/observability/metrics';
import { registerRuntimeMetrics } from '../../../src/observability/runtime-metrics';

async function series(registry: Registry): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const line of (await registry.metrics()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    out.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return out;
}

/** Burns CPU for `ms` on this thread. */
function spin(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end) Math.sqrt(Math.random());
}

describe('runtime metrics', () => {
  afterEach(() => jest.restoreAllMocks());

  it("never observes garbage collections (a 'gc' PerformanceObserver costs every collection)", () => {
    const observe = jest.spyOn(PerformanceObserver.prototype, 'observe');
    const metrics = new Metrics();
    const types = observe.mock.calls.flatMap(([options]) =>
      'entryTypes' in options ? [...options.entryTypes] : [options.type],
    );
    expect(types).not.toContain('gc');
    expect(metrics.registry.getMetricsAsArray().map((m) => m.name)).not.toContain(
      'fortary_authz_nodejs_gc_duration_seconds',
    );
  });

  it("reports the process and runtime series under prom-client's default names", async () => {
    const registry = new Registry();
    registerRuntimeMetrics(registry, 'p_');
    spin(30);
    const s = await series(registry);
    expect(s.get('p_process_resident_memory_bytes')).toBeGreaterThan(10 * 1024 * 1024);
    expect(s.get('p_nodejs_heap_size_used_bytes')).toBeGreaterThan(0);
    expect(s.get('p_nodejs_heap_size_total_bytes')).toBeGreaterThanOrEqual(
      s.get('p_nodejs_heap_size_used_bytes') as number,
    );
    expect(s.get('p_nodejs_external_memory_bytes')).toBeGreaterThan(0);
    expect(s.get('p_process_open_fds')).toBeGreaterThan(2);
    const start = s.get('p_process_start_time_seconds') as number;
    expect(Math.abs(start - (Date.now() / 1000 - process.uptime()))).toBeLessThan(2);
    const [major, minor, patch] = process.versions.node.split('.');
    expect(
      s.get(
        `p_nodejs_version_info{version="${process.version}",major="${major}",minor="${minor}",patch="${patch}"}`,
      ),
    ).toBe(1);
    for (const name of ['mean', 'p99', 'max']) {
      expect(s.get(`p_nodejs_eventloop_lag_${name}_seconds`)).toBeGreaterThanOrEqual(0);
    }
  });

  it('CPU counters grow with the CPU this process used, and user + system = total', async () => {
    const registry = new Registry();
    registerRuntimeMetrics(registry, 'p_');
    const before = await series(registry);
    spin(200);
    const after = await series(registry);
    const grew = (name: string) => (after.get(name) as number) - (before.get(name) as number);
    expect(
      grew('p_process_cpu_user_seconds_total') + grew('p_process_cpu_system_seconds_total'),
    ).toBeGreaterThan(0.1);
    expect(after.get('p_process_cpu_seconds_total')).toBeCloseTo(
      (after.get('p_process_cpu_user_seconds_total') as number) +
        (after.get('p_process_cpu_system_seconds_total') as number),
      6,
    );
  });

  it('the event-loop delay reflects a blocked loop, and starts afresh after each scrape', async () => {
    const registry = new Registry();
    registerRuntimeMetrics(registry, 'p_');
    await new Promise((resolve) => setTimeout(resolve, 50));
    await series(registry);
    // Node's monitor records the gap between two of its timer ticks, so it needs a tick after the reset first.
    await new Promise((resolve) => setTimeout(resolve, 50));
    // The monitor's timer can only fire once the loop is free again: that delay is the block.
    spin(120);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const blocked = await series(registry);
    expect(blocked.get('p_nodejs_eventloop_lag_max_seconds')).toBeGreaterThan(0.1);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const calm = await series(registry);
    expect(calm.get('p_nodejs_eventloop_lag_max_seconds')).toBeLessThan(0.1);
  });
});
