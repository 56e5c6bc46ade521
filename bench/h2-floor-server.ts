/**
 * The bench's transport floor, for information: a no-op ext_authz server on node:http2 directly (no gRPC library),
 * answering the pre-encoded `{status: {code: 0}}` to every Check. It does the least a gRPC server can do: read
 * the request's DATA frames, send headers, one length-prefixed message and a grpc-status trailer. No size limits,
 * deadlines, compression or error handling: it is a measuring stick, not a server to run.
 *
 *   node dist/bench/h2-floor-server.js [host:port]      prints {"port": N} on stdout once listening
 */
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';

/** CheckResponse { status: { code: 0 } } (field 1, an empty google.rpc.Status), framed: flag, length, bytes. */
const ANSWER = Buffer.from([0, 0, 0, 0, 2, 0x0a, 0x00]);
const HEADERS = { ':status': 200, 'content-type': 'application/grpc+proto' };
const TRAILERS = { 'grpc-status': '0' };

function main(): void {
  const [host, port] = (process.argv[2] ?? '127.0.0.1:0').split(':') as [string, string];
  const server = http2.createServer({ settings: { maxConcurrentStreams: 1000 } });
  server.on('stream', (stream) => {
    stream.on('error', () => undefined);
    stream.on('data', () => undefined);
    stream.on('end', () => {
      stream.respond(HEADERS, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers(TRAILERS));
      stream.end(ANSWER);
    });
  });
  server.on('sessionError', () => undefined);
  server.listen(Number(port), host, () => {
    process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main();
