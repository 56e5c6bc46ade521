/**
 * gRPC listeners. The Check server carries ext_authz and grpc.health.v1 (Envoy's cluster health check); the
 * optional health-only server lets kubelet probe a pod whose Check port is bound to loopback.
 */
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import type { HostPort } from '../../config';
import { formatHostPort } from '../../config';

/** Envoy multiplexes every Check over a few HTTP/2 connections; allow plenty of streams on each. */
const SERVER_OPTIONS: grpc.ServerOptions = {
  'grpc.max_concurrent_streams': 1000,
  // A CheckRequest is headers only (Envoy caps them at 60 KiB by default); refuse anything far larger.
  'grpc.max_receive_message_length': 1024 * 1024,
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  // Channelz bookkeeping (per-call counters and timestamps, per-socket trackers) costs every Check a few
  // microseconds, and nothing here serves the channelz service that would read it.
  'grpc.enable_channelz': 0,
};

/** Health service names: '' and the Authorization service follow readiness; 'liveness' only follows the process. */
export const HEALTH_SERVICES = ['', 'envoy.service.auth.v3.Authorization'] as const;
export const LIVENESS_SERVICE = 'liveness';

export class Health {
  readonly implementation = new HealthImplementation({
    '': 'NOT_SERVING',
    'envoy.service.auth.v3.Authorization': 'NOT_SERVING',
    [LIVENESS_SERVICE]: 'SERVING',
  });
  private ready = false;

  get serving(): boolean {
    return this.ready;
  }

  setReady(ready: boolean): void {
    if (ready === this.ready) return;
    this.ready = ready;
    const status: ServingStatus = ready ? 'SERVING' : 'NOT_SERVING';
    for (const name of HEALTH_SERVICES) this.implementation.setStatus(name, status);
  }

  setDraining(): void {
    this.setReady(false);
    this.implementation.setStatus(LIVENESS_SERVICE, 'NOT_SERVING');
  }
}

export class GrpcListener {
  readonly server = new grpc.Server(SERVER_OPTIONS);
  private boundPort = 0;

  constructor(private readonly address: HostPort) {}

  get port(): number {
    return this.boundPort;
  }

  async start(): Promise<number> {
    this.boundPort = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(
        formatHostPort(this.address),
        grpc.ServerCredentials.createInsecure(),
        (error, port) => (error ? reject(error) : resolve(port)),
      );
    });
    return this.boundPort;
  }

  /** Lets in-flight calls finish for up to `drainMs`, then cuts what is left. */
  async close(drainMs: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, drainMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
