/**
 * One gRPC listener on @grpc/grpc-js: the Check port serves Authorization and grpc.health.v1, the health port
 * health alone. Settings are chosen for Envoy on loopback and for kubelet's probes (docs/operations.md).
 *
 * The listening socket is ours and each accepted connection is handed to grpc-js through its public connection
 * injector (`Server.createConnectionInjector`), rather than through `bindAsync`. Owning the sockets lets the
 * drain cut what outlives it without grpc-js' channelz registry, which `forceShutdown` otherwise needs to find
 * sessions and which costs every call a few microseconds of bookkeeping that nothing here reads.
 */
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import type { HostPort } from '../../config';

/** grpc-js' and gRPC C-core's default. Envoy sends request bodies only with `with_request_body`. */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

export const SERVER_OPTIONS: Readonly<grpc.ServerOptions> = {
  // A bigger CheckRequest (a body Envoy forwards) is refused with RESOURCE_EXHAUSTED before it is decoded.
  'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  // Envoy multiplexes every Check over a few connections; one client still cannot open unbounded streams.
  'grpc.max_concurrent_streams': 1000,
  // Envoy pings every 15 s with or without calls in flight. grpc-js 1.14 enforces no ping policy at all, so it
  // never sends a too_many_pings GOAWAY; these pin the policy Envoy needs should a later grpc-js adopt C-core's
  // defaults (5 min between pings without data, none without calls), which would cut Envoy's connections.
  'grpc.http2.min_ping_interval_without_data_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
  // Our own pings find a peer that vanished without a FIN, so its session and calls are freed.
  'grpc.keepalive_time_ms': 60_000,
  'grpc.keepalive_timeout_ms': 20_000,
  // No idle limit here: the Check listener's one client is Envoy on loopback, which keeps its connections open
  // (and pings them); closing one after a quiet spell only makes the next request pay a reconnect. grpc-js tracks
  // idleness with a 'close' listener on every stream, about a microsecond per Check. The age limit below still
  // bounds every connection, and the keepalive pings find a peer that vanished.
  // grpc-js has no read timeout: a stream that never ends without a deadline lives until its connection is
  // closed. The age limit bounds that (GOAWAY, then the grace for calls in flight); Envoy reconnects at once.
  'grpc.max_connection_age_ms': 30 * 60_000,
  'grpc.max_connection_age_grace_ms': 60_000,
  // Channelz is grpc-js' introspection registry: per call it records timestamps and counters that only a
  // channelz client would read, and nothing here serves one. Off, it saved ~27k instructions of ~560k per warm
  // Check (callgrind, 5,000 Checks after 20,000 of warm-up). The drain cuts connections itself (close below).
  'grpc.enable_channelz': 0,
};

/**
 * The health listener's settings: the Check listener's plus an idle limit. It is bound to the pod's address for
 * kubelet's probes; idle connections (a probe's, an abandoned client's) are closed with a GOAWAY.
 */
export const HEALTH_SERVER_OPTIONS: Readonly<grpc.ServerOptions> = {
  ...SERVER_OPTIONS,
  'grpc.max_connection_idle_ms': 5 * 60_000,
};

export class GrpcListener {
  private readonly server: grpc.Server;
  private readonly injector: grpc.ConnectionInjector;
  private readonly tcp: net.Server;
  /** Open client connections: what the drain cuts when its time is up. */
  private readonly sockets = new Set<net.Socket>();
  private started = false;

  /**
   * `onError` hears errors of the listening socket once it listens (an accept that failed, e.g. out of file
   * descriptors): the listener keeps serving, and an unheard 'error' event would end the process.
   */
  constructor(
    private readonly address: HostPort,
    services: ReadonlyArray<readonly [grpc.ServiceDefinition, grpc.UntypedServiceImplementation]>,
    private readonly onError: (error: Error) => void = () => undefined,
    options: Readonly<grpc.ServerOptions> = SERVER_OPTIONS,
  ) {
    this.server = new grpc.Server(options);
    for (const [definition, implementation] of services) this.server.addService(definition, implementation);
    this.injector = this.server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    this.tcp = net.createServer((socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
      this.injector.injectConnection(socket);
    });
  }

  /** Binds the address; resolves with the bound port (the one chosen for port 0). A hostname binds its first address. */
  start(): Promise<number> {
    return new Promise((resolve, reject) => {
      const failed = (error: Error) => reject(error);
      this.tcp.once('error', failed);
      this.tcp.listen({ host: this.address.host, port: this.address.port }, () => {
        this.tcp.off('error', failed);
        this.tcp.on('error', this.onError);
        this.started = true;
        resolve((this.tcp.address() as net.AddressInfo).port);
      });
    });
  }

  /**
   * Stops accepting connections and sends every client a GOAWAY (tryShutdown): calls in flight finish; after
   * `drainMs` whatever is left is cut (its connection destroyed).
   */
  close(drainMs: number): Promise<void> {
    if (!this.started) {
      this.server.forceShutdown();
      return Promise.resolve();
    }
    this.started = false;
    this.tcp.close();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        for (const socket of this.sockets) socket.destroy();
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
