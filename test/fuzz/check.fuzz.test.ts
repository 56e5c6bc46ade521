/**
 * The CI sample of the Check fuzzer (bench/fuzz-*.ts: generator, mutations, oracle and judge; docs/hardening.md):
 * a fixed seed, a few thousand generated, mutated and garbage CheckRequests against the real sidecar over gRPC,
 * many in flight. No answer may hang, be empty or malformed, come from an internal error, or allow what the oracle
 * cannot justify; afterwards the sidecar still serves and no token reached the logs. The long run (100 000 cases or
 * more, a separate sidecar process) is `node dist/bench/fuzz.js`; FUZZ_CASES / FUZZ_SEED widen this sample.
 */
import fc from 'fast-check';
import { caseArbitrary } from '../../bench/fuzz-cases';
import { judge } from '../../bench/fuzz-judge';
import { RawCheckClient, runFuzz, type FuzzReport } from '../../bench/fuzz-runner';
import { encodeCase } from '../../bench/fuzz-wire';
import { seedWorld, TRUSTED_PROXIES, type World } from '../../bench/fuzz-world';
import { encodeAllow, encodeDeny } from '../../src/adapters/grpc/check-response-encoder';
import { checkRequestBytes, envoyRequest } from '../support/check-client';
import { startHarness, type Harness } from '../support/sidecar-harness';

const SEED = Number(process.env.FUZZ_SEED ?? 20261127);
const CASES = Number(process.env.FUZZ_CASES ?? 4000);

let h: Harness;
let world: World;
let address: string;
let report: FuzzReport;

beforeAll(async () => {
  h = await startHarness({ env: { FORTARY_TRUSTED_PROXIES: TRUSTED_PROXIES.join(',') } });
  world = await seedWorld(h.admin, SEED);
  address = `127.0.0.1:${h.sidecar.grpcPort}`;
});

afterAll(async () => {
  await h.stop();
});

const token = (name: string) => (world.keys.find((k) => k.name === name) as { token: string }).token;

describe('the judge can fail (so a green run means something)', () => {
  const withToken = (name: string, path = '/v1/vaults/alpha/x') =>
    checkRequestBytes(
      envoyRequest({ authorization: `Bearer ${token(name)}`, path, sourceIp: '203.0.113.7' }),
    );
  // Field 1 (status) is first and short: tag, one length byte, payload.
  const withoutStatus = (bytes: Buffer) => bytes.subarray(2 + (bytes[1] as number));
  const open = () => world.keys.find((k) => k.name === 'open') as { keyId: string; userId: string };

  test.each([
    ['an empty response', () => withToken('open'), () => Buffer.alloc(0), /empty/],
    [
      'a deny without status',
      () => withToken('open'),
      () => withoutStatus(encodeDeny('key_unknown')),
      /status/,
    ],
    [
      'an allow without a token',
      () => checkRequestBytes(envoyRequest({})),
      () => encodeAllow('k', 'u', []),
      /ALLOWED.*0 authorization/,
    ],
    [
      'an allow of a revoked key',
      () => withToken('revoked'),
      () => encodeAllow('k', 'u', []),
      /ALLOWED.*never be allowed/,
    ],
    [
      'an allow of a vault outside the allowlist',
      () => withToken('open', '/v1/vaults/beta'),
      () => encodeAllow('k', 'u', []),
      /ALLOWED.*beta/,
    ],
    [
      'an allow of a dot-segment escape',
      () => withToken('open', '/v1/vaults/alpha/../beta'),
      () => encodeAllow('k', 'u', []),
      /ALLOWED.*no single vault/,
    ],
    [
      'an allow from outside the IP allowlist',
      () => withToken('ip4'),
      () => encodeAllow('k', 'u', []),
      /ALLOWED.*allowlist/,
    ],
    [
      'an allow with the wrong identity',
      () => withToken('open'),
      () => encodeAllow('AAAAAAAAAAAA', 'mallory', []),
      /identity headers/,
    ],
    ['an internal error', () => withToken('open'), () => encodeDeny('internal_error'), /internal_error/],
  ] as Array<[string, () => Buffer, () => Buffer, RegExp]>)(
    '%s is a violation',
    (_name, request, response, problem) => {
      expect(judge(world, request(), { response: response() }).problem).toMatch(problem);
    },
  );

  test('a right allow passes, and so does a decode failure (fail closed)', () => {
    const o = open();
    expect(
      judge(world, withToken('open'), { response: encodeAllow(o.keyId, o.userId, []) }).problem,
    ).toBeNull();
    expect(
      judge(world, Buffer.from([0xff]), { error: { code: 13, details: 'Error deserializing request' } })
        .problem,
    ).toBeNull();
    expect(
      judge(world, Buffer.from([0xff]), { error: { code: 4, details: 'Deadline exceeded' } }).problem,
    ).toMatch(/RPC failed/);
  });
});

