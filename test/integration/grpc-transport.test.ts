/**
 * The sidecar's gRPC transport (@grpc/grpc-js) against what gRPC clients and Envoy rely on: grpc-js as the
 * client for the happy paths and the status codes, raw HTTP/2 frames for what a grpc-js client never sends (wrong
 * method or content type, two messages, truncated frames, resets, a request trickled in tiny DATA frames).
 * Whatever the request, the answer is a gRPC status (never an empty OK), and the server keeps serving.
 */
import http2 from 'node:http2';
import net from 'node:net';
import zlib from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { authorizationService, CHECK_METHOD_PATH } from '../../src/adapters/grpc/service-definition';
import { MAX_MESSAGE_BYTES } from '../../src/adapters/grpc/grpc-server';
import { formatToken } from '../../src/core/token';
import {
  checkRequestBytes,
  grpcFrame,
  decodeCheckResponse,
  envoyRequest,
  type EnvoyRequestOptions,
} from '../support/check-client';
import { createKey, putUser, randomBase62, waitFor, type CreatedKey } from '../support/fixtures';
import { sleep } from '../support/faults';
import { startHarness, verdict, type Harness } from '../support/sidecar-harness';

const ALPHA = '/v1/vaults/alpha/secrets/x';
let h: Harness;
let key: CreatedKey;
let slowKey: CreatedKey;
/** Held compares: the slow key's (or holdToken's) bcrypt waits until released (deadline and cancel tests). */
const held: Array<() => void> = [];
let holdToken: string | null = null;

beforeAll(async () => {
  h = await startHarness({
    compare: async (token, hash) => {
      if (token === slowKey?.token || token === holdToken)
        await new Promise<void>((resolve) => held.push(resolve));
      const bcrypt = await import('bcrypt');
      return bcrypt.compare(token, hash);
    },
  });
  await putUser(h.admin, { id: 'alice', developerVaults: ['alpha'] });
  key = await createKey(h.admin, { userId: 'alice', vaults: ['alpha'] });
  slowKey = await createKey(h.admin, { userId: 'alice', vaults: ['alpha'] });
});
afterAll(async () => {
  for (const release of held.splice(0)) release();
  await h.stop();
});

const address = () => `127.0.0.1:${h.sidecar.grpcPort}`;
const requestBytes = (options: EnvoyRequestOptions = {}) =>
  checkRequestBytes(envoyRequest({ authorization: `Bearer ${key.token}`, path: ALPHA, ...options }));

interface RawAnswer {
  status: number;
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  body: Buffer;
}

/** One HTTP/2 request with exactly the given pseudo-headers, headers and body bytes. */
function rawCall(
  body: Buffer | Buffer[],
  headers: http2.OutgoingHttpHeaders = {},
  path = CHECK_METHOD_PATH,
): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://${address()}`);
    session.on('error', reject);
    const stream = session.request(
      {
        ':method': 'POST',
        ':path': path,
        'content-type': 'application/grpc',
        te: 'trailers',
        ...headers,
      },
      { endStream: false },
    );
    let answer: RawAnswer = { status: 0, headers: {}, trailers: {}, body: Buffer.alloc(0) };
    const chunks: Buffer[] = [];
    stream.on('response', (h2headers) => {
      answer = { ...answer, status: Number(h2headers[':status']), headers: h2headers };
    });
    stream.on('trailers', (trailers) => {
      answer.trailers = trailers;
    });
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('error', reject);
    stream.on('close', () => {
      session.close();
      resolve({ ...answer, body: Buffer.concat(chunks) });
    });
    for (const part of Array.isArray(body) ? body : [body]) stream.write(part);
    stream.end();
  });
}

/** grpc-status and grpc-message, wherever the server put them (trailers, or trailers-only headers). */
function grpcStatus(answer: RawAnswer): { code: number; message: string } {
  const source = answer.trailers['grpc-status'] !== undefined ? answer.trailers : answer.headers;
  return {
    code: Number(source['grpc-status']),
    message: decodeURIComponent(String(source['grpc-message'] ?? '')),
  };
}

