/**
 * A gRPC server on node:http2 directly, for the few methods the sidecar serves (ext_authz Check and
 * grpc.health.v1): length-prefixed messages in, one message and a grpc-status trailer out.
 *
 * Why not grpc-js: on the bench's 670-byte CheckRequest a no-op grpc-js server spends ~120 µs of CPU per call and a
 * no-op node:http2 server ~57 µs; the difference is grpc-js' own machinery (call objects, metadata parsing, filter
 * stacks, deadline and compression plumbing), several times what the whole decision costs (~14 µs), and a
 * grpc-js server cannot be faster than a no-op grpc-js server. Everything this
 * file does is specified by the gRPC over HTTP/2 protocol (doc/PROTOCOL-HTTP2.md) and is tested against
 * grpc-js' client and raw HTTP/2 frames (test/integration/grpc-transport.test.ts).
 */
import http2 from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import zlib from 'node:zlib';
import type { HostPort } from '../../config';

export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

/** A CheckRequest is headers only (Envoy caps them at 60 KiB by default); refuse anything far larger. */
export const MAX_MESSAGE_BYTES = 1024 * 1024;

/** One unary call. `reply` and `fail` answer once; later calls (after a deadline or a cancel) do nothing. */
export interface UnaryCall {
  reply(message: Buffer): void;
  fail(code: number, message: string): void;
}
export type UnaryMethod = (request: Buffer, call: UnaryCall) => void;

/** A server-streaming call (health Watch). `onEnd` runs once when the client cancels or the server closes. */
export interface StreamCall {
  send(message: Buffer): void;
  /** Ends the call with a non-OK status (after any messages already sent). */
  fail(code: number, message: string): void;
  onEnd(listener: () => void): void;
}
export type StreamMethod = (request: Buffer, call: StreamCall) => void;

const RESPONSE_HEADERS = {
  ':status': 200,
  'content-type': 'application/grpc+proto',
  'grpc-accept-encoding': 'identity,gzip,deflate',
};
const OK_TRAILERS = { 'grpc-status': '0' };
/** gRPC's own content types; grpc-web and +json bodies are not binary protobuf frames. */
const GRPC_CONTENT_TYPE = /^application\/grpc(\+proto)?(;|$)/;

const SERVER_SETTINGS: http2.Settings = {
  // Envoy multiplexes every Check over a few connections: allow plenty of streams on each.
  maxConcurrentStreams: 1000,
  // A 64 KiB request must not wait on the default 64 KiB flow-control window under load.
  initialWindowSize: 1024 * 1024,
};
const SESSION_WINDOW_BYTES = 8 * 1024 * 1024;

export interface GrpcH2ServerOptions {
  /**
   * The longest a request may take to arrive in full, whatever its grpc-timeout says: a stream that never ends
   * would otherwise hold its buffers forever. Envoy sends a Check in one go.
   */
  readLimitMs?: number;
  /**
   * Request bytes one connection may have buffered across its unfinished requests. Envoy's requests are a few KiB
   * and complete in one read; this only binds a client that opens many large requests and never finishes them.
   */
  sessionBufferBytes?: number;
  /** Errors of the listening socket after start (never thrown: they are reported here). */
  onError?: (error: Error) => void;
}
const DEFAULT_READ_LIMIT_MS = 5000;
const DEFAULT_SESSION_BUFFER_BYTES = 32 * 1024 * 1024;
/** How often unfinished requests are checked against their read deadline. */
const SWEEP_MS = 100;

/** A request whose body is still arriving. */
interface Reading {
  stream: http2.ServerHttp2Stream;
  /** performance.now() by which the body must be complete. */
  deadline: number;
  buffered: number;
  expire(): void;
  /** The client reset the stream: drop its bytes without answering. */
  release(): void;
}

export class GrpcH2Server {
  private readonly unary = new Map<string, UnaryMethod>();
  private readonly streaming = new Map<string, StreamMethod>();
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly openStreams = new Set<() => void>();
  private readonly reading = new Set<Reading>();
  /** Request bytes buffered per connection (bounded by sessionBufferBytes). */
  private readonly buffered = new WeakMap<http2.ServerHttp2Session, number>();
  private readonly server = http2.createServer({ settings: SERVER_SETTINGS });
  private readonly readLimitMs: number;
  private readonly sessionBufferBytes: number;
  private sweeper: NodeJS.Timeout | null = null;
  private closing = false;
  private boundPort = 0;

