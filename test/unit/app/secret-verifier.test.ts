import { createHmac, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { silentEvents } from '../../../src/app/ports';
import { KeyedDigest, SecretVerifier } from '../../../src/app/secret-verifier';

describe('KeyedDigest', () => {
  it('is HMAC-SHA-256: the same bytes as createHmac for any key and message', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 0, maxLength: 64 }),
        fc.string({ unit: 'binary', maxLength: 400 }),
        (key, message) => {
          const expected = createHmac('sha256', key).update(message).digest();
          expect(Buffer.from(new KeyedDigest(Buffer.from(key)).digest(message), 'binary')).toEqual(expected);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('gives the same answer on repeated and interleaved calls (its buffers are reused)', () => {
    const key = randomBytes(32);
    const d = new KeyedDigest(key);
    const long = 'x'.repeat(300);
    const short = 'fty_abc';
    const a = d.digest(long);
    const b = d.digest(short);
    expect(d.digest(long)).toBe(a);
    expect(d.digest(short)).toBe(b);
    expect(Buffer.from(b, 'binary')).toEqual(createHmac('sha256', key).update(short).digest());
  });
});

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
