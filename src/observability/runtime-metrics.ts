/**
 * Process and Node.js runtime metrics, under the names prom-client's `collectDefaultMetrics` gives them, without
 * its garbage-collection histogram.
 *
 * That histogram needs a `PerformanceObserver` on 'gc' entries for the life of the process. Node then builds an
 * entry and schedules a callback for every collection, and a saturated sidecar runs about a hundred scavenges a
 * second; Node's perf_hooks documentation warns that observers "should not be left subscribed to notifications
 * indefinitely". prom-client has no option to leave that one metric out. Measured on the warm Check at saturation:
 * about 13k of 400k instructions per Check (callgrind, 20,000 Checks), and 4-17% more Checks a second without it
 * (alternated h2load runs on a noisy VM). GC trouble still shows here: as event-loop delay, CPU and heap size.
 *
 * Everything is read when Prometheus scrapes (`collect`), except the event-loop delay, which Node's own timer samples
 * (`monitorEventLoopDelay`); its statistics cover the time since the previous scrape.
 */
import { readdirSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, type Registry } from 'prom-client';

/** The delay monitor's sampling interval, prom-client's default `eventLoopMonitoringPrecision`. */
const EVENT_LOOP_RESOLUTION_MS = 10;

export function registerRuntimeMetrics(registry: Registry, prefix: string): void {
  const registers = [registry];
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name: prefix + name,
      help,
      registers,
      collect() {
        this.set(read());
      },
    });

  registerCpu(registry, prefix);
  gauge('process_start_time_seconds', 'Start time of the process since unix epoch in seconds.', () =>
    Math.round(Date.now() / 1000 - process.uptime()),
  );
  gauge('process_resident_memory_bytes', 'Resident memory size in bytes.', () => process.memoryUsage.rss());
  gauge('process_open_fds', 'Number of open file descriptors.', openFileDescriptors);
  gauge(
    'nodejs_heap_size_total_bytes',
    'Process heap size from Node.js in bytes.',
    () => process.memoryUsage().heapTotal,
  );
  gauge(
    'nodejs_heap_size_used_bytes',
    'Process heap size used from Node.js in bytes.',
    () => process.memoryUsage().heapUsed,
  );
  gauge(
    'nodejs_external_memory_bytes',
    'Node.js external memory size in bytes.',
    () => process.memoryUsage().external,
  );

  const delay = monitorEventLoopDelay({ resolution: EVENT_LOOP_RESOLUTION_MS });
  delay.enable();
  // Each reads the monitor's nanoseconds; the last one registered starts the next interval.
  const lag = (name: string, help: string, read: () => number, reset = false) =>
    gauge(name, help, () => {
      const seconds = delay.count === 0 ? 0 : read() / 1e9;
      if (reset) delay.reset();
      return seconds;
    });
  lag('nodejs_eventloop_lag_mean_seconds', 'The mean of the recorded event loop delays.', () => delay.mean);
  lag('nodejs_eventloop_lag_p99_seconds', 'The 99th percentile of the recorded event loop delays.', () =>
    delay.percentile(99),
  );
  lag('nodejs_eventloop_lag_max_seconds', 'The maximum recorded event loop delay.', () => delay.max, true);

  new Gauge({
    name: `${prefix}nodejs_version_info`,
    help: 'Node.js version info.',
    labelNames: ['version', 'major', 'minor', 'patch'] as const,
    registers,
  }).set({ version: process.version, ...versionParts(process.versions.node) }, 1);
}

/**
 * The three CPU counters, advanced together from process.cpuUsage() (microseconds) by the collect of the first one:
 * the registry reads metrics in the order they were registered.
 */
function registerCpu(registry: Registry, prefix: string): void {
  let last = process.cpuUsage();
  const others: { system?: Counter; total?: Counter } = {};
  new Counter({
    name: `${prefix}process_cpu_user_seconds_total`,
    help: 'Total user CPU time spent in seconds.',
    registers: [registry],
    collect() {
      const now = process.cpuUsage();
      const user = (now.user - last.user) / 1e6;
      const system = (now.system - last.system) / 1e6;
      last = now;
      this.inc(user);
      others.system?.inc(system);
      others.total?.inc(user + system);
    },
  });
  others.system = new Counter({
    name: `${prefix}process_cpu_system_seconds_total`,
    help: 'Total system CPU time spent in seconds.',
    registers: [registry],
  });
  others.total = new Counter({
    name: `${prefix}process_cpu_seconds_total`,
    help: 'Total user and system CPU time spent in seconds.',
    registers: [registry],
  });
}

/** Open descriptors, from /proc on Linux (the container's OS); 0 where there is no /proc. */
function openFileDescriptors(): number {
  try {
    // The listing's own descriptor is among the entries.
    return readdirSync('/proc/self/fd').length - 1;
  } catch {
    return 0;
  }
}

function versionParts(version: string): { major: string; minor: string; patch: string } {
  const [major = '', minor = '', patch = ''] = version.split('.');
  return { major, minor, patch };
}
