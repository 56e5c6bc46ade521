/**
 * A protobuf wire walker for `envoy.service.auth.v3.CheckRequest` that reads only what Check needs (see
 * `AuthzRequest`) and skips everything else by wire type, without building the full message.
 *
 * Read path (field numbers are Envoy's):
 *   CheckRequest.attributes(1) -> AttributeContext
 *     .source(1) -> Peer.address(1) -> Address oneof
 *         socket_address(1) -> SocketAddress.address(2) | pipe(2) | envoy_internal_address(3)
 *     .request(4) -> Request.http(2) -> HttpRequest
 *         method(2), headers(3) map<string,string>, path(4), header_map(13) -> HeaderMap.headers(1) -> HeaderValue
 *
 * Semantics, compared with a full protobufjs decode of the same bytes:
 * - Every tag and length at every level we walk is validated; fields we do not read are skipped by wire type
 *   (0, 1, 2, 5) without looking inside. Wire types 3/4 (groups) and 6/7, field number 0, a tag above 32 bits, a
 *   varint longer than 10 bytes, a truncated varint and a length past the end of the enclosing message all throw
 *   `CheckRequestDecodeError`. (protobufjs skips groups and field 0; it also never looks at the contents of
 *   unknown fields, but does decode known ones we skip, such as `destination` — garbage inside those is
 *   rejected by protobufjs and ignored here. Those bytes cannot reach any field we extract.)
 * - A field we read that arrives with the wrong wire type throws (protobufjs would misread it).
 * - Repeated singular scalars (method, path, SocketAddress.address, HeaderValue key/value/raw_value, map entry
 *   key/value): last one wins, as in protobufjs and in the protobuf spec.
 * - Repeated singular MESSAGE fields on the read path (attributes, source, address, request, http, header_map)
 *   and more than one member of the Address oneof: the request is REFUSED with `CheckRequestDecodeError`.
 *   protobufjs replaces the earlier occurrence while the protobuf spec (and Envoy's C++) merges them; the two
 *   readings can differ in which Authorization values and which source address they see, in either direction.
 *   Envoy never emits such bytes, so refusing costs nothing and can never allow what either reading would deny.
 * - `headers` map entries whose key repeats on the wire are ALL reported (protobufjs keeps the last one), so
 *   two `authorization` entries are refused as ambiguous by the credentials rule.
 * - Header names are compared after `String#toLowerCase()` of their UTF-8 decoding (ASCII fast path).
 * - Strings are decoded as UTF-8 with U+FFFD for invalid sequences, as `Buffer#toString` and protobufjs do.
 *
 * Work is linear in the buffer size; nesting is fixed (no recursion). Not re-entrant state is kept per call.
 */
import type { AuthzRequest, PeerAddress } from '../../core/types';

export class CheckRequestDecodeError extends Error {
  override readonly name = 'CheckRequestDecodeError';
  /** Byte offset in the CheckRequest where the problem was found. */
  readonly offset: number;

  constructor(message: string, offset: number) {
    super(`malformed CheckRequest: ${message} at byte ${offset}`);
    this.offset = offset;
  }
}

/** Buffer#toString, the documented API (the undocumented utf8Slice saves about 40 ns a call, not worth it). */
function utf8(buf: Buffer, start: number, end: number): string {
  return start === end ? '' : buf.toString('utf8', start, end);
}

// Header name classes.
const H_OTHER = 0;
const H_AUTHORIZATION = 1;
const H_API_KEY = 2;
const H_FORWARDED_FOR = 3;
const H_REQUEST_ID = 4;
const H_FORTARY = 5;

const ascii = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));
const N_AUTHORIZATION = ascii('authorization');
const N_API_KEY = ascii('x-api-key');
const N_FORWARDED_FOR = ascii('x-forwarded-for');
const N_REQUEST_ID = ascii('x-request-id');
const N_FORTARY = ascii('x-fortary-');
const FORTARY_PREFIX = 'x-fortary-';

