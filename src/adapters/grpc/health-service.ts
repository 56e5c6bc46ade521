/**
 * grpc.health.v1 (Check and Watch) on grpc-js. '' and the Authorization service follow readiness (Redis
 * reachable); 'liveness' stays SERVING until the drain starts, so a Redis outage never gets the pod restarted by
 * its liveness probe. When the drain starts every open Watch gets the final status and ends (UNAVAILABLE), since
 * grpc-js' graceful shutdown waits for calls that would otherwise never end.
 */
import * as grpc from '@grpc/grpc-js';

export const HEALTH_SERVICES = ['', 'envoy.service.auth.v3.Authorization'] as const;
export const LIVENESS_SERVICE = 'liveness';

/** grpc.health.v1.HealthCheckResponse.ServingStatus */
const SERVING = 1;
const NOT_SERVING = 2;
const SERVICE_UNKNOWN = 3;

/** `service`, or null when the listener is told that the drain started. */
type HealthListener = (service: string | null) => void;

export class Health {
  private readonly statuses = new Map<string, number>([
    ['', NOT_SERVING],
    ['envoy.service.auth.v3.Authorization', NOT_SERVING],
    [LIVENESS_SERVICE, SERVING],
  ]);
  private readonly watchers = new Set<HealthListener>();
  private ready = false;
  private drainStarted = false;

  get serving(): boolean {
    return this.ready;
  }

  get draining(): boolean {
    return this.drainStarted;
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
    if (this.drainStarted) return;
    this.drainStarted = true;
    this.setReady(false);
    this.set(LIVENESS_SERVICE, NOT_SERVING);
    for (const listener of [...this.watchers]) listener(null);
  }

  /** Open Watch calls (each unsubscribes when it ends). */
  get watching(): number {
    return this.watchers.size;
  }

  /** Calls `listener(service)` after every status change, `listener(null)` once the drain started. */
  watch(listener: HealthListener): () => void {
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

interface HealthCheckRequest {
  service: string;
}
interface HealthCheckResponse {
  status: number;
}

const CLOSING = { code: grpc.status.UNAVAILABLE, details: 'server closing' };

export function healthImplementation(health: Health): grpc.UntypedServiceImplementation {
  const check: grpc.handleUnaryCall<HealthCheckRequest, HealthCheckResponse> = (call, callback) => {
    const status = health.statusOf(call.request.service);
    if (status === null) return callback({ code: grpc.status.NOT_FOUND, details: 'unknown service' });
    callback(null, { status });
  };
  const watch: grpc.handleServerStreamingCall<HealthCheckRequest, HealthCheckResponse> = (call) => {
    if (health.draining) return void call.emit('error', CLOSING);
    const { service } = call.request;
    let last = -1;
    const send = () => {
      const status = health.statusOf(service) ?? SERVICE_UNKNOWN;
      if (status === last) return;
      last = status;
      call.write({ status });
    };
    const unsubscribe = health.watch((changed) => {
      if (changed === service) return send();
      if (changed !== null) return;
      send();
      unsubscribe();
      call.emit('error', CLOSING);
    });
    call.once('cancelled', unsubscribe);
    send();
  };
  return { Check: check, Watch: watch };
}
