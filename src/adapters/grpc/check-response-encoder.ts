/**
 * CheckResponse bytes for the few answers Check gives, memoised. The handler hands these bytes to the gRPC
 * server unchanged (grpc-js frames them).
 *
 * Safety rules (docs: envoy-ext-authz.md §4, §7):
 * - Every response starts with `status` (field 1), even on allow, where `code` 0 is written explicitly.
 * - A denial's gRPC code comes from `outcomeFor` and is checked to be non-zero, its HTTP status to be 4xx/5xx;
 *   every denial encoding is built and verified once at module load, so a bad table entry fails at startup.
 * - Identity headers are sent with `append: {value: false}` AND `append_action: OVERWRITE_IF_EXISTS_OR_ADD`,
 *   and are never listed in `headers_to_remove` (removal runs after the set).
 *
 * Every answer is written by the small wire writer below (field numbers from the vendored protos:
 * external_auth.proto, base.proto, http_status.proto, struct.proto, status.proto); the unit tests pin its output to
 * protobufjs' encoding of the same object, byte for byte. protobufjs is not loaded at run time: parsing the
 * vendored protos cost the process ~4 MiB of resident memory for answers that are fixed at startup.
 *
 * Returned Buffers are shared between calls: never mutate them.
 */
import { LRUCache } from 'lru-cache';
import { DENY_REASONS, outcomeFor, type DenyReason, type Outcome } from '../../core/outcome';
import { walkFields } from './wire-fields';

export const KEY_ID_HEADER = 'x-fortary-key-id';
export const USER_ID_HEADER = 'x-fortary-user-id';
/** Response header telling the client its key expires soon (ISO 8601 UTC); see FORTARY_EXPIRY_WARNING_DAYS. */
export const EXPIRES_AT_HEADER = 'x-fortary-key-expires-at';

/** envoy.config.core.v3.HeaderValueOption.HeaderAppendAction */
const OVERWRITE_IF_EXISTS_OR_ADD = 2;

/**
 * The guard: reads the top level of what we are about to hand out and refuses anything Envoy would treat as an
 * accidental allow (status not first, a non-zero code on an allow, code 0 on a denial, or the wrong
 * http_response). Runs at load and on cold paths only. Later occurrences win, as in any protobuf reader.
 */
export function guardCheckResponse(bytes: Buffer, expectAllow: boolean): Buffer {
  let code: number | undefined;
  let httpResponse: 'denied_response' | 'ok_response' | undefined;
  let onlyMessages = true;
  const wellFormed = walkFields(bytes, (field, wireType, _length, start, end) => {
    // Every CheckResponse field is a message; anything else is not an answer this encoder writes.
    if (wireType !== 2) onlyMessages = false;
    else if (field === 1) code = statusCode(bytes.subarray(start, end));
    else if (field === 2) httpResponse = 'denied_response';
    else if (field === 3) httpResponse = 'ok_response';
  });
  if (!wellFormed || !onlyMessages) throw new Error('refusing to emit a malformed CheckResponse');
  const ok =
    bytes[0] === 0x0a &&
    code !== undefined &&
    (expectAllow
      ? code === 0 && httpResponse === 'ok_response'
      : code !== 0 && httpResponse === 'denied_response');
  if (!ok)
    throw new Error(`refusing to emit a CheckResponse that does not say ${expectAllow ? 'allow' : 'deny'}`);
  return bytes;
}

/** google.rpc.Status.code (field 1, varint) of an encoded Status; 0 when absent, as protobuf reads it. */
function statusCode(status: Buffer): number {
  let code = 0;
  const wellFormed = walkFields(status, (field, wireType, value) => {
    if (field === 1 && wireType === 0) code = value;
  });
  if (!wellFormed) throw new Error('refusing to emit a CheckResponse with a malformed status');
  return code;
}

// ---- wire writer ----

function varintLength(n: number): number {
  let length = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    length++;
  }
  return length;
}

function writeVarint(out: Buffer, at: number, n: number): number {
  while (n >= 0x80) {
    out[at++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 0x80);
  }
  out[at++] = n;
  return at;
}

// CheckResponse.status = {code: 0}, written explicitly: field 1 must be on the wire even on allow.
const STATUS_OK = Buffer.from([0x0a, 0x02, 0x08, 0x00]);
// HeaderValueOption.append = BoolValue{value: false} (field 2) and append_action = OVERWRITE_IF_EXISTS_OR_ADD (3).
const OVERWRITE = Buffer.from([0x12, 0x02, 0x08, 0x00, 0x18, OVERWRITE_IF_EXISTS_OR_ADD]);

