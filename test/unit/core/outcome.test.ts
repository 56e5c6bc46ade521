/**
 * Pins THE table in src/core/outcome.ts: what Envoy (gRPC code), the client (HTTP status, public code/message,
 * WWW-Authenticate error) and the operator see for every reason a Check can end with.
 */
import {
  decisionKind,
  DENY_REASONS,
  GrpcCode,
  outcomeFor,
  type DenyReason,
  type Outcome,
} from '../../../src/core/outcome';

const SHARED_401 = {
  kind: 'deny' as const,
  grpcCode: 16,
  httpStatus: 401,
  publicCode: 'unauthenticated',
  publicMessage: 'A valid API key is required. Send it as a bearer token: "Authorization: Bearer <API key>".',
};

/** One row per reason. Adding a reason to DENY_REASONS without a row here fails the "every reason" test. */
const EXPECTED: Record<DenyReason, Outcome> = {
  // RFC 6750 §3.1: no credentials at all gets a bare challenge (error attribute empty).
  credentials_missing: { ...SHARED_401, bearerError: '' },
  // Credential in the wrong place (X-API-Key, query, Basic, two values): the request itself is malformed.
  credentials_misplaced: { ...SHARED_401, bearerError: 'invalid_request' },
  token_malformed: { ...SHARED_401, bearerError: 'invalid_token' },
  key_unknown: { ...SHARED_401, bearerError: 'invalid_token' },
  secret_mismatch: { ...SHARED_401, bearerError: 'invalid_token' },
  key_revoked: { ...SHARED_401, bearerError: 'invalid_token' },
  key_expired: { ...SHARED_401, bearerError: 'invalid_token' },
  owner_inactive: { ...SHARED_401, bearerError: 'invalid_token' },
  record_invalid: { ...SHARED_401, bearerError: 'invalid_token' },
  ip_not_allowed: {
    kind: 'deny',
    grpcCode: 7,
    httpStatus: 403,
    publicCode: 'ip_not_allowed',
    publicMessage: 'This API key may not be used from this network address.',
  },
  scope_insufficient: {
    kind: 'deny',
    grpcCode: 7,
    httpStatus: 403,
    publicCode: 'insufficient_scope',
    publicMessage: 'This API key only allows reading (GET and HEAD requests).',
    bearerError: 'insufficient_scope',
  },
  path_rejected: {
    kind: 'deny',
    grpcCode: 3,
    httpStatus: 400,
    publicCode: 'invalid_path',
    publicMessage: 'The request path is not in canonical form.',
  },
  vault_missing: {
    kind: 'deny',
    grpcCode: 7,
    httpStatus: 403,
    publicCode: 'vault_required',
    publicMessage: 'This API key only grants access to paths under /v1/vaults/{vaultId}.',
  },
  vault_not_allowed: {
    kind: 'deny',
    grpcCode: 7,
    httpStatus: 403,
    publicCode: 'vault_not_allowed',
    publicMessage: 'This API key does not grant access to this vault.',
  },
  role_missing: {
    kind: 'deny',
    grpcCode: 7,
    httpStatus: 403,
    publicCode: 'role_missing',
    publicMessage: "The key's owner does not hold the Developer role on this vault.",
  },
  store_unavailable: {
    kind: 'error',
    grpcCode: 14,
    httpStatus: 503,
    publicCode: 'unavailable',
    publicMessage: 'Authorization is temporarily unavailable. Retry shortly.',
  },
  overloaded: {
    kind: 'error',
    grpcCode: 14,
    httpStatus: 503,
    publicCode: 'unavailable',
    publicMessage: 'Authorization is temporarily unavailable. Retry shortly.',
  },
  internal_error: {
    kind: 'error',
    grpcCode: 13,
    httpStatus: 500,
    publicCode: 'internal_error',
    publicMessage: 'Authorization failed unexpectedly.',
  },
};

/** The 401s a key can earn once a token was presented: a caller must not be able to tell them apart. */
const KEY_401_REASONS: DenyReason[] = [
  'token_malformed',
  'key_unknown',
  'secret_mismatch',
  'key_revoked',
  'key_expired',
  'owner_inactive',
  'record_invalid',
];

