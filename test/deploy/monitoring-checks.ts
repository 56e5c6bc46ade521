/**
 * deploy/monitoring/prometheusrule.yaml must carry the alerts the runbook promises, on metrics that exist. There is
 * no CRD schema or promtool here, so the rule file is checked as YAML with the expected fields.
 */
import { arr, at, isObj, str, type Obj } from './json';

export interface RuleExpectation {
  what: string;
  /** Every pattern must occur in the expression of one alert. */
  expr: RegExp[];
  severity?: 'critical' | 'warning';
  for?: string;
}

/** What docs/operations.md ("Alerts") and the issue ask for. */
export const REQUIRED_ALERTS: RuleExpectation[] = [
  {
    what: 'Envoy fail-open',
    expr: [/envoy_http_ext_authz_failure_mode_allowed/, /> 0\b/],
    severity: 'critical',
  },
  { what: 'Envoy ext_authz errors', expr: [/envoy_http_ext_authz_error\b/, /> 0\b/] },
  {
    what: 'subscriber disconnected > 30 s',
    expr: [/fortary_authz_subscriber_connected\b/, /== 0\b/],
    for: '30s',
  },
  {
    what: 'store_unavailable rate',
    expr: [/fortary_authz_decisions_total\{reason="store_unavailable"\}/, /rate\(/],
  },
  { what: 'bcrypt rejections', expr: [/fortary_authz_bcrypt_rejected_total\b/] },
  {
    what: 'p99 check latency > 10 ms',
    expr: [/histogram_quantile\(0\.99\b/, /fortary_authz_check_duration_seconds_bucket\b/, /> 0\.010?\b/],
  },
];

export interface Rule {
  alert: string;
  expr: string;
  for?: string;
  severity?: string;
  rule: Obj;
}

export function rulesOf(doc: unknown): Rule[] {
  return arr(at(doc, 'spec', 'groups'))
    .flatMap((g) => arr(at(g, 'rules')))
    .filter(isObj)
    .map((rule) => ({
      alert: str(rule.alert) ?? '',
      expr: str(rule.expr) ?? '',
      for: str(rule.for),
      severity: str(at(rule, 'labels', 'severity')),
      rule,
    }));
}

function balanced(expr: string): boolean {
  const pairs: Record<string, string> = { ')': '(', ']': '[', '}': '{' };
  const stack: string[] = [];
  for (const ch of expr.replace(/"[^"]*"/g, '""')) {
    if ('([{'.includes(ch)) stack.push(ch);
    else if (ch in pairs && stack.pop() !== pairs[ch]) return false;
  }
  return stack.length === 0;
}

/** `fortary_authz_*` names in expressions, with the histogram series suffixes removed. */
export function sidecarMetrics(expr: string): string[] {
  return [...expr.matchAll(/\bfortary_authz_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, ''));
}

/**
 * @param documentedMetrics the metric names docs/architecture.md lists
 * @param runbook docs/operations.md, which must explain every alert
 */
export function checkPrometheusRule(doc: unknown, documentedMetrics: Set<string>, runbook: string): string[] {
  const problems: string[] = [];
  if (at(doc, 'apiVersion') !== 'monitoring.coreos.com/v1' || at(doc, 'kind') !== 'PrometheusRule') {
    problems.push('must be a monitoring.coreos.com/v1 PrometheusRule');
  }
  if (str(at(doc, 'metadata', 'name')) === undefined) problems.push('needs metadata.name');
  const groups = arr(at(doc, 'spec', 'groups'));
  if (groups.length === 0) problems.push('needs spec.groups');
  for (const g of groups) {
    if (str(at(g, 'name')) === undefined || arr(at(g, 'rules')).length === 0)
      problems.push('every group needs a name and rules');
  }

  const rules = rulesOf(doc);
  const seen = new Set<string>();
  for (const r of rules) {
    const who = r.alert === '' ? JSON.stringify(r.rule) : r.alert;
    if (!/^FortaryAuthz[A-Z][A-Za-z]+$/.test(r.alert))
      problems.push(`${who}: alert names start with FortaryAuthz`);
    if (seen.has(r.alert)) problems.push(`${who}: duplicate alert name`);
    seen.add(r.alert);
    if (r.expr.trim() === '' || !balanced(r.expr)) problems.push(`${who}: expr is empty or unbalanced`);
    if (r.severity !== 'critical' && r.severity !== 'warning')
      problems.push(`${who}: severity must be critical or warning`);
    if (str(at(r.rule, 'annotations', 'summary')) === undefined)
      problems.push(`${who}: needs annotations.summary`);
    if (r.for !== undefined && !/^\d+(s|m|h)$/.test(r.for))
      problems.push(`${who}: for must be a duration like 30s`);
    for (const metric of sidecarMetrics(r.expr)) {
      if (!documentedMetrics.has(metric)) problems.push(`${who}: ${metric} is not a metric of the sidecar`);
    }
    if (/last_event_age/.test(r.expr)) problems.push(`${who}: a quiet event stream is normal, not an alert`);
    if (!runbook.includes(`\`${r.alert}\``)) problems.push(`${who}: docs/operations.md does not explain it`);
  }
  for (const want of REQUIRED_ALERTS) {
    const match = rules.find(
      (r) =>
        want.expr.every((p) => p.test(r.expr)) &&
        (want.severity === undefined || r.severity === want.severity) &&
        (want.for === undefined || r.for === want.for),
    );
    if (match === undefined) problems.push(`no alert for ${want.what}`);
  }
  return problems;
}
