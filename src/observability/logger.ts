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

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
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
    // Asynchronous writes keep a log line at a couple of microseconds on the Check path; main flushes on exit.
    destination ?? pino.destination({ dest: 1, sync: false, minLength: 4096 }),
  );
}
