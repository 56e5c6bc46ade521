/**
 * The node:http2 gRPC server on its own (no Redis, no decision): the parts of gRPC over HTTP/2 whose failure
 * would hang, leak or crash rather than answer. Handlers here are test doubles; the sockets and frames are real.
 */
import http2 from 'node:http2';
import zlib from 'node:zlib';
import {
  GrpcH2Server,
  GrpcStatus,
  MAX_MESSAGE_BYTES,
  parseTimeout,
  type GrpcH2ServerOptions,
  type UnaryCall,
} from '../../src/adapters/grpc/h2-grpc-server';
import { addHealthService, Health } from '../../src/adapters/grpc/health-service';
import { grpcFrame as frame } from '../support/check-client';
import { waitFor } from '../support/fixtures';
import { sleep } from '../support/faults';

const ECHO = '/test.Echo/Echo';
const HANG = '/test.Echo/Hang';
const SLOW = '/test.Echo/Slow';
const WATCH = '/grpc.health.v1.Health/Watch';
const HEALTH_CHECK = '/grpc.health.v1.Health/Check';

const servers: GrpcH2Server[] = [];
const sessions: http2.ClientHttp2Session[] = [];
afterEach(async () => {
  for (const session of sessions.splice(0)) session.destroy();
  for (const server of servers.splice(0)) await server.close(100);
});

async function serve(options: GrpcH2ServerOptions = {}) {
  const server = new GrpcH2Server({ host: '127.0.0.1', port: 0 }, options);
  const health = new Health();
  health.setReady(true);
  const hung: UnaryCall[] = [];
  server.addUnary(ECHO, (request, call) => call.reply(request));
  server.addUnary(HANG, (_request, call) => void hung.push(call));
  server.addUnary(SLOW, (request, call) => void setTimeout(() => call.reply(request), 300));
  addHealthService(server, health);
  const port = await server.start();
  servers.push(server);
  return { server, port, health, hung };
}

function connect(port: number): http2.ClientHttp2Session {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => undefined);
  sessions.push(session);
  return session;
}

interface Answer {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  body: Buffer;
  rstCode: number;
  /** grpc-status wherever it came (trailers, or trailers-only headers); NaN when none. */
  code: number;
  message: string;
  ms: number;
}

/** Opens a call; `body` is written, and the request is ended unless `end` is false. */
function call(
  session: http2.ClientHttp2Session,
  path: string,
  body: Buffer,
  headers: http2.OutgoingHttpHeaders = {},
  end = true,
): { stream: http2.ClientHttp2Stream; answer: Promise<Answer> } {
  const started = Date.now();
  const stream = session.request(
    { ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...headers },
    { endStream: false },
  );
  stream.on('error', () => undefined);
  const answer = new Promise<Answer>((resolve) => {
    let responseHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => (responseHeaders = h));
    stream.on('trailers', (t) => (trailers = t));
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('close', () => {
      const source = trailers['grpc-status'] !== undefined ? trailers : responseHeaders;
      resolve({
        headers: responseHeaders,
        trailers,
        body: Buffer.concat(chunks),
        rstCode: stream.rstCode ?? -1,
        code: Number(source['grpc-status']),
        message: decodeURIComponent(String(source['grpc-message'] ?? '')),
        ms: Date.now() - started,
      });
    });
  });
  if (body.length > 0) stream.write(body);
  if (end) stream.end();
  return { stream, answer };
}

describe('parseTimeout (grpc-timeout)', () => {
  test.each([
    ['1H', 3_600_000],
    ['2M', 120_000],
    ['3S', 3000],
    ['250m', 250],
    ['1500u', 2],
    ['1n', 1],
    ['0m', 0],
    ['99999999m', 99_999_999],
    ['2000000S', 2_000_000_000],
  ])('%s is %d ms', (value, ms) => {
    expect(parseTimeout(value)).toBe(ms);
  });

  test.each([['3000000S'], ['99999999S'], ['99999999H']])(
    '%s is beyond what a timer can hold (~24.8 days): no deadline rather than one that fires at once',
    (value) => {
      expect(parseTimeout(value)).toBeNull();
    },
  );

  test.each([[undefined], [''], ['5'], ['m'], ['123456789m'], ['-1S'], ['1.5S'], ['1s'], [['1S', '2S']]])(
    '%j is not a timeout: no deadline',
    (value) => {
      expect(parseTimeout(value)).toBeNull();
    },
  );
});

