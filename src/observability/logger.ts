/**
 * Structured JSON logs. Secrets never reach a log line: the decision log carries ids and reasons only, and
 * redaction is a second line of defence for anything that ever logs a request or a record by mistake.
 *
 * Redaction is a copy-on-write walk of each logged object (`formatters.log`) rather than pino's wildcard `redact`
 * paths: those (`*.token`) run pino's redactor over every value of every line, about 10 µs per decision line, the
 * largest single cost of a warm Check. The walk looks at every key down to REDACT_DEPTH levels (arrays included),
 * names compared case-insensitively, which covers every path pino was given and more, and costs a few hundred
 * nanoseconds when nothing matches. Child-logger bindings skip `formatters`, so pino's `redact` keeps literal
 * paths for them (free unless a line carries one of those keys).
 */
import pino, { type Logger } from 'pino';

/** Property names whose values never reach a log line, at any depth up to REDACT_DEPTH (any case). */
export const REDACTED_NAMES: readonly string[] = [
  'authorization',
  'token',
  'secret',
  'secretHash',
  'password',
  'x-api-key',
];
export const REDACT_DEPTH = 4;
export const CENSOR = '[redacted]';

const CHILD_BINDING_PATHS = [
  ...REDACTED_NAMES.filter((name) => /^\w+$/.test(name)),
  'headers.authorization',
  'headers["x-api-key"]',
  'req.headers.authorization',
  'req.headers["x-api-key"]',
];

const SENSITIVE = new Set(REDACTED_NAMES.map((name) => name.toLowerCase()));

function isSensitive(key: string): boolean {
  return SENSITIVE.has(key) || SENSITIVE.has(key.toLowerCase());
}

/** A shallow copy that keeps the prototype and non-enumerable own properties (an Error's message and stack). */
function shallowCopy<T extends object>(value: T): T {
  if (Array.isArray(value)) return value.slice() as T;
  return Object.create(Object.getPrototypeOf(value) as object, Object.getOwnPropertyDescriptors(value)) as T;
}

/**
 * `value` with every sensitive property replaced by CENSOR, down to `depth` levels. Nothing is mutated; objects
 * are copied only along the paths that hold something to censor, so a clean object is returned as is.
 */
export function redactSensitive<T>(value: T, depth = REDACT_DEPTH): T {
  if (depth <= 0 || typeof value !== 'object' || value === null || ArrayBuffer.isView(value)) return value;
  let copy: Record<string, unknown> | null = null;
  const source = value as Record<string, unknown>;
  for (const key of Object.keys(source)) {
    const child = source[key];
    let replacement: unknown = child;
    if (isSensitive(key)) {
      if (child !== undefined && child !== null) replacement = CENSOR;
    } else if (typeof child === 'object' && child !== null) {
      replacement = redactSensitive(child, depth - 1);
    }
    if (replacement !== child) {
      copy ??= shallowCopy(source);
      copy[key] = replacement;
    }
  }
  return (copy ?? value) as T;
}

/**
 * The destination of each logger createLogger made (decisionLogger writes its lines there too). Kept here, beside
 * the loggers, rather than read back out of pino: pino's internals are not an API.
 */
const destinations = new WeakMap<Logger, pino.DestinationStream>();

/** Beyond this many bytes waiting for stdout (it is not keeping up), lines are dropped and counted. */
export const MAX_BUFFERED_LOG_BYTES = 8 * 1024 * 1024;

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  const stream = destination ?? stdoutDestination();
  const logger = pino(
    {
      level,
      base: { service: 'fortary-authz' },
      timestamp: pino.stdTimeFunctions.isoTime,
      // pino's own redaction with literal paths only (no wildcard): it costs nothing unless a line has one of these
      // keys, and it also covers child-logger bindings, which pino does not pass through `formatters`.
      redact: { paths: CHILD_BINDING_PATHS, censor: CENSOR },
      formatters: {
        level: (label) => ({ level: label }),
        bindings: (bindings) => redactSensitive(bindings),
        log: (object) => redactSensitive(object),
      },
    },
    stream,
  );
  destinations.set(logger, stream);
  if (destination === undefined) reportDrops(stream as SonicBoomLike, logger);
  return logger;
}

/** What pino.destination() returns (SonicBoom), as far as this module uses it. */
interface SonicBoomLike extends pino.DestinationStream {
  on(event: 'drop', listener: (data: unknown) => void): unknown;
}

/**
 * stdout through pino.destination (SonicBoom): asynchronous writes, batched while one is in flight, flushed by pino
 * at exit. `maxLength` bounds the memory a stalled stdout can take: past it lines are dropped (and counted below)
 * instead of buffered without limit. `maxWrite` 4 KiB instead of 16: SonicBoom measures the byte length of its
 * last pending chunk on every line, so the chunk size is a per-line cost (measured, alternated in one process:
 * 4.9 µs a decision line at 16 KiB, 2.0 µs at 4 KiB, 1.4 µs at 1 KiB with four times the write calls).
 */
