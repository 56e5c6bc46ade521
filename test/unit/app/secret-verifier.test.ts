import { silentEvents, type AppEvents } from '../../../src/app/ports';
import { SecretVerifier } from '../../../src/app/secret-verifier';

describe('SecretVerifier', () => {
  const token = 'fty_abcdefghijkl_' + 'A'.repeat(49);
  const other = 'fty_abcdefghijkl_' + 'B'.repeat(49);

  function verifier(compare: (t: string, h: string) => Promise<boolean>, options = {}) {
    return new SecretVerifier(compare, silentEvents, { concurrency: 2, queue: 4, maxKeys: 100, ...options });
  }

  it('verifies once with bcrypt, then answers synchronously without bcrypt, refusing any other token', async () => {
    let calls = 0;
    const v = verifier(async (t) => {
      calls++;
      return t === token;
    });
    expect(await v.verify('k1', token, 'h1')).toBe('ok');
    expect(calls).toBe(1);
    expect(v.verify('k1', token, 'h1')).toBe('ok');
    expect(v.verify('k1', other, 'h1')).toBe('mismatch');
    expect(calls).toBe(1);
    // A new hash (the key was re-issued) needs bcrypt again.
    expect(await v.verify('k1', token, 'h2')).toBe('ok');
    expect(calls).toBe(2);
  });

  it('remembers a wrong token', async () => {
    let calls = 0;
    const v = verifier(async () => {
      calls++;
      return false;
    });
    expect(await v.verify('k1', other, 'h1')).toBe('mismatch');
    expect(v.verify('k1', other, 'h1')).toBe('mismatch');
    expect(calls).toBe(1);
  });
});

describe('SecretVerifier containment', () => {
  const tokenFor = (keyId: string, secret: string) => `fty_${keyId}_${secret.padEnd(49, 'x')}`;

  /** A compare whose calls stay pending until the test settles them. */
  function controlledCompare() {
    const calls: Array<{ token: string; settle: (ok: boolean) => void }> = [];
    const compare = (token: string) =>
      new Promise<boolean>((resolve) => calls.push({ token, settle: resolve }));
    return { calls, compare };
  }

  function setup(options: Record<string, unknown> = {}) {
    let clock = 0;
    let rejected = 0;
    const events: AppEvents = { ...silentEvents, bcryptRejected: () => rejected++ };
    const { calls, compare } = controlledCompare();
    const v = new SecretVerifier(compare, events, {
      concurrency: 1,
      queue: 8,
      maxKeys: 100,
      maxWaitMs: 100,
      now: () => clock,
      ...options,
    });
    return {
      v,
      calls,
      advance: (ms: number) => (clock += ms),
      rejected: () => rejected,
    };
  }
  const flush = () => new Promise((r) => setImmediate(r));

  it('runs at most one bcrypt per key id; other tokens for that key get 503 at once, other keys are not held up', async () => {
    const { v, calls, rejected } = setup({ concurrency: 4 });
    const first = v.verify('keyAAAAAAAAA', tokenFor('keyAAAAAAAAA', 'one'), 'h');
    const same = v.verify('keyAAAAAAAAA', tokenFor('keyAAAAAAAAA', 'one'), 'h');
    expect(v.verify('keyAAAAAAAAA', tokenFor('keyAAAAAAAAA', 'two'), 'h')).toBe('overloaded');
    const other = v.verify('keyBBBBBBBBB', tokenFor('keyBBBBBBBBB', 'one'), 'h');
    await flush();
    expect(calls.map((c) => c.token)).toEqual([
      tokenFor('keyAAAAAAAAA', 'one'),
      tokenFor('keyBBBBBBBBB', 'one'),
    ]);
    expect(rejected()).toBe(1);
    calls.forEach((c) => c.settle(false));
    expect(await first).toBe('mismatch');
    expect(await same).toBe('mismatch');
    expect(await other).toBe('mismatch');
    // The key's slot is free again.
    void v.verify('keyAAAAAAAAA', tokenFor('keyAAAAAAAAA', 'two'), 'h');
    await flush();
    expect(calls).toHaveLength(3);
  });

  it('queues only what should start within maxWaitMs, judged by the average compare time', async () => {
    const { v, calls, advance, rejected } = setup();
    // Learn the compare time: 40 ms.
    const learn = v.verify('key000000000', tokenFor('key000000000', 'a'), 'h');
    await flush();
    advance(40);
    calls[0]!.settle(false);
    await learn;
    // One running, then queue places whose round starts within 100 ms: 1 x 40, 2 x 40 fit; 3 x 40 does not.
    const running = v.verify('key000000001', tokenFor('key000000001', 'a'), 'h');
    const q1 = v.verify('key000000002', tokenFor('key000000002', 'a'), 'h');
    const q2 = v.verify('key000000003', tokenFor('key000000003', 'a'), 'h');
    expect(v.verify('key000000004', tokenFor('key000000004', 'a'), 'h')).toBe('overloaded');
    expect(rejected()).toBe(1);
    for (const p of [running, q1, q2]) {
      await flush();
      advance(40);
      calls.at(-1)!.settle(false);
      expect(await p).toBe('mismatch');
    }
    expect(calls).toHaveLength(4);
  });

  it('answers 503 without bcrypt when a queued request got its turn after maxWaitMs', async () => {
    const { v, calls, advance, rejected } = setup();
    const running = v.verify('key000000001', tokenFor('key000000001', 'a'), 'h');
    const late = v.verify('key000000002', tokenFor('key000000002', 'a'), 'h');
    const alsoLate = v.verify('key000000003', tokenFor('key000000003', 'a'), 'h');
    await flush();
    advance(150);
    calls[0]!.settle(false);
    expect(await running).toBe('mismatch');
    expect(await late).toBe('overloaded');
    expect(await alsoLate).toBe('overloaded');
    expect(calls).toHaveLength(1);
    expect(rejected()).toBe(2);
    // The slot is free: the next request runs at once.
    void v.verify('key000000004', tokenFor('key000000004', 'a'), 'h');
    await flush();
    expect(calls).toHaveLength(2);
  });

  it('still fails fast on the queue length', async () => {
    const { v } = setup({ queue: 1 });
    void v.verify('key000000001', tokenFor('key000000001', 'a'), 'h');
    void v.verify('key000000002', tokenFor('key000000002', 'a'), 'h');
    expect(v.verify('key000000003', tokenFor('key000000003', 'a'), 'h')).toBe('overloaded');
  });
});
