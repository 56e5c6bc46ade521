/**
 * Structured JSON logs. Secrets never reach a log line: the decision log carries ids and reasons only, and
 * redaction is a second line of defence for anything that ever logs a request or a record by mistake.
 */
import pino, { type Logger } from 'pino';

export const REDACT_PATHS = [
  'authorization',
  'token',
  'secret',
  'secretHash',
  'password',
  '*.authorization',
  '*.token',
  '*.secret',
  '*.secretHash',
  '*.password',
  'headers.authorization',
  'headers["x-api-key"]',
  '*.headers.authorization',
  '*.headers["x-api-key"]',
  'req.headers.authorization',
];

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'fortary-authz' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    // Asynchronous writes keep a log line at a couple of microseconds on the Check path; main flushes on exit.
    destination ?? pino.destination({ dest: 1, sync: false, minLength: 4096 }),
  );
}
