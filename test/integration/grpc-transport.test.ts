/**
 * The sidecar's gRPC transport (node:http2, no grpc-js on the server side) against what gRPC clients and Envoy
 * rely on: grpc-js as the client for the happy paths and the status codes, raw HTTP/2 frames for what a grpc-js
 * client never sends (wrong method or content type, two messages, truncated frames, resets). Whatever the
 * request, the answer is a gRPC status (never an empty OK), and the server keeps serving.
 */
import http2 from 'node:http2';
import net from 'node:net';
import zlib from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { authorizationService, CHECK_METHOD_PATH } from '../../src/adapters/grpc/service-definition';
import { MAX_MESSAGE_BYTES } from '../../src/adapters/grpc/h2-grpc-server';
import {
  checkRequestBytes,
  grpcFrame,
  decodeCheckResponse,
  envoyRequest,
  type EnvoyRequestOptions,
} from '../support/check-client';
import { createKey, putUser, waitFor, type CreatedKey } from '../support/fixtures';
import { sleep } from '../support/faults';
import { startHarness, verdict, type Harness } from '../support/sidecar-harness';

const ALPHA = '/v1/vaults/alpha/secrets/x';
let h: Harness;
let key: CreatedKey;
let slowKey: CreatedKey;
/** Held compares: the slow key's bcrypt waits until released (deadline and drain tests). */
const held: Array<() => void> = [];

beforeAll(async () => {
  h = await startHarness({
    compare: async (token, hash) => {
      if (token === slowKey?.token) await new Promise<void>((resolve) => held.push(resolve));
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

  const refusals: Array<
    [string, () => Promise<RawAnswer>, { http?: number; grpc?: number; message?: RegExp }]
  > = [
    ['GET instead of POST', () => rawCall(Buffer.alloc(0), { ':method': 'GET' }), { http: 405 }],
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
    ['an empty body', () => rawCall(Buffer.alloc(0)), { grpc: 13, message: /no complete message/ }],
    ['a body shorter than a frame header', () => rawCall(Buffer.from([0, 0, 0])), { grpc: 13 }],
    [
      'a frame that promises more bytes than it carries',
      () => rawCall(grpcFrame(requestBytes()).subarray(0, 40)),
      { grpc: 13, message: /truncated/ },
    ],
    [
      'two messages in a unary call',
      () => rawCall([grpcFrame(requestBytes()), grpcFrame(requestBytes())]),
      { grpc: 13, message: /more than one/ },
    ],
    [
      'a compressed flag without grpc-encoding',
      () => rawCall(grpcFrame(zlib.gzipSync(requestBytes()), true)),
      { grpc: 13, message: /without grpc-encoding/ },
    ],
    [
      'an unsupported grpc-encoding',
      () => rawCall(grpcFrame(requestBytes(), true), { 'grpc-encoding': 'br' }),
      { grpc: 12, message: /unsupported grpc-encoding/ },
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
      { grpc: 8, message: /inflates past/ },
    ],
    [
      'an invalid message flag',
      () => rawCall(Buffer.concat([Buffer.from([7]), grpcFrame(requestBytes()).subarray(1)])),
      { grpc: 13, message: /flag/ },
    ],
    ['an unknown service', () => rawCall(grpcFrame(requestBytes()), {}, '/pkg.Other/Check'), { grpc: 12 }],
  ];

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
  const definition = protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String, defaults: true });
  const pkg = grpc.loadPackageDefinition(definition) as any;
  const client = () => new pkg.grpc.health.v1.Health(address(), grpc.credentials.createInsecure());

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