/** ASCII case-insensitive comparison of buf[start, start+name.length) with a lowercase ASCII name. */
function equalsLower(buf: Buffer, start: number, name: Uint8Array): boolean {
  for (let i = 0; i < name.length; i++) {
    let c = buf[start + i] as number;
    if (c >= 0x41 && c <= 0x5a) c |= 0x20;
    if (c !== name[i]) return false;
  }
  return true;
}

function classifyName(name: string): number {
  switch (name) {
    case 'authorization':
      return H_AUTHORIZATION;
    case 'x-api-key':
      return H_API_KEY;
    case 'x-forwarded-for':
      return H_FORWARDED_FOR;
    case 'x-request-id':
      return H_REQUEST_ID;
    default:
      return name.startsWith(FORTARY_PREFIX) ? H_FORTARY : H_OTHER;
  }
}

/**
 * Classifies a header name given as UTF-8 bytes, with the meaning of `utf8(name).toLowerCase()`. Every target
 * name is ASCII and starts with 'a' or 'x'. An ASCII name is compared byte-wise; a name with non-ASCII bytes
 * that does not match that way takes the exact (slow) path, since some non-ASCII code points lowercase to ASCII
 * (U+212A KELVIN SIGN becomes 'k'). No non-ASCII code point lowercases to 'a' or 'x', so a name whose first byte
 * is ASCII and not a/A/x/X cannot match.
 */
function classifyKey(buf: Buffer, start: number, end: number): number {
  const n = end - start;
  // A lowercased name never has more UTF-16 units than the name has UTF-8 bytes; the shortest target is 9.
  if (n < 9) return H_OTHER;
  const first = buf[start] as number;
  if (first >= 0x80) return classifyName(utf8(buf, start, end).toLowerCase());
  const f = first | 0x20;
  if (f !== 0x61 && f !== 0x78) return H_OTHER;
  switch (n) {
    case 13:
      if (equalsLower(buf, start, N_AUTHORIZATION)) return H_AUTHORIZATION;
      break;
    case 9:
      if (equalsLower(buf, start, N_API_KEY)) return H_API_KEY;
      break;
    case 15:
      if (equalsLower(buf, start, N_FORWARDED_FOR)) return H_FORWARDED_FOR;
      break;
    case 12:
      if (equalsLower(buf, start, N_REQUEST_ID)) return H_REQUEST_ID;
      break;
  }
  if (n >= 10 && equalsLower(buf, start, N_FORTARY)) return H_FORTARY;
  for (let i = start + 1; i < end; i++) {
    if ((buf[i] as number) >= 0x80) return classifyName(utf8(buf, start, end).toLowerCase());
  }
  return H_OTHER;
}

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'].map((name) => ({
  name,
  bytes: ascii(name),
}));

/** The method string; the common ones are returned as constants instead of being decoded. */
function methodString(buf: Buffer, start: number, end: number): string {
  const n = end - start;
  for (const method of METHODS) {
    if (method.bytes.length !== n) continue;
    let i = 0;
    while (i < n && buf[start + i] === method.bytes[i]) i++;
    if (i === n) return method.name;
  }
  return utf8(buf, start, end);
}

/** What one header shape (the `headers` map or `header_map`) says. */
class HeaderLines {
  lines = 0;
  authorization: string[] = [];
  apiKeyHeader = false;
  forwardedFor: string | undefined = undefined;
  requestId: string | undefined = undefined;
  fortary: Set<string> | undefined = undefined;