describe('deadlines and stalled requests', () => {
  test("the server's own deadline: a handler that never answers is DEADLINE_EXCEEDED at grpc-timeout", async () => {
    const { port, hung } = await serve();
    const { answer } = call(connect(port), HANG, frame(Buffer.from('x')), { 'grpc-timeout': '150m' });
    const result = await answer;
    expect({ code: result.code, message: result.message }).toEqual({ code: 4, message: 'deadline exceeded' });
    expect(result.ms).toBeGreaterThanOrEqual(140);
    expect(result.ms).toBeLessThan(1000);
    // The late answer goes nowhere and throws nothing.
    hung[0]?.reply(Buffer.from('late'));
  });

  test('a body that never ends is answered at its grpc-timeout, and its buffers are dropped', async () => {
    const { port } = await serve();
    const { answer } = call(connect(port), ECHO, Buffer.from([0, 0, 0]), { 'grpc-timeout': '200m' }, false);
    const result = await answer;
    expect({ code: result.code, message: result.message }).toEqual({
      code: GrpcStatus.DEADLINE_EXCEEDED,
      message: 'request not received in time',
    });
    expect(result.ms).toBeLessThan(1000);
  });

  test('without grpc-timeout, the read limit still ends a body that never ends', async () => {
    const { port } = await serve({ readLimitMs: 300 });
    const { answer } = call(connect(port), ECHO, Buffer.from([0, 0, 0]), {}, false);
    const result = await answer;
    expect(result.code).toBe(GrpcStatus.DEADLINE_EXCEEDED);
    expect(result.ms).toBeGreaterThanOrEqual(290);
    expect(result.ms).toBeLessThan(1500);
  });

  test('a frame header declaring more than the limit is refused at once, before the bytes arrive', async () => {
    const { port } = await serve();
    const head = Buffer.alloc(5);
    head.writeUInt32BE(MAX_MESSAGE_BYTES + 1, 1);
    const { answer } = call(connect(port), ECHO, head, {}, false);
    const result = await answer;
    expect(result.code).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
    expect(result.ms).toBeLessThan(500);
    // The client was still sending: the stream is reset with NO_ERROR after the status (RFC 9113 §8.1).
    expect(result.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
  });

  test('one connection cannot buffer more than its share across unfinished requests', async () => {
    const { port } = await serve({ sessionBufferBytes: 64 * 1024, readLimitMs: 400 });
    const session = connect(port);
    const part = Buffer.alloc(40 * 1024);
    part.writeUInt32BE(100 * 1024, 1);
    const first = call(session, ECHO, part, {}, false);
    await sleep(50);
    const second = call(session, ECHO, part, {}, false);
    const result = await second.answer;
    expect({ code: result.code, message: result.message }).toEqual({
      code: GrpcStatus.RESOURCE_EXHAUSTED,
      message: 'too many request bytes in flight on this connection',
    });
    // Once the first request is gone (here: its read limit) its bytes are released, and the same connection
    // is served again. (Not closed from the client: node's own HTTP/2 client can spin forever in nghttp2 when
    // it resets a stream after the peer reset another one that still had data queued; see docs/hardening.md.)
    expect((await first.answer).code).toBe(GrpcStatus.DEADLINE_EXCEEDED);
    const ok = await call(session, ECHO, frame(Buffer.from('fine'))).answer;
    expect(ok.code).toBe(0);
  });

  test('a request the client resets mid-body gives its bytes back to the connection', async () => {
    const { port } = await serve({ sessionBufferBytes: 64 * 1024 });
    const session = connect(port);
    const part = Buffer.alloc(40 * 1024);
    part.writeUInt32BE(100 * 1024, 1);
    const first = call(session, ECHO, part, {}, false);
    await sleep(50);
    first.stream.close(http2.constants.NGHTTP2_CANCEL);
    await first.answer;
    await sleep(250);
    // 40 KiB + 50 KiB would exceed 64 KiB if the reset request's bytes were still counted.
    const big = await call(session, ECHO, frame(Buffer.alloc(50 * 1024, 7))).answer;
    expect(big.code).toBe(0);
    expect(big.body.length).toBe(5 + 50 * 1024);
  });

  test('an early refusal of a request still being sent resets it instead of reading and dropping it', async () => {
    const { port } = await serve();
    const { answer } = call(connect(port), '/no.Such/Method', Buffer.alloc(100), {}, false);
    const result = await answer;
    expect(result.code).toBe(GrpcStatus.UNIMPLEMENTED);
    expect(result.headers['grpc-accept-encoding']).toBe('identity,gzip,deflate');
    expect(result.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
  });
});

describe('compression', () => {
  test.each([
    ['gzip', zlib.gzipSync],
    ['deflate', zlib.deflateSync],
  ] as const)('%s requests are inflated', async (encoding, compress) => {
    const { port } = await serve();
    const payload = Buffer.from('hello, compressed world');
    const result = await call(connect(port), ECHO, frame(compress(payload), true), {
      'grpc-encoding': encoding,
    }).answer;
    expect(result.code).toBe(0);
    expect(result.body.subarray(5)).toEqual(payload);
  });

  test('compressed Watch calls reset by the client while inflating never crash the server or leak a watcher', async () => {
    const { port, health } = await serve();
    const session = connect(port);
    const body = frame(zlib.gzipSync(Buffer.alloc(0)), true);
    for (let round = 0; round < 20; round++) {
      const calls = Array.from({ length: 20 }, () => call(session, WATCH, body, { 'grpc-encoding': 'gzip' }));
      setImmediate(() => calls.forEach((c) => c.stream.close(http2.constants.NGHTTP2_CANCEL)));
      await Promise.all(calls.map((c) => c.answer));
    }
    await waitFor(() => health.watching === 0, 2000);
    const check = await call(connect(port), HEALTH_CHECK, frame(Buffer.alloc(0))).answer;
    expect(check.code).toBe(0);
    expect([...check.body.subarray(5)]).toEqual([0x08, 1]);
  });
});

describe('health Watch', () => {
  test('cancelling a Watch removes its watcher', async () => {
    const { port, health } = await serve();
    const watch = call(connect(port), WATCH, frame(Buffer.alloc(0)));
    await waitFor(() => health.watching === 1, 2000);
    watch.stream.close(http2.constants.NGHTTP2_CANCEL);
    await watch.answer;
    await waitFor(() => health.watching === 0, 2000);
  });

  test('a malformed Watch request fails with INTERNAL instead of watching something', async () => {
    const { port, health } = await serve();
    const result = await call(connect(port), WATCH, frame(Buffer.from([0x0a, 0x05, 0x61]))).answer;
    expect({ code: result.code, message: result.message }).toEqual({
      code: GrpcStatus.INTERNAL,
      message: 'malformed HealthCheckRequest',
    });
    expect(health.watching).toBe(0);
  });
});

describe('close (drain)', () => {
  test('in-flight calls finish, open Watches end with UNAVAILABLE, a Watch started meanwhile is refused', async () => {
    const { server, port, health } = await serve();
    const session = connect(port);
    const watch = call(session, WATCH, frame(Buffer.alloc(0)));
    await waitFor(() => health.watching === 1, 2000);
    const slow = call(session, SLOW, frame(Buffer.from('finishing')));
    await sleep(50);
    const closing = server.close(5000);
    const lateWatch = call(session, WATCH, frame(Buffer.alloc(0)));
    const [w, s, late] = [await watch.answer, await slow.answer, await lateWatch.answer];
    expect({ code: w.code, message: w.message }).toEqual({
      code: GrpcStatus.UNAVAILABLE,
      message: 'server closing',
    });
    expect(s.code).toBe(0);
    expect(s.body.subarray(5).toString()).toBe('finishing');
    // Either refused by the server as closing, or (sent after the GOAWAY) refused by HTTP/2 itself.
    expect(
      late.code === GrpcStatus.UNAVAILABLE || late.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM,
    ).toBe(true);
    const started = Date.now();
    await closing;
    expect(Date.now() - started).toBeLessThan(2000);
    expect(health.watching).toBe(0);
    servers.splice(servers.indexOf(server), 1);
  });

  test('a call that never finishes is cut when the drain time is up', async () => {
    const { server, port } = await serve();
    const hung = call(connect(port), HANG, frame(Buffer.from('x')));
    await sleep(50);
    const started = Date.now();
    await server.close(300);
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(290);
    expect(took).toBeLessThan(1500);
    const result = await hung.answer;
    expect(result.code).not.toBe(0);
    servers.splice(servers.indexOf(server), 1);
  });
});
