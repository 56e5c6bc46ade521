/**
 * Test helpers for the ext_authz Check RPC: CheckRequest bytes from plain objects (protobufjs, keepCase names),
 * CheckResponse bytes back to plain objects, a realistic Envoy request fixture, and a real grpc-js client over
 * the service definition the server uses.
 *
 * The protos are loaded here independently of src/, so these helpers are an oracle for the custom codec.
 * Note: `google.protobuf.*` types come from protobufjs' bundled definitions, whose names are camelCase even with
 * keepCase (`stringValue`, `nullValue`), while the Envoy types keep their snake_case names.
 */
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Root, type IConversionOptions, type Type } from 'protobufjs';
import { authorizationService } from '../../src/adapters/grpc/service-definition';

export const PROTO_DIR = path.resolve(__dirname, '../../proto');

/** A protobufjs root with the vendored Envoy protos, keepCase. */
export function loadEnvoyRoot(): Root {
  const root = new Root();
  root.resolvePath = (_origin, target) => path.resolve(PROTO_DIR, target);
  root.loadSync('envoy/service/auth/v3/external_auth.proto', { keepCase: true });
  root.resolveAll();
  return root;
}

export const envoyRoot = loadEnvoyRoot();
export const CheckRequestType: Type = envoyRoot.lookupType('envoy.service.auth.v3.CheckRequest');
export const CheckResponseType: Type = envoyRoot.lookupType('envoy.service.auth.v3.CheckResponse');

export const RESPONSE_OBJECT_OPTIONS: IConversionOptions = {
  longs: String,
  enums: Number,
  defaults: false,
  oneofs: true,
};

/** A decoded CheckResponse (keepCase; Struct values camelCase). Loose on purpose: tests assert the shape. */
export type DecodedCheckResponse = Record<string, any>;

/** Encodes a CheckRequest from a plain keepCase object; unknown keys are an error, not silently dropped. */
export function checkRequestBytes(object: Record<string, unknown>): Buffer {
  const problem = CheckRequestType.verify(object);
  if (problem !== null) throw new Error(`invalid CheckRequest object: ${problem}`);
  const bytes = CheckRequestType.encode(CheckRequestType.fromObject(object)).finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** One gRPC length-prefixed message (flag byte, 4-byte big-endian length, bytes), as it travels in DATA frames. */
export function grpcFrame(message: Buffer, compressed = false): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out[0] = compressed ? 1 : 0;
  out.writeUInt32BE(message.length, 1);
  message.copy(out, 5);
  return out;
}

export function decodeCheckResponse(bytes: Uint8Array): DecodedCheckResponse {
  return CheckResponseType.toObject(CheckResponseType.decode(bytes), RESPONSE_OBJECT_OPTIONS);
}

/** Decoded dynamic metadata as a flat `{key: string}` object (every value we emit is a string). */
export function metadataOf(response: DecodedCheckResponse): Record<string, string> {
  const fields = (response.dynamic_metadata?.fields ?? {}) as Record<string, { stringValue?: string }>;
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(fields)) {
    if (typeof value.stringValue !== 'string')
      throw new Error(`metadata ${key} is not a string: ${JSON.stringify(value)}`);
    out[key] = value.stringValue;
  }
  return out;
}

export type CheckClient = ((request: Record<string, unknown>) => Promise<DecodedCheckResponse>) & {
  /** Sends pre-encoded bytes (e.g. malformed ones) and resolves with the raw response bytes. */
  raw(bytes: Buffer): Promise<Buffer>;
  close(): void;
};

const AuthorizationClient = grpc.makeGenericClientConstructor(authorizationService, 'Authorization');

