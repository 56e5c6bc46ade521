/**
 * The security properties envoy/envoy.yaml must keep, as a checker that lists every violation. Filters and
 * clusters are found by their type, not by their position, so a reordered or renamed config is still checked.
 * See /work/shared/docs/envoy-ext-authz.md sections 3-6 for the reasons behind each rule.
 */
import { arr, at, isObj, num, obj, str, strings, type Obj } from './json';

export const HCM_TYPE =
  'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
export const EXT_AUTHZ_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz';
export const EXT_AUTHZ_PER_ROUTE_TYPE =
  'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute';
export const ROUTER_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';
export const EXT_AUTHZ_FILTER_NAME = 'envoy.filters.http.ext_authz';
const HTTP_OPTIONS_KEY = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';
const METADATA_FIELDS = ['key_id', 'user_id', 'reason', 'decision'];
const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

export interface SocketAddress {
  address: string;
  port: number;
}

export interface HttpConnectionManager {
  listener: string;
  port: number | undefined;
  hcm: Obj;
  filters: Obj[];
  extAuthz: Obj | undefined;
}

export function socketAddress(address: unknown): SocketAddress | undefined {
  const address_ = str(at(address, 'socket_address', 'address'));
  const port = num(at(address, 'socket_address', 'port_value'));
  return address_ === undefined || port === undefined ? undefined : { address: address_, port };
}

export function clusters(config: unknown): Obj[] {
  return arr(at(config, 'static_resources', 'clusters')).map(obj);
}

export function clusterEndpoints(cluster: Obj): SocketAddress[] {
  return arr(at(cluster, 'load_assignment', 'endpoints'))
    .flatMap((e) => arr(at(e, 'lb_endpoints')))
    .map((e) => socketAddress(at(e, 'endpoint', 'address')))
    .filter((a): a is SocketAddress => a !== undefined);
}

export function connectionManagers(config: unknown): HttpConnectionManager[] {
  return arr(at(config, 'static_resources', 'listeners')).flatMap((listener) =>
    arr(at(listener, 'filter_chains'))
      .flatMap((chain) => arr(at(chain, 'filters')))
      .filter((f) => at(f, 'typed_config', '@type') === HCM_TYPE)
      .map((f) => {
        const hcm = obj(at(f, 'typed_config'));
        const filters = arr(hcm.http_filters).map(obj);
        return {
          listener: str(at(listener, 'name')) ?? '(unnamed listener)',
          port: socketAddress(at(listener, 'address'))?.port,
          hcm,
          filters,
          extAuthz: filters.find((h) => at(h, 'typed_config', '@type') === EXT_AUTHZ_TYPE),
        };
      }),
  );
}

/** The address Envoy sends Check calls to (the ext_authz filter's gRPC cluster). */
export function authzEndpoint(config: unknown): SocketAddress | undefined {
  const withAuthz = connectionManagers(config).find((m) => m.extAuthz !== undefined);
  const clusterName = str(
    at(withAuthz?.extAuthz, 'typed_config', 'grpc_service', 'envoy_grpc', 'cluster_name'),
  );
  const cluster = clusters(config).find((c) => c.name === clusterName);
  return cluster === undefined ? undefined : clusterEndpoints(cluster)[0];
}

/** "0.5s" or {seconds, nanos} as seconds; undefined when absent or malformed. */
export function durationSeconds(v: unknown): number | undefined {
  if (typeof v === 'string') {
    const m = /^(\d+(?:\.\d+)?)s$/.exec(v);
    return m?.[1] === undefined ? undefined : Number(m[1]);
  }
  if (isObj(v)) return (num(v.seconds) ?? 0) + (num(v.nanos) ?? 0) / 1e9;
  return undefined;
}

/** Direct routes of every virtual host, with the virtual host for context. */
function routesOf(hcm: Obj): { vhost: Obj; route: Obj }[] {
  return arr(at(hcm, 'route_config', 'virtual_hosts'))
    .map(obj)
    .flatMap((vhost) => arr(vhost.routes).map((route) => ({ vhost, route: obj(route) })));
}

function routeLabel(route: Obj): string {
  const match = obj(route.match);
  return JSON.stringify(
    match.path ?? match.prefix ?? match.safe_regex ?? match.path_separated_prefix ?? match,
  );
}

function forwardedClusters(route: Obj): string[] {
  const action = route.route;
  if (!isObj(action)) return [];
  const names = [
    str(action.cluster),
    ...arr(at(action, 'weighted_clusters', 'clusters')).map((c) => str(at(c, 'name'))),
  ];
  if (action.cluster_header !== undefined || action.cluster_specifier_plugin !== undefined)
    names.push('(dynamic)');
  return names.filter((n): n is string => n !== undefined);
}