/** Size of a length-delimited field with a one-byte tag and a payload of `length` bytes. */
const fieldSize = (length: number): number => 1 + varintLength(length) + length;

/** UTF-8 length as Buffer#write counts it (a lone surrogate becomes U+FFFD, 3 bytes). */
function utf8Length(value: string): number {
  let length = value.length;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) length += 1;
    else if (
      c >= 0xd800 &&
      c <= 0xdbff &&
      i + 1 < value.length &&
      (value.charCodeAt(i + 1) & 0xfc00) === 0xdc00
    ) {
      length += 2; // a pair: 2 units, 4 bytes
      i++;
    } else length += 2;
  }
  return length;
}

function putString(out: Buffer, at: number, tag: number, value: string, byteLength: number): number {
  out[at] = tag;
  at = writeVarint(out, at + 1, byteLength);
  if (byteLength === value.length) {
    // ASCII (any other character takes more UTF-8 bytes than UTF-16 units): no native call for short ids.
    for (let i = 0; i < byteLength; i++) out[at + i] = value.charCodeAt(i);
    return at + byteLength;
  }
  const written = out.write(value, at, 'utf8');
  if (written !== byteLength)
    throw new Error(`UTF-8 length mismatch: wrote ${written} of ${byteLength} bytes`);
  return at + written;
}

/**
 * `prefix` followed by CheckResponse.dynamic_metadata (4): Struct{fields (1): map<string, Value{string_value
 * (3)}>}, entries in the given order, empty or undefined values left out. One allocation.
 */
function withMetadata(prefix: Buffer, fields: ReadonlyArray<readonly [string, string | undefined]>): Buffer {
  const present = fields.filter((f): f is readonly [string, string] => f[1] !== undefined && f[1] !== '');
  const lengths = present.map(([key, value]) => [utf8Length(key), utf8Length(value)] as const);
  const entrySizes = lengths.map(([key, value]) => fieldSize(key) + fieldSize(fieldSize(value)));
  const structSize = entrySizes.reduce((sum, size) => sum + fieldSize(size), 0);
  const out = Buffer.allocUnsafe(prefix.length + fieldSize(structSize));
  let at = prefix.copy(out, 0);
  out[at] = 0x22;
  at = writeVarint(out, at + 1, structSize);
  present.forEach(([key, value], i) => {
    const [keyLength, valueLength] = lengths[i] as readonly [number, number];
    out[at] = 0x0a; // Struct.fields entry
    at = writeVarint(out, at + 1, entrySizes[i] as number);
    at = putString(out, at, 0x0a, key, keyLength); // entry key
    out[at] = 0x12; // entry value: google.protobuf.Value
    at = writeVarint(out, at + 1, fieldSize(valueLength));
    at = putString(out, at, 0x1a, value, valueLength); // Value.string_value
  });
  return out;
}

/** `authorization` first, then the extra names lowercased and deduplicated, never the headers we set. */
function headersToRemove(extra: readonly string[]): string[] {
  const names = new Set<string>(['authorization']);
  for (const raw of extra) {
    const name = raw.toLowerCase();
    if (name !== '' && name !== KEY_ID_HEADER && name !== USER_ID_HEADER) names.add(name);
  }
  return Array.from(names);
}

/** A HeaderValueOption that overwrites `name` with a value of `valueLength` UTF-8 bytes: its encoded size. */
const identityHeaderSize = (nameLength: number, valueLength: number): number =>
  fieldSize(fieldSize(nameLength) + fieldSize(valueLength)) + OVERWRITE.length;

function putIdentityHeader(
  out: Buffer,
  at: number,
  name: string,
  value: string,
  valueLength: number,
  tag = 0x12, // OkHttpResponse.headers; 0x32 is response_headers_to_add
): number {
  const headerValue = fieldSize(name.length) + fieldSize(valueLength);
  out[at] = tag;
  at = writeVarint(out, at + 1, fieldSize(headerValue) + OVERWRITE.length);
  out[at] = 0x0a; // HeaderValueOption.header
  at = writeVarint(out, at + 1, headerValue);
  at = putString(out, at, 0x0a, name, name.length);
  at = putString(out, at, 0x12, value, valueLength);
  return at + OVERWRITE.copy(out, at);
}

/** Struct.fields entry `key: {string_value: value}`: its encoded size. */
const metadataEntrySize = (keyLength: number, valueLength: number): number =>
  fieldSize(fieldSize(keyLength) + fieldSize(fieldSize(valueLength)));