  add(buf: Buffer, keyStart: number, keyEnd: number, valueStart: number, valueEnd: number): void {
    this.lines++;
    switch (classifyKey(buf, keyStart, keyEnd)) {
      case H_OTHER:
        return;
      case H_AUTHORIZATION:
        this.authorization.push(utf8(buf, valueStart, valueEnd));
        return;
      case H_API_KEY:
        this.apiKeyHeader = true;
        return;
      case H_FORWARDED_FOR: {
        const value = utf8(buf, valueStart, valueEnd);
        this.forwardedFor = this.forwardedFor === undefined ? value : `${this.forwardedFor},${value}`;
        return;
      }
      case H_REQUEST_ID:
        if (this.requestId === undefined) this.requestId = utf8(buf, valueStart, valueEnd);
        return;
      case H_FORTARY:
        (this.fortary ??= new Set()).add(utf8(buf, keyStart, keyEnd).toLowerCase());
        return;
    }
  }
}

// Address oneof members.
const ADDR_NONE = 0;
const ADDR_SOCKET = 1;
const ADDR_PIPE = 2;
const ADDR_INTERNAL = 3;

/** Bit masks of the field numbers each message reads (a read field with another wire type is malformed). */
const READS_CHECK_REQUEST = 1 << 1;
const READS_ATTRIBUTES = (1 << 1) | (1 << 4);
const READS_PEER = 1 << 1;
const READS_ADDRESS = (1 << 1) | (1 << 2) | (1 << 3);
const READS_SOCKET_ADDRESS = 1 << 2;
const READS_REQUEST = 1 << 2;
const READS_HTTP = (1 << 2) | (1 << 3) | (1 << 4) | (1 << 13);
const READS_KEY_VALUE = (1 << 1) | (1 << 2);
const READS_HEADER_MAP = 1 << 1;
const READS_HEADER_VALUE = (1 << 1) | (1 << 2) | (1 << 3);

class Walker {
  pos = 0;

  sawAttributes = false;
  sawSource = false;
  sawAddress = false;
  sawRequest = false;
  sawHttp = false;
  sawHeaderMap = false;

  addressKind = ADDR_NONE;
  ipStart = 0;
  ipEnd = 0;
  methodStart = 0;
  methodEnd = 0;
  pathStart = 0;
  pathEnd = 0;

  readonly fromHeaders = new HeaderLines();
  fromHeaderMap: HeaderLines | undefined = undefined;

  constructor(readonly buf: Buffer) {}

  fail(message: string, at: number = this.pos): never {
    throw new CheckRequestDecodeError(message, at);
  }

  /** A varint of up to 10 bytes; values above 2^53 lose precision but stay larger than any buffer. */
  varint(end: number): number {
    const buf = this.buf;
    let p = this.pos;
    if (p >= end) this.fail('truncated varint', p);
    let b = buf[p++] as number;
    if (b < 0x80) {
      this.pos = p;
      return b;
    }
    let value = b & 0x7f;
    let scale = 0x80;
    for (let i = 1; i < 10; i++) {
      if (p >= end) this.fail('truncated varint', p);
      b = buf[p++] as number;
      value += (b & 0x7f) * scale;
      if (b < 0x80) {
        this.pos = p;
        return value;
      }
      scale *= 0x80;
    }
    return this.fail('varint longer than 10 bytes');
  }

  tag(end: number): number {
    const at = this.pos;
    const b = this.buf[at] as number;
    let tag: number;
    if (b < 0x80) {
      this.pos = at + 1;
      tag = b;
    } else {
      tag = this.varint(end);
      if (tag > 0xffffffff) this.fail('tag above 32 bits', at);
    }
    if (tag < 8) this.fail('field number 0', at);
    return tag;
  }

  /** Reads a length prefix and returns the end offset of the length-delimited payload. */
  delimited(end: number): number {
    const at = this.pos;
    const length = this.varint(end);
    if (length > end - this.pos) this.fail(`length ${length} past the end of the enclosing message`, at);
    return this.pos + length;
  }

