/**
 * One source of truth for "deny or error": for every reason a Check can end with, the decision log line, the
 * decisions metric's `outcome` label and Envoy's dynamic metadata (`decision`, which Envoy's access log records)
 * all say the kind the outcome table gives it. They once disagreed (the log said `deny` for store_unavailable
 * while the metric and the metadata said `error`).
 */
import type * as grpc from '@grpc/grpc-js';
import { createCheckHandler } from '../../../src/adapters/grpc/authz-handler';
import {
  deserializeCheckRequest,
  type DecodedCheckRequest,
} from '../../../src/adapters/grpc/service-definition';
import type { CheckService } from '../../../src/app/check';
import {
  decisionKind,
  DENY_REASONS,
  outcomeFor,
  type Decision,
  type DenyReason,
} from '../../../src/core/outcome';
import { createLogger } from '../../../src/observability/logger';
import { Metrics } from '../../../src/observability/metrics';
import { checkRequestBytes, decodeCheckResponse, envoyRequest, metadataOf } from '../../support/check-client';

interface Seen {
  log: string;
  metric: string;
  metadata: string;
}

/** Runs one Check that ends with `decision` through the real handler, logger and metrics. */
async function answer(decision: Decision): Promise<Seen> {
  const lines: string[] = [];
  const logger = createLogger('debug', { write: (line: string) => void lines.push(line) });
  const metrics = new Metrics({ defaultMetrics: false });
  const service = { check: () => decision, comparedAddress: () => '203.0.113.7' } as unknown as CheckService;
  const handler = createCheckHandler(service, logger, metrics, () => {});
  const replies: Buffer[] = [];
  // What grpc-js hands the handler: the call with the request its deserializer decoded, and the reply callback.
  const call = { request: deserializeCheckRequest(checkRequestBytes(envoyRequest())) };
  handler(call as grpc.ServerUnaryCall<DecodedCheckRequest, Buffer>, (error, bytes) => {
    if (error !== null || bytes === undefined || bytes === null)
      throw new Error(`call failed: ${error?.details}`);
    replies.push(bytes);
  });
  expect(replies).toHaveLength(1);
  const logged = lines.map((line) => JSON.parse(line) as { msg: string; decision: string });
  const check = logged.filter((line) => line.msg === 'check');
  expect(check).toHaveLength(1);
  const counted = (await metrics.registry.getMetricsAsJSON())
    .find((m) => m.name === 'fortary_authz_decisions_total')
    ?.values.filter((v) => v.value > 0);
  expect(counted).toHaveLength(1);
  expect(counted?.[0]?.labels.reason).toBe(decision.reason);
  return {
    log: check[0]!.decision,
    metric: String(counted?.[0]?.labels.outcome),
    metadata: metadataOf(decodeCheckResponse(replies[0]!)).decision as string,
  };
}

describe('deny or error: the log, the metric and Envoy metadata agree with the outcome table', () => {
  it.each(DENY_REASONS.map((reason) => [reason]))('%s', async (reason: DenyReason) => {
    const kind = outcomeFor(reason).kind;
    expect(decisionKind(reason)).toBe(kind);
    const seen = await answer({ allow: false, reason, keyId: 'key_1', userId: 'user_1', detail: 'd' });
    expect(seen).toEqual({ log: kind, metric: kind, metadata: kind });
  });

  it('allowed', async () => {
    const seen = await answer({ allow: true, reason: 'allowed', keyId: 'key_1', userId: 'user_1' });
    expect(seen).toEqual({ log: 'allow', metric: 'allow', metadata: 'allow' });
  });

  it('store_unavailable is an error everywhere (the case that once disagreed)', async () => {
    const seen = await answer({ allow: false, reason: 'store_unavailable', detail: 'redis down' });
    expect(seen).toEqual({ log: 'error', metric: 'error', metadata: 'error' });
  });
});

describe('decision log levels', () => {
  /** The level names of the `check` lines a logger at `level` writes for one Check ending with `decision`. */
  function checkLines(level: string, decision: Decision): string[] {
    const lines: string[] = [];
    const logger = createLogger(level, { write: (line: string) => void lines.push(line) });
    const service = {
      check: () => decision,
      comparedAddress: () => '203.0.113.7',
    } as unknown as CheckService;
    const handler = createCheckHandler(service, logger, new Metrics({ defaultMetrics: false }), () => {});
    const call = { request: deserializeCheckRequest(checkRequestBytes(envoyRequest())) };
    let answered = 0;
    handler(call as grpc.ServerUnaryCall<DecodedCheckRequest, Buffer>, () => void answered++);
    expect(answered).toBe(1);
    return lines
      .map((line) => JSON.parse(line) as { msg: string; level: string })
      .filter((line) => line.msg === 'check')
      .map((line) => line.level);
  }
  const allow: Decision = { allow: true, reason: 'allowed', keyId: 'key_1', userId: 'user_1' };

  it('allows are debug lines: the default level (info) writes none, debug writes one', () => {
    expect(checkLines('info', allow)).toEqual([]);
    expect(checkLines('debug', allow)).toEqual(['debug']);
  });

  it.each<[DenyReason, string]>([
    ['key_revoked', 'info'],
    ['vault_not_allowed', 'info'],
    ['store_unavailable', 'warn'],
    ['internal_error', 'error'],
  ])('a %s is logged at %s by the default level', (reason, level) => {
    expect(checkLines('info', { allow: false, reason, detail: 'd' })).toEqual([level]);
  });

  it('at warn, a refusal is not logged and Redis trouble still is', () => {
    expect(checkLines('warn', { allow: false, reason: 'key_revoked', detail: 'd' })).toEqual([]);
    expect(checkLines('warn', { allow: false, reason: 'store_unavailable', detail: 'd' })).toEqual(['warn']);
  });
});