function putMetadataEntry(out: Buffer, at: number, key: string, value: string, valueLength: number): number {
  out[at] = 0x0a; // Struct.fields entry
  at = writeVarint(out, at + 1, fieldSize(key.length) + fieldSize(fieldSize(valueLength)));
  at = putString(out, at, 0x0a, key, key.length);
  out[at] = 0x12; // entry value: google.protobuf.Value
  at = writeVarint(out, at + 1, fieldSize(valueLength));
  return putString(out, at, 0x1a, value, valueLength); // Value.string_value
}

const ONLY_AUTHORIZATION: readonly string[] = ['authorization'];

/**
 * An allow: status 0 (on the wire), the identity headers overwritten, `authorization` plus `removeHeaders`
 * removed, `x-fortary-key-expires-at: <expiresAt>` added to the client's response when `expiresAt` is given, and
 * `{decision, reason, key_id, user_id}` as dynamic metadata. Written straight into one buffer
 * (about a microsecond), and kept only for the most recently used keys, so 100,000 cached keys cost no answer
 * memory. The layout is
 * checked against protobufjs byte for byte in the unit tests and decoded once at load (below). Throws on an empty
 * id (the caller answers internal_error instead).
 */
export function encodeAllow(
  keyId: string,
  userId: string,
  removeHeaders: readonly string[],
  expiresAt?: string,
): Buffer {
  // A key near its expiry is a minority of traffic, and its answer is written fresh: nothing to memoise per day.
  if (removeHeaders.length > 0 || expiresAt !== undefined)
    return writeAllow(keyId, userId, removeHeaders, expiresAt);
  const hot = hotAllows.get(keyId);
  if (hot !== undefined && hot.userId === userId) return hot.bytes;
  const bytes = writeAllow(keyId, userId, removeHeaders);
  // Its own exact-size ArrayBuffer: a kept answer must not pin a shared 8 KiB pool slab.
  const own = Buffer.allocUnsafeSlow(bytes.length);
  bytes.copy(own);
  hotAllows.set(keyId, { userId, bytes: own });
  return own;
}

/**
 * The answers of the most recently used keys (a few hundred KiB at most): most traffic comes from few keys, and a
 * hit saves the microsecond of writing. Never grows with the number of keys.
 */
const HOT_ALLOWS = 1024;
const hotAllows = new LRUCache<string, { userId: string; bytes: Buffer }>({ max: HOT_ALLOWS });

function writeAllow(
  keyId: string,
  userId: string,
  removeHeaders: readonly string[],
  expiresAt?: string,
): Buffer {
  // Envoy drops a header set to '' (keep_empty_value is false), which would let a client's own copy through.
  if (keyId === '' || userId === '') throw new Error('refusing to allow without a key id and a user id');
  const keyLength = utf8Length(keyId);
  const userLength = utf8Length(userId);
  const names = removeHeaders.length === 0 ? ONLY_AUTHORIZATION : headersToRemove(removeHeaders);
  const nameLengths = names.map(utf8Length);
  let okSize =
    fieldSize(identityHeaderSize(KEY_ID_HEADER.length, keyLength)) +
    fieldSize(identityHeaderSize(USER_ID_HEADER.length, userLength));
  for (const length of nameLengths) okSize += fieldSize(length);
  const expiresLength = expiresAt === undefined ? 0 : utf8Length(expiresAt);
  if (expiresAt !== undefined)
    okSize += fieldSize(identityHeaderSize(EXPIRES_AT_HEADER.length, expiresLength));
  const structSize =
    ALLOW_METADATA_PREFIX_SIZE +
    metadataEntrySize('key_id'.length, keyLength) +
    metadataEntrySize('user_id'.length, userLength);
  const out = Buffer.allocUnsafe(STATUS_OK.length + fieldSize(okSize) + fieldSize(structSize));
  let at = STATUS_OK.copy(out, 0);
  out[at] = 0x1a; // CheckResponse.ok_response
  at = writeVarint(out, at + 1, okSize);
  at = putIdentityHeader(out, at, KEY_ID_HEADER, keyId, keyLength);
  at = putIdentityHeader(out, at, USER_ID_HEADER, userId, userLength);
  names.forEach((name, i) => {
    at = putString(out, at, 0x2a, name, nameLengths[i] as number); // OkHttpResponse.headers_to_remove
  });
  // OkHttpResponse.response_headers_to_add (6): to the client, overwriting any upstream copy.
  if (expiresAt !== undefined)
    at = putIdentityHeader(out, at, EXPIRES_AT_HEADER, expiresAt, expiresLength, 0x32);
  out[at] = 0x22; // CheckResponse.dynamic_metadata
  at = writeVarint(out, at + 1, structSize);
  at = putMetadataEntry(out, at, 'decision', 'allow', 5);
  at = putMetadataEntry(out, at, 'reason', 'allowed', 7);
  at = putMetadataEntry(out, at, 'key_id', keyId, keyLength);
  at = putMetadataEntry(out, at, 'user_id', userId, userLength);
  if (at !== out.length) throw new Error(`allow encoding wrote ${at} of ${out.length} bytes`);
  return out;
}
const ALLOW_METADATA_PREFIX_SIZE =
  metadataEntrySize('decision'.length, 5) + metadataEntrySize('reason'.length, 7);

