import { Writable } from 'node:stream';
import { CENSOR, createLogger, redactSensitive } from '../../../src/observability/logger';

function capture() {
  const lines: Array<Record<string, any>> = [];
  const raw: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) {
        if (line.trim() === '') continue;
        raw.push(line);
        lines.push(JSON.parse(line));
      }
      done();
    },
  });
  return { logger: createLogger('info', sink), lines, raw };
}

const TOKEN = 'fty_abcdefghijkl_0123456789012345678901234567890123456789012ABCDEF';

describe('log redaction', () => {
  it('censors every path the logger was meant to protect, at the top level and nested', () => {
    const { logger, lines, raw } = capture();
    logger.info(
      { authorization: `Bearer ${TOKEN}`, token: TOKEN, secret: 's', secretHash: '$2b$', password: 'p' },
      'a',
    );
    logger.info(
      { req: { headers: { authorization: `Bearer ${TOKEN}`, 'x-api-key': TOKEN, host: 'h' } } },
      'b',
    );
    logger.info({ headers: { authorization: 'Bearer x', 'x-api-key': TOKEN } }, 'c');
    logger.info({ record: { secretHash: '$2b$10$abc', id: 'k' }, key: { token: TOKEN } }, 'd');
    logger.info({ list: [{ token: TOKEN }], deep: { a: { b: { password: 'p' } } } }, 'e');
    logger.info({ Authorization: 'Bearer x', SECRETHASH: 'h' }, 'f');
    expect(lines[0]).toMatchObject({
      authorization: CENSOR,
      token: CENSOR,
      secret: CENSOR,
      secretHash: CENSOR,
      password: CENSOR,
    });
    expect(lines[1]!.req.headers).toEqual({ authorization: CENSOR, 'x-api-key': CENSOR, host: 'h' });
    expect(lines[2]!.headers).toEqual({ authorization: CENSOR, 'x-api-key': CENSOR });
    expect(lines[3]).toMatchObject({ record: { secretHash: CENSOR, id: 'k' }, key: { token: CENSOR } });
    expect(lines[4]).toMatchObject({ list: [{ token: CENSOR }], deep: { a: { b: { password: CENSOR } } } });
    expect(lines[5]).toMatchObject({ Authorization: CENSOR, SECRETHASH: CENSOR });
    expect(raw.join('\n')).not.toContain(TOKEN);
    expect(raw.join('\n')).not.toContain('Bearer');
  });

  it('censors child bindings too', () => {
    const { logger, lines } = capture();
    logger.child({ token: TOKEN, requestId: 'r1' }).info('child');
    expect(lines[0]).toMatchObject({ token: CENSOR, requestId: 'r1', msg: 'child' });
  });

  it('never mutates the logged object, and returns a clean object as is', () => {
    const headers = { authorization: 'Bearer x' };
    const object = { req: { headers }, id: 1 };
    const redacted = redactSensitive(object);
    expect(headers.authorization).toBe('Bearer x');
    expect(redacted.req.headers.authorization).toBe(CENSOR);
    expect(redacted.id).toBe(1);
    const clean = { decision: 'allow', keyId: 'k', nested: { a: [1, 2] } };
    expect(redactSensitive(clean)).toBe(clean);
  });

  it('keeps an Error whole (message, stack, prototype) when censoring one of its properties', () => {
    const error = Object.assign(new Error('boom'), { token: TOKEN });
    const { error: copy } = redactSensitive({ error });
    expect(copy).toBeInstanceOf(Error);
    expect(copy.message).toBe('boom');
    expect(copy.stack).toBe(error.stack);
    expect(copy.token).toBe(CENSOR);
    expect(error.token).toBe(TOKEN);
  });

  it('writes the decision line unchanged', () => {
    const { logger, lines } = capture();
    const line = {
      decision: 'allow',
      reason: 'allowed',
      keyId: 'k',
      userId: 'u',
      requestId: 'r',
      method: 'GET',
      durationMs: 0.04,
    };
    logger.info(line, 'check');
    expect(lines[0]).toMatchObject({ ...line, level: 'info', service: 'fortary-authz', msg: 'check' });
    expect(typeof lines[0]!.time).toBe('string');
  });
});
