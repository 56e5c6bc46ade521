/**
 * grpc.health.v1 (Check and Watch) on the sidecar's own gRPC server. '' and the Authorization service follow
 * readiness (Redis reachable); 'liveness' stays SERVING until the drain starts, so a Redis outage never gets the
 * pod restarted by its liveness probe.
 */
import { GrpcStatus, type GrpcH2Server, type StreamCall, type UnaryCall } from './h2-grpc-server';

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
  let at = 0;
  while (at < bytes.length) {
    const tag = readVarint(bytes, at);
    if (tag === null) return null;
    at = tag.next;
    const wireType = tag.value & 7;
    if (wireType === 0) {
      const skipped = readVarint(bytes, at);
      if (skipped === null) return null;
      at = skipped.next;
    } else if (wireType === 2) {
      const length = readVarint(bytes, at);
      if (length === null || length.next + length.value > bytes.length) return null;
      if (tag.value >>> 3 === 1) service = bytes.toString('utf8', length.next, length.next + length.value);
      at = length.next + length.value;
    } else if (wireType === 5 || wireType === 1) {
      at += wireType === 5 ? 4 : 8;
      if (at > bytes.length) return null;
    } else {
      return null;
    }
  }
  return service;
}

function readVarint(bytes: Buffer, start: number): { value: number; next: number } | null {
  let value = 0;
  for (let i = 0; i < 10 && start + i < bytes.length; i++) {
    const byte = bytes[start + i] as number;
    value += (byte & 0x7f) * 2 ** (7 * i);
    if (byte < 0x80) return { value, next: start + i + 1 };
  }
  return null;
}
