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
  onEnd(listener: () => void): void;
}
export type StreamMethod = (request: Buffer, call: StreamCall) => void;

const RESPONSE_HEADERS = {
  ':status': 200,
  'content-type': 'application/grpc+proto',
  'grpc-accept-encoding': 'identity,gzip,deflate',
};
const OK_TRAILERS = { 'grpc-status': '0' };

const SERVER_SETTINGS: http2.Settings = {
  // Envoy multiplexes every Check over a few connections: allow plenty of streams on each.
  maxConcurrentStreams: 1000,
  // A 64 KiB request must not wait on the default 64 KiB flow-control window under load.
  initialWindowSize: 1024 * 1024,
};
const SESSION_WINDOW_BYTES = 8 * 1024 * 1024;

export class GrpcH2Server {
  private readonly unary = new Map<string, UnaryMethod>();
  private readonly streaming = new Map<string, StreamMethod>();
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly openStreams = new Set<() => void>();
  private readonly server = http2.createServer({ settings: SERVER_SETTINGS });
  private boundPort = 0;

  constructor(private readonly address: HostPort) {
    // Notices a peer that vanished without a FIN (its sessions and streams are then freed).
    this.server.on('connection', (socket: Socket) => socket.setKeepAlive(true, 30_000));
    this.server.on('session', (session) => this.onSession(session));
    this.server.on('stream', (stream, headers) => this.onStream(stream, headers));
    // A broken peer costs its own session, never the server.
    this.server.on('sessionError', () => undefined);
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
    this.boundPort = (this.server.address() as AddressInfo).port;
    return this.boundPort;
  }

  /**
   * Stops accepting connections, tells every client to go away (GOAWAY: no new streams), lets in-flight calls
   * finish for up to `drainMs`, then cuts what is left. Open streams (health Watch) end at once: they never finish.
   */
  async close(drainMs: number): Promise<void> {
    if (!this.server.listening) return;
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
    await closed;
  }

  private onSession(session: http2.ServerHttp2Session): void {
    this.sessions.add(session);
    session.on('close', () => this.sessions.delete(session));
    session.on('error', () => undefined);
    session.setLocalWindowSize(SESSION_WINDOW_BYTES);
  }

  private onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    // An RST from the client or a write after the session died must not become an uncaught 'error'.
    stream.on('error', () => undefined);
    if (headers[':method'] !== 'POST') return httpRefusal(stream, 405);
    const contentType = headers['content-type'];
    if (typeof contentType !== 'string' || !contentType.startsWith('application/grpc')) {
      return httpRefusal(stream, 415);
    }
    const path = headers[':path'] ?? '';
    const unary = this.unary.get(path);
    const streaming = unary === undefined ? this.streaming.get(path) : undefined;
    if (unary === undefined && streaming === undefined) {
      return trailersOnly(stream, GrpcStatus.UNIMPLEMENTED, `unknown method ${path.slice(0, 200)}`);
    }
    const encoding = headers['grpc-encoding'];
    if (encoding !== undefined && encoding !== 'identity' && encoding !== 'gzip' && encoding !== 'deflate') {
      return trailersOnly(
        stream,
        GrpcStatus.UNIMPLEMENTED,
        `unsupported grpc-encoding ${encoding.slice(0, 40)}`,
      );
    }
    const deadlineMs = parseTimeout(headers['grpc-timeout']);
    readMessage(stream, encoding ?? 'identity', (error, request) => {
      if (error !== null) return trailersOnly(stream, error.code, error.message);
      if (unary !== undefined) this.runUnary(stream, unary, request, deadlineMs);
      else if (streaming !== undefined) this.runStream(stream, streaming, request);
    });
  }

  private runUnary(
    stream: http2.ServerHttp2Stream,
    method: UnaryMethod,
    request: Buffer,
    deadlineMs: number | null,
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
    try {
      method(request, call);
    } catch {
      call.fail(GrpcStatus.INTERNAL, 'internal error');
    }
    // The warm path answers synchronously; only a call still open needs a deadline timer.
    if (!done && deadlineMs !== null) {
      timer = setTimeout(() => call.fail(GrpcStatus.DEADLINE_EXCEEDED, 'deadline exceeded'), deadlineMs);
      stream.once('close', () => timer !== null && clearTimeout(timer));
    }
  }

  private runStream(stream: http2.ServerHttp2Stream, method: StreamMethod, request: Buffer): void {
    const listeners: Array<() => void> = [];
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      this.openStreams.delete(endByServer);
      for (const listener of listeners) listener();
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
      onEnd: (listener) => listeners.push(listener),
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

/** Collects the request's single length-prefixed message (bounded), then calls back once. */
function readMessage(
  stream: http2.ServerHttp2Stream,
  encoding: string,
  done: (error: CallError | null, message: Buffer) => void,
): void {
  const chunks: Buffer[] = [];
  let length = 0;
  let refused = false;
  stream.on('data', (chunk: Buffer) => {
    if (refused) return;
    length += chunk.length;
    if (length > MAX_MESSAGE_BYTES + 5) {
      refused = true;
      chunks.length = 0;
      done(
        { code: GrpcStatus.RESOURCE_EXHAUSTED, message: `request larger than ${MAX_MESSAGE_BYTES} bytes` },
        EMPTY,
      );
      return;
    }
    chunks.push(chunk);
  });
  stream.on('end', () => {
    if (refused) return;
    const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, length);
    const parsed = unframe(body);
    if ('code' in parsed) return done(parsed, EMPTY);
    if (!parsed.compressed) return done(null, parsed.message);
    if (encoding === 'identity') {
      return done({ code: GrpcStatus.INTERNAL, message: 'compressed message without grpc-encoding' }, EMPTY);
    }
    const inflate = encoding === 'gzip' ? zlib.gunzip : zlib.inflate;
    inflate(parsed.message, { maxOutputLength: MAX_MESSAGE_BYTES }, (error, message) =>
      error === null
        ? done(null, message)
        : done({ code: GrpcStatus.INTERNAL, message: `could not decompress the message` }, EMPTY),
    );
  });
}
const EMPTY = Buffer.alloc(0);

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

function trailersOnly(stream: http2.ServerHttp2Stream, code: number, message: string): void {
  if (stream.headersSent || stream.closed || stream.destroyed) return;
  stream.respond(
    {
      ':status': 200,
      'content-type': 'application/grpc+proto',
      'grpc-status': String(code),
      'grpc-message': encodeURIComponent(message),
    },
    { endStream: true },
  );
  // Whatever the client still sends is read and dropped, so its stream closes cleanly.
  stream.resume();
}

function httpRefusal(stream: http2.ServerHttp2Stream, status: number): void {
  if (stream.headersSent || stream.closed || stream.destroyed) return;
  stream.respond({ ':status': status }, { endStream: true });
  stream.resume();
}

const TIMEOUT_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

/** grpc-timeout: up to 8 digits and a unit. Anything else is ignored (no deadline), as grpc-js does. */
export function parseTimeout(value: string | string[] | undefined): number | null {
  if (typeof value !== 'string') return null;
  const match = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (match === null) return null;
  return Math.max(0, Math.ceil(Number(match[1]) * (TIMEOUT_UNITS[match[2] as string] as number)));
}
