/**
 * The bench's baseline: a no-op ext_authz server written the plain way, with grpc-js and proto-loader (the options
 * of the grpc-node examples), answering `{status: {code: 0}}` to every Check. Whatever the sidecar spends on
 * decoding, deciding, logging and counting shows up as the throughput ratio against this server.
 *
 *   node dist/bench/baseline-server.js [host:port]      prints {"port": N} on stdout once listening
 */
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { PROTO_DIR } from './envoy-request';

interface AuthorizationPackage {
  envoy: { service: { auth: { v3: { Authorization: { service: grpc.ServiceDefinition } } } } };
}

function main(): void {
  const address = process.argv[2] ?? '127.0.0.1:0';
  const definition = protoLoader.loadSync(
    path.join('envoy', 'service', 'auth', 'v3', 'external_auth.proto'),
    {
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
      includeDirs: [PROTO_DIR],
    },
  );
  const pkg = grpc.loadPackageDefinition(definition) as unknown as AuthorizationPackage;
  const server = new grpc.Server();
  server.addService(pkg.envoy.service.auth.v3.Authorization.service, {
    Check: (_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      callback(null, { status: { code: 0 } });
    },
  });
  server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (error, port) => {
    if (error) {
      process.stderr.write(`baseline: ${error.message}\n`);
      process.exit(1);
    }
    process.stdout.write(`${JSON.stringify({ port })}\n`);
  });
  const stop = () => server.tryShutdown(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main();