  constructor(
    private readonly address: HostPort,
    private readonly options: GrpcH2ServerOptions = {},
  ) {
    this.readLimitMs = options.readLimitMs ?? DEFAULT_READ_LIMIT_MS;
    this.sessionBufferBytes = options.sessionBufferBytes ?? DEFAULT_SESSION_BUFFER_BYTES;
    // Notices a peer that vanished without a FIN (its sessions and streams are then freed).
    this.server.on('connection', (socket: Socket) => socket.setKeepAlive(true, 30_000));
    this.server.on('session', (session) => this.onSession(session));
    this.server.on('stream', (stream, headers) => this.onStream(stream, headers));
    // A broken peer costs its own session, never the server.
    this.server.on('sessionError', ignore);
  }

  get port(): number {
    return this.boundPort;
  }

  addUnary(path: string, method: UnaryMethod): void {
    this.unary.set(path, method);
  }

  addServerStream(path: string, method: StreamMethod): void {
    this.streaming.set(path, method);
  }

  async start(): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      this.server.once('error', onError);
      this.server.listen(this.address.port, this.address.host, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
    this.server.on('error', (error: Error) => this.options.onError?.(error));
    this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
    this.sweeper.unref();
    this.boundPort = (this.server.address() as AddressInfo).port;
    return this.boundPort;
  }

