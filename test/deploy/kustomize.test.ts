/**
 * `kubectl kustomize deploy/` and the sentinel overlay render objects that are valid against the Kubernetes
 * schemas and wired correctly (manifest-checks.ts). The checker itself is shown to catch broken renders.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { arr, at, clone, obj, str, type Obj } from './json';
import { kustomize, ROOT, validateSchemas } from './k8s';
import { readConfig } from '../../src/config';
import { checkManifests, envVar, EXPLICIT_ENV, ofKind, SIDECAR } from './manifest-checks';

const envoyYaml = readFileSync(path.join(ROOT, 'envoy/envoy.yaml'), 'utf8');
const base = kustomize('deploy');
const sentinel = kustomize('deploy/overlays/sentinel');

const deploymentOf = (objects: Obj[]): Obj => obj(ofKind(objects, 'Deployment')[0]);
const podOf = (objects: Obj[]): Obj => obj(at(deploymentOf(objects), 'spec', 'template', 'spec'));
function containerOf(objects: Obj[], name: string): Obj {
  const found = arr(podOf(objects).containers).find((c) => at(c, 'name') === name);
  if (found === undefined) throw new Error(`no container ${name}`);
  return obj(found);
}
const policyOf = (objects: Obj[]): Obj => obj(ofKind(objects, 'NetworkPolicy')[0]);
const egressPorts = (objects: Obj[]): unknown[] =>
  arr(at(policyOf(objects), 'spec', 'egress')).flatMap((r) => arr(at(r, 'ports')).map((p) => at(p, 'port')));

describe.each([
  ['deploy/', base, false],
  ['deploy/overlays/sentinel/', sentinel, true],
] as const)('kubectl kustomize %s', (_dir, objects, isSentinel) => {
  it('renders only objects that are valid against the Kubernetes schemas', () => {
    const results = validateSchemas(objects);
    expect(results.filter((r) => r.errors.length > 0)).toEqual([]);
    expect(results).toHaveLength(objects.length);
  });

  it('is wired and locked down as the deployment requires', () => {
    expect(checkManifests(objects, { envoyYaml, sentinel: isSentinel })).toEqual([]);
  });

  it('ships no Secret, and takes REDIS_URL from one', () => {
    expect(ofKind(objects, 'Secret')).toEqual([]);
    expect(at(envVar(containerOf(objects, SIDECAR), 'REDIS_URL'), 'valueFrom', 'secretKeyRef')).toEqual({
      name: 'fortary-authz-redis',
      key: 'REDIS_URL',
    });
  });

  it('mounts exactly envoy/envoy.yaml from a generated (content-hashed) ConfigMap', () => {
    const volume = arr(podOf(objects).volumes).find((v) => at(v, 'name') === 'envoy-config');
    const name = str(at(volume, 'configMap', 'name')) ?? '';
    expect(name).toMatch(/^fortary-envoy-[a-z0-9]{10}$/);
    const configMap = ofKind(objects, 'ConfigMap').find((c) => at(c, 'metadata', 'name') === name);
    expect(at(configMap, 'data', 'envoy.yaml')).toBe(envoyYaml);
  });

  it('contains nothing from deploy/monitoring (the CRDs may be absent)', () => {
    expect(objects.filter((o) => String(o.apiVersion).startsWith('monitoring.coreos.com'))).toEqual([]);
  });
});

describe('the base Deployment', () => {
  it('sets FORTARY_LAST_USED_FLUSH_S and FORTARY_EXPIRY_WARNING_DAYS to the sidecar defaults, each with a comment', () => {
    const sidecar = containerOf(base, SIDECAR);
    expect(EXPLICIT_ENV.map((name) => str(envVar(sidecar, name)?.value))).toEqual(['60', '30']);
    const defaults = readConfig({});
    const set = readConfig({ FORTARY_LAST_USED_FLUSH_S: '60', FORTARY_EXPIRY_WARNING_DAYS: '30' });
    if (!defaults.ok || !set.ok) throw new Error('the defaults do not parse');
    expect(set.config.lastUsedFlushMs).toBe(defaults.config.lastUsedFlushMs);
    expect(set.config.expiryWarningMs).toBe(defaults.config.expiryWarningMs);
    // kustomize drops comments: read the source for the one-line comment above each.
    const source = readFileSync(path.join(ROOT, 'deploy/base/deployment.yaml'), 'utf8').split('\n');
    for (const name of EXPLICIT_ENV) {
      const line = source.findIndex((l) => l.trim() === `- name: ${name}`);
      expect(source[line - 1]).toMatch(/^\s+# \S/);
    }
  });
});

describe('the sentinel overlay', () => {
  it('adds REDIS_SENTINELS and REDIS_SENTINEL_NAME from its ConfigMap, and nothing to the base', () => {
    const sidecar = containerOf(sentinel, SIDECAR);
    for (const name of ['REDIS_SENTINELS', 'REDIS_SENTINEL_NAME']) {
      expect(str(at(envVar(sidecar, name), 'valueFrom', 'configMapKeyRef', 'name'))).toMatch(
        /^fortary-authz-sentinel-/,
      );
      expect(envVar(containerOf(base, SIDECAR), name)).toBeUndefined();
    }
  });

  it('opens 26379 for the Sentinels, only in the overlay', () => {
    expect(egressPorts(sentinel)).toContain(26379);
    expect(egressPorts(base)).not.toContain(26379);
  });
});

describe('deploy/secret.example.yaml', () => {
  const example: unknown = parse(readFileSync(path.join(ROOT, 'deploy/secret.example.yaml'), 'utf8'));

  it('has the shape the Deployment reads, with a placeholder password', () => {
    expect(at(example, 'kind')).toBe('Secret');
    expect(at(example, 'metadata', 'name')).toBe('fortary-authz-redis');
    expect(str(at(example, 'stringData', 'REDIS_URL'))).toMatch(/^rediss:\/\/:CHANGE-ME@/);
  });

  it('is not a resource of any kustomization', () => {
    for (const dir of ['deploy', 'deploy/base', 'deploy/overlays/sentinel']) {
      const k: unknown = parse(readFileSync(path.join(ROOT, dir, 'kustomization.yaml'), 'utf8'));
      expect(arr(at(k, 'resources')).join(' ')).not.toMatch(/secret/i);
    }
  });
});

describe('checkManifests', () => {
  // Each breakage must be reported: this is what makes the passing checks above meaningful.
  const breakages: [string, (o: Obj[]) => void, RegExp][] = [
    [
      'writable root filesystem',
      (o) => (obj(containerOf(o, SIDECAR).securityContext).readOnlyRootFilesystem = false),
      /container fortary-authz: readOnlyRootFilesystem/,
    ],
    [
      'root user',
      (o) => (obj(containerOf(o, 'envoy').securityContext).runAsUser = 0),
      /numeric non-root runAsUser/,
    ],
    [
      'capabilities kept',
      (o) => delete obj(containerOf(o, SIDECAR).securityContext).capabilities,
      /must drop ALL capabilities/,
    ],
    [
      'privilege escalation',
      (o) => delete obj(containerOf(o, 'envoy').securityContext).allowPrivilegeEscalation,
      /allowPrivilegeEscalation/,
    ],
    [
      'service account token',
      (o) => (podOf(o).automountServiceAccountToken = true),
      /automountServiceAccountToken/,
    ],
    [
      'REDIS_URL literal',
      (o) => {
        const e = envVar(containerOf(o, SIDECAR), 'REDIS_URL');
        if (e !== undefined) {
          delete e.valueFrom;
          e.value = 'rediss://:hunter2@redis:6380';
        }
      },
      /REDIS_URL must come from a secretKeyRef|URL with credentials/,
    ],
    [
      'a Secret in the render',
      (o) => o.push({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 's', namespace: 'fortary' } }),
      /contains Secret s/,
    ],
    [
      'Check port mismatch',
      (o) => {
        const e = envVar(containerOf(o, SIDECAR), 'FORTARY_GRPC_ADDR');
        if (e !== undefined) e.value = '127.0.0.1:9999';
      },
      /Envoy calls .* but FORTARY_GRPC_ADDR/,
    ],
    [
      'Check port on all interfaces',
      (o) => {
        const e = envVar(containerOf(o, SIDECAR), 'FORTARY_GRPC_ADDR');
        if (e !== undefined) e.value = '0.0.0.0:9191';
      },
      /FORTARY_GRPC_ADDR must be a loopback/,
    ],
    [
      'liveness that follows Redis',
      (o) => delete obj(obj(containerOf(o, SIDECAR).livenessProbe).grpc).service,
      /liveness must ask for "liveness"/,
    ],
    [
      'probe on the loopback Check port',
      (o) => (obj(containerOf(o, SIDECAR).readinessProbe).grpc = { port: 9191 }),
      /readinessProbe must be a gRPC probe on the health port/,
    ],
    [
      'edited ConfigMap',
      (o) => {
        const cm = ofKind(o, 'ConfigMap').find((c) =>
          String(at(c, 'metadata', 'name')).startsWith('fortary-envoy'),
        );
        obj(cm?.data)['envoy.yaml'] = envoyYaml.replace(
          'failure_mode_allow: false',
          'failure_mode_allow: true',
        );
      },
      /differs from envoy\/envoy.yaml/,
    ],
    [
      'short grace period',
      (o) => (podOf(o).terminationGracePeriodSeconds = 10),
      /terminationGracePeriodSeconds/,
    ],
    [
      'sidecar stops before Envoy',
      (o) => delete containerOf(o, SIDECAR).lifecycle,
      /preStop must outlast Envoy's/,
    ],
    ['one replica', (o) => (obj(deploymentOf(o).spec).replicas = 1), /replicas must be at least 2/],
    [
      'rollout drops capacity',
      (o) => (obj(at(deploymentOf(o), 'spec', 'strategy', 'rollingUpdate')).maxUnavailable = 1),
      /maxUnavailable 0/,
    ],
    [
      'egress open to every port',
      (o) => arr(at(policyOf(o), 'spec', 'egress')).push({ to: [{ ipBlock: { cidr: '0.0.0.0/0' } }] }),
      /allows every port/,
    ],
    [
      'metrics open to everyone',
      (o) => delete obj(at(policyOf(o), 'spec', 'ingress', 1)).from,
      /ingress to 9464 must be limited/,
    ],
    [
      'Envoy admin port declared',
      (o) => arr(containerOf(o, 'envoy').ports).push({ name: 'admin', containerPort: 9901 }),
      /declares port 9901/,
    ],
    ['unpinned image', (o) => (containerOf(o, 'envoy').image = 'envoyproxy/envoy:latest'), /pinned/],
    [
      'no limits',
      (o) => delete obj(containerOf(o, 'envoy').resources).limits,
      /container envoy: needs limits.cpu/,
    ],
    [
      'UV_THREADPOOL_SIZE missing',
      (o) =>
        (containerOf(o, SIDECAR).env = arr(containerOf(o, SIDECAR).env).filter(
          (e) => at(e, 'name') !== 'UV_THREADPOOL_SIZE',
        )),
      /UV_THREADPOOL_SIZE/,
    ],
    [
      'a value the sidecar refuses at start',
      (o) => (obj(envVar(containerOf(o, SIDECAR), 'FORTARY_LAST_USED_FLUSH_S')).value = '0'),
      /sidecar env: FORTARY_LAST_USED_FLUSH_S/,
    ],
    [
      'FORTARY_EXPIRY_WARNING_DAYS left implicit',
      (o) =>
        (containerOf(o, SIDECAR).env = arr(containerOf(o, SIDECAR).env).filter(
          (e) => at(e, 'name') !== 'FORTARY_EXPIRY_WARNING_DAYS',
        )),
      /FORTARY_EXPIRY_WARNING_DAYS must be set explicitly/,
    ],
  ];

  it.each(breakages)('catches: %s', (_name, breakIt, expected) => {
    const broken = clone(base);
    breakIt(broken);
    expect(checkManifests(broken, { envoyYaml })).toEqual(
      expect.arrayContaining([expect.stringMatching(expected)]),
    );
  });

  it('catches a sentinel overlay without its variables or its port', () => {
    expect(checkManifests(base, { envoyYaml, sentinel: true })).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/REDIS_SENTINELS must be set/),
        expect.stringMatching(/REDIS_SENTINEL_NAME must be set/),
        expect.stringMatching(/expected .*26379/),
      ]),
    );
  });

  it('the schema validation rejects invalid objects and unknown kinds', () => {
    const broken = clone(base);
    const port = arr(containerOf(broken, SIDECAR).ports)[0];
    obj(port).containerPort = 'nine-one-nine-two';
    broken.push({ apiVersion: 'monitoring.coreos.com/v1', kind: 'PrometheusRule', metadata: { name: 'x' } });
    const failed = validateSchemas(broken).filter((r) => r.errors.length > 0);
    expect(failed.map((r) => r.ref)).toEqual([
      'apps/v1/Deployment fortary-authz',
      'monitoring.coreos.com/v1/PrometheusRule x',
    ]);
    expect(failed[0]?.errors.join()).toMatch(/containerPort must be integer/);
  });
});
