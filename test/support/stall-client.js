/**
 * The far side of the in-process stall test (test/integration/stall.test.ts), in its own process so it keeps
 * running while the test's event loop (which hosts the sidecar) is blocked.
 *
 * Reads one JSON line on stdin: {grpc, redis, keyId, request (base64 CheckRequest), leadMs}. Opens ONE gRPC channel
 * and warms it with a Check, prints {"ready": <base64 answer>}, then waits for a "go" line. On "go": after leadMs
 * it sends a Check without waiting for it, revokes keyId with FCALL fortary_revoke, sends two more Checks on the
 * same channel, and prints every answer with its send time and the time the revocation returned.
 */
const readline = require('node:readline');
const grpc = require('@grpc/grpc-js');
const Redis = require('ioredis');

const CHECK_PATH = '/envoy.service.auth.v3.Authorization/Check';
const identity = (b) => b;

const lines = readline.createInterface({ input: process.stdin });
const queue = [];
let waiting = null;
lines.on('line', (line) => (waiting ? (waiting(line), (waiting = null)) : queue.push(line)));
const nextLine = () =>
  new Promise((resolve) => (queue.length > 0 ? resolve(queue.shift()) : (waiting = resolve)));

async function main() {
  const options = JSON.parse(await nextLine());
  const client = new grpc.Client(options.grpc, grpc.credentials.createInsecure());
  const request = Buffer.from(options.request, 'base64');
  const check = () => {
    const sentAt = Date.now();
    return new Promise((resolve) => {
      client.makeUnaryRequest(
        CHECK_PATH,
        identity,
        identity,
        request,
        { deadline: Date.now() + 10_000 },
        (e, r) =>
          resolve({
            sentAt,
            doneAt: Date.now(),
            error: e ? String(e) : null,
            answer: r ? r.toString('base64') : null,
          }),
      );
    });
  };
  const redis = new Redis(options.redis, { maxRetriesPerRequest: 1 });
  await redis.ping();
  const warm = await check();
  process.stdout.write(JSON.stringify({ ready: warm }) + '\n');
  await nextLine();
  await new Promise((resolve) => setTimeout(resolve, options.leadMs));
  const before = check();
  const revokeStartedAt = Date.now();
  const receivers = await redis.call('FCALL', 'fortary_revoke', '1', options.keyId);
  const revokeReturnedAt = Date.now();
  const after = [check(), check()];
  const result = {
    revokeStartedAt,
    revokeReturnedAt,
    receivers,
    before: await before,
    after: await Promise.all(after),
  };
  process.stdout.write(JSON.stringify({ result }) + '\n');
  client.close();
  redis.disconnect();
}

main().catch((error) => {
  process.stdout.write(JSON.stringify({ error: String(error) }) + '\n');
  process.exitCode = 1;
});
