/**
 * The gRPC listener on its own (no Redis, no decision): Envoy's keepalive pings, deadlines, health Watch and the
 * drain, whose failure would hang, leak or cut connections rather than answer. Handlers are test doubles; the
 * sockets, the HTTP/2 frames and grpc-js are real.
 */
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { parse } from 'yaml';
import { GrpcListener, HEALTH_SERVER_OPTIONS, SERVER_OPTIONS } from '../../src/adapters/grpc/grpc-server';
import { Health, healthImplementation } from '../../src/adapters/grpc/health-service';
import { sidecarServices } from '../../src/adapters/grpc/service-definition';
import { grpcFrame as frame } from '../support/check-client';
import { waitFor } from '../support/fixtures';
import { sleep } from '../support/faults';

const identity = (bytes: Buffer): Buffer => bytes;
const method = (name: string) => ({
  path: `/test.Echo/${name}`,
  requestStream: false,
  responseStream: false,
  requestSerialize: identity,
  requestDeserialize: identity,
  responseSerialize: identity,
  responseDeserialize: identity,
});
/** Echo answers at once, Slow after 300 ms, Hang never. */
const echoService = { Echo: method('Echo'), Slow: method('Slow'), Hang: method('Hang') };
const EchoClient = grpc.makeGenericClientConstructor(echoService, 'Echo');

const listeners: GrpcListener[] = [];
const cleanup: Array<() => void> = [];
afterEach(async () => {
  for (const done of cleanup.splice(0)) done();
  for (const listener of listeners.splice(0)) await listener.close(100);
});

const echoImplementation = {
  Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, reply: grpc.sendUnaryData<Buffer>) =>
    reply(null, call.request),
  Slow: (call: grpc.ServerUnaryCall<Buffer, Buffer>, reply: grpc.sendUnaryData<Buffer>) =>
    void setTimeout(() => reply(null, call.request), 300),
  Hang: () => undefined,
};

async function serve() {
  const health = new Health();
  health.setReady(true);
  const listener = new GrpcListener({ host: '127.0.0.1', port: 0 }, [
    [echoService, echoImplementation],
    [sidecarServices().health, healthImplementation(health)],
  ]);
  const port = await listener.start();
  listeners.push(listener);
  const client = new EchoClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as any;
  cleanup.push(() => client.close());
  return { listener, port, health, client };
}

function ask(client: any, name: string, body: string, deadlineMs = 5000) {
  const started = Date.now();
  return new Promise<{ error: grpc.ServiceError | null; body?: string; ms: number }>((resolve) =>
    client[name](Buffer.from(body), { deadline: Date.now() + deadlineMs }, (error: any, response?: Buffer) =>
      resolve({ error, body: response?.toString(), ms: Date.now() - started }),
    ),
  );
}

function connect(port: number): http2.ClientHttp2Session {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => undefined);
  cleanup.push(() => session.destroy());
  return session;
}

interface Answer {
  code: number;
  message: string;
  messages: number;
}

