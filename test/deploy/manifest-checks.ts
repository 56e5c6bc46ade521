/**
 * What a rendered fortary-authz deployment must satisfy: the wiring between Envoy and the sidecar, the security
 * context, the Secret handling, the network policy and the shutdown timing. Returns every problem found.
 */
import path from 'node:path';
import { parse } from 'yaml';
import { readConfig } from '../../src/config';
import { authzEndpoint, checkEnvoyConfig, connectionManagers } from './envoy-checks';
import { arr, at, isObj, num, obj, str, type Obj } from './json';

export const NAMESPACE = 'fortary';
export const SIDECAR = 'fortary-authz';
export const ENVOY_IMAGE = 'envoyproxy/envoy:v1.37.0';
const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);
/** The grpc.health.v1 service name that reports only whether the process is alive. */
export const LIVENESS_SERVICE = 'liveness';

/** Variables the Deployment spells out even at their defaults, so operators see the knob and its value. */
export const EXPLICIT_ENV = ['FORTARY_LAST_USED_FLUSH_S', 'FORTARY_EXPIRY_WARNING_DAYS'];

export interface ManifestOptions {
  /** The exact text of envoy/envoy.yaml, which the generated ConfigMap must hold. */
  envoyYaml: string;
  /** The sentinel overlay: REDIS_SENTINELS / REDIS_SENTINEL_NAME set, 26379 open. */
  sentinel?: boolean;
}

export const ofKind = (objects: Obj[], kind: string): Obj[] => objects.filter((o) => o.kind === kind);
const nameOf = (o: unknown): string => str(at(o, 'metadata', 'name')) ?? '(unnamed)';

export function parseHostPort(text: string | undefined): { host: string; port: number } | undefined {
  const m = text === undefined ? null : /^\[?([^\]]*)\]?:(\d+)$/.exec(text);
  return m?.[1] === undefined || m[2] === undefined ? undefined : { host: m[1], port: Number(m[2]) };
}

export function envVar(container: unknown, name: string): Obj | undefined {
  const found = arr(at(container, 'env')).find((e) => at(e, 'name') === name);
  return isObj(found) ? found : undefined;
}

const envValue = (container: unknown, name: string): string | undefined =>
  str(envVar(container, name)?.value);

/** A container port given by number or by name, as a number. */
function resolvePort(container: unknown, port: unknown): number | undefined {
  if (typeof port === 'number') return port;
  const named = arr(at(container, 'ports')).find((p) => at(p, 'name') === port);
  return num(at(named, 'containerPort'));
}

const declaredPorts = (container: unknown): number[] =>
  arr(at(container, 'ports'))
    .map((p) => num(at(p, 'containerPort')))
    .filter((p): p is number => p !== undefined);

/** The seconds a preStop hook sleeps (`sleep N` anywhere in its command, or the native sleep action). */
export function preStopSleepSeconds(container: unknown): number {
  const native = num(at(container, 'lifecycle', 'preStop', 'sleep', 'seconds'));
  if (native !== undefined) return native;
  const command = arr(at(container, 'lifecycle', 'preStop', 'exec', 'command'))
    .map(String)
    .join(' ');
  const sleeps = [...command.matchAll(/\bsleep\s+(\d+)/g)].map((m) => Number(m[1]));
  return sleeps.reduce((a, b) => a + b, 0);
}

function selects(selector: unknown, labels: unknown): boolean {
  const wanted = Object.entries(obj(at(selector, 'matchLabels')));
  return wanted.length > 0 && wanted.every(([k, v]) => at(labels, k) === v);
}

/** Kubernetes quantities as numbers: CPU in cores, memory in bytes. */
export function quantity(v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  const m = typeof v === 'string' ? /^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi)?$/.exec(v) : null;
  if (m?.[1] === undefined) return undefined;
  const factor = { m: 1e-3, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30 }[m[2] ?? ''] ?? 1;
  return Number(m[1]) * factor;
}

interface PortRule {
  port: number;
  protocol: string;
  from: unknown[];
}