/** Exactly GET /stats/prometheus, the only admin path allowed off loopback. */
function isStatsOnlyRoute(route: Obj): boolean {
  const match = obj(route.match);
  const keys = Object.keys(match).filter((k) => k !== 'headers');
  const getOnly = arr(match.headers).some(
    (h) =>
      at(h, 'name') === ':method' &&
      at(h, 'string_match', 'exact') === 'GET' &&
      at(h, 'invert_match') !== true,
  );
  return keys.length === 1 && match.path === '/stats/prometheus' && getOnly;
}

export const FIXED_HEAP = 'envoy.resource_monitors.fixed_heap';
export const GLOBAL_CONNECTIONS = 'envoy.resource_monitors.global_downstream_max_connections';
const FIXED_HEAP_TYPE =
  'type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig';
const CONNECTIONS_TYPE =
  'type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig';

/** A resource monitor of the overload manager by name (its typed_config), or undefined. */
export function resourceMonitor(config: unknown, name: string): Obj | undefined {
  const monitor = arr(at(config, 'overload_manager', 'resource_monitors')).find(
    (m) => at(m, 'name') === name,
  );
  return monitor === undefined ? undefined : obj(at(monitor, 'typed_config'));
}

/** The threshold at which `action` fires on `monitor`, or undefined when it is not configured. */
export function overloadThreshold(config: unknown, action: string, monitor: string): number | undefined {
  const entry = arr(at(config, 'overload_manager', 'actions')).find((a) => at(a, 'name') === action);
  const trigger = arr(at(entry, 'triggers')).find((t) => at(t, 'name') === monitor);
  return num(at(trigger, 'threshold', 'value'));
}

/** Envoy's edge best practices: a heap limit that sheds load before the OOM killer, and a connection cap. */
function checkOverloadManager(config: unknown): string[] {
  const problems: string[] = [];
  const heap = resourceMonitor(config, FIXED_HEAP);
  const heapBytes = num(heap?.max_heap_size_bytes);
  if (heap === undefined || heap['@type'] !== FIXED_HEAP_TYPE || heapBytes === undefined || heapBytes <= 0) {
    problems.push(`overload_manager needs a ${FIXED_HEAP} monitor with max_heap_size_bytes above 0`);
  }
  for (const action of ['shrink_heap', 'stop_accepting_requests']) {
    const threshold = overloadThreshold(config, `envoy.overload_actions.${action}`, FIXED_HEAP);
    if (threshold === undefined || threshold <= 0 || threshold > 1) {
      problems.push(`overload_manager needs envoy.overload_actions.${action} triggered by ${FIXED_HEAP}`);
    }
  }
  const shrink = overloadThreshold(config, 'envoy.overload_actions.shrink_heap', FIXED_HEAP);
  const stop = overloadThreshold(config, 'envoy.overload_actions.stop_accepting_requests', FIXED_HEAP);
  if (shrink !== undefined && stop !== undefined && shrink >= stop) {
    problems.push('overload_manager must shrink the heap before it stops accepting requests');
  }
  const connections = resourceMonitor(config, GLOBAL_CONNECTIONS);
  const max = num(connections?.max_active_downstream_connections);
  if (
    connections === undefined ||
    connections['@type'] !== CONNECTIONS_TYPE ||
    max === undefined ||
    max <= 0
  ) {
    problems.push(`overload_manager needs a ${GLOBAL_CONNECTIONS} monitor with a positive limit`);
  }
  return problems;
}