describe('outcome table', () => {
  it('has exactly 18 reasons, all distinct (adding one forces this table to be updated)', () => {
    expect(DENY_REASONS).toHaveLength(18);
    expect(new Set(DENY_REASONS).size).toBe(DENY_REASONS.length);
    expect([...DENY_REASONS].sort()).toEqual(Object.keys(EXPECTED).sort());
  });

  it.each(DENY_REASONS.map((reason) => [reason]))('%s maps to the pinned outcome', (reason) => {
    const outcome = outcomeFor(reason);
    const expected = EXPECTED[reason];
    expect(outcome).toEqual(expected);
    // toEqual treats an undefined property as absent; pin presence too (absent = no WWW-Authenticate header).
    expect('bearerError' in outcome && outcome.bearerError !== undefined).toBe(
      expected.bearerError !== undefined,
    );
  });

  it.each(DENY_REASONS.map((reason) => [reason]))(
    '%s never allows: gRPC code is not OK and HTTP is not 2xx',
    (reason) => {
      const outcome = outcomeFor(reason);
      expect(outcome.grpcCode).not.toBe(GrpcCode.OK);
      expect(outcome.grpcCode).not.toBe(0);
      expect(outcome.httpStatus).toBeGreaterThanOrEqual(400);
      expect(outcome.httpStatus).toBeLessThan(600);
    },
  );

  it('the HTTP status agrees with the gRPC code family', () => {
    const byCode: Record<number, number[]> = {
      [GrpcCode.UNAUTHENTICATED]: [401],
      [GrpcCode.PERMISSION_DENIED]: [403],
      [GrpcCode.INVALID_ARGUMENT]: [400],
      [GrpcCode.UNAVAILABLE]: [503],
      [GrpcCode.INTERNAL]: [500],
    };
    for (const reason of DENY_REASONS) {
      const outcome = outcomeFor(reason);
      expect(byCode[outcome.grpcCode]).toContain(outcome.httpStatus);
    }
  });

  it('every 401 shares the exact same public code and message, and that message says to send a bearer token', () => {
    const all401 = DENY_REASONS.filter((reason) => outcomeFor(reason).httpStatus === 401);
    expect(all401.sort()).toEqual(
      [...KEY_401_REASONS, 'credentials_missing', 'credentials_misplaced'].sort(),
    );
    const answers = new Set(all401.map((r) => `${outcomeFor(r).publicCode}\n${outcomeFor(r).publicMessage}`));
    expect(answers.size).toBe(1);
    for (const reason of all401) {
      expect(outcomeFor(reason).grpcCode).toBe(GrpcCode.UNAUTHENTICATED);
      expect(outcomeFor(reason).publicMessage).toContain('Authorization: Bearer');
      expect(outcomeFor(reason).publicMessage).toMatch(/bearer token/i);
    }
  });

  it('the key-related 401s are indistinguishable in every field, bearer error included', () => {
    const first = outcomeFor(KEY_401_REASONS[0] as DenyReason);
    for (const reason of KEY_401_REASONS) expect(outcomeFor(reason)).toEqual(first);
    expect(first.bearerError).toBe('invalid_token');
  });

  it('no 401 message names the precise reason', () => {
    const message = outcomeFor('key_revoked').publicMessage.toLowerCase();
    for (const word of [
      'revoked',
      'expired',
      'unknown',
      'secret',
      'inactive',
      'deactivated',
      'malformed',
      'corrupt',
    ]) {
      expect(message).not.toContain(word);
    }
  });

  it('bearer error values are only the RFC 6750 ones, and only 401s and the scope 403 carry one', () => {
    for (const reason of DENY_REASONS) {
      const { bearerError, httpStatus } = outcomeFor(reason);
      if (bearerError === undefined) {
        expect(httpStatus).not.toBe(401);
        continue;
      }
      expect(['', 'invalid_request', 'invalid_token', 'insufficient_scope']).toContain(bearerError);
      expect(httpStatus === 401 || reason === 'scope_insufficient').toBe(true);
    }
  });

  it('503 is reserved for the store being unavailable or the service overloaded', () => {
    expect(DENY_REASONS.filter((r) => outcomeFor(r).httpStatus === 503).sort()).toEqual([
      'overloaded',
      'store_unavailable',
    ]);
  });

  it("'error' is exactly the answers about us (5xx); everything else refused is 'deny'", () => {
    for (const reason of DENY_REASONS) {
      expect(outcomeFor(reason).kind).toBe(outcomeFor(reason).httpStatus >= 500 ? 'error' : 'deny');
      expect(decisionKind(reason)).toBe(outcomeFor(reason).kind);
    }
    expect(decisionKind('allowed')).toBe('allow');
  });

  it('an unknown reason is a programming error, not a silent default', () => {
    expect(() => outcomeFor('no_such_reason' as DenyReason)).toThrow(/unhandled deny reason/);
  });
});
