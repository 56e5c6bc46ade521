/**
 * The operator's HTTP endpoint: `/metrics` for Prometheus, `/healthz` (the process is alive) and `/readyz`
 * (Redis reachable and not draining). Kept off the gRPC port so scraping never competes with Check traffic.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { HostPort } from '../../config';

export class AdminServer {
  private server: http.Server | null = null;

  constructor(
    private readonly address: HostPort,
    private readonly registry: Registry,
    private readonly isReady: () => boolean,
  ) {}

  async start(): Promise<number> {
    const server = http.createServer((req, res) => void this.handle(req, res));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.address.port, this.address.host, () => resolve());
    });
    return (server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (server === null) return;
    this.server = null;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'method not allowed\n');
    if (path === '/metrics') {
      try {
        const body = await this.registry.metrics();
        return send(res, 200, body, this.registry.contentType);
      } catch {
        return send(res, 500, 'metrics unavailable\n');
      }
    }
    if (path === '/healthz') return send(res, 200, 'ok\n');
    if (path === '/readyz') return this.isReady() ? send(res, 200, 'ready\n') : send(res, 503, 'not ready\n');
    return send(res, 404, 'not found\n');
  }
}

function send(
  res: http.ServerResponse,
  status: number,
  body: string,
  type = 'text/plain; charset=utf-8',
): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}
