/**
 * The ext_authz Check handler on grpc-js: a CheckRequest decoded by the wire walker (the method's deserializer)
 * in, encoded CheckResponse bytes (the method's serializer passes them through) out. It never throws, never
 * answers an empty CheckResponse, and allows only on a Decision with `allow: true` that the pipeline positively
 * reached. A request the walker refused fails the call (INTERNAL), which Envoy turns into status_on_error: fail
 * closed.
 */
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { CheckService } from '../../app/check';
import { isPromise } from '../../app/maybe-async';
import { decisionKind, outcomeFor, type Decision } from '../../core/outcome';
import { parseVaultPath } from '../../core/vault-path';
import type { AuthzRequest } from '../../core/types';
import { decisionLogger, type DecisionLevel, type DecisionLog } from '../../observability/logger';
import type { Metrics } from '../../observability/metrics';
import { encodeAllow, encodeDeny } from './check-response-encoder';
import { MalformedCheckRequest, type DecodedCheckRequest } from './service-definition';

export type GrpcCheckHandler = grpc.handleUnaryCall<DecodedCheckRequest, Buffer>;
const MALFORMED = { code: grpc.status.INTERNAL, details: 'malformed CheckRequest' };

export function createCheckHandler(
  service: CheckService,
  logger: Logger,
  metrics: Metrics,
  onMalformed: (error: unknown) => void,
): GrpcCheckHandler {
  const log = decisionLogger(logger);
  const respond = (
    req: AuthzRequest,
    decision: Decision,
    started: number,
    reply: grpc.sendUnaryData<Buffer>,
  ): void => {
    let bytes: Buffer;
    let final = decision;
    try {
      bytes = decision.allow
        ? encodeAllow(
            decision.keyId,
            decision.userId,
            headersToRemove(req),
            decision.expiryWarning === undefined ? undefined : new Date(decision.expiryWarning).toISOString(),
          )
        : encodeDeny(decision.reason, decision);
    } catch (error) {
      final = { allow: false, reason: 'internal_error', detail: `encode failed: ${String(error)}` };
      bytes = encodeDeny('internal_error');
    }
    // After a deadline or a cancel grpc-js drops the answer: nothing to guard here.
    reply(null, bytes);
    // The answer is out; bookkeeping that fails must not become an unhandled rejection and crash the process.
    try {
      const seconds = (performance.now() - started) / 1000;
      metrics.decision(final.reason, seconds);
      logDecision(log, req, final, seconds, service);
    } catch {
      // Nothing safe is left to do: the decision was answered, and logging is what failed.
    }
  };

  return (call, reply) => {
    const started = performance.now();
    const req = call.request;
    if (req instanceof MalformedCheckRequest) {
      onMalformed(req.error);
      return reply(MALFORMED);
    }
    let result: ReturnType<CheckService['check']>;
    try {
      result = service.check(req);
    } catch (error) {
      result = { allow: false, reason: 'internal_error', detail: String(error) };
    }
    if (isPromise(result)) {
      result.then(
        (decision) => respond(req, decision, started, reply),
        (error: unknown) =>
          respond(req, { allow: false, reason: 'internal_error', detail: String(error) }, started, reply),
      );
    } else {
      respond(req, result, started, reply);
    }
  };
}

/** Client-sent x-fortary-* (other than the two we overwrite) and a misplaced x-api-key never reach upstream. */
function headersToRemove(req: AuthzRequest): readonly string[] {
  if (req.fortaryHeaders.length === 0 && !req.apiKeyHeader) return NONE;
  const names = req.fortaryHeaders.filter((h) => h !== 'x-fortary-key-id' && h !== 'x-fortary-user-id');
  if (req.apiKeyHeader) names.push('x-api-key');
  return names;
}
const NONE: readonly string[] = [];

/**
 * Allows are logged at debug level: Envoy's access log already has a line per request with the key id, user id
 * and decision (from the CheckResponse's dynamic metadata), and a line per allowed Check would double the log
 * volume (thousands of lines a second per pod) and a sizeable share of a warm Check's CPU. Refusals, which are
 * what an operator debugs, are logged at info; Redis trouble at warn; internal errors at error.
 */
function decisionLevel(reason: Decision['reason']): DecisionLevel {
  if (reason === 'allowed') return 'debug';
  if (reason === 'internal_error') return 'error';
  return reason === 'store_unavailable' ? 'warn' : 'info';
}

function logDecision(
  log: DecisionLog,
  req: AuthzRequest,
  decision: Decision,
  seconds: number,
  service: CheckService,
): void {
  const level = decisionLevel(decision.reason);
  if (!log.enabled(level)) return;
  // Never the token, the Authorization value or the path: the query may hold a token (refused, but logged).
  log(level, {
    decision: decisionKind(decision.reason),
    reason: decision.reason,
    code: decision.allow ? undefined : outcomeFor(decision.reason).publicCode,
    detail: decision.allow ? undefined : decision.detail,
    keyId: decision.keyId,
    userId: decision.userId,
    vault: decision.allow ? decision.vault : requestedVault(req.path),
    clientIp: service.comparedAddress(req),
    // Client-controlled: bounded so a huge x-request-id cannot amplify every log line.
    requestId: req.requestId === undefined ? undefined : req.requestId.slice(0, 128),
    method: req.method.slice(0, 16),
    durationMs: Math.round(seconds * 1e6) / 1e3,
  });
}

/** The vault a refused request named, when its path names one unambiguously (a vault id is never a token). */
function requestedVault(path: string): string | undefined {
  const target = parseVaultPath(path);
  return target.kind === 'vault' ? target.vaultId : undefined;
}
