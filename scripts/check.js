#!/usr/bin/env node
// Sends one CheckRequest to a running sidecar, shaped as Envoy sends it, and prints the decision.
// Uses a plain proto-loader client (not the sidecar's own codec), so it doubles as a contract check.
//
//   node scripts/check.js [--addr 127.0.0.1:9191] [--token fty_…] [--ip 203.0.113.7] METHOD PATH
//
// Exit status: 0 ALLOW, 1 DENY, 2 usage error, 3 no answer (the sidecar unreachable, the RPC failed), so a
// script can write `node scripts/check.js … && deploy` and not proceed on a refusal.
'use strict';
const path = require('node:path');
const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

function usage(message) {
  if (message) process.stderr.write(`check: ${message}\n`);
  process.stderr.write(
    'usage: node scripts/check.js [--addr host:port] [--token TOKEN] [--ip ADDRESS] METHOD PATH\n',
  );
  process.exit(2);
}

let args;
try {
  args = parseArgs({
    options: { addr: { type: 'string' }, token: { type: 'string' }, ip: { type: 'string' } },
    allowPositionals: true,
    strict: true,
  });
} catch (error) {
  usage(error.message);
}
const [method, requestPath] = args.positionals;
if (!method || !requestPath || args.positionals.length !== 2) usage('METHOD and PATH are required');
const addr = args.values.addr ?? process.env.FORTARY_CHECK_ADDR ?? '127.0.0.1:9191';

const definition = protoLoader.loadSync('envoy/service/auth/v3/external_auth.proto', {
  includeDirs: [path.join(__dirname, '..', 'proto')],
  keepCase: true,
  longs: String,
  enums: Number,
  defaults: false,
  oneofs: true,
});
const Authorization = grpc.loadPackageDefinition(definition).envoy.service.auth.v3.Authorization;
const client = new Authorization(addr, grpc.credentials.createInsecure());

const headers = {
  ':authority': 'api.fortary.example',
  ':method': method,
  ':path': requestPath,
  ':scheme': 'https',
  'user-agent': 'fortary-check/1',
  'x-request-id': `check-${Date.now()}`,
};
if (args.values.token) headers.authorization = `Bearer ${args.values.token}`;
const request = {
  attributes: {
    source: { address: { socket_address: { address: args.values.ip ?? '127.0.0.1', port_value: 40000 } } },
    request: {
      http: {
        method,
        path: requestPath,
        host: 'api.fortary.example',
        scheme: 'https',
        headers,
        protocol: 'HTTP/1.1',
      },
    },
  },
};

client.Check(request, { deadline: Date.now() + 5000 }, (error, response) => {
  client.close();
  if (error) {
    process.stderr.write(`check: ${error.message}\n`);
    process.exit(3);
  }
  const code = response.status?.code ?? 0;
  if (code === 0 && response.ok_response) {
    const set = (response.ok_response.headers ?? [])
      .map((h) => `${h.header.key}=${h.header.value}`)
      .join(' ');
    process.stdout.write(
      `ALLOW ${set} (removes: ${(response.ok_response.headers_to_remove ?? []).join(', ')})\n`,
    );
    return;
  }
  const denied = response.denied_response ?? {};
  const status = denied.status?.code ?? 403;
  const wwwAuth = (denied.headers ?? []).find((h) => h.header.key === 'www-authenticate');
  process.exitCode = 1;
  process.stdout.write(
    `DENY ${status} grpc=${code} ${denied.body ?? ''}${wwwAuth ? ` www-authenticate: ${wwwAuth.header.value}` : ''}\n`,
  );
});
