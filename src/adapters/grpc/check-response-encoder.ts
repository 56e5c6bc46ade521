/**
 * CheckResponse bytes for the few answers Check gives, encoded with protobufjs from the vendored protos and
 * memoised. Handlers hand these bytes to grpc-js unchanged (the service's responseSerialize is the identity).
 *
 * Safety rules (docs: envoy-ext-authz.md §4, §7):
 * - Every response starts with `status` (field 1), even on allow, where `code` 0 is written explicitly.
 * - A denial's gRPC code comes from `outcomeFor` and is checked to be non-zero, its HTTP status to be 4xx/5xx;
 *   every denial encoding is built and verified once at module load, so a bad table entry fails at startup.
 * - Identity headers are sent with `append: {value: false}` AND `append_action: OVERWRITE_IF_EXISTS_OR_ADD`,
 *   and are never listed in `headers_to_remove` (removal runs after the set).
 * - `google.protobuf.Value` comes from protobufjs' bundled well-known types, whose field names are camelCase
 *   (`stringValue`) even with keepCase; a snake_case `string_value` would be silently dropped.
 *
 * Returned Buffers are shared between calls: never mutate them.
 */
import fs from 'node:fs';
import path from 'node:path';
import { LRUCache } from 'lru-cache';
import { Root, type Type } from 'protobufjs';
import { DENY_REASONS, outcomeFor, type DenyReason, type Outcome } from '../../core/outcome';

export const KEY_ID_HEADER = 'x-fortary-key-id';
export const USER_ID_HEADER = 'x-fortary-user-id';
/** Bound of the allow memo (one entry per key id). */
export const ALLOW_MEMO_MAX = 100_000;

const EXTERNAL_AUTH_PROTO = 'envoy/service/auth/v3/external_auth.proto';
/** envoy.config.core.v3.HeaderValueOption.HeaderAppendAction */
const OVERWRITE_IF_EXISTS_OR_ADD = 2;

/** The repository root: the nearest ancestor of this file holding package.json and the vendored protos. */
function repoRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (
      fs.existsSync(path.join(dir, 'package.json')) &&
      fs.existsSync(path.join(dir, 'proto', EXTERNAL_AUTH_PROTO))
    ) {
      return dir;
    }
    const parent = path.dirname(dir);
    if (parent === dir)
      throw new Error(`no repository root with proto/${EXTERNAL_AUTH_PROTO} above ${__dirname}`);
    dir = parent;
  }
}

function loadCheckResponseType(): Type {
  const protoDir = path.join(repoRoot(), 'proto');
  const root = new Root();
  // google/protobuf/* imports are served from protobufjs' bundled well-known types before this is consulted.
  root.resolvePath = (_origin, target) => path.resolve(protoDir, target);
  root.loadSync(EXTERNAL_AUTH_PROTO, { keepCase: true });
  root.resolveAll();
  return root.lookupType('envoy.service.auth.v3.CheckResponse');
}

const CheckResponse = loadCheckResponseType();

type Json = Record<string, unknown>;

/** Encodes into an exact-size buffer of its own, so a memoised answer never pins a shared pool slab. */
function encode(object: Json): Buffer {
  const bytes = CheckResponse.encode(CheckResponse.fromObject(object)).finish();
  const out = Buffer.allocUnsafeSlow(bytes.length);
  out.set(bytes);
  return out;
}

/**
 * The guard: decodes what we are about to hand out and refuses anything Envoy would treat as an accidental
 * allow (no status, or status 0 without ok_response or with a denial). Runs on cold paths only.
 */
function verified(bytes: Buffer, expectAllow: boolean): Buffer {
  const decoded = CheckResponse.toObject(CheckResponse.decode(bytes), { defaults: false, oneofs: true }) as {
    status?: { code?: number };
    http_response?: string;
  };
  const code = decoded.status?.code ?? 0;
  const ok =
    bytes[0] === 0x0a &&
    decoded.status !== undefined &&
    (expectAllow
      ? code === 0 && decoded.http_response === 'ok_response'
      : code !== 0 && decoded.http_response === 'denied_response');
  if (!ok)
    throw new Error(`refusing to emit a CheckResponse that does not say ${expectAllow ? 'allow' : 'deny'}`);
  return bytes;
}

const stringValue = (value: string): Json => ({ stringValue: value });

function struct(fields: Record<string, string | undefined>): Json {
  const out: Json = {};
  for (const [key, value] of Object.entries(fields))
    if (value !== undefined && value !== '') out[key] = stringValue(value);
  return { fields: out };
}

const identityHeader = (key: string, value: string): Json => ({
  header: { key, value },
  append: { value: false },
  append_action: OVERWRITE_IF_EXISTS_OR_ADD,
});

/** `authorization` first, then the extra names lowercased and deduplicated, never the headers we set. */
function headersToRemove(extra: readonly string[]): string[] {
  const names = new Set<string>(['authorization']);
  for (const raw of extra) {
    const name = raw.toLowerCase();
    if (name !== '' && name !== KEY_ID_HEADER && name !== USER_ID_HEADER) names.add(name);
  }
  return Array.from(names);
}

