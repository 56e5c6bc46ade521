/** deploy/monitoring/: the alert rules and the scrape config match the deployment, the metrics and the runbook. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { clusters } from './envoy-checks';
import { arr, at, clone, obj, str } from './json';
import { kustomize, ROOT, validateSchemas } from './k8s';
import { checkPrometheusRule, rulesOf } from './monitoring-checks';
import { ofKind } from './manifest-checks';

const read = (file: string): string => readFileSync(path.join(ROOT, file), 'utf8');
const rule: unknown = parse(read('deploy/monitoring/prometheusrule.yaml'));
const podMonitor: unknown = parse(read('deploy/monitoring/podmonitor.yaml'));
const runbook = read('docs/operations.md');
const documented = new Set(
  [...read('docs/architecture.md').matchAll(/`(fortary_authz_[a-z_]+)`/g)].map((m) => m[1] ?? ''),
);
const base = kustomize('deploy');
const deployment = ofKind(base, 'Deployment')[0];

describe('deploy/monitoring/prometheusrule.yaml', () => {
  it('has every required alert, on documented metrics, each explained in the runbook', () => {
    expect(documented.size).toBeGreaterThan(5);
    expect(checkPrometheusRule(rule, documented, runbook)).toEqual([]);
  });

  it("names Envoy's authz cluster as envoy.yaml does", () => {
    const envoy: unknown = parse(read('envoy/envoy.yaml'));
    const names = clusters(envoy).map((c) => c.name);
    for (const r of rulesOf(rule)) {
      for (const m of r.expr.matchAll(/envoy_cluster_name="([^"]+)"/g)) expect(names).toContain(m[1]);
    }
  });

  const breakages: [string, (doc: unknown) => void, RegExp][] = [
    [
      'the fail-open alert is gone',
      (doc) => {
        const group = obj(at(doc, 'spec', 'groups', 0));
        group.rules = arr(group.rules).filter((r) => !/failure_mode_allowed/.test(String(at(r, 'expr'))));
      },
      /no alert for Envoy fail-open/,
    ],
    [
      'the subscriber alert waits too long',
      (doc) => {
        const r = rulesOf(doc).find((x) => x.alert === 'FortaryAuthzSubscriberDisconnected');
        if (r !== undefined) r.rule.for = '10m';
      },
      /subscriber disconnected > 30 s/,
    ],
    [
      'a misspelt metric',
      (doc) => {
        const r = rulesOf(doc).find((x) => x.alert === 'FortaryAuthzBcryptRejections');
        if (r !== undefined) r.rule.expr = 'sum(rate(fortary_authz_bcrypt_rejections_total[5m])) > 0';
      },
      /fortary_authz_bcrypt_rejections_total is not a metric/,
    ],
    [
      'an alert on a quiet event stream',
      (doc) =>
        arr(at(doc, 'spec', 'groups', 1, 'rules')).push({
          alert: 'FortaryAuthzNoEvents',
          expr: 'fortary_authz_last_event_age_seconds > 3600',
          labels: { severity: 'warning' },
          annotations: { summary: 'quiet' },
        }),
      /quiet event stream is normal/,
    ],
    [
      'an alert the runbook does not explain',
      (doc) => {
        const r = rulesOf(doc)[0];
        if (r !== undefined) r.rule.alert = 'FortaryAuthzSomethingElse';
      },
      /does not explain it/,
    ],
    [
      'an unbalanced expression',
      (doc) => {
        const r = rulesOf(doc)[0];
        if (r !== undefined) r.rule.expr = `${String(r.rule.expr)})`;
      },
      /unbalanced/,
    ],
    [
      'the wrong kind',
      (doc) => (obj(doc).kind = 'PrometheusRules'),
      /must be a monitoring.coreos.com\/v1 PrometheusRule/,
    ],
  ];

  it.each(breakages)('catches: %s', (_name, breakIt, expected) => {
    const broken = clone(rule);
    breakIt(broken);
    expect(checkPrometheusRule(broken, documented, runbook)).toEqual(
      expect.arrayContaining([expect.stringMatching(expected)]),
    );
  });
});

describe('deploy/monitoring/podmonitor.yaml', () => {
  it('selects the fortary-authz pods', () => {
    expect(at(podMonitor, 'kind')).toBe('PodMonitor');
    expect(at(podMonitor, 'metadata', 'namespace')).toBe('fortary');
    const labels = obj(at(deployment, 'spec', 'template', 'metadata', 'labels'));
    expect(labels).toMatchObject(obj(at(podMonitor, 'spec', 'selector', 'matchLabels')));
  });

  it('scrapes the sidecar and Envoy on ports the pod declares', () => {
    const ports = new Map(
      arr(at(deployment, 'spec', 'template', 'spec', 'containers'))
        .flatMap((c) => arr(at(c, 'ports')))
        .map((p) => [str(at(p, 'name')), at(p, 'containerPort')]),
    );
    const endpoints = arr(at(podMonitor, 'spec', 'podMetricsEndpoints')).map((e) => [
      at(e, 'port'),
      at(e, 'path'),
    ]);
    expect(endpoints).toEqual([
      ['metrics', '/metrics'],
      ['envoy-metrics', '/stats/prometheus'],
    ]);
    expect(ports.get('metrics')).toBe(9464);
    expect(ports.get('envoy-metrics')).toBe(9902);
  });

  it('is not a Kubernetes built-in (hence kept out of the base)', () => {
    expect(validateSchemas([podMonitor, rule]).map((r) => r.errors)).toEqual([
      ['unknown kind monitoring.coreos.com/v1/PodMonitor'],
      ['unknown kind monitoring.coreos.com/v1/PrometheusRule'],
    ]);
  });
});