// The full decoding guard, once: an allow built by the code above says allow to protobufjs.
guardCheckResponse(encodeAllow('AAAAAAAAAAAA', 'load-check-user', ['x-api-key']), true);
guardCheckResponse(encodeAllow('AAAAAAAAAAAA', 'load-check-user', [], '2030-01-01T00:00:00.000Z'), true);

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

function wwwAuthenticate(bearerError: NonNullable<Outcome['bearerError']>): string {
  // No error_description: the public messages contain '"', which RFC 6750 §3 does not allow there.
  return bearerError === '' ? 'Bearer realm="fortary"' : `Bearer realm="fortary", error="${bearerError}"`;
}

/** A length-delimited field: tag, length, payload. */
function lengthDelimited(tag: number, payload: Buffer): Buffer {
  const length = Buffer.alloc(varintLength(payload.length));
  writeVarint(length, 0, payload.length);
  return Buffer.concat([Buffer.from([tag]), length, payload]);
}

const varintField = (tag: number, value: number): Buffer => {
  const out = Buffer.alloc(1 + varintLength(value));
  writeVarint(out, 1, value);
  out[0] = tag;
  return out;
};
const stringField = (tag: number, value: string): Buffer => lengthDelimited(tag, Buffer.from(value, 'utf8'));

/** DeniedHttpResponse.headers (2): HeaderValueOption{header (1): {key, value}, append (2): {value: false}}. */
const deniedHeader = (key: string, value: string): Buffer =>
  lengthDelimited(
    0x12,
    Buffer.concat([
      lengthDelimited(0x0a, Buffer.concat([stringField(0x0a, key), stringField(0x12, value)])),
      Buffer.from([0x12, 0x02, 0x08, 0x00]),
    ]),
  );

/** Fields 1 (status {code, message}) and 2 (denied_response {status, headers, body}) of a denial. */
function denialHead(outcome: Outcome): Buffer {
  const headers = [
    deniedHeader('content-type', 'application/json'),
    deniedHeader('cache-control', 'no-store'),
  ];
  if (outcome.bearerError !== undefined)
    headers.push(deniedHeader('www-authenticate', wwwAuthenticate(outcome.bearerError)));
  const body = JSON.stringify({ error: { code: outcome.publicCode, message: outcome.publicMessage } });
  const bytes = Buffer.concat([
    lengthDelimited(
      0x0a,
      Buffer.concat([varintField(0x08, outcome.grpcCode), stringField(0x12, outcome.publicCode)]),
    ),
    lengthDelimited(
      0x12,
      Buffer.concat([
        lengthDelimited(0x0a, varintField(0x08, outcome.httpStatus)),
        ...headers,
        stringField(0x1a, body),
      ]),
    ),
  ]);
  const own = Buffer.allocUnsafeSlow(bytes.length);
  bytes.copy(own);
  return own;
}

/** `prefix` (fields 1, 2 of a denial) followed by its dynamic metadata. */
function denialWithMetadata(
  prefix: Buffer,
  reason: DenyReason,
  outcome: Outcome,
  keyId?: string,
  userId?: string,
): Buffer {
  return withMetadata(prefix, [
    ['decision', outcome.kind],
    ['reason', reason],
    ['key_id', keyId],
    ['user_id', userId],
  ]);
}

interface Denial {
  /** The whole answer without ids. */
  bytes: Buffer;
  /** Fields 1 and 2 only; a denial with ids is this followed by its own field 4. */
  head: Buffer;
  outcome: Outcome;
}

const denials = new Map<DenyReason, Denial>(
  DENY_REASONS.map((reason) => {
    const outcome = checkedOutcome(reason);
    const head = guardCheckResponse(denialHead(outcome), false);
    const whole = denialWithMetadata(head, reason, outcome);
    const bytes = Buffer.allocUnsafeSlow(whole.length);
    whole.copy(bytes);
    return [reason, { bytes: guardCheckResponse(bytes, false), head, outcome }];
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
  return denialWithMetadata(denial.head, reason, denial.outcome, keyId, userId);
}