/** A raw gRPC call; resolves with grpc-status wherever it came (trailers or trailers-only headers). */
function rawCall(session: http2.ClientHttp2Session, path: string, body: Buffer, end = true) {
  const stream = session.request(
    { ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' },
    { endStream: false },
  );
  stream.on('error', () => undefined);
  const answer = new Promise<Answer>((resolve) => {
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    let messages = 0;
    stream.on('response', (h) => (headers = h));
    stream.on('trailers', (t) => (trailers = t));
    stream.on('data', () => messages++);
    stream.on('close', () => {
      const source = trailers['grpc-status'] !== undefined ? trailers : headers;
      resolve({
        code: Number(source['grpc-status']),
        message: decodeURIComponent(String(source['grpc-message'] ?? '')),
        messages,
      });
    });
  });
  stream.write(body);
  if (end) stream.end();
  return { stream, answer };
}

const WATCH = '/grpc.health.v1.Health/Watch';

describe("Envoy's HTTP/2 keepalive", () => {
  const envoy = parse(readFileSync(path.resolve(__dirname, '../../envoy/envoy.yaml'), 'utf8'));
  const cluster = envoy.static_resources.clusters.find((c: any) => c.name === 'fortary_authz');
  const keepalive =
    cluster.typed_extension_protocol_options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions']
      .explicit_http_config.http2_protocol_options.connection_keepalive;

  test('the server permits pings with or without calls, more often than envoy.yaml sends them', () => {
    const intervalMs = Number(/^(\d+)s$/.exec(keepalive.interval)?.[1]) * 1000;
    expect(intervalMs).toBeGreaterThan(0);
    // Envoy jitters its interval by up to 15 % (interval_jitter's default).
    expect(SERVER_OPTIONS['grpc.http2.min_ping_interval_without_data_ms']).toBeLessThan(intervalMs * 0.85);
    expect(SERVER_OPTIONS['grpc.keepalive_permit_without_calls']).toBe(1);
  });

  test('a client pinging far more often than Envoy, idle and with a call open, gets every ack and no GOAWAY', async () => {
    const { port } = await serve();
    const session = connect(port);
    let goaway = false;
    session.on('goaway', () => (goaway = true));
    await new Promise<void>((resolve) => session.once('connect', () => resolve()));
    const ping = () => new Promise<boolean>((resolve) => session.ping((error) => resolve(error === null)));
    const acks: boolean[] = [];
    for (let i = 0; i < 20; i++) {
      acks.push(await ping());
      await sleep(25);
    }
    const open = rawCall(session, '/test.Echo/Hang', frame(Buffer.from('x')));
    for (let i = 0; i < 20; i++) {
      acks.push(await ping());
      await sleep(25);
    }
    open.stream.close(http2.constants.NGHTTP2_CANCEL);
    const echoed = await rawCall(session, '/test.Echo/Echo', frame(Buffer.from('still here'))).answer;
    expect(acks.every(Boolean)).toBe(true);
    expect(acks).toHaveLength(40);
    expect(goaway).toBe(false);
    expect(echoed).toEqual({ code: 0, message: 'OK', messages: 1 });
  });
});

describe('deadlines', () => {
  test('a handler that never answers is DEADLINE_EXCEEDED at the deadline', async () => {
    const { client } = await serve();
    const result = await ask(client, 'Hang', 'x', 150);
    expect(result.error?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(result.ms).toBeGreaterThanOrEqual(140);
    expect(result.ms).toBeLessThan(1000);
  });

  test("a body that never ends is answered at its grpc-timeout (trailers-only; the stream is then the client's to end)", async () => {
    const { port } = await serve();
    const session = connect(port);
    const stream = session.request(
      {
        ':method': 'POST',
        ':path': '/test.Echo/Echo',
        'content-type': 'application/grpc',
        te: 'trailers',
        'grpc-timeout': '200m',
      },
      { endStream: false },
    );
    stream.on('error', () => undefined);
    const started = Date.now();
    stream.write(Buffer.from([0, 0, 0]));
    const status = await new Promise<string | undefined>((resolve) => {
      stream.on('response', (h) => resolve(h['grpc-status'] as string | undefined));
      stream.on('close', () => resolve(undefined));
    });
    expect(Number(status)).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(Date.now() - started).toBeLessThan(1000);
  });
});

describe('health Watch', () => {
  test('cancelling a Watch removes its watcher', async () => {
    const { port, health } = await serve();
    const watch = rawCall(connect(port), WATCH, frame(Buffer.alloc(0)));
    await waitFor(() => health.watching === 1, 2000);
    watch.stream.close(http2.constants.NGHTTP2_CANCEL);
    await watch.answer;
    await waitFor(() => health.watching === 0, 2000);
  });

  test('a malformed Watch request fails with INTERNAL instead of watching something', async () => {
    const { port, health } = await serve();
    // A length whose varint never ends (protobufjs reads a string cut short as what is there).
    const result = await rawCall(connect(port), WATCH, frame(Buffer.from([0x0a, 0xff]))).answer;
    expect(result.code).toBe(grpc.status.INTERNAL);
    expect(result.messages).toBe(0);
    expect(health.watching).toBe(0);
  });
});

describe('close (drain)', () => {
  test('in-flight calls finish, open Watches end with UNAVAILABLE, a Watch started meanwhile is refused', async () => {
    const { listener, port, health, client } = await serve();
    const session = connect(port);
    const watch = rawCall(session, WATCH, frame(Buffer.alloc(0)));
    await waitFor(() => health.watching === 1, 2000);
    const slow = ask(client, 'Slow', 'finishing');
    await sleep(50);
    // What the sidecar's close does: health first, then the listener.
    health.setDraining();
    const closing = listener.close(5000);
    const lateWatch = rawCall(session, WATCH, frame(Buffer.alloc(0)));
    const [w, s, late] = [await watch.answer, await slow, await lateWatch.answer];
    // SERVING, then NOT_SERVING, then the end of the call.
    expect(w).toEqual({ code: grpc.status.UNAVAILABLE, message: 'server closing', messages: 2 });
    expect(s.error).toBeNull();
    expect(s.body).toBe('finishing');
    // Refused as closing, or (sent after the GOAWAY) never started: no status, nothing watched.
    expect(late.code === grpc.status.UNAVAILABLE || Number.isNaN(late.code)).toBe(true);
    expect(late.messages).toBe(0);
    const started = Date.now();
    await closing;
    expect(Date.now() - started).toBeLessThan(2000);
    expect(health.watching).toBe(0);
    listeners.splice(listeners.indexOf(listener), 1);
  });

  test('a call that never finishes is cut when the drain time is up', async () => {
    const { listener, client } = await serve();
    const hung = ask(client, 'Hang', 'x');
    await sleep(50);
    const started = Date.now();
    await listener.close(300);
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(290);
    expect(took).toBeLessThan(1500);
    // Cut by the server (the connection is destroyed), not ended by its own 5 s deadline.
    const result = await hung;
    expect([grpc.status.CANCELLED, grpc.status.UNAVAILABLE]).toContain(result.error?.code);
    expect(result.ms).toBeLessThan(2000);
    listeners.splice(listeners.indexOf(listener), 1);
  });
});

describe('listen', () => {
  test('an address in use fails start with EADDRINUSE; the listener on it keeps serving', async () => {
    const { port, client } = await serve();
    const second = new GrpcListener({ host: '127.0.0.1', port }, [[echoService, { Echo: () => undefined }]]);
    await expect(second.start()).rejects.toMatchObject({ code: 'EADDRINUSE' });
    await second.close(100);
    const answer = await ask(client, 'Echo', 'still here');
    expect(answer.error).toBeNull();
    expect(answer.body).toBe('still here');
  });

  test('an error of the listening socket (a failed accept) is reported and the listener keeps serving', async () => {
    const heard: string[] = [];
    const listener = new GrpcListener(
      { host: '127.0.0.1', port: 0 },
      [[echoService, echoImplementation]],
      (e) => heard.push(e.message),
    );
    const port = await listener.start();
    listeners.push(listener);
    // What net.Server emits when accept() fails (EMFILE and the like); unheard, it would end the process.
    (listener as unknown as { tcp: net.Server }).tcp.emit('error', new Error('accept EMFILE'));
    expect(heard).toEqual(['accept EMFILE']);
    const client = new EchoClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as any;
    cleanup.push(() => client.close());
    expect((await ask(client, 'Echo', 'after')).body).toBe('after');
  });

  test('after close the port refuses new connections', async () => {
    const { listener, port } = await serve();
    await listener.close(100);
    listeners.splice(listeners.indexOf(listener), 1);
    const refused = await new Promise<string>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve('connected');
      });
      socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
    });
    expect(refused).toBe('ECONNREFUSED');
  });
});