export function checkEnvoyConfig(config: unknown): string[] {
  const problems: string[] = checkOverloadManager(config);
  const allClusters = clusters(config);
  const clusterByName = new Map(allClusters.map((c) => [str(c.name) ?? '', c]));

  // The admin API can quit, drain and reconfigure Envoy: loopback only.
  const admin = socketAddress(at(config, 'admin', 'address'));
  if (at(config, 'admin') !== undefined && (admin === undefined || !LOOPBACK.has(admin.address))) {
    problems.push(`admin must listen on loopback, not ${JSON.stringify(admin?.address)}`);
  }
  const adminClusters = new Set(
    allClusters
      .filter((c) =>
        clusterEndpoints(c).some(
          (e) => admin !== undefined && e.port === admin.port && LOOPBACK.has(e.address),
        ),
      )
      .map((c) => str(c.name) ?? ''),
  );

  const managers = connectionManagers(config);
  if (!managers.some((m) => m.port === 8080 && m.extAuthz !== undefined)) {
    problems.push('no listener on port 8080 with the ext_authz filter');
  }
  // The kubelet's readiness probe: answered by Envoy itself on the public port, never forwarded.
  const healthz = managers
    .filter((m) => m.port === 8080)
    .flatMap((m) => routesOf(m.hcm))
    .find(({ route }) => at(route, 'match', 'path') === '/healthz');
  if (healthz === undefined || at(healthz.route, 'direct_response', 'status') !== 200) {
    problems.push('port 8080 needs a /healthz route answered by Envoy (direct_response 200)');
  }

  for (const m of managers) {
    const where = `listener ${m.listener}`;
    const { hcm, filters, extAuthz } = m;

    // Authz and routing must see the same path.
    if (hcm.normalize_path !== true) problems.push(`${where}: normalize_path must be true`);
    if (hcm.merge_slashes !== true) problems.push(`${where}: merge_slashes must be true`);
    if (hcm.path_with_escaped_slashes_action !== 'REJECT_REQUEST') {
      problems.push(`${where}: path_with_escaped_slashes_action must be REJECT_REQUEST`);
    }

    // The router must be last, once.
    const routers = filters.filter((f) => at(f, 'typed_config', '@type') === ROUTER_TYPE);
    const last = filters[filters.length - 1];
    if (routers.length !== 1 || last === undefined || at(last, 'typed_config', '@type') !== ROUTER_TYPE) {
      problems.push(`${where}: the router must be the last http filter, exactly once`);
    }

    // Access logs: never the Authorization header, never the raw path with its query string.
    const logFormats = arr(hcm.access_log).map((l) => strings(at(l, 'typed_config', 'log_format')));
    for (const s of logFormats.flat()) {
      if (/authorization/i.test(s))
        problems.push(`${where}: an access log records the Authorization header (${s})`);
      if (/%REQ\((?:[^)]*\?)?:PATH\)%/i.test(s)) {
        problems.push(
          `${where}: an access log records the path with its query string (${s}); use REQ_WITHOUT_QUERY`,
        );
      }
    }

    const filterName = str(extAuthz?.name);
    for (const { vhost, route } of routesOf(hcm)) {
      const label = routeLabel(route);
      // Per-route ext_authz settings: the key must be the filter's name, and only direct responses may skip it.
      for (const [holder, what] of [
        [vhost, `virtual host ${String(vhost.name)}`],
        [route, `route ${label}`],
      ] as const) {
        for (const [key, value] of Object.entries(obj(holder.typed_per_filter_config))) {
          if (at(value, '@type') !== EXT_AUTHZ_PER_ROUTE_TYPE) continue;
          if (key !== filterName) {
            problems.push(
              `${where}: ${what} configures ext_authz under "${key}", not the filter name "${filterName}"`,
            );
          }
          if (at(value, 'disabled') === true && (holder === vhost || route.direct_response === undefined)) {
            problems.push(`${where}: ${what} disables ext_authz but is not a direct response`);
          }
        }
      }
      for (const cluster of forwardedClusters(route)) {
        if (adminClusters.has(cluster) && !isStatsOnlyRoute(route)) {
          problems.push(`${where}: route ${label} exposes the admin API beyond GET /stats/prometheus`);
        }
        if (extAuthz === undefined && !(adminClusters.has(cluster) && isStatsOnlyRoute(route))) {
          problems.push(`${where}: route ${label} forwards to ${cluster} without the ext_authz filter`);
        }
        if (cluster !== '(dynamic)' && !clusterByName.has(cluster)) {
          problems.push(`${where}: route ${label} names unknown cluster ${cluster}`);
        }
        if (cluster === '(dynamic)') problems.push(`${where}: route ${label} picks its cluster at run time`);
      }
    }

    if (extAuthz === undefined) continue;
    problems.push(...checkExtAuthz(where, m, clusterByName));
    if (hcm.use_remote_address !== true)
      problems.push(`${where}: use_remote_address must be true (Envoy is the edge)`);
    const metadataLogged = logFormats.some((formats) =>
      METADATA_FIELDS.every((field) =>
        formats.some((s) => s.includes(`%DYNAMIC_METADATA(${EXT_AUTHZ_FILTER_NAME}:${field})%`)),
      ),
    );
    if (!metadataLogged) {
      problems.push(`${where}: no access log records the ext_authz metadata ${METADATA_FIELDS.join(', ')}`);
    }
  }
  return problems;
}

