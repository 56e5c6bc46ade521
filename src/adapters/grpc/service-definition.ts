/**
 * The gRPC services the sidecar serves, loaded with @grpc/proto-loader from the vendored protos in proto/:
 * `envoy.service.auth.v3.Authorization` and `grpc.health.v1.Health`.
 *
 * The Check method keeps the project's own codec (differential-tested against protobufjs): the wire walker as
 * its request deserializer and the pre-encoded answers of check-response-encoder as its response serializer.
 * Health keeps proto-loader's (protobufjs) codec: it is not on the hot path.
 *
 * `authorizationService` is the same Check method for clients (tests, bench, scripts): a client built with
 * `grpc.makeGenericClientConstructor(authorizationService, ...)` sends pre-encoded CheckRequest bytes and
 * receives the raw CheckResponse bytes; a grpc-js server built from it decodes like the sidecar (a test double).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { handleUnaryCall, MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { AuthzRequest } from '../../core/types';
import { decodeCheckRequest } from './check-request-decoder';

export const AUTHORIZATION_SERVICE_NAME = 'envoy.service.auth.v3.Authorization';
export const CHECK_METHOD_PATH = `/${AUTHORIZATION_SERVICE_NAME}/Check`;
export const HEALTH_SERVICE_NAME = 'grpc.health.v1.Health';

const identity = (bytes: Buffer): Buffer => bytes;

/** Server implementation type: `{ Check: CheckHandler }`. */
export type CheckHandler = handleUnaryCall<AuthzRequest, Buffer>;
export interface AuthorizationImplementation {
  Check: CheckHandler;
}

export const authorizationService = {
  Check: {
    path: CHECK_METHOD_PATH,
    requestStream: false,
    responseStream: false,
    /** Server side: the wire walker (throws CheckRequestDecodeError; grpc-js then fails the call, INTERNAL). */
    requestDeserialize: decodeCheckRequest,
    /** Server side: handlers hand over bytes from check-response-encoder. */
    responseSerialize: identity,
    /** Client side (tests): the request is already encoded. */
    requestSerialize: identity,
    /** Client side (tests): the raw CheckResponse bytes. */
    responseDeserialize: identity,
    originalName: 'check',
  },
} as const satisfies ServiceDefinition<AuthorizationImplementation>;

/** A CheckRequest the wire walker refused: the handler answers it with a status (and counts it). */
export class MalformedCheckRequest {
  constructor(readonly error: unknown) {}
}
export type DecodedCheckRequest = AuthzRequest | MalformedCheckRequest;

/** Never throws: a refusal becomes a value, so the handler (not grpc-js) chooses the status and counts it. */
export function deserializeCheckRequest(bytes: Buffer): DecodedCheckRequest {
  try {
    return decodeCheckRequest(bytes);
  } catch (error) {
    return new MalformedCheckRequest(error);
  }
}

/** `proto/` under the package root: the nearest directory above `from` holding package.json and proto/. */
export function protoDirectory(from: string = __dirname): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'proto'))) {
      return path.join(dir, 'proto');
    }
    if (path.dirname(dir) === dir) throw new Error(`cannot find proto/ in a package root above ${from}`);
  }
}

/** The grpc-node examples' options; keepCase so field names are the proto's. */
const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: Number,
  defaults: true,
  oneofs: true,
};

export interface SidecarServices {
  authorization: ServiceDefinition;
  health: ServiceDefinition;
}

let loaded: SidecarServices | null = null;

/** Both service definitions, loaded once per process. */
export function sidecarServices(): SidecarServices {
  if (loaded !== null) return loaded;
  const definition = protoLoader.loadSync(
    ['envoy/service/auth/v3/external_auth.proto', 'grpc/health/v1/health.proto'],
    { ...LOADER_OPTIONS, includeDirs: [protoDirectory()] },
  );
  const authorization = definition[AUTHORIZATION_SERVICE_NAME] as ServiceDefinition | undefined;
  const health = definition[HEALTH_SERVICE_NAME] as ServiceDefinition | undefined;
  const check = authorization?.Check as MethodDefinition<unknown, unknown> | undefined;
  if (check === undefined || check.path !== CHECK_METHOD_PATH || health === undefined) {
    throw new Error('proto/ does not define Authorization.Check and grpc.health.v1.Health');
  }
  loaded = {
    authorization: {
      Check: { ...check, requestDeserialize: deserializeCheckRequest, responseSerialize: identity },
    },
    health,
  };
  return loaded;
}
