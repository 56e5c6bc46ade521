/**
 * The method path of `envoy.service.auth.v3.Authorization/Check`, and a grpc-js service definition of it for
 * clients (tests, bench, scripts): a client built with `grpc.makeGenericClientConstructor(authorizationService,
 * ...)` sends pre-encoded CheckRequest bytes and receives the raw CheckResponse bytes. The sidecar itself serves
 * the method on node:http2 (h2-grpc-server.ts); the server-side functions here decode like it does, so a grpc-js
 * server built from this definition (a test double) behaves the same.
 */
import type { handleUnaryCall, ServiceDefinition } from '@grpc/grpc-js';
import type { AuthzRequest } from '../../core/types';
import { decodeCheckRequest } from './check-request-decoder';

export const AUTHORIZATION_SERVICE_NAME = 'envoy.service.auth.v3.Authorization';
export const CHECK_METHOD_PATH = `/${AUTHORIZATION_SERVICE_NAME}/Check`;

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