  /**
   * Stops accepting connections, tells every client to go away (GOAWAY: no new streams), lets in-flight calls
   * finish for up to `drainMs`, then cuts what is left. Open streams (health Watch) end at once, and one that
   * starts during the drain is refused: they would never finish by themselves.
   */
  async close(drainMs: number): Promise<void> {
    if (!this.server.listening) return;
    this.closing = true;
    for (const end of [...this.openStreams]) end();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const session of this.sessions) session.close();
    let timer: NodeJS.Timeout | undefined;
    const cut = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        for (const session of this.sessions) session.destroy();
        resolve();
      }, drainMs);
    });
    await Promise.race([closed, cut]);
    clearTimeout(timer);
    if (this.sweeper !== null) clearInterval(this.sweeper);
    await closed;
  }

  private onSession(session: http2.ServerHttp2Session): void {
    this.sessions.add(session);
    session.on('close', () => this.sessions.delete(session));
    session.on('error', ignore);
    session.setLocalWindowSize(SESSION_WINDOW_BYTES);
  }

  private onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    // An RST from the client or a write after the session died must not become an uncaught 'error'.
    stream.on('error', ignore);
    if (headers[':method'] !== 'POST') return httpRefusal(stream, 405);
    const contentType = headers['content-type'];
    if (typeof contentType !== 'string' || !GRPC_CONTENT_TYPE.test(contentType)) {
      return httpRefusal(stream, 415);
    }
    const path = headers[':path'] ?? '';
    const unary = this.unary.get(path);
    const streaming = unary === undefined ? this.streaming.get(path) : undefined;
    if (unary === undefined && streaming === undefined) {
      return trailersOnly(stream, GrpcStatus.UNIMPLEMENTED, `unknown method ${path.slice(0, 200)}`);
    }
    const encoding = headers['grpc-encoding'] ?? 'identity';
    if (encoding !== 'identity' && encoding !== 'gzip' && encoding !== 'deflate') {
      return trailersOnly(
        stream,
        GrpcStatus.UNIMPLEMENTED,
        `unsupported grpc-encoding ${encoding.slice(0, 40)}`,
      );
    }
    const arrived = performance.now();
    const timeoutMs = parseTimeout(headers['grpc-timeout']);
    const deadline = timeoutMs === null ? null : arrived + timeoutMs;
    this.readMessage(
      stream,
      encoding,
      Math.min(deadline ?? Infinity, arrived + this.readLimitMs),
      (error, request) => {
        // The client may have reset the stream while the body was being inflated.
        if (stream.closed || stream.destroyed) return;
        if (error !== null) return trailersOnly(stream, error.code, error.message);
        if (unary !== undefined) this.runUnary(stream, unary, request, deadline);
        else if (streaming !== undefined) this.runStream(stream, streaming, request);
      },
    );
  }

  /** Collects the request's single length-prefixed message (bounded in size and time), then calls back once. */
  private readMessage(
    stream: http2.ServerHttp2Stream,
    encoding: string,
    deadline: number,
    done: (error: CallError | null, message: Buffer) => void,
  ): void {
    const session = stream.session as http2.ServerHttp2Session;
    const chunks: Buffer[] = [];
    const reading: Reading = {
      stream,
      deadline,
      buffered: 0,
      expire: () => refuse({ code: GrpcStatus.DEADLINE_EXCEEDED, message: 'request not received in time' }),
      release: () => {
        if (!finished) stop();
      },
    };
    let finished = false;
    const stop = () => {
      finished = true;
      chunks.length = 0;
      this.reading.delete(reading);
      this.buffered.set(session, (this.buffered.get(session) ?? 0) - reading.buffered);
      reading.buffered = 0;
    };
    const refuse = (error: CallError) => {
      if (finished) return;
      stop();
      done(error, EMPTY);
    };
    // A stream reset before its end is released by the next sweep (no 'close' listener per request).
    this.reading.add(reading);
    stream.on('data', (chunk: Buffer) => {
      if (finished) return;
      reading.buffered += chunk.length;
      const total = (this.buffered.get(session) ?? 0) + chunk.length;
      this.buffered.set(session, total);
      chunks.push(chunk);
      // Refuse as soon as the frame header declares too much, not after buffering it.
      const declared = reading.buffered >= 5 ? declaredSize(chunks) : 0;
      if (declared > MAX_MESSAGE_BYTES || reading.buffered > MAX_MESSAGE_BYTES + 5) {
        refuse({
          code: GrpcStatus.RESOURCE_EXHAUSTED,
          message: `request larger than ${MAX_MESSAGE_BYTES} bytes`,
        });
      } else if (total > this.sessionBufferBytes) {
        refuse({
          code: GrpcStatus.RESOURCE_EXHAUSTED,
          message: 'too many request bytes in flight on this connection',
        });
      }
    });
    stream.on('end', () => {
      if (finished) return;
      const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, reading.buffered);
      const parsed = unframe(body);
      if ('code' in parsed) return refuse(parsed);
      if (!parsed.compressed) {
        stop();
        return done(null, parsed.message);
      }
      if (encoding === 'identity')
        return refuse({ code: GrpcStatus.INTERNAL, message: 'compressed message without grpc-encoding' });
      const inflate = encoding === 'gzip' ? zlib.gunzip : zlib.inflate;
      inflate(parsed.message, { maxOutputLength: MAX_MESSAGE_BYTES }, (error, message) => {
        if (finished) return;
        if (error === null) {
          stop();
          return done(null, message);
        }
        const tooLarge = (error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE';
        refuse(
          tooLarge
            ? {
                code: GrpcStatus.RESOURCE_EXHAUSTED,
                message: `request inflates past ${MAX_MESSAGE_BYTES} bytes`,
              }
            : { code: GrpcStatus.INTERNAL, message: 'could not decompress the message' },
        );
      });
    });
  }

  private sweep(): void {
    const now = performance.now();
    for (const reading of this.reading) {
      if (reading.stream.closed || reading.stream.destroyed) reading.release();
      else if (now >= reading.deadline) reading.expire();
    }
  }

  private runUnary(
    stream: http2.ServerHttp2Stream,
    method: UnaryMethod,
    request: Buffer,
    deadline: number | null,
  ) {
    let done = false;
    let timer: NodeJS.Timeout | null = null;
    const finish = (): boolean => {
      if (done || stream.destroyed || stream.closed) return false;
      done = true;
      if (timer !== null) clearTimeout(timer);
      return true;
    };
    const call: UnaryCall = {
      reply: (message) => {
        if (finish()) sendMessage(stream, message);
      },
      fail: (code, message) => {
        if (finish()) trailersOnly(stream, code, message);
      },
    };
    if (deadline !== null && performance.now() >= deadline) {
      return call.fail(GrpcStatus.DEADLINE_EXCEEDED, 'deadline exceeded');
    }
    try {
      method(request, call);
    } catch {
      call.fail(GrpcStatus.INTERNAL, 'internal error');
    }
    // The warm path answers synchronously; only a call still open needs a deadline timer.
    if (!done && deadline !== null) {
      timer = setTimeout(
        () => call.fail(GrpcStatus.DEADLINE_EXCEEDED, 'deadline exceeded'),
        Math.max(0, deadline - performance.now()),
      );
      stream.once('close', () => timer !== null && clearTimeout(timer));
    }
  }

  private runStream(stream: http2.ServerHttp2Stream, method: StreamMethod, request: Buffer): void {
    if (this.closing) return trailersOnly(stream, GrpcStatus.UNAVAILABLE, 'server closing');
    const listeners: Array<() => void> = [];
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      this.openStreams.delete(endByServer);
      for (const listener of listeners.splice(0)) listener();
    };
    const endByServer = () => {
      end();
      if (stream.closed || stream.destroyed) return;
      stream.once('wantTrailers', () =>
        stream.sendTrailers({
          'grpc-status': String(GrpcStatus.UNAVAILABLE),
          'grpc-message': 'server closing',
        }),
      );
      stream.end();
    };
    this.openStreams.add(endByServer);
    stream.once('close', end);
    stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
    const call: StreamCall = {
      send: (message) => {
        if (!ended && !stream.closed && !stream.destroyed) stream.write(frame(message));
      },
      fail: (code, message) => {
        if (ended || stream.closed || stream.destroyed) return;
        end();
        stream.once('wantTrailers', () =>
          stream.sendTrailers({ 'grpc-status': String(code), 'grpc-message': encodeURIComponent(message) }),
        );
        stream.end();
      },
      // A listener that arrives after the end runs at once, so nothing registered late is left behind.
      onEnd: (listener) => (ended ? listener() : void listeners.push(listener)),
    };
    try {
      method(request, call);
    } catch {
      endByServer();
    }
  }
}

