/**
 * envoy/envoy.yaml keeps every setting that makes the authorization gate fail closed. The checker is run on the
 * real file (no problems) and on broken copies (each must be caught), so no check can silently pass.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import {
  authzEndpoint,
  checkEnvoyConfig,
  clusters,
  connectionManagers,
  durationSeconds,
  EXT_AUTHZ_FILTER_NAME,
  FIXED_HEAP,
  GLOBAL_CONNECTIONS,
  overloadThreshold,
  resourceMonitor,
} from './envoy-checks';
import { arr, at, clone, obj, type Obj } from './json';

const ROOT = path.resolve(__dirname, '../..');
const config: unknown = parse(readFileSync(path.join(ROOT, 'envoy/envoy.yaml'), 'utf8'));

function publicManager(c: unknown) {
  const m = connectionManagers(c).find((x) => x.listener === 'public');
  if (m === undefined) throw new Error('no public listener');
  return m;
}
const extAuthz = (c: unknown): Obj => obj(at(publicManager(c).extAuthz, 'typed_config'));
const authzCluster = (c: unknown): Obj => {
  const found = clusters(c).find((x) => x.name === 'fortary_authz');
  if (found === undefined) throw new Error('no fortary_authz cluster');
  return found;
};
const routes = (c: unknown): Obj[] =>
  arr(at(publicManager(c).hcm, 'route_config', 'virtual_hosts', 0, 'routes')).map(obj);
/** A Kubernetes memory quantity (Mi/Gi/bytes) in bytes. */
function mebibytes(quantity: unknown): number {
  const m = /^(\d+)(Mi|Gi)?$/.exec(String(quantity));
  if (m === null) throw new Error(`unexpected memory quantity ${String(quantity)}`);
  return Number(m[1]) * (m[2] === 'Gi' ? 2 ** 30 : m[2] === 'Mi' ? 2 ** 20 : 1);
}
const overload = (c: unknown): Obj => obj(at(c, 'overload_manager'));
const jsonFormat = (c: unknown): Obj =>
  obj(at(publicManager(c).hcm, 'access_log', 0, 'typed_config', 'log_format', 'json_format'));

