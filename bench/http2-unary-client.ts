/**
 * The paced client's default Check transport (bench/paced-client.ts): gRPC unary calls over one node:http2
 * connection, which cost the client a fraction of a grpc-js call, so less of the measured tail is the client's own.
 */
import http2 from 'node:http2';
import net from 'node:net';

type UnaryCallback = (error: { code: number; message: string } | null, response?: Buffer) => void;

/**
 * A minimal gRPC unary client over one HTTP/2 connection (what Envoy keeps to its ext_authz cluster): POST with
 * the length-prefixed message, the answer's message and grpc-status from the trailers. Deadlines are enforced by
 * one sweep timer rather than a timer per call.
 */
export class Http2UnaryClient {
  private readonly session: http2.ClientHttp2Session;
  private readonly pending = new Set<{
    stream: http2.ClientHttp2Stream;
    deadline: number;
    fail: () => void;
  }>();
  private readonly sweep: NodeJS.Timeout;

  constructor(target: string) {
    const [host, port] = [
      target.slice(0, target.lastIndexOf(':')),
      Number(target.slice(target.lastIndexOf(':') + 1)),
    ];
    this.session = http2.connect(`http://${target}`, {
      createConnection: () => net.connect({ host, port, noDelay: true }),
    });
    this.session.on('error', () => {});
    this.sweep = setInterval(() => {
      const now = Date.now();
      for (const call of this.pending) if (call.deadline <= now) call.fail();
    }, 20);
    this.sweep.unref();
  }

  ready(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.session.connecting === false) return resolve();
      this.session.once('connect', () => resolve());
      this.session.once('error', reject);
    });
  }

  unary(path: string, message: Buffer, deadlineMs: number, callback: UnaryCallback): void {
    const frame = Buffer.allocUnsafe(5 + message.length);
    frame[0] = 0;
    frame.writeUInt32BE(message.length, 1);
    message.copy(frame, 5);
    let stream: http2.ClientHttp2Stream;
    try {
      stream = this.session.request({
        ':method': 'POST',
        ':path': path,
        'content-type': 'application/grpc',
        te: 'trailers',
      });
    } catch (error) {
      return callback({ code: 14, message: String(error) });
    }
    const chunks: Buffer[] = [];
    let status: number | null = null;
    let statusMessage = '';
    let settled = false;
    const call = {
      stream,
      deadline: Date.now() + deadlineMs,
      fail: () => finish({ code: 4, message: 'deadline exceeded' }),
    };
    const finish = (error: { code: number; message: string } | null, response?: Buffer) => {
      if (settled) return;
      settled = true;
      this.pending.delete(call);
      if (error !== null && !stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
      callback(error, response);
    };
    this.pending.add(call);
    const readStatus = (headers: http2.IncomingHttpHeaders) => {
      if (headers['grpc-status'] !== undefined) {
        status = Number(headers['grpc-status']);
        statusMessage = String(headers['grpc-message'] ?? '');
      }
    };
    stream.on('response', readStatus);
    stream.on('trailers', readStatus);
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('error', (error) => finish({ code: 14, message: error.message }));
    stream.on('close', () => {
      if (status === null) return finish({ code: 14, message: 'stream closed without grpc-status' });
      if (status !== 0) return finish({ code: status, message: statusMessage });
      const body = Buffer.concat(chunks);
      if (body.length < 5) return finish({ code: 13, message: 'no message' });
      finish(null, body.subarray(5, 5 + body.readUInt32BE(1)));
    });
    stream.end(frame);
  }

  close(): void {
    clearInterval(this.sweep);
    this.session.close();
  }
}