/** A real grpc-js client channel (insecure) to `address` ("127.0.0.1:port"). Close it when done. */
export function makeCheckClient(address: string): CheckClient {
  const client = new AuthorizationClient(address, grpc.credentials.createInsecure());
  const raw = (bytes: Buffer): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      client.makeUnaryRequest<Buffer, Buffer>(
        authorizationService.Check.path,
        authorizationService.Check.requestSerialize,
        authorizationService.Check.responseDeserialize,
        bytes,
        { deadline: Date.now() + 10_000 },
        (error, response) => (error !== null || response === undefined ? reject(error) : resolve(response)),
      );
    });
  const check = async (request: Record<string, unknown>): Promise<DecodedCheckResponse> =>
    decodeCheckResponse(await raw(checkRequestBytes(request)));
  return Object.assign(check, { raw, close: () => client.close() });
}

export interface EnvoyRequestOptions {
  method?: string;
  /** `:path`, query included. */
  path?: string;
  authority?: string;
  /** One value, or several header lines (comma-joined in `headers`, as Envoy does; one entry each in header_map). */
  authorization?: string | readonly string[];
  /** The TCP peer; ignored when `address` is given. */
  sourceIp?: string;
  /** A raw envoy.config.core.v3.Address object for `source.address`, or null for no address at all. */
  address?: Record<string, unknown> | null;
  /** X-Forwarded-For as Envoy forwards it (null: no such header). */
  forwardedFor?: string | null;
  requestId?: string;
  /** Further header lines, in order (names as given). */
  extraHeaders?: ReadonlyArray<readonly [string, string]>;
  /** Envoy `encode_raw_headers: true`: `header_map` with `raw_value` Buffers instead of the `headers` map. */
  rawHeaders?: boolean;
}

/**
 * A CheckRequest object as Envoy sends it for a public request (keepCase): a dozen headers with pseudo-headers,
 * the HCM-added ones, and the request/destination attributes Envoy fills.
 */
export function envoyRequest(options: EnvoyRequestOptions = {}): Record<string, unknown> {
  const method = options.method ?? 'GET';
  const reqPath = options.path ?? '/v1/vaults/v1/secrets/db-password?version=3';
  const authority = options.authority ?? 'api.fortary.example';
  const requestId = options.requestId ?? '5f0c7a1e-8d0b-4a44-9c3e-0d6f2f6f9b11';
  const sourceIp = options.sourceIp ?? '203.0.113.7';
  const lines: Array<readonly [string, string]> = [
    [':authority', authority],
    [':path', reqPath],
    [':method', method],
    [':scheme', 'https'],
    ['user-agent', 'fortary-cli/2.4.1 (linux; x64) node/20.15.0'],
    ['accept', 'application/json'],
    ['accept-encoding', 'gzip, deflate, br'],
  ];
  const authorization = options.authorization;
  if (authorization !== undefined) {
    for (const value of typeof authorization === 'string' ? [authorization] : authorization) {
      lines.push(['authorization', value]);
    }
  }
  if (options.forwardedFor !== null) lines.push(['x-forwarded-for', options.forwardedFor ?? sourceIp]);
  lines.push(
    ['x-forwarded-proto', 'https'],
    ['x-envoy-external-address', sourceIp],
    ['x-request-id', requestId],
  );
  lines.push(...(options.extraHeaders ?? []));

  const http: Record<string, unknown> = {
    id: '13094755870423849234',
    method,
    path: reqPath,
    host: authority,
    scheme: 'https',
    protocol: 'HTTP/1.1',
  };
  if (options.rawHeaders === true) {
    http.header_map = {
      headers: lines.map(([key, value]) => ({ key, raw_value: Buffer.from(value, 'utf8') })),
    };
  } else {
    // Envoy's default shape: one map entry per name, duplicate lines joined with ',' in order.
    const headers: Record<string, string> = {};
    for (const [key, value] of lines) headers[key] = key in headers ? `${headers[key]},${value}` : value;
    http.headers = headers;
  }

  const address =
    options.address === undefined
      ? { socket_address: { address: sourceIp, port_value: 51234 } }
      : options.address;
  return {
    attributes: {
      source: address === null ? {} : { address },
      destination: { address: { socket_address: { address: '10.0.4.12', port_value: 8080 } } },
      request: { time: { seconds: 1767225600, nanos: 123456789 }, http },
    },
  };
}