describe(`${CASES} generated, mutated and garbage CheckRequests (seed ${SEED})`, () => {
  beforeAll(async () => {
    report = await runFuzz({ address, world, cases: CASES, seed: SEED, concurrency: 64 });
  }, 120_000);

  test('no violation', () => {
    expect(report.violations).toEqual([]);
  });

  test('the run reached every kind of answer: allows, each refusal family, and failed decodes', () => {
    const o = report.outcomes;
    expect(o.allow ?? 0).toBeGreaterThan(CASES * 0.02);
    expect(o['rpc:13'] ?? 0).toBeGreaterThan(CASES * 0.01);
    for (const reason of [
      'credentials_missing',
      'credentials_misplaced',
      'token_malformed',
      'key_unknown',
      'secret_mismatch',
      'key_revoked',
      'key_expired',
      'owner_inactive',
      'record_invalid',
      'ip_not_allowed',
      'scope_insufficient',
      'path_rejected',
      'vault_missing',
      'vault_not_allowed',
      'role_missing',
    ]) {
      expect([reason, o[`deny:${reason}`] ?? 0]).toEqual([reason, expect.any(Number)]);
      expect(o[`deny:${reason}`] ?? 0).toBeGreaterThan(0);
    }
    // Most requests the oracle would allow are allowed: the sidecar is not passing by refusing everything.
    expect(report.justifiedOutcomes.allow ?? 0).toBeGreaterThan(report.justifiable * 0.5);
  });
});

test("the same generator under fast-check's own runner, one call at a time (a failure shrinks to a small request)", async () => {
  const client = new RawCheckClient(address);
  try {
    await fc.assert(
      fc.asyncProperty(caseArbitrary(world), async (c) => {
        const bytes = encodeCase(c);
        const verdict = judge(world, bytes, await client.send(bytes));
        if (verdict.problem !== null) throw new Error(`${verdict.problem} (${verdict.outcome})`);
      }),
      { seed: SEED, numRuns: 400 },
    );
  } finally {
    client.close();
  }
}, 60_000);

test('afterwards the sidecar serves, allows a good request, counted no internal error, and logged no token', async () => {
  expect(report.cases).toBe(CASES);
  expect(h.sidecar.health.serving).toBe(true);
  const client = new RawCheckClient(address);
  const bytes = checkRequestBytes(
    envoyRequest({ authorization: `Bearer ${token('open')}`, path: '/v1/vaults/alpha' }),
  );
  expect(judge(world, bytes, await client.send(bytes))).toMatchObject({ outcome: 'allow', problem: null });
  client.close();
  const decisions = await h.sidecar.metrics.registry.getSingleMetric('fortary_authz_decisions_total')?.get();
  expect(decisions?.values.find((v) => v.labels.reason === 'internal_error')?.value ?? 0).toBe(0);
  const logs = h.logText();
  for (const key of world.keys) expect(logs).not.toContain(key.token.slice(17));
  for (const wrong of world.wrongSecrets) expect(logs).not.toContain(wrong.slice(17));
  expect(
    h.logs.filter((l) => l.level === 'error' && l.msg !== 'corrupt record in redis: denying it'),
  ).toEqual([]);
});