function allowObject(keyId: string, userId: string, removeHeaders: readonly string[]): Json {
  return {
    status: { code: 0 },
    ok_response: {
      headers: [identityHeader(KEY_ID_HEADER, keyId), identityHeader(USER_ID_HEADER, userId)],
      headers_to_remove: headersToRemove(removeHeaders),
    },
    dynamic_metadata: struct({ decision: 'allow', reason: 'allowed', key_id: keyId, user_id: userId }),
  };
}

const allowMemo = new LRUCache<string, { userId: string; bytes: Buffer }>({ max: ALLOW_MEMO_MAX });

/**
 * An allow: status 0 (on the wire), the identity headers overwritten, `authorization` plus `removeHeaders`
 * removed, and `{decision, reason, key_id, user_id}` as dynamic metadata. With no `removeHeaders` the answer
 * is memoised per key id, so the warm path is one lookup.
 */
export function encodeAllow(keyId: string, userId: string, removeHeaders: readonly string[]): Buffer {
  if (removeHeaders.length === 0) {
    const hit = allowMemo.get(keyId);
    if (hit !== undefined && hit.userId === userId) return hit.bytes;
    const bytes = verified(encode(allowObject(keyId, userId, removeHeaders)), true);
    allowMemo.set(keyId, { userId, bytes });
    return bytes;
  }
  return verified(encode(allowObject(keyId, userId, removeHeaders)), true);
}

function checkedOutcome(reason: DenyReason): Outcome {
  const outcome = outcomeFor(reason);
  if (!Number.isInteger(outcome.grpcCode) || outcome.grpcCode <= 0 || outcome.grpcCode > 16) {
    throw new Error(`deny reason ${reason} maps to gRPC code ${outcome.grpcCode}, which would not deny`);
  }
  if (!Number.isInteger(outcome.httpStatus) || outcome.httpStatus < 400 || outcome.httpStatus > 599) {
    throw new Error(`deny reason ${reason} maps to HTTP status ${outcome.httpStatus}, not a 4xx/5xx`);
  }
  return outcome;
}

const deniedHeader = (key: string, value: string): Json => ({
  header: { key, value },
  append: { value: false },
});

function wwwAuthenticate(bearerError: NonNullable<Outcome['bearerError']>): string {
  // No error_description: the public messages contain '"', which RFC 6750 §3 does not allow there.
  return bearerError === '' ? 'Bearer realm="fortary"' : `Bearer realm="fortary", error="${bearerError}"`;
}

/** Fields 1 (status) and 2 (denied_response) of a denial. */
function denialObject(outcome: Outcome): Json {
  const headers = [
    deniedHeader('content-type', 'application/json'),
    deniedHeader('cache-control', 'no-store'),
  ];
  if (outcome.bearerError !== undefined)
    headers.push(deniedHeader('www-authenticate', wwwAuthenticate(outcome.bearerError)));
  return {
    status: { code: outcome.grpcCode, message: outcome.publicCode },
    denied_response: {
      status: { code: outcome.httpStatus },
      headers,
      body: JSON.stringify({ error: { code: outcome.publicCode, message: outcome.publicMessage } }),
    },
  };
}

function denialMetadata(reason: DenyReason, outcome: Outcome, keyId?: string, userId?: string): Json {
  const decision = outcome.httpStatus >= 500 ? 'error' : 'deny';
  return struct({ decision, reason, key_id: keyId, user_id: userId });
}

interface Denial {
  /** The whole answer without ids. */
  bytes: Buffer;
  /** Fields 1 and 2 only; a denial with ids is this followed by its own field 4. */
  head: Buffer;
}

const denials = new Map<DenyReason, Denial>(
  DENY_REASONS.map((reason) => {
    const outcome = checkedOutcome(reason);
    const head = encode(denialObject(outcome));
    const bytes = verified(
      encode({ ...denialObject(outcome), dynamic_metadata: denialMetadata(reason, outcome) }),
      false,
    );
    verified(head, false);
    return [reason, { bytes, head }];
  }),
);

/**
 * A denial: status `outcome.grpcCode` (never 0) with the public code as message, a `denied_response` with the
 * HTTP status, JSON content-type, no-store, WWW-Authenticate where the outcome has a bearer error, and the JSON
 * error body; dynamic metadata `{decision: deny|error, reason, key_id?, user_id?}`. Memoised per reason
 * without ids.
 */
export function encodeDeny(reason: DenyReason, ids?: { keyId?: string; userId?: string }): Buffer {
  const denial = denials.get(reason);
  if (denial === undefined) throw new Error(`unknown deny reason ${String(reason)}`);
  const keyId = ids?.keyId;
  const userId = ids?.userId;
  if ((keyId === undefined || keyId === '') && (userId === undefined || userId === '')) return denial.bytes;
  // Fields are written in field-number order, so head (1, 2) + metadata (4) is exactly the full encoding.
  const metadata = encode({ dynamic_metadata: denialMetadata(reason, outcomeFor(reason), keyId, userId) });
  return Buffer.concat([denial.head, metadata]);
}
