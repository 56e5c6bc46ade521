/**
 * Checking one answer of the fuzzer: it completed, fails closed or is a well-formed CheckResponse, and an allow is
 * justified and carries the right header changes. Part of the fuzzer run by bench/fuzz.ts and
 * test/fuzz/check.fuzz.test.ts (docs/hardening.md).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Root, type Type } from 'protobufjs';
import { child, justify, type Msg } from './fuzz-oracle';
import type { World } from './fuzz-world';

export type Outcome = { response: Buffer } | { error: { code: number; details: string } };

export function repoRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'proto'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no repository root above ${__dirname}`);
  }
}

export let checkResponseType: Type | null = null;
export function CheckResponse(): Type {
  if (checkResponseType === null) {
    const root = new Root();
    const protoDir = path.join(repoRoot(), 'proto');
    root.resolvePath = (_origin, target) => path.resolve(protoDir, target);
    root.loadSync('envoy/service/auth/v3/external_auth.proto', { keepCase: true });
    root.resolveAll();
    checkResponseType = root.lookupType('envoy.service.auth.v3.CheckResponse');
  }
  return checkResponseType;
}

export interface Verdict {
  /** allow | deny:<reason> | rpc:<code> */
  outcome: string;
  problem: string | null;
  /** The oracle would have justified an allow. */
  justified: boolean;
}

/** What the answer was, and what is wrong with it (null when nothing is). */
export function judge(world: World, request: Uint8Array, result: Outcome): Verdict {
  if ('error' in result) {
    const { code, details } = result.error;
    // Fail closed: Envoy turns a failed RPC into status_on_error (503) and forwards nothing.
    const closed =
      (code === grpc.status.INTERNAL && /deserializ|malformed CheckRequest/i.test(details)) ||
      code === grpc.status.RESOURCE_EXHAUSTED;
    return {
      outcome: `rpc:${code}`,
      problem: closed ? null : `RPC failed: ${code} ${details}`,
      justified: false,
    };
  }
  const bytes = result.response;
  if (bytes.length === 0)
    return { outcome: 'empty', problem: 'empty CheckResponse (Envoy would allow)', justified: false };
  if (bytes[0] !== 0x0a)
    return { outcome: 'bad', problem: 'CheckResponse does not start with status', justified: false };
  let r: Msg;
  try {
    r = CheckResponse().toObject(CheckResponse().decode(bytes), {
      enums: Number,
      longs: String,
      defaults: false,
    }) as Msg;
  } catch (error) {
    return {
      outcome: 'bad',
      problem: `undecodable CheckResponse: ${(error as Error).message}`,
      justified: false,
    };
  }
  const status = child(r, 'status');
  const code = (status?.code as number | undefined) ?? 0;
  const fields = (child(child(r, 'dynamic_metadata'), 'fields') ?? {}) as Record<string, Msg>;
  const reason = String(fields.reason?.stringValue ?? '(none)');
  const ok = child(r, 'ok_response');
  const denied = child(r, 'denied_response');
  if (status === undefined)
    return { outcome: 'bad', problem: 'no status (Envoy would allow)', justified: false };
  if (code !== 0) {
    const outcome = `deny:${reason}`;
    if (ok !== undefined) return { outcome, problem: 'denial with ok_response', justified: false };
    const http = (child(denied, 'status')?.code as number | undefined) ?? 0;
    if (denied === undefined || http < 400 || http > 599)
      return { outcome, problem: `denial with HTTP ${http}`, justified: false };
    if (reason === 'internal_error')
      return { outcome, problem: 'internal_error (an exception path)', justified: false };
    return { outcome, problem: null, justified: false };
  }
  if (ok === undefined || denied !== undefined)
    return { outcome: 'allow', problem: 'code 0 without a clean ok_response', justified: false };
  const why = justify(world, request);
  if (!why.ok)
    return { outcome: 'allow', problem: `ALLOWED, but the oracle says: ${why.why}`, justified: false };
  const headers = ((ok.headers as Msg[] | undefined) ?? []).map((h) => {
    const header = child(h, 'header') ?? {};
    return [header.key, header.value, child(h, 'append')?.value ?? false, h.append_action ?? 0];
  });
  const expected = [
    ['x-fortary-key-id', why.key.keyId, false, 2],
    ['x-fortary-user-id', why.key.userId, false, 2],
  ];
  if (JSON.stringify(headers) !== JSON.stringify(expected)) {
    return { outcome: 'allow', problem: `identity headers ${JSON.stringify(headers)}`, justified: true };
  }
  const removed = new Set((ok.headers_to_remove as string[] | undefined) ?? []);
  const mustRemove = [
    'authorization',
    ...why.fortaryNames.filter((n) => n !== 'x-fortary-key-id' && n !== 'x-fortary-user-id'),
    ...(why.apiKey ? ['x-api-key'] : []),
  ];
  const missing = mustRemove.filter((n) => !removed.has(n));
  if (missing.length > 0)
    return { outcome: 'allow', problem: `headers_to_remove lacks ${missing.join(', ')}`, justified: true };
  if (removed.has('x-fortary-key-id') || removed.has('x-fortary-user-id')) {
    return { outcome: 'allow', problem: 'headers_to_remove deletes an identity header', justified: true };
  }
  return { outcome: 'allow', problem: null, justified: true };
}