describe('idle connections', () => {
  /** A listener with the given settings and an HTTP/2 connection to it that has made one call and then idles. */
  async function idleConnection(options: grpc.ServerOptions) {
    const listener = new GrpcListener(
      { host: '127.0.0.1', port: 0 },
      [[echoService, echoImplementation]],
      undefined,
      options,
    );
    const port = await listener.start();
    listeners.push(listener);
    const session = connect(port);
    let goaway = false;
    let closed = false;
    session.on('goaway', () => (goaway = true));
    session.on('close', () => (closed = true));
    expect((await rawCall(session, '/test.Echo/Echo', frame(Buffer.from('x'))).answer).code).toBe(0);
    return { state: () => ({ goaway, closed }) };
  }

  test('the health listener closes an idle connection with a GOAWAY', async () => {
    expect(HEALTH_SERVER_OPTIONS['grpc.max_connection_idle_ms']).toBe(5 * 60_000);
    // The health listener's settings, with the idle limit shortened so the test does not wait 5 min.
    const { state } = await idleConnection({ ...HEALTH_SERVER_OPTIONS, 'grpc.max_connection_idle_ms': 300 });
    await waitFor(() => state().goaway && state().closed, 5000);
    expect(state()).toEqual({ goaway: true, closed: true });
  });

  test("the Check listener keeps Envoy's idle connection open (no idle limit)", async () => {
    expect(SERVER_OPTIONS['grpc.max_connection_idle_ms']).toBeUndefined();
    const { state } = await idleConnection(SERVER_OPTIONS);
    await sleep(1000);
    expect(state()).toEqual({ goaway: false, closed: false });
  });
});