function unary(
  bytes: Buffer,
  options: { path?: string; deadlineMs?: number; channel?: grpc.ChannelOptions } = {},
): Promise<{ error: grpc.ServiceError | null; response?: Buffer }> {
  const Client = grpc.makeGenericClientConstructor(authorizationService, 'Authorization');
  const client = new Client(address(), grpc.credentials.createInsecure(), options.channel ?? {});
  return new Promise((resolve) => {
    client.makeUnaryRequest<Buffer, Buffer>(
      options.path ?? CHECK_METHOD_PATH,
      (b) => b,
      (b) => b,
      bytes,
      { deadline: Date.now() + (options.deadlineMs ?? 10_000) },
      (error, response) => {
        client.close();
        resolve({ error, ...(response === undefined ? {} : { response }) });
      },
    );
  });
}

const healthPackage = grpc.loadPackageDefinition(
  protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String, defaults: true }),
) as any;
/** A grpc-health-check client built from the package's own proto (independent of the sidecar's copy). */
const healthClient = () =>
  new healthPackage.grpc.health.v1.Health(address(), grpc.credentials.createInsecure());

describe('Check over grpc-js', () => {
  test('allows a valid request: grpc-status 0 and an OK CheckResponse', async () => {
    const { error, response } = await unary(requestBytes());
    expect(error).toBeNull();
    expect(verdict(decodeCheckResponse(response as Buffer)).allow).toBe(true);
  });

  test('a gzip-compressed request (grpc-encoding) is decided like the plain one', async () => {
    const { error, response } = await unary(requestBytes(), {
      channel: { 'grpc.default_compression_algorithm': 2 },
    });
    expect(error).toBeNull();
    expect(verdict(decodeCheckResponse(response as Buffer)).allow).toBe(true);
  });

  test('an undecodable CheckRequest fails the call with INTERNAL (Envoy: status_on_error) and is counted', async () => {
    const before = await malformedCount();
    const { error } = await unary(Buffer.from([0xff, 0xff, 0xff]));
    expect(error?.code).toBe(grpc.status.INTERNAL);
    expect(error?.details).toBe('malformed CheckRequest');
    expect(await malformedCount()).toBe(before + 1);
  });

  test('an unknown method of the Authorization service is UNIMPLEMENTED', async () => {
    const { error } = await unary(requestBytes(), { path: '/envoy.service.auth.v3.Authorization/Nope' });
    expect(error?.code).toBe(grpc.status.UNIMPLEMENTED);
  });

  test('a CheckRequest just under 4 MiB (a request body Envoy forwards) is decoded and decided', async () => {
    const request = envoyRequest({ authorization: `Bearer ${key.token}`, path: ALPHA }) as any;
    request.attributes.request.http.body = 'b'.repeat(MAX_MESSAGE_BYTES - 4096);
    const bytes = checkRequestBytes(request);
    expect(bytes.length).toBeGreaterThan(MAX_MESSAGE_BYTES - 4096);
    expect(bytes.length).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    const { error, response } = await unary(bytes);
    expect(error).toBeNull();
    expect(verdict(decodeCheckResponse(response as Buffer)).allow).toBe(true);
  });

  test(`a message over ${MAX_MESSAGE_BYTES} bytes is RESOURCE_EXHAUSTED, and the server serves the next call`, async () => {
    const { error } = await unary(Buffer.alloc(MAX_MESSAGE_BYTES + 1, 0x0a));
    expect(error?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect((await unary(requestBytes())).error).toBeNull();
  });

  test('a deadline that passes while bcrypt runs is DEADLINE_EXCEEDED; the late decision goes nowhere', async () => {
    const slow = checkRequestBytes(envoyRequest({ authorization: `Bearer ${slowKey.token}`, path: ALPHA }));
    const started = Date.now();
    const { error } = await unary(slow, { deadlineMs: 200 });
    expect(error?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(Date.now() - started).toBeLessThan(2000);
    await waitFor(() => held.length > 0, 2000);
    for (const release of held.splice(0)) release();
    await sleep(100);
    const { error: next, response } = await unary(slow);
    expect(next).toBeNull();
    expect(verdict(decodeCheckResponse(response as Buffer)).allow).toBe(true);
  });

  test('a call the client cancels while bcrypt runs is CANCELLED; the connection serves the next call', async () => {
    const other = await createKey(h.admin, { userId: 'alice', vaults: ['alpha'] });
    holdToken = other.token;
    const Client = grpc.makeGenericClientConstructor(authorizationService, 'Authorization');
    const client = new Client(address(), grpc.credentials.createInsecure());
    try {
      const bytes = checkRequestBytes(envoyRequest({ authorization: `Bearer ${other.token}`, path: ALPHA }));
      const logged = h.logs.length;
      const cancelled = new Promise<grpc.ServiceError | null>((resolve) => {
        const call = client.makeUnaryRequest<Buffer, Buffer>(
          CHECK_METHOD_PATH,
          (b) => b,
          (b) => b,
          bytes,
          (error) => resolve(error),
        );
        void waitFor(() => held.length > 0, 2000).then(() => call.cancel());
      });
      expect((await cancelled)?.code).toBe(grpc.status.CANCELLED);
      for (const release of held.splice(0)) release();
      // The decision is still made (and logged) after the cancel; its answer goes nowhere and breaks nothing.
      await waitFor(() => h.logs.slice(logged).some((line) => line.keyId === other.keyId), 2000);
      const again = await new Promise<Buffer>((resolve, reject) =>
        client.makeUnaryRequest<Buffer, Buffer>(
          CHECK_METHOD_PATH,
          (b) => b,
          (b) => b,
          bytes,
          (error, response) => (error ? reject(error) : resolve(response as Buffer)),
        ),
      );
      expect(verdict(decodeCheckResponse(again)).allow).toBe(true);
    } finally {
      holdToken = null;
      client.close();
    }
  });

  test('grpc.health.v1 keeps answering SERVING on the Check port while a bcrypt flood is refused', async () => {
    const target = await createKey(h.admin, { userId: 'alice', vaults: ['alpha'], cost: 10 });
    // Encoded first, and sent on the harness' one connection: the test process is the sidecar's too.
    const wrong = Array.from({ length: 300 }, () =>
      checkRequestBytes(
        envoyRequest({ authorization: `Bearer ${formatToken(target.keyId, randomBase62(43))}`, path: ALPHA }),
      ),
    );
    const health = healthClient();
    const probe = () =>
      new Promise<string>((resolve) =>
        health.Check({ service: '' }, { deadline: Date.now() + 1000 }, (error: unknown, reply: any) =>
          resolve(error ? `error: ${(error as Error).message}` : reply.status),
        ),
      );
    expect(await probe()).toBe('SERVING');
    // 300 wrong secrets in 10 bursts over ~300 ms, a health probe after each burst.
    const flood: Array<Promise<number | string | null>> = [];
    const probes: string[] = [];
    for (let burst = 0; burst < 10; burst++) {
      for (const bytes of wrong.slice(burst * 30, burst * 30 + 30)) {
        flood.push(
          h.client.raw(bytes).then(
            (response) => verdict(decodeCheckResponse(response)).http,
            (error: grpc.ServiceError) => `error ${error.code}`,
          ),
        );
      }
      probes.push(await probe());
      await sleep(30);
    }
    health.close();
    const valid = await unary(requestBytes(), { deadlineMs: 1000 });
    const reasons = await Promise.all(flood);
    expect(probes).toEqual(Array(10).fill('SERVING'));
    expect(valid.error).toBeNull();
    expect(verdict(decodeCheckResponse(valid.response as Buffer)).allow).toBe(true);
    // Every flood request is refused (401 wrong secret, or 503 while bcrypt is saturated), none allowed.
    expect(reasons.filter((r) => r !== 401 && r !== 503)).toEqual([]);
    expect(reasons).toContain(503);
  });
});

async function malformedCount(): Promise<number> {
  const metric = await h.sidecar.metrics.registry
    .getSingleMetric('fortary_authz_malformed_requests_total')
    ?.get();
  return metric?.values[0]?.value ?? 0;
}

describe('requests a grpc-js client never sends', () => {
  test('a well-formed raw request gets headers, one uncompressed message and grpc-status 0', async () => {
    const answer = await rawCall(grpcFrame(requestBytes()));
    expect(answer.status).toBe(200);
    expect(answer.headers['content-type']).toBe('application/grpc+proto');
    expect(grpcStatus(answer).code).toBe(0);
    expect(answer.body[0]).toBe(0);
    expect(answer.body.readUInt32BE(1)).toBe(answer.body.length - 5);
    expect(verdict(decodeCheckResponse(answer.body.subarray(5))).allow).toBe(true);
  });

  test('the message split over many DATA frames is reassembled', async () => {
    const bytes = grpcFrame(requestBytes());
    const parts = Array.from({ length: Math.ceil(bytes.length / 7) }, (_, i) =>
      bytes.subarray(i * 7, i * 7 + 7),
    );
    const answer = await rawCall(parts);
    expect(grpcStatus(answer).code).toBe(0);
    expect(verdict(decodeCheckResponse(answer.body.subarray(5))).allow).toBe(true);
  });

  // grpc-js' own statuses; no message it never completed reaches the decoder, and none is answered OK.
  const refusals: Array<
    [string, () => Promise<RawAnswer>, { http?: number; grpc?: number; message?: RegExp }]
  > = [
    [
      'a content-type that is not gRPC',
      () => rawCall(grpcFrame(requestBytes()), { 'content-type': 'application/json' }),
      { http: 415 },
    ],
    [
      'no content-type',
      () => rawCall(grpcFrame(requestBytes()), { 'content-type': undefined }),
      { http: 415 },
    ],
    [
      'GET without a body',
      () => rawCall(Buffer.alloc(0), { ':method': 'GET' }),
      { grpc: 12, message: /no request message/ },
    ],
    ['an empty body', () => rawCall(Buffer.alloc(0)), { grpc: 12, message: /no request message/ }],
    [
      'a body shorter than a frame header',
      () => rawCall(Buffer.from([0, 0, 0])),
      { grpc: 12, message: /no request message/ },
    ],
    [
      'a frame that promises more bytes than it carries',
      () => rawCall(grpcFrame(requestBytes()).subarray(0, 40)),
      { grpc: 12, message: /no request message/ },
    ],
    [
      'two messages in a unary call',
      () => rawCall([grpcFrame(requestBytes()), grpcFrame(requestBytes())]),
      { grpc: 12, message: /second request message/ },
    ],
    [
      'a compressed flag without grpc-encoding (the gzip bytes reach the decoder as they are)',
      () => rawCall(grpcFrame(zlib.gzipSync(requestBytes()), true)),
      { grpc: 13, message: /^malformed CheckRequest$/ },
    ],
    [
      'an unsupported grpc-encoding',
      () => rawCall(grpcFrame(requestBytes(), true), { 'grpc-encoding': 'br' }),
      { grpc: 12, message: /unsupported encoding/ },
    ],
    [
      'gzip that is not gzip',
      () => rawCall(grpcFrame(Buffer.from('not gzip at all'), true), { 'grpc-encoding': 'gzip' }),
      { grpc: 13, message: /decompress/ },
    ],
    [
      `a gzip bomb (inflates past ${MAX_MESSAGE_BYTES} bytes)`,
      () =>
        rawCall(grpcFrame(zlib.gzipSync(Buffer.alloc(8 * MAX_MESSAGE_BYTES)), true), {
          'grpc-encoding': 'gzip',
        }),
      { grpc: 8, message: /decompresses to a size larger than 4194304/ },
    ],
    ['an unknown service', () => rawCall(grpcFrame(requestBytes()), {}, '/pkg.Other/Check'), { grpc: 12 }],
  ];

  test('a message flag other than 0 or 1 is read as uncompressed (grpc-js): decided on its bytes', async () => {
    const answer = await rawCall(Buffer.concat([Buffer.from([7]), grpcFrame(requestBytes()).subarray(1)]));
    expect(grpcStatus(answer).code).toBe(0);
    expect(verdict(decodeCheckResponse(answer.body.subarray(5))).allow).toBe(true);
  });

  test.each(refusals)('%s: refused with a clear status, never an OK', async (_name, send, expected) => {
    const answer = await send();
    if (expected.http !== undefined) {
      expect(answer.status).toBe(expected.http);
      expect(answer.body.length).toBe(0);
    } else {
      expect(answer.status).toBe(200);
      // grpc-go (kubelet's probe) reads a status only from a response with a gRPC content-type.
      expect(answer.headers['content-type']).toBe('application/grpc+proto');
      const status = grpcStatus(answer);
      expect(status.code).toBe(expected.grpc);
      if (expected.message) expect(status.message).toMatch(expected.message);
      expect(answer.body.length).toBe(0);
    }
    expect((await unary(requestBytes())).error).toBeNull();
  });

  test('a request trickled as a 1-byte DATA frame, then 10-byte frames, stalls no Check on another connection', async () => {
    // Regression: the hand-written server re-read the buffered bytes on every frame while fewer than 5 had come,
    // and froze the process for seconds on one request sent this way.
    const session = http2.connect(`http://${address()}`);
    session.on('error', () => undefined);
    const stream = session.request(
      { ':method': 'POST', ':path': CHECK_METHOD_PATH, 'content-type': 'application/grpc', te: 'trailers' },
      { endStream: false },
    );
    stream.on('error', () => undefined);
    const write = (chunk: Buffer) => new Promise<void>((resolve) => stream.write(chunk, () => resolve()));
    const declared = Buffer.alloc(5);
    declared.writeUInt32BE(1024 * 1024, 1);
    let frames = 0;
    let trickling = true;
    const trickle = (async () => {
      // One write per DATA frame: each waits for the previous one to be handed to the socket.
      await write(declared.subarray(0, 1));
      await write(Buffer.concat([declared.subarray(1), Buffer.alloc(6, 0x0a)]));
      frames = 2;
      while (trickling && !stream.closed) {
        await write(Buffer.alloc(10, 0x0a));
        if (++frames % 20 === 0) await sleep(1);
      }
    })();
    try {
      await waitFor(() => frames > 200, 5000);
      const times: number[] = [];
      for (let i = 0; i < 5; i++) {
        const started = performance.now();
        expect(
          verdict(await h.client(envoyRequest({ authorization: `Bearer ${key.token}`, path: ALPHA }))).allow,
        ).toBe(true);
        times.push(performance.now() - started);
      }
      // Still being sent while the Checks were answered.
      expect(stream.closed).toBe(false);
      expect(Math.max(...times)).toBeLessThan(1000);
    } finally {
      trickling = false;
      stream.close(http2.constants.NGHTTP2_CANCEL);
      await trickle;
      session.destroy();
    }
  });

  test('a client that resets its stream mid-request, or sends bytes that are not HTTP/2, changes nothing', async () => {
    await new Promise<void>((resolve) => {
      const session = http2.connect(`http://${address()}`);
      session.on('error', () => undefined);
      const stream = session.request({
        ':method': 'POST',
        ':path': CHECK_METHOD_PATH,
        'content-type': 'application/grpc',
      });
      stream.on('error', () => undefined);
      stream.write(grpcFrame(requestBytes()).subarray(0, 20));
      setTimeout(() => {
        stream.close(http2.constants.NGHTTP2_CANCEL);
        session.close(() => resolve());
      }, 50);
    });
    await new Promise<void>((resolve) => {
      const socket = net.connect(h.sidecar.grpcPort, '127.0.0.1', () =>
        socket.end('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
      );
      socket.on('error', () => resolve());
      socket.on('close', () => resolve());
      socket.resume();
    });
    expect((await unary(requestBytes())).error).toBeNull();
    expect(h.sidecar.health.serving).toBe(true);
  });
});

describe('grpc.health.v1 on the Check port', () => {
  const client = healthClient;

  test.each([
    ['', 'SERVING'],
    ['envoy.service.auth.v3.Authorization', 'SERVING'],
    ['liveness', 'SERVING'],
  ])('Check(%j) is %s', async (service, status) => {
    const c = client();
    const answer = await new Promise<any>((resolve, reject) =>
      c.Check({ service }, (error: unknown, response: unknown) =>
        error ? reject(error) : resolve(response),
      ),
    );
    c.close();
    expect(answer.status).toBe(status);
  });

  test('Check of an unknown service is NOT_FOUND', async () => {
    const c = client();
    const error = await new Promise<grpc.ServiceError>((resolve) => c.Check({ service: 'nope' }, resolve));
    c.close();
    expect(error.code).toBe(grpc.status.NOT_FOUND);
  });

  test('Watch sends the status, then every change; an unknown service is SERVICE_UNKNOWN', async () => {
    const c = client();
    const seen: string[] = [];
    const watch = c.Watch({ service: '' });
    watch.on('data', (message: { status: string }) => seen.push(message.status));
    watch.on('error', () => undefined);
    const unknown: string[] = [];
    const other = c.Watch({ service: 'nope' });
    other.on('data', (message: { status: string }) => unknown.push(message.status));
    other.on('error', () => undefined);
    await waitFor(() => seen.length === 1 && unknown.length === 1, 2000);
    h.sidecar.health.setReady(false);
    await waitFor(() => seen.length === 2, 2000);
    h.sidecar.health.setReady(true);
    await waitFor(() => seen.length === 3, 2000);
    expect(seen).toEqual(['SERVING', 'NOT_SERVING', 'SERVING']);
    expect(unknown).toEqual(['SERVICE_UNKNOWN']);
    watch.cancel();
    other.cancel();
    c.close();
  });
});