describe('envoy/envoy.yaml', () => {
  it('passes every security check', () => {
    expect(checkEnvoyConfig(config)).toEqual([]);
  });

  it('has the settings the deployment relies on', () => {
    const c = extAuthz(config);
    expect(c.failure_mode_allow).toBe(false);
    expect(at(c, 'status_on_error', 'code')).toBe('ServiceUnavailable');
    expect(durationSeconds(at(c, 'grpc_service', 'timeout'))).toBe(0.5);
    expect(c.allowed_headers).toBeUndefined();
    expect(authzEndpoint(config)).toEqual({ address: '127.0.0.1', port: 9191 });
    expect(publicManager(config).port).toBe(8080);
    const api = clusters(config).find((x) => x.name === 'fortary_api');
    expect(api?.type).toBe('STRICT_DNS');
    expect(at(api, 'load_assignment', 'endpoints', 0, 'lb_endpoints', 0, 'endpoint', 'address')).toEqual({
      socket_address: { address: 'fortary-api', port_value: 8080 },
    });
  });

  it('answers /healthz itself, without a check', () => {
    const healthz = routes(config).find((r) => at(r, 'match', 'path') === '/healthz');
    expect(at(healthz, 'direct_response', 'status')).toBe(200);
    expect(at(healthz, 'typed_per_filter_config', EXT_AUTHZ_FILTER_NAME, 'disabled')).toBe(true);
  });

  it('logs JSON to stdout with the decision metadata', () => {
    const log = at(publicManager(config).hcm, 'access_log', 0, 'typed_config');
    expect(at(log, '@type')).toBe(
      'type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog',
    );
    const fields = jsonFormat(config);
    expect(fields).toMatchObject({
      key_id: '%DYNAMIC_METADATA(envoy.filters.http.ext_authz:key_id)%',
      user_id: '%DYNAMIC_METADATA(envoy.filters.http.ext_authz:user_id)%',
      reason: '%DYNAMIC_METADATA(envoy.filters.http.ext_authz:reason)%',
      decision: '%DYNAMIC_METADATA(envoy.filters.http.ext_authz:decision)%',
    });
    expect(Object.keys(fields)).toEqual(
      expect.arrayContaining(['method', 'path', 'response_code', 'request_id']),
    );
  });

  it('sheds load before the envoy container runs out of memory, and caps connections', () => {
    const heap = Number(resourceMonitor(config, FIXED_HEAP)?.max_heap_size_bytes);
    const deployment = parseAllDocuments(readFileSync(path.join(ROOT, 'deploy/base/deployment.yaml'), 'utf8'))
      .map((d) => d.toJS() as unknown)
      .find((d) => at(d, 'kind') === 'Deployment');
    const envoy = arr(at(deployment, 'spec', 'template', 'spec', 'containers')).find(
      (c) => at(c, 'name') === 'envoy',
    );
    const limit = mebibytes(at(envoy, 'resources', 'limits', 'memory'));
    // The heap is not all of Envoy's memory: leave at least 15% of the limit for the rest.
    expect(heap).toBeGreaterThan(0);
    expect(heap).toBeLessThanOrEqual(limit * 0.85);
    expect(overloadThreshold(config, 'envoy.overload_actions.shrink_heap', FIXED_HEAP)).toBe(0.95);
    expect(overloadThreshold(config, 'envoy.overload_actions.stop_accepting_requests', FIXED_HEAP)).toBe(
      0.98,
    );
    expect(resourceMonitor(config, GLOBAL_CONNECTIONS)?.max_active_downstream_connections).toBe(5000);
  });

  // Each breakage must produce the matching problem: this is what makes the checks above meaningful.
  const breakages: [string, (c: unknown) => void, RegExp][] = [
    [
      'fail open',
      (c) => (extAuthz(c).failure_mode_allow = true),
      /failure_mode_allow must be explicitly false/,
    ],
    [
      'failure_mode_allow left to its default',
      (c) => delete extAuthz(c).failure_mode_allow,
      /failure_mode_allow/,
    ],
    ['403 on error', (c) => (extAuthz(c).status_on_error = { code: 'Forbidden' }), /status_on_error/],
    ['status_on_error unset', (c) => delete extAuthz(c).status_on_error, /status_on_error/],
    ['transport AUTO', (c) => (extAuthz(c).transport_api_version = 'AUTO'), /transport_api_version/],
    ['timeout 0s', (c) => (obj(extAuthz(c).grpc_service).timeout = '0s'), /timeout must be explicit/],
    [
      'timeout left to default',
      (c) => delete obj(extAuthz(c).grpc_service).timeout,
      /timeout must be explicit/,
    ],
    ['timeout 2s', (c) => (obj(extAuthz(c).grpc_service).timeout = '2s'), /timeout must be explicit/],
    [
      'allowed_headers without authorization',
      (c) => (extAuthz(c).allowed_headers = { patterns: [{ exact: 'x-request-id' }] }),
      /allowed_headers drops authorization/,
    ],
    ['http_service', (c) => (extAuthz(c).http_service = {}), /http_service/],
    ['validate_mutations off', (c) => (extAuthz(c).validate_mutations = false), /validate_mutations/],
    ['clear_route_cache on', (c) => (extAuthz(c).clear_route_cache = true), /clear_route_cache/],
    ['no stat_prefix', (c) => delete extAuthz(c).stat_prefix, /stat_prefix/],
    ['filter_enabled', (c) => (extAuthz(c).filter_enabled = { default_value: {} }), /filter_enabled/],
    ['filter disabled', (c) => (obj(publicManager(c).extAuthz).disabled = true), /filter is disabled/],
    ['normalize_path off', (c) => (publicManager(c).hcm.normalize_path = false), /normalize_path/],
    ['merge_slashes unset', (c) => delete publicManager(c).hcm.merge_slashes, /merge_slashes/],
    [
      'escaped slashes kept',
      (c) => (publicManager(c).hcm.path_with_escaped_slashes_action = 'KEEP_UNCHANGED'),
      /REJECT_REQUEST/,
    ],
    [
      '/healthz forwarded to the API',
      (c) => {
        const r = routes(c)[0];
        if (r !== undefined) {
          delete r.direct_response;
          delete r.typed_per_filter_config;
          r.route = { cluster: 'fortary_api' };
        }
      },
      /needs a \/healthz route answered by Envoy/,
    ],
    ['XFF trusted', (c) => (publicManager(c).hcm.use_remote_address = false), /use_remote_address/],
    [
      'router first',
      (c) => arr(publicManager(c).hcm.http_filters).reverse(),
      /router must be the last|before the router/,
    ],
    [
      'no ext_authz filter',
      (c) => arr(publicManager(c).hcm.http_filters).shift(),
      /no listener on port 8080 with the ext_authz filter/,
    ],
    [
      'per-route key is not the filter name',
      (c) => {
        const r = obj(routes(c)[0]?.typed_per_filter_config);
        r.ext_authz = r[EXT_AUTHZ_FILTER_NAME];
        delete r[EXT_AUTHZ_FILTER_NAME];
      },
      /under "ext_authz", not the filter name/,
    ],
    [
      'a forwarding route skips the check',
      (c) => {
        const r = routes(c)[1];
        if (r !== undefined) r.typed_per_filter_config = clone(routes(c)[0]?.typed_per_filter_config);
      },
      /disables ext_authz but is not a direct response/,
    ],
    [
      'a whole virtual host skips the check',
      (c) => {
        const vhost = obj(at(publicManager(c).hcm, 'route_config', 'virtual_hosts', 0));
        vhost.typed_per_filter_config = clone(routes(c)[0]?.typed_per_filter_config);
      },
      /virtual host .* disables ext_authz/,
    ],
    [
      'authz cluster unknown',
      (c) => (obj(obj(extAuthz(c).grpc_service).envoy_grpc).cluster_name = 'nope'),
      /names no cluster/,
    ],
    [
      'authz cluster without HTTP/2',
      (c) => delete authzCluster(c).typed_extension_protocol_options,
      /must speak HTTP\/2/,
    ],
    [
      'legacy http2 field',
      (c) => (authzCluster(c).http2_protocol_options = {}),
      /deprecated http2_protocol_options/,
    ],
    ['no health check', (c) => delete authzCluster(c).health_checks, /grpc_health_check/],
    [
      'no keepalive',
      (c) =>
        delete obj(
          at(
            authzCluster(c),
            'typed_extension_protocol_options',
            'envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
            'explicit_http_config',
            'http2_protocol_options',
          ),
        ).connection_keepalive,
      /keepalive/,
    ],
    [
      'authz endpoint off loopback',
      (c) => {
        const a = obj(
          at(
            authzCluster(c),
            'load_assignment',
            'endpoints',
            0,
            'lb_endpoints',
            0,
            'endpoint',
            'address',
            'socket_address',
          ),
        );
        a.address = '10.0.0.1';
      },
      /loopback endpoint/,
    ],
    [
      'Authorization logged',
      (c) => (jsonFormat(c).auth = '%REQ(AUTHORIZATION)%'),
      /records the Authorization header/,
    ],
    [
      'query string logged',
      (c) => (jsonFormat(c).path = '%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%'),
      /query string/,
    ],
    ['key_id not logged', (c) => delete jsonFormat(c).key_id, /ext_authz metadata/],
    [
      'admin on all interfaces',
      (c) => (obj(at(c, 'admin', 'address', 'socket_address')).address = '0.0.0.0'),
      /admin must listen on loopback/,
    ],
    [
      'metrics listener exposes the whole admin API',
      (c) => {
        const m = connectionManagers(c).find((x) => x.listener === 'metrics');
        const route = obj(at(m?.hcm, 'route_config', 'virtual_hosts', 0, 'routes', 0));
        route.match = { prefix: '/' };
      },
      /exposes the admin API/,
    ],
    [
      'a listener without ext_authz forwards to the API',
      (c) => {
        const m = connectionManagers(c).find((x) => x.listener === 'metrics');
        obj(at(m?.hcm, 'route_config', 'virtual_hosts', 0, 'routes', 0)).route = { cluster: 'fortary_api' };
      },
      /forwards to fortary_api without the ext_authz filter/,
    ],
  ];

  breakages.push(
    ['no overload manager', (c) => delete obj(c).overload_manager, /fixed_heap monitor/],
    [
      'no heap limit',
      (c) =>
        (overload(c).resource_monitors = arr(overload(c).resource_monitors).filter(
          (m) => at(m, 'name') !== FIXED_HEAP,
        )),
      /fixed_heap monitor/,
    ],
    [
      'no global connection limit',
      (c) =>
        (overload(c).resource_monitors = arr(overload(c).resource_monitors).filter(
          (m) => at(m, 'name') !== GLOBAL_CONNECTIONS,
        )),
      /global_downstream_max_connections monitor/,
    ],
    [
      'connection limit 0',
      (c) => (obj(resourceMonitor(c, GLOBAL_CONNECTIONS)).max_active_downstream_connections = 0),
      /global_downstream_max_connections monitor with a positive limit/,
    ],
    [
      'never stops accepting requests',
      (c) =>
        (overload(c).actions = arr(overload(c).actions).filter(
          (a) => at(a, 'name') !== 'envoy.overload_actions.stop_accepting_requests',
        )),
      /stop_accepting_requests/,
    ],
    [
      'never shrinks the heap',
      (c) =>
        (overload(c).actions = arr(overload(c).actions).filter(
          (a) => at(a, 'name') !== 'envoy.overload_actions.shrink_heap',
        )),
      /shrink_heap/,
    ],
    [
      'stops accepting before shrinking',
      (c) => {
        const shrink = arr(overload(c).actions).find(
          (a) => at(a, 'name') === 'envoy.overload_actions.shrink_heap',
        );
        obj(at(shrink, 'triggers', 0, 'threshold')).value = 0.99;
      },
      /shrink the heap before/,
    ],
  );

  it.each(breakages)('catches: %s', (_name, breakIt, expected) => {
    const broken = clone(config);
    breakIt(broken);
    const problems = checkEnvoyConfig(broken);
    expect(problems).toEqual(expect.arrayContaining([expect.stringMatching(expected)]));
  });

  it('accepts an allowed_headers list that keeps authorization', () => {
    const c = clone(config);
    extAuthz(c).allowed_headers = { patterns: [{ exact: 'authorization' }, { exact: 'x-request-id' }] };
    expect(checkEnvoyConfig(c)).toEqual([]);
  });
});
