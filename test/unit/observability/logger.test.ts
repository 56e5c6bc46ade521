import { Writable } from 'node:stream';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import {
  CENSOR,
  createLogger,
  decisionLogger,
  redactSensitive,
  type DecisionFields,
  type DecisionLevel,
} from '../../../src/observability/logger';

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

describe('decision line writer', () => {
  afterEach(() => jest.useRealTimers());

  const cases: Array<[DecisionLevel, DecisionFields]> = [
    [
      'info',
      {
        decision: 'allow',
        reason: 'allowed',
        keyId: 'k7Qm2xVb9TnP',
        userId: 'alice@example.com',
        vault: 'payments-prod',
        clientIp: '2001:db8::7',
        requestId: 'r-1',
        method: 'GET',
        durationMs: 0.042,
      },
    ],
    [
      'info',
      {
        decision: 'deny',
        reason: 'token_malformed',
        code: 'unauthenticated',
        detail: 'token is not a well-formed fortary key',
        vault: 'alpha',
        clientIp: '203.0.113.7',
        method: 'POST',
        durationMs: 1.5,
      },
    ],
    [
      'warn',
      {
        decision: 'deny',
        reason: 'store_unavailable',
        detail: 'redis getKey failed: "quoted" \\ back\nnew line \u2028 \u0001',
        requestId: '\u00e9\ud83d\ude00',
        method: 'G\tET',
        durationMs: 12,
      },
    ],
    [
      'error',
      {
        decision: 'deny',
        reason: 'internal_error',
        detail: '',
        keyId: 'k',
        userId: 'u',
        requestId: undefined,
        method: '',
        durationMs: NaN,
      },
    ],
  ];

  it('writes exactly the bytes pino would write for the same line', () => {
    jest.useFakeTimers({ now: new Date('2026-11-27T12:34:56.789Z') });
    const fast = capture();
    const slow = capture();
    const write = decisionLogger(fast.logger);
    for (const [level, fields] of cases) {
      write(level, fields);
      slow.logger[level](fields, 'check');
      jest.advanceTimersByTime(3);
    }
    expect(fast.raw).toEqual(slow.raw);
    expect(fast.raw).toHaveLength(cases.length);
  });

  it('writes valid JSON for a lone surrogate (pino writes it raw; strings decoded from UTF-8 never have one)', () => {
    const { logger, lines } = capture();
    decisionLogger(logger)('info', { ...cases[0]![1], requestId: 'a\ud800b' });
    expect(lines[0]!.requestId).toBe('a\ud800b');
  });

  it('respects the level, including a level changed at run time', () => {
    const { logger, lines } = capture();
    logger.level = 'warn';
    const write = decisionLogger(logger);
    write('info', cases[0]![1]);
    write('warn', cases[2]![1]);
    logger.level = 'info';
    write('info', cases[0]![1]);
    expect(lines.map((l) => l.level)).toEqual(['warn', 'info']);
  });

  it('falls back to the logger itself for loggers it does not mirror', () => {
    const raw: string[] = [];
    const other = pino({ base: { app: 'x' } }, { write: (s: string) => raw.push(s) });
    decisionLogger(other)('info', cases[0]![1]);
    expect(JSON.parse(raw[0]!)).toMatchObject({ app: 'x', level: 30, msg: 'check', decision: 'allow' });
  });
});

describe('the production destination (pino.destination)', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fortary-log-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('writes every line, in order, decision lines interleaved with plain ones', async () => {
    const file = path.join(dir, 'out.log');
    const destination = pino.destination({ dest: file, sync: false });
    const logger = createLogger('info', destination);
    const write = decisionLogger(logger);
    for (let i = 0; i < 500; i++) {
      if (i % 2 === 0) logger.info({ i }, 'plain');
      else
        write('info', {
          decision: 'allow',
          reason: 'allowed',
          requestId: String(i),
          method: 'GET',
          durationMs: 1,
        });
    }
    // end() writes out everything buffered, then closes the file.
    const closed = new Promise((resolve) => destination.once('close', resolve));
    destination.end();
    await closed;
    const lines = fs
      .readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(500);
    expect(lines.map((l) => (l.msg === 'plain' ? l.i : Number(l.requestId)))).toEqual([...Array(500).keys()]);
    expect(lines[1]).toMatchObject({
      level: 'info',
      service: 'fortary-authz',
      decision: 'allow',
      msg: 'check',
    });
  });
});