  /** Skips a field we do not read; `reads` is the mask of field numbers this message reads. */
  skip(tag: number, end: number, reads: number): void {
    const field = tag >>> 3;
    if (field < 32 && ((reads >>> field) & 1) === 1) {
      this.fail(`field ${field} with wire type ${tag & 7} where a length-delimited value is expected`);
    }
    switch (tag & 7) {
      case 0:
        this.varint(end);
        return;
      case 1:
        if (end - this.pos < 8) this.fail('truncated fixed64');
        this.pos += 8;
        return;
      case 2:
        this.pos = this.delimited(end);
        return;
      case 5:
        if (end - this.pos < 4) this.fail('truncated fixed32');
        this.pos += 4;
        return;
      default:
        this.fail(`wire type ${tag & 7} (field ${field})`);
    }
  }

  once(seen: boolean, what: string): void {
    if (seen) this.fail(`${what} appears more than once`);
  }

  checkRequest(end: number): void {
    while (this.pos < end) {
      const tag = this.tag(end);
      if (tag === 0x0a) {
        this.once(this.sawAttributes, 'CheckRequest.attributes');
        this.sawAttributes = true;
        this.attributes(this.delimited(end));
      } else this.skip(tag, end, READS_CHECK_REQUEST);
    }
  }

  attributes(end: number): void {
    while (this.pos < end) {
      const tag = this.tag(end);
      if (tag === 0x0a) {
        this.once(this.sawSource, 'AttributeContext.source');
        this.sawSource = true;
        this.peer(this.delimited(end));
      } else if (tag === 0x22) {
        this.once(this.sawRequest, 'AttributeContext.request');
        this.sawRequest = true;
        this.request(this.delimited(end));
      } else this.skip(tag, end, READS_ATTRIBUTES);
    }
  }

  peer(end: number): void {
    while (this.pos < end) {
      const tag = this.tag(end);
      if (tag === 0x0a) {
        this.once(this.sawAddress, 'Peer.address');
        this.sawAddress = true;
        this.address(this.delimited(end));
      } else this.skip(tag, end, READS_PEER);
    }
  }

  address(end: number): void {
    while (this.pos < end) {
      const tag = this.tag(end);
      if (tag === 0x0a || tag === 0x12 || tag === 0x1a) {
        this.once(this.addressKind !== ADDR_NONE, 'a member of the Address oneof');
        const payloadEnd = this.delimited(end);
        if (tag === 0x0a) {
          this.addressKind = ADDR_SOCKET;
          this.socketAddress(payloadEnd);
        } else {
          this.addressKind = tag === 0x12 ? ADDR_PIPE : ADDR_INTERNAL;
          this.pos = payloadEnd;
        }
      } else this.skip(tag, end, READS_ADDRESS);
    }
  }

  socketAddress(end: number): void {
    while (this.pos < end) {
      const tag = this.tag(end);
      if (tag === 0x12) {
        this.ipEnd = this.delimited(end);
        this.ipStart = this.pos;
        this.pos = this.ipEnd;
      } else this.skip(tag, end, READS_SOCKET_ADDRESS);
    }
  }

  request(end: number): void {
    while (this.pos < end) {
      const tag = this.tag(end);
      if (tag === 0x12) {
        this.once(this.sawHttp, 'Request.http');
        this.sawHttp = true;
        this.http(this.delimited(end));
      } else this.skip(tag, end, READS_REQUEST);
    }
  }

  http(end: number): void {
    while (this.pos < end) {
      const tag = this.tag(end);
      switch (tag) {
        case 0x12: // method
          this.methodEnd = this.delimited(end);
          this.methodStart = this.pos;
          this.pos = this.methodEnd;
          break;
        case 0x1a: // headers map entry
          this.keyValue(this.delimited(end), this.fromHeaders);
          break;
        case 0x22: // path
          this.pathEnd = this.delimited(end);
          this.pathStart = this.pos;
          this.pos = this.pathEnd;
          break;
        case 0x6a: // header_map
          this.once(this.sawHeaderMap, 'HttpRequest.header_map');
          this.sawHeaderMap = true;
          this.headerMap(this.delimited(end));
          break;
        default:
          this.skip(tag, end, READS_HTTP);
      }
    }
  }