function stdoutDestination(): pino.DestinationStream {
  // minLength 1 writes every line as soon as nothing is in flight, like 0, but makes flush(cb) wait for the writes
  // in flight (with 0 it calls back at once), so main's flush-then-exit loses nothing.
  return pino.destination({
    dest: 1,
    sync: false,
    minLength: 1,
    maxWrite: 4096,
    maxLength: MAX_BUFFERED_LOG_BYTES,
  });
}

/** One warn line per second at most, saying how many lines a stalled stdout cost. */
function reportDrops(stream: SonicBoomLike, logger: Logger): void {
  let dropped = 0;
  let timer: NodeJS.Timeout | null = null;
  stream.on('drop', () => {
    dropped++;
    timer ??= setTimeout(() => {
      timer = null;
      logger.warn({ dropped }, 'log lines dropped: stdout is not keeping up');
      dropped = 0;
    }, 1000).unref();
  });
}

/** The fields of the one log line every Check decision writes (`msg: "check"`). None is a secret. */
export interface DecisionFields {
  /** The outcome table's kind: the same value as the metric's `outcome` label and Envoy's `decision` metadata. */
  decision: 'allow' | 'deny' | 'error';
  reason: string;
  /** The public error code the client got (the JSON body's `code`); absent on an allow. */
  code?: string | undefined;
  detail?: string | undefined;
  keyId?: string | undefined;
  userId?: string | undefined;
  /** The vault the request named (granted, or refused). */
  vault?: string | undefined;
  /** The address the IP rules compare: the TCP peer, or the trusted X-Forwarded-For hop. */
  clientIp?: string | undefined;
  requestId?: string | undefined;
  method: string;
  durationMs: number;
}

export type DecisionLevel = 'debug' | 'info' | 'warn' | 'error';
/** Writes one decision line; `enabled` says beforehand whether a line at that level would be written at all. */
export type DecisionLog = ((level: DecisionLevel, fields: DecisionFields) => void) & {
  enabled(level: DecisionLevel): boolean;
};

/**
 * A writer for the decision line that serialises its fixed shape directly and appends it to the logger's
 * destination, instead of going through pino's generic per-call path (level formatter, a walk of the object for
 * redaction, generic stringify): about 1 µs instead of 4–5 µs, several times that on a busy server.
 *
 * Public APIs only: the destination is the one createLogger handed to pino (remembered above), the bindings come
 * from `logger.bindings()`, the level check from `logger.isLevelEnabled()`. The line is byte-for-byte what
 * `logger[level](fields, 'check')` writes for a logger from createLogger (same keys, order, level label, ISO time,
 * bindings; tested), in the same stream, so it interleaves with every other line. Redaction has nothing to do
 * here: no field is named like a secret, and values were never redacted by pino either. Any logger this cannot
 * mirror (not from createLogger, or a stream that asks pino for metadata) gets the plain `logger[level]` call.
 */
export function decisionLogger(logger: Logger): DecisionLog {
  const stream = destinations.get(logger);
  const needsMetadata =
    stream !== undefined &&
    (stream as unknown as { [key: symbol]: unknown })[Symbol.for('pino.metadata')] === true;
  const enabled = (level: DecisionLevel): boolean => logger.isLevelEnabled(level);
  if (stream === undefined || typeof stream.write !== 'function' || needsMetadata) {
    return Object.assign(
      (level: DecisionLevel, fields: DecisionFields) => {
        if (logger.isLevelEnabled(level)) logger[level](fields, 'check');
      },
      { enabled },
    );
  }
  // The bindings as pino serialises them: `,"service":"fortary-authz"` (an object's keys keep their order).
  const bound = JSON.stringify(logger.bindings()).slice(1, -1);
  const chindings = bound === '' ? '' : `,${bound}`;
  let lastMs = -1;
  let timePart = '';
  const write = (level: DecisionLevel, fields: DecisionFields): void => {
    if (!logger.isLevelEnabled(level)) return;
    const now = Date.now();
    if (now !== lastMs) {
      lastMs = now;
      timePart = `,"time":"${new Date(now).toISOString()}"`;
    }
    let line = `{"level":"${level}"${timePart}${chindings},"decision":"${fields.decision}","reason":${JSON.stringify(fields.reason)}`;
    if (fields.code !== undefined) line += `,"code":${JSON.stringify(fields.code)}`;
    if (fields.detail !== undefined) line += `,"detail":${JSON.stringify(fields.detail)}`;
    if (fields.keyId !== undefined) line += `,"keyId":${JSON.stringify(fields.keyId)}`;
    if (fields.userId !== undefined) line += `,"userId":${JSON.stringify(fields.userId)}`;
    if (fields.vault !== undefined) line += `,"vault":${JSON.stringify(fields.vault)}`;
    if (fields.clientIp !== undefined) line += `,"clientIp":${JSON.stringify(fields.clientIp)}`;
    if (fields.requestId !== undefined) line += `,"requestId":${JSON.stringify(fields.requestId)}`;
    line += `,"method":${JSON.stringify(fields.method)},"durationMs":${Number.isFinite(fields.durationMs) ? fields.durationMs : null},"msg":"check"}\n`;
    stream.write(line);
  };
  return Object.assign(write, { enabled });
}