interface CallError {
  code: number;
  message: string;
}

/** The message size the frame header (the first 5 bytes, possibly split over chunks) declares. */
function declaredSize(chunks: readonly Buffer[]): number {
  const head = chunks[0] as Buffer;
  const bytes = head.length >= 5 ? head : Buffer.concat(chunks).subarray(0, 5);
  return bytes.readUInt32BE(1);
}

const EMPTY = Buffer.alloc(0);
/** Shared by every stream and session: one function, not one closure per request. */
const ignore = (): void => undefined;

/** Exactly one message, as unary and server-streaming requests carry. */
function unframe(body: Buffer): { compressed: boolean; message: Buffer } | CallError {
  if (body.length < 5) return { code: GrpcStatus.INTERNAL, message: 'request carries no complete message' };
  const flag = body[0] as number;
  const size = body.readUInt32BE(1);
  if (flag > 1) return { code: GrpcStatus.INTERNAL, message: 'invalid message flag' };
  if (5 + size > body.length) return { code: GrpcStatus.INTERNAL, message: 'truncated message' };
  if (5 + size < body.length) return { code: GrpcStatus.INTERNAL, message: 'more than one request message' };
  return { compressed: flag === 1, message: body.subarray(5) };
}

export function frame(message: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  message.copy(out, 5);
  return out;
}

function sendMessage(stream: http2.ServerHttp2Stream, message: Buffer): void {
  stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
  stream.once('wantTrailers', () => stream.sendTrailers(OK_TRAILERS));
  stream.end(frame(message));
}

/** A status without a message (trailers-only response). A client still sending is then told to stop. */
function trailersOnly(stream: http2.ServerHttp2Stream, code: number, message: string): void {
  if (stream.headersSent || stream.closed || stream.destroyed) return;
  stream.respond(
    {
      ':status': 200,
      'content-type': 'application/grpc+proto',
      'grpc-status': String(code),
      'grpc-message': encodeURIComponent(message),
      ...(code === GrpcStatus.UNIMPLEMENTED ? { 'grpc-accept-encoding': 'identity,gzip,deflate' } : {}),
    },
    { endStream: true },
  );
  stopReading(stream);
}

function httpRefusal(stream: http2.ServerHttp2Stream, status: number): void {
  if (stream.headersSent || stream.closed || stream.destroyed) return;
  stream.respond({ ':status': status }, { endStream: true });
  stopReading(stream);
}

/**
 * After an early answer, a client that has not finished sending gets RST_STREAM(NO_ERROR) (RFC 9113 §8.1), so
 * the stream stops counting against the concurrency limit and its window is not granted to bytes thrown away.
 */
function stopReading(stream: http2.ServerHttp2Stream): void {
  if (stream.readableEnded) return;
  stream.resume();
  stream.close(http2.constants.NGHTTP2_NO_ERROR);
}

const TIMEOUT_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };
/** setTimeout fires at once for anything above 2^31-1 ms (~24.8 days): such a deadline means "none". */
const LONGEST_TIMER_MS = 2 ** 31 - 1;

/** grpc-timeout: up to 8 digits and a unit. Anything else is ignored (no deadline), as grpc-js does. */
export function parseTimeout(value: string | string[] | undefined): number | null {
  if (typeof value !== 'string') return null;
  const match = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (match === null) return null;
  const ms = Math.ceil(Number(match[1]) * (TIMEOUT_UNITS[match[2] as string] as number));
  return ms > LONGEST_TIMER_MS ? null : ms;
}