function policyPorts(rules: unknown[], peers: 'from' | 'to'): PortRule[] {
  return rules.flatMap((rule) =>
    arr(at(rule, 'ports')).map((p) => ({
      port: num(at(p, 'port')) ?? -1,
      protocol: str(at(p, 'protocol')) ?? 'TCP',
      from: arr(at(rule, peers)),
    })),
  );
}

export function checkManifests(objects: Obj[], options: ManifestOptions): string[] {
  const problems: string[] = [];
  const expectOne = (kind: string): Obj | undefined => {
    const found = ofKind(objects, kind);
    if (found.length !== 1) problems.push(`expected exactly one ${kind}, found ${found.length}`);
    return found[0];
  };

  // Secrets are created by operators, never shipped.
  for (const s of ofKind(objects, 'Secret')) problems.push(`the render contains Secret ${nameOf(s)}`);
  if (!ofKind(objects, 'Namespace').some((n) => nameOf(n) === NAMESPACE))
    problems.push(`no Namespace ${NAMESPACE}`);
  for (const o of objects) {
    if (o.kind !== 'Namespace' && at(o, 'metadata', 'namespace') !== NAMESPACE) {
      problems.push(`${String(o.kind)} ${nameOf(o)} is not in namespace ${NAMESPACE}`);
    }
  }

  const deployment = expectOne('Deployment');
  if (deployment === undefined) return problems;
  const pod = obj(at(deployment, 'spec', 'template', 'spec'));
  const podLabels = at(deployment, 'spec', 'template', 'metadata', 'labels');
  const containers = arr(pod.containers).map(obj);
  const envoy = containers.find((c) => str(c.image)?.startsWith('envoyproxy/envoy'));
  const sidecar = containers.find((c) => c.name === SIDECAR);
  if (envoy === undefined || sidecar === undefined) {
    problems.push('the pod must run an envoyproxy/envoy container and the fortary-authz container');
    return problems;
  }

  // Availability.
  if ((num(at(deployment, 'spec', 'replicas')) ?? 1) < 2) problems.push('replicas must be at least 2');
  if (at(deployment, 'spec', 'strategy', 'rollingUpdate', 'maxUnavailable') !== 0) {
    problems.push('rolling updates must keep maxUnavailable 0');
  }
  if (!selects(at(deployment, 'spec', 'selector'), podLabels))
    problems.push('the Deployment selector misses its pods');
  if (
    arr(pod.topologySpreadConstraints).length === 0 &&
    at(pod, 'affinity', 'podAntiAffinity') === undefined
  ) {
    problems.push('replicas need topologySpreadConstraints or pod anti-affinity');
  }

  // Pod-level security.
  if (pod.automountServiceAccountToken !== false) problems.push('automountServiceAccountToken must be false');
  if (pod.hostNetwork === true || pod.hostPID === true || pod.hostIPC === true)
    problems.push('no host namespaces');
  for (const sa of ofKind(objects, 'ServiceAccount')) {
    if (sa.automountServiceAccountToken !== false)
      problems.push(`ServiceAccount ${nameOf(sa)} mounts its token`);
  }

  for (const c of containers) {
    const who = `container ${String(c.name)}`;
    const sc = obj(c.securityContext);
    const podSc = obj(pod.securityContext);
    if ((sc.runAsNonRoot ?? podSc.runAsNonRoot) !== true) problems.push(`${who}: runAsNonRoot must be true`);
    const uid = sc.runAsUser ?? podSc.runAsUser;
    if (typeof uid !== 'number' || !Number.isInteger(uid) || uid <= 0)
      problems.push(`${who}: needs a numeric non-root runAsUser`);
    if (sc.readOnlyRootFilesystem !== true) problems.push(`${who}: readOnlyRootFilesystem must be true`);
    if (sc.allowPrivilegeEscalation !== false)
      problems.push(`${who}: allowPrivilegeEscalation must be false`);
    if (sc.privileged === true) problems.push(`${who}: must not be privileged`);
    if (!arr(at(sc, 'capabilities', 'drop')).includes('ALL'))
      problems.push(`${who}: must drop ALL capabilities`);
    if (arr(at(sc, 'capabilities', 'add')).length > 0) problems.push(`${who}: must not add capabilities`);
    const seccomp = at(sc, 'seccompProfile', 'type') ?? at(podSc, 'seccompProfile', 'type');
    if (seccomp !== 'RuntimeDefault') problems.push(`${who}: seccompProfile must be RuntimeDefault`);
    for (const kind of ['requests', 'limits']) {
      for (const resource of ['cpu', 'memory']) {
        if (quantity(at(c, 'resources', kind, resource)) === undefined)
          problems.push(`${who}: needs ${kind}.${resource}`);
      }
    }
    const image = str(c.image) ?? '';
    const lastPart = image.slice(image.lastIndexOf('/') + 1);
    const digest = /@sha256:[a-f0-9]{64}$/.test(image);
    if (!digest && (!/:\w[\w.-]*$/.test(lastPart) || lastPart.endsWith(':latest'))) {
      problems.push(`${who}: image ${image} must be pinned to a version or digest`);
    }
    for (const e of arr(c.env)) {
      const value = str(at(e, 'value'));
      if (value !== undefined && /:\/\/[^/\s@]*:[^@\s]+@/.test(value)) {
        problems.push(`${who}: env ${String(at(e, 'name'))} holds a URL with credentials`);
      }
    }
  }

  // Envoy: the exact envoy/envoy.yaml, mounted from the generated ConfigMap.
  if (envoy.image !== ENVOY_IMAGE) problems.push(`the Envoy image must be ${ENVOY_IMAGE}`);
  const envoyArgs = arr(envoy.args).map(String);
  const configPath =
    envoyArgs[envoyArgs.indexOf('-c') + 1] ?? envoyArgs[envoyArgs.indexOf('--config-path') + 1];
  const mount = arr(envoy.volumeMounts).find(
    (m) => configPath !== undefined && at(m, 'mountPath') === path.posix.dirname(configPath),
  );
  const volume = arr(pod.volumes).find((v) => at(v, 'name') === at(mount, 'name'));
  const configMap = ofKind(objects, 'ConfigMap').find((cm) => nameOf(cm) === at(volume, 'configMap', 'name'));
  const envoyText =
    configPath === undefined ? undefined : str(at(configMap, 'data', path.posix.basename(configPath)));
  if (envoyText === undefined) {
    problems.push('Envoy must read its -c config from a mounted ConfigMap in the render');
    return problems;
  }
  if (envoyText !== options.envoyYaml) problems.push('the Envoy ConfigMap differs from envoy/envoy.yaml');
  const envoyConfig: unknown = parse(envoyText);
  problems.push(...checkEnvoyConfig(envoyConfig).map((p) => `envoy.yaml: ${p}`));
  const listenerPorts = new Set(connectionManagers(envoyConfig).map((m) => m.port));
  for (const p of declaredPorts(envoy)) {
    if (!listenerPorts.has(p))
      problems.push(`Envoy declares port ${p}, which no listener serves (the admin API stays on loopback)`);
  }
  const envoyReady = at(envoy, 'readinessProbe', 'httpGet');
  if (at(envoyReady, 'path') !== '/healthz' || resolvePort(envoy, at(envoyReady, 'port')) !== 8080) {
    problems.push("Envoy's readiness probe must GET /healthz on 8080");
  }

  // The sidecar: Check on loopback at the port Envoy calls; health on its own port for the kubelet.
  const grpcAddr = parseHostPort(envValue(sidecar, 'FORTARY_GRPC_ADDR'));
  const endpoint = authzEndpoint(envoyConfig);
  if (grpcAddr === undefined || !LOOPBACK.has(grpcAddr.host))
    problems.push('FORTARY_GRPC_ADDR must be a loopback host:port');
  if (
    grpcAddr === undefined ||
    endpoint === undefined ||
    grpcAddr.port !== endpoint.port ||
    grpcAddr.host !== endpoint.address
  ) {
    problems.push(
      `Envoy calls ${JSON.stringify(endpoint)} but FORTARY_GRPC_ADDR is ${JSON.stringify(grpcAddr)}`,
    );
  }
  const health = parseHostPort(envValue(sidecar, 'FORTARY_HEALTH_ADDR'));
  if (health === undefined || health.port === grpcAddr?.port)
    problems.push('FORTARY_HEALTH_ADDR must be a separate host:port');
  if (health !== undefined && !declaredPorts(sidecar).includes(health.port))
    problems.push('the health port is not declared');
  for (const probe of ['readinessProbe', 'livenessProbe', 'startupProbe']) {
    const p = at(sidecar, probe);
    if (p === undefined && probe === 'startupProbe') continue;
    if (num(at(p, 'grpc', 'port')) !== health?.port) {
      problems.push(`sidecar ${probe} must be a gRPC probe on the health port`);
    }
  }
  // "" follows readiness (the Redis connection); "liveness" only the process (src/adapters/grpc/grpc-server.ts).
  if ((at(sidecar, 'readinessProbe', 'grpc', 'service') ?? '') !== '')
    problems.push('sidecar readiness must ask for ""');
  if (at(sidecar, 'livenessProbe', 'grpc', 'service') !== LIVENESS_SERVICE) {
    problems.push(
      `sidecar liveness must ask for "${LIVENESS_SERVICE}", or a Redis outage restarts every pod`,
    );
  }
  const admin = parseHostPort(envValue(sidecar, 'FORTARY_ADMIN_ADDR'));
  const metricsPort = arr(sidecar.ports).find((p) => at(p, 'name') === 'metrics');
  if (admin === undefined || num(at(metricsPort, 'containerPort')) !== admin.port) {
    problems.push('FORTARY_ADMIN_ADDR must be declared as the container port named metrics');
  }
  if (envValue(sidecar, 'UV_THREADPOOL_SIZE') !== '4') problems.push('UV_THREADPOOL_SIZE must be 4');
  // The sidecar's own validation of its environment: a value it would refuse at start fails here, offline.
  const literals = Object.fromEntries(
    arr(sidecar.env).flatMap((e) => {
      const value = str(at(e, 'value'));
      return value === undefined ? [] : [[String(at(e, 'name')), value]];
    }),
  );
  const config = readConfig(literals);
  if (!config.ok) problems.push(...config.problems.map((p) => `sidecar env: ${p}`));
  for (const name of EXPLICIT_ENV) {
    if (envValue(sidecar, name) === undefined) problems.push(`sidecar env: ${name} must be set explicitly`);
  }
  const redis = envVar(sidecar, 'REDIS_URL');
  if (redis?.value !== undefined || str(at(redis, 'valueFrom', 'secretKeyRef', 'name')) === undefined) {
    problems.push('REDIS_URL must come from a secretKeyRef, never a literal');
  }
  const expected: [string, string, string][] = [
    ['requests', 'cpu', '250m'],
    ['requests', 'memory', '128Mi'],
    ['limits', 'cpu', '1'],
    ['limits', 'memory', '256Mi'],
  ];
  for (const [kind, resource, value] of expected) {
    if (quantity(at(sidecar, 'resources', kind, resource)) !== quantity(value)) {
      problems.push(`sidecar ${kind}.${resource} must be ${value}`);
    }
  }

  // Shutdown: the sidecar outlives Envoy, and its drain finishes before the kubelet's SIGKILL.
  const drainMs = Number(envValue(sidecar, 'FORTARY_DRAIN_TIMEOUT_MS') ?? 10_000);
  const grace = num(pod.terminationGracePeriodSeconds) ?? 30;
  if (!(grace > drainMs / 1000))
    problems.push('terminationGracePeriodSeconds must exceed FORTARY_DRAIN_TIMEOUT_MS');
  if (!(grace > preStopSleepSeconds(sidecar) + drainMs / 1000)) {
    problems.push('terminationGracePeriodSeconds must cover the sidecar preStop sleep plus its drain');
  }
  if (preStopSleepSeconds(envoy) === 0)
    problems.push('Envoy needs a preStop drain (it exits at once on SIGTERM)');
  if (!(preStopSleepSeconds(sidecar) > preStopSleepSeconds(envoy))) {
    problems.push("the sidecar's preStop must outlast Envoy's, or Envoy's last checks fail");
  }

  // Only Envoy behind the Service.
  const service = expectOne('Service');
  if (service !== undefined) {
    if (!selects({ matchLabels: at(service, 'spec', 'selector') }, podLabels))
      problems.push('the Service misses the pods');
    for (const p of arr(at(service, 'spec', 'ports'))) {
      if (resolvePort(envoy, at(p, 'targetPort') ?? at(p, 'port')) !== 8080 || at(p, 'port') !== 8080) {
        problems.push(`Service port ${JSON.stringify(p)} must be 8080 to Envoy's 8080`);
      }
    }
  }
  const pdb = expectOne('PodDisruptionBudget');
  if (pdb !== undefined && !selects(at(pdb, 'spec', 'selector'), podLabels))
    problems.push('the PDB misses the pods');

  // NetworkPolicy: default deny, then exactly the ports the pod needs.
  const policy = expectOne('NetworkPolicy');
  if (policy !== undefined) {
    if (!selects(at(policy, 'spec', 'podSelector'), podLabels))
      problems.push('the NetworkPolicy misses the pods');
    const types = arr(at(policy, 'spec', 'policyTypes'));
    if (!types.includes('Ingress') || !types.includes('Egress'))
      problems.push('the NetworkPolicy must cover Ingress and Egress');
    const egressRules = arr(at(policy, 'spec', 'egress'));
    const ingressRules = arr(at(policy, 'spec', 'ingress'));
    for (const rule of [...egressRules, ...ingressRules]) {
      if (arr(at(rule, 'ports')).length === 0)
        problems.push(`a NetworkPolicy rule allows every port: ${JSON.stringify(rule)}`);
    }
    const egress = policyPorts(egressRules, 'to')
      .map((p) => `${p.port}/${p.protocol}`)
      .sort();
    const wantEgress = [
      '53/TCP',
      '53/UDP',
      '6379/TCP',
      '6380/TCP',
      '8080/TCP',
      ...(options.sentinel ? ['26379/TCP'] : []),
    ].sort();
    if (JSON.stringify(egress) !== JSON.stringify(wantEgress)) {
      problems.push(`NetworkPolicy egress ports are ${egress.join(' ')}, expected ${wantEgress.join(' ')}`);
    }
    const ingress = policyPorts(ingressRules, 'from');
    const ingressPorts = [...new Set(ingress.map((p) => p.port))].sort((a, b) => a - b);
    if (JSON.stringify(ingressPorts) !== JSON.stringify([8080, 9464, 9902])) {
      problems.push(`NetworkPolicy ingress ports are ${ingressPorts.join(' ')}, expected 8080 9464 9902`);
    }
    for (const p of ingress.filter((x) => x.port !== 8080)) {
      const fromMonitoring =
        p.from.length > 0 &&
        p.from.every((peer) => Object.keys(obj(at(peer, 'namespaceSelector', 'matchLabels'))).length > 0);
      if (!fromMonitoring)
        problems.push(`ingress to ${p.port} must be limited to a monitoring namespace selector`);
    }
  }

  if (options.sentinel) {
    for (const name of ['REDIS_SENTINELS', 'REDIS_SENTINEL_NAME']) {
      const v = envVar(sidecar, name);
      const ref = at(v, 'valueFrom', 'configMapKeyRef');
      const cm = ofKind(objects, 'ConfigMap').find((c) => nameOf(c) === at(ref, 'name'));
      const value = str(v?.value) ?? str(at(cm, 'data', str(at(ref, 'key')) ?? ''));
      if (value === undefined && at(v, 'valueFrom', 'secretKeyRef') === undefined) {
        problems.push(`${name} must be set (a value, or a key of a ConfigMap in the render, or a Secret)`);
      }
      if (
        name === 'REDIS_SENTINELS' &&
        value !== undefined &&
        !/^[^\s,:]+:\d+(,[^\s,:]+:\d+)*$/.test(value)
      ) {
        problems.push(`REDIS_SENTINELS must be host:port,host:port, got ${value}`);
      }
    }
  } else if (envVar(sidecar, 'REDIS_SENTINELS') !== undefined) {
    problems.push('the base must not use Sentinel');
  }
  return problems;
}