function checkExtAuthz(where: string, m: HttpConnectionManager, clusterByName: Map<string, Obj>): string[] {
  const problems: string[] = [];
  const filter = obj(m.extAuthz);
  const c = obj(filter.typed_config);

  if (filter.name !== EXT_AUTHZ_FILTER_NAME)
    problems.push(`${where}: the ext_authz filter must be named ${EXT_AUTHZ_FILTER_NAME}`);
  if (filter.disabled === true) problems.push(`${where}: the ext_authz filter is disabled`);
  const authzIndex = m.filters.indexOf(filter);
  const routerIndex = m.filters.findIndex((f) => at(f, 'typed_config', '@type') === ROUTER_TYPE);
  if (routerIndex !== -1 && authzIndex > routerIndex)
    problems.push(`${where}: ext_authz must come before the router`);

  if (c.transport_api_version !== 'V3') problems.push(`${where}: ext_authz transport_api_version must be V3`);
  if (c.failure_mode_allow !== false)
    problems.push(`${where}: ext_authz failure_mode_allow must be explicitly false`);
  const status = at(c, 'status_on_error', 'code');
  if (status !== 'ServiceUnavailable' && status !== 503) {
    problems.push(`${where}: ext_authz status_on_error must be ServiceUnavailable (503)`);
  }
  if (c.http_service !== undefined)
    problems.push(`${where}: ext_authz must use grpc_service, not http_service`);
  const timeout = durationSeconds(at(c, 'grpc_service', 'timeout'));
  if (timeout === undefined || timeout <= 0 || timeout > 1) {
    problems.push(`${where}: ext_authz grpc_service.timeout must be explicit, above 0 and at most 1s`);
  }
  const allowed = c.allowed_headers;
  if (allowed !== undefined) {
    const patterns = arr(at(allowed, 'patterns'));
    const hasAuthorization = patterns.some((p) => {
      const exact = str(at(p, 'exact'));
      return exact !== undefined && exact.toLowerCase() === 'authorization';
    });
    if (!hasAuthorization) problems.push(`${where}: ext_authz allowed_headers drops authorization`);
  }
  if (c.validate_mutations !== true) problems.push(`${where}: ext_authz validate_mutations must be true`);
  if (c.clear_route_cache === true) problems.push(`${where}: ext_authz clear_route_cache must be false`);
  if (typeof c.stat_prefix !== 'string' || c.stat_prefix === '')
    problems.push(`${where}: ext_authz needs a stat_prefix`);
  for (const knob of ['filter_enabled', 'filter_enabled_metadata']) {
    if (c[knob] !== undefined)
      problems.push(`${where}: ext_authz ${knob} can switch the check off for some requests`);
  }
  if (c.enable_dynamic_metadata_ingestion === false) {
    problems.push(`${where}: ext_authz must ingest dynamic metadata (the access log records it)`);
  }

  const clusterName = str(at(c, 'grpc_service', 'envoy_grpc', 'cluster_name'));
  const cluster = clusterName === undefined ? undefined : clusterByName.get(clusterName);
  if (cluster === undefined) {
    problems.push(`${where}: ext_authz grpc_service.envoy_grpc.cluster_name names no cluster`);
    return problems;
  }
  const cw = `cluster ${clusterName}`;
  const h2 = at(
    cluster,
    'typed_extension_protocol_options',
    HTTP_OPTIONS_KEY,
    'explicit_http_config',
    'http2_protocol_options',
  );
  if (!isObj(h2)) problems.push(`${cw}: must speak HTTP/2 via typed_extension_protocol_options`);
  if (cluster.http2_protocol_options !== undefined)
    problems.push(`${cw}: uses the deprecated http2_protocol_options`);
  if (at(h2, 'connection_keepalive', 'interval') === undefined)
    problems.push(`${cw}: needs HTTP/2 keepalive`);
  const grpcHealth = arr(cluster.health_checks).some(
    (h) => isObj(at(h, 'grpc_health_check')) && (at(h, 'grpc_health_check', 'service_name') ?? '') === '',
  );
  if (!grpcHealth) problems.push(`${cw}: needs a grpc_health_check with service_name ""`);
  const endpoints = clusterEndpoints(cluster);
  if (endpoints.length !== 1 || !endpoints.every((e) => LOOPBACK.has(e.address))) {
    problems.push(`${cw}: must have exactly one loopback endpoint (the sidecar)`);
  }
  return problems;
}