  /** A `map<string,string>` entry: key 1, value 2. */
  keyValue(end: number, into: HeaderLines): void {
    let keyStart = 0;
    let keyEnd = 0;
    let valueStart = 0;
    let valueEnd = 0;
    while (this.pos < end) {
      const tag = this.tag(end);
      if (tag === 0x0a) {
        keyEnd = this.delimited(end);
        keyStart = this.pos;
        this.pos = keyEnd;
      } else if (tag === 0x12) {
        valueEnd = this.delimited(end);
        valueStart = this.pos;
        this.pos = valueEnd;
      } else this.skip(tag, end, READS_KEY_VALUE);
    }
    into.add(this.buf, keyStart, keyEnd, valueStart, valueEnd);
  }

  headerMap(end: number): void {
    const into = (this.fromHeaderMap ??= new HeaderLines());
    while (this.pos < end) {
      const tag = this.tag(end);
      if (tag === 0x0a) this.headerValue(this.delimited(end), into);
      else this.skip(tag, end, READS_HEADER_MAP);
    }
  }

  /** HeaderValue: key 1, value 2, raw_value 3 (bytes; preferred when non-empty). */
  headerValue(end: number, into: HeaderLines): void {
    let keyStart = 0;
    let keyEnd = 0;
    let valueStart = 0;
    let valueEnd = 0;
    let rawStart = 0;
    let rawEnd = 0;
    while (this.pos < end) {
      const tag = this.tag(end);
      if (tag === 0x0a) {
        keyEnd = this.delimited(end);
        keyStart = this.pos;
        this.pos = keyEnd;
      } else if (tag === 0x12) {
        valueEnd = this.delimited(end);
        valueStart = this.pos;
        this.pos = valueEnd;
      } else if (tag === 0x1a) {
        rawEnd = this.delimited(end);
        rawStart = this.pos;
        this.pos = rawEnd;
      } else this.skip(tag, end, READS_HEADER_VALUE);
    }
    if (rawEnd > rawStart) into.add(this.buf, keyStart, keyEnd, rawStart, rawEnd);
    else into.add(this.buf, keyStart, keyEnd, valueStart, valueEnd);
  }

  source(): PeerAddress {
    switch (this.addressKind) {
      case ADDR_SOCKET:
        return { kind: 'ip', ip: utf8(this.buf, this.ipStart, this.ipEnd) };
      case ADDR_PIPE:
        return { kind: 'none', detail: 'unix socket peer' };
      case ADDR_INTERNAL:
        return { kind: 'none', detail: 'internal listener peer' };
      default:
        return { kind: 'none', detail: 'no source address' };
    }
  }
}

/** Shared by every request without x-fortary-* headers (nearly all): read-only, so nothing can add to it. */
const NO_NAMES: readonly string[] = Object.freeze([]);

/**
 * Decodes the parts of a CheckRequest that Check reads. Throws `CheckRequestDecodeError` for malformed or
 * ambiguous input (see the module comment) and nothing else.
 */
export function decodeCheckRequest(buf: Buffer): AuthzRequest {
  const walker = new Walker(buf);
  try {
    walker.checkRequest(buf.length);
  } catch (error) {
    if (error instanceof CheckRequestDecodeError) throw error;
    // Defensive: nothing above should throw anything else; never let it escape as another type.
    throw new CheckRequestDecodeError(`unexpected ${String(error)}`, walker.pos);
  }
  const lines =
    walker.fromHeaderMap !== undefined && walker.fromHeaderMap.lines > 0
      ? walker.fromHeaderMap
      : walker.fromHeaders;
  return {
    method: methodString(buf, walker.methodStart, walker.methodEnd),
    path: utf8(buf, walker.pathStart, walker.pathEnd),
    authorization: lines.authorization,
    apiKeyHeader: lines.apiKeyHeader,
    forwardedFor: lines.forwardedFor,
    source: walker.source(),
    fortaryHeaders: lines.fortary === undefined ? NO_NAMES : Array.from(lines.fortary),
    requestId: lines.requestId,
  };
}
