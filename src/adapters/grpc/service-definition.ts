/**
 * The grpc-js service definition of `envoy.service.auth.v3.Authorization` with the custom codec: requests are
 * decoded by the CheckRequest walker, and handlers answer with CheckResponse bytes from the response encoder
 * (responseSerialize is the identity). The client-side functions are identities too, so a test client built
 * with `grpc.makeGenericClientConstructor(authorizationService, ...)` sends pre-encoded CheckRequest bytes and
 * receives the raw CheckResponse bytes.
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

/**
 * The same service with a deserializer that reports what it refuses. An undecodable request still fails the call
 * (INTERNAL, so Envoy answers with status_on_error: fail closed); the hook lets an operator see it happening.
 */
export function authorizationServiceReporting(
  onMalformed: (error: unknown) => void,
): typeof authorizationService {
  return {
    Check: {
      ...authorizationService.Check,
      requestDeserialize: (bytes: Buffer): AuthzRequest => {
        try {
          return decodeCheckRequest(bytes);
        } catch (error) {
          onMalformed(error);
          throw error;
        }
      },
    },
  };
}
