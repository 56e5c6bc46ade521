/**
 * THE table: every reason a Check can end with, and what Envoy, the client and the operator see for it.
 * The gRPC code decides allow/deny in Envoy (only code 0 allows); the HTTP status is what the client gets.
 */

export const DENY_REASONS = [
  'credentials_missing',
  'credentials_misplaced',
  'token_malformed',
  'key_unknown',
  'secret_mismatch',
  'key_revoked',
  'key_expired',
  'owner_inactive',
  'record_invalid',
  'ip_not_allowed',
  'scope_insufficient',
  'path_rejected',
  'vault_missing',
  'vault_not_allowed',
  'role_missing',
  'store_unavailable',
  'overloaded',
  'internal_error',
] as const;

export type DenyReason = (typeof DENY_REASONS)[number];

export type Decision =
  | {
      allow: true;
      reason: 'allowed';
      keyId: string;
      userId: string;
      /** The vault granted; absent for an operator-opened path. */
      vault?: string | undefined;
      /** The key's expiry when it falls within the warning window: the client is told (x-fortary-key-expires-at). */
      expiryWarning?: number | undefined;
    }
  | { allow: false; reason: DenyReason; keyId?: string; userId?: string; detail?: string };

/** gRPC status codes used in CheckResponse.status (google.rpc.Code). */
export const GrpcCode = {
  OK: 0,
  INVALID_ARGUMENT: 3,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

/**
 * What kind of answer a Check ended with, the one value the decision log (`decision`), the metrics (`outcome`
 * label) and Envoy's dynamic metadata (`decision`) all carry. 'error' is an answer about us (503/500), not about
 * the request: that is what operators alert on.
 */
export type DecisionKind = 'allow' | 'deny' | 'error';

export interface Outcome {
  /** 'deny' (the request is refused) or 'error' (we could not decide); never 'allow'. */
  kind: Exclude<DecisionKind, 'allow'>;
  grpcCode: number;
  httpStatus: number;
  /** Machine-readable code in the JSON body. */
  publicCode: string;
  /** Human-readable message in the JSON body. Never names the precise reason of a 401. */
  publicMessage: string;
  /** RFC 6750 `error` attribute for WWW-Authenticate; absent = no WWW-Authenticate header. */
  bearerError?: 'invalid_request' | 'invalid_token' | 'insufficient_scope' | '';
}

/** Every 401 shares this answer, so a caller cannot tell an unknown key from a wrong secret or a revoked key. */
const UNAUTHENTICATED_MESSAGE =
  'A valid API key is required. Send it as a bearer token: "Authorization: Bearer <API key>".';

const unauthenticated = (bearerError: Outcome['bearerError']): Outcome => ({
  kind: 'deny',
  grpcCode: GrpcCode.UNAUTHENTICATED,
  httpStatus: 401,
  publicCode: 'unauthenticated',
  publicMessage: UNAUTHENTICATED_MESSAGE,
  bearerError,
});

const forbidden = (publicCode: string, publicMessage: string): Outcome => ({
  kind: 'deny',
  grpcCode: GrpcCode.PERMISSION_DENIED,
  httpStatus: 403,
  publicCode,
  publicMessage,
});

const UNAVAILABLE: Outcome = {
  kind: 'error',
  grpcCode: GrpcCode.UNAVAILABLE,
  httpStatus: 503,
  publicCode: 'unavailable',
  publicMessage: 'Authorization is temporarily unavailable. Retry shortly.',
};

export function outcomeFor(reason: DenyReason): Outcome {
  switch (reason) {
    case 'credentials_missing':
      // RFC 6750 §3.1: a request without credentials gets a challenge with no error code.
      return unauthenticated('');
    case 'credentials_misplaced':
      return unauthenticated('invalid_request');
    case 'token_malformed':
    case 'key_unknown':
    case 'secret_mismatch':
    case 'key_revoked':
    case 'key_expired':
    case 'owner_inactive':
    case 'record_invalid':
      return unauthenticated('invalid_token');
    case 'ip_not_allowed':
      return forbidden('ip_not_allowed', 'This API key may not be used from this network address.');
    case 'scope_insufficient':
      return {
        ...forbidden('insufficient_scope', 'This API key only allows reading (GET and HEAD requests).'),
        bearerError: 'insufficient_scope',
      };
    case 'path_rejected':
      return {
        kind: 'deny',
        grpcCode: GrpcCode.INVALID_ARGUMENT,
        httpStatus: 400,
        publicCode: 'invalid_path',
        publicMessage: 'The request path is not in canonical form.',
      };
    case 'vault_missing':
      return forbidden(
        'vault_required',
        'This API key only grants access to paths under /v1/vaults/{vaultId}.',
      );
    case 'vault_not_allowed':
      return forbidden('vault_not_allowed', 'This API key does not grant access to this vault.');
    case 'role_missing':
      return forbidden('role_missing', "The key's owner does not hold the Developer role on this vault.");
    case 'store_unavailable':
    case 'overloaded':
      return UNAVAILABLE;
    case 'internal_error':
      return {
        kind: 'error',
        grpcCode: GrpcCode.INTERNAL,
        httpStatus: 500,
        publicCode: 'internal_error',
        publicMessage: 'Authorization failed unexpectedly.',
      };
    default:
      return assertNever(reason);
  }
}

const KINDS = new Map<DenyReason | 'allowed', DecisionKind>([
  ['allowed', 'allow'],
  ...DENY_REASONS.map((reason) => [reason, outcomeFor(reason).kind] as const),
]);

/** The kind of a Check's final reason, from the table above (one Map lookup: it runs once per Check). */
export function decisionKind(reason: DenyReason | 'allowed'): DecisionKind {
  return KINDS.get(reason) ?? 'error';
}

function assertNever(value: never): never {
  throw new Error(`unhandled deny reason: ${String(value)}`);
}
