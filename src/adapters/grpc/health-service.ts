/**
 * grpc.health.v1 (Check and Watch) on the sidecar's own gRPC server. '' and the Authorization service follow
 * readiness (Redis reachable); 'liveness' stays SERVING until the drain starts, so a Redis outage never gets the
 * pod restarted by its liveness probe.
 */
import { GrpcStatus, type GrpcH2Server, type StreamCall, type UnaryCall } from './h2-grpc-server';
import { walkFields } from './wire-fields';

export const HEALTH_SERVICES = ['', 'envoy.service.auth.v3.Authorization'] as const;
export const LIVENESS_SERVICE = 'liveness';

/** grpc.health.v1.HealthCheckResponse.ServingStatus */
const SERVING = 1;
const NOT_SERVING = 2;
const SERVICE_UNKNOWN = 3;

export class Health {
  private readonly statuses = new Map<string, number>([
    ['', NOT_SERVING],
    ['envoy.service.auth.v3.Authorization', NOT_SERVING],
    [LIVENESS_SERVICE, SERVING],
  ]);
  private readonly watchers = new Set<(service: string) => void>();
  private ready = false;

  get serving(): boolean {
    return this.ready;
  }

  /** The ServingStatus number of `service`, or null when it is not one of ours. */
  statusOf(service: string): number | null {
    return this.statuses.get(service) ?? null;
  }

  setReady(ready: boolean): void {
    if (ready === this.ready) return;
    this.ready = ready;
    for (const name of HEALTH_SERVICES) this.set(name, ready ? SERVING : NOT_SERVING);
  }

  setDraining(): void {
    this.setReady(false);
    this.set(LIVENESS_SERVICE, NOT_SERVING);
  }

  /** Open Watch calls (each unsubscribes when it ends). */
  get watching(): number {
    return this.watchers.size;
  }

  /** Calls `listener(service)` after every status change; returns the unsubscribe function. */
  watch(listener: (service: string) => void): () => void {
    this.watchers.add(listener);
    return () => {
      this.watchers.delete(listener);
    };
  }

  private set(service: string, status: number): void {
    if (this.statuses.get(service) === status) return;
    this.statuses.set(service, status);
    for (const listener of [...this.watchers]) listener(service);
  }
}

export function addHealthService(server: GrpcH2Server, health: Health): void {
  server.addUnary('/grpc.health.v1.Health/Check', (request: Buffer, call: UnaryCall) => {
    const service = decodeServiceName(request);
    if (service === null) return call.fail(GrpcStatus.INTERNAL, 'malformed HealthCheckRequest');
    const status = health.statusOf(service);
    if (status === null) return call.fail(GrpcStatus.NOT_FOUND, 'unknown service');
    call.reply(encodeStatus(status));
  });
  server.addServerStream('/grpc.health.v1.Health/Watch', (request: Buffer, call: StreamCall) => {
    const service = decodeServiceName(request);
    if (service === null) return call.fail(GrpcStatus.INTERNAL, 'malformed HealthCheckRequest');
    let last = -1;
    const send = () => {
      const status = health.statusOf(service) ?? SERVICE_UNKNOWN;
      if (status === last) return;
      last = status;
      call.send(encodeStatus(status));
    };
    call.onEnd(health.watch((changed) => changed === service && send()));
    send();
  });
}

/** HealthCheckResponse { ServingStatus status = 1; } */
function encodeStatus(status: number): Buffer {
  return Buffer.from([0x08, status]);
}

/** HealthCheckRequest { string service = 1; }: the service name, or null when the bytes are not that message. */
export function decodeServiceName(bytes: Buffer): string | null {
  let service = '';
  const ok = walkFields(bytes, (field, wireType, _value, start, end) => {
    if (field === 1 && wireType === 2) service = bytes.toString('utf8', start, end);
  });
  return ok ? service : null;
}
