/**
 * Micro-benchmark of the Check codec (not a test): the CheckRequest walker against full decodes of the same
 * ~600-byte realistic request (protobufjs, and proto-loader's deserializer as a stock grpc-js server would use
 * it), and the response encoder's paths.
 *
 *   npx tsc -p tsconfig.build.json && node dist/bench/codec.bench.js
 */
import * as protoLoader from '@grpc/proto-loader';
import { decodeCheckRequest } from '../src/adapters/grpc/check-request-decoder';
import { encodeAllow, encodeDeny } from '../src/adapters/grpc/check-response-encoder';
import { checkRequest, checkRequestBytes, PROTO_DIR } from './envoy-request';

const ITERATIONS = 100_000;

const protoDir = PROTO_DIR;
const CheckRequest = checkRequest();
const request = checkRequestBytes({
  authorization: 'Bearer fty_k7Qm2xVb9TnP4sLd_Zr8eWc3YuHa6JfNq1GtKoXp5BvMi0Ds7Ly2',
});

const packageDefinition = protoLoader.loadSync('envoy/service/auth/v3/external_auth.proto', {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [protoDir],
});
const checkMethod = (
  packageDefinition['envoy.service.auth.v3.Authorization'] as Record<
    string,
    protoLoader.MethodDefinition<object, object>
  >
).Check as protoLoader.MethodDefinition<object, object>;

let sink: unknown;

function time(name: string, fn: () => unknown): number {
  for (let i = 0; i < ITERATIONS / 10; i++) sink = fn(); // warm-up
  let best = Infinity;
  for (let round = 0; round < 5; round++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < ITERATIONS; i++) sink = fn();
    const ns = Number(process.hrtime.bigint() - start) / ITERATIONS;
    best = Math.min(best, ns);
  }
  console.log(`${name.padEnd(52)} ${best.toFixed(0).padStart(7)} ns/op`);
  return best;
}

console.log(`CheckRequest: ${request.length} bytes; ${ITERATIONS} iterations, best of 5`);
const walker = time('decodeCheckRequest (wire walker)', () => decodeCheckRequest(request));
const full = time('protobufjs CheckRequest.decode', () => CheckRequest.decode(request));
const fullObject = time('protobufjs decode + toObject', () =>
  CheckRequest.toObject(CheckRequest.decode(request), { longs: String, defaults: true, oneofs: true }),
);
const loader = time('proto-loader requestDeserialize', () => checkMethod.requestDeserialize(request));
console.log(`ratio protobufjs decode / walker: ${(full / walker).toFixed(1)}x`);
console.log(`ratio protobufjs decode+toObject / walker: ${(fullObject / walker).toFixed(1)}x`);
console.log(`ratio proto-loader / walker: ${(loader / walker).toFixed(1)}x`);

const allowCold = (() => {
  let n = 0;
  return time('encodeAllow, new key each call (memo miss)', () => encodeAllow(`key${n++}`, 'user1', []));
})();
const allowWarm = time('encodeAllow, memoised', () => encodeAllow('key1', 'user1', []));
time('encodeAllow with removeHeaders (not memoised)', () =>
  encodeAllow('key1', 'user1', ['x-fortary-debug']),
);
time('encodeDeny(reason) (memoised)', () => encodeDeny('secret_mismatch'));
time('encodeDeny(reason, ids)', () => encodeDeny('ip_not_allowed', { keyId: 'key1', userId: 'user1' }));
const allowObject = {
  status: { code: 0 },
  ok_response: {
    headers: [
      { header: { key: 'x-fortary-key-id', value: 'key1' }, append: { value: false }, append_action: 2 },
      { header: { key: 'x-fortary-user-id', value: 'user1' }, append: { value: false }, append_action: 2 },
    ],
    headers_to_remove: ['authorization'],
  },
  dynamic_metadata: { fields: { decision: { stringValue: 'allow' } } },
};
const loaderEncode = time('proto-loader responseSerialize (allow object)', () =>
  checkMethod.responseSerialize(allowObject),
);
console.log(
  `ratio proto-loader encode / memoised allow: ${(loaderEncode / allowWarm).toFixed(0)}x (cold: ${(loaderEncode / allowCold).toFixed(1)}x)`,
);
if (sink === undefined) console.log('');
