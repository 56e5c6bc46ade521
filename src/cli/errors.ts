/** Failures the CLI reports as one line on stderr, with the exit status they map to. */

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** A refusal or failure with a message fit for the operator (no stack, no secrets). */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT_FAILURE,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** Bad input: an unknown command or flag, a missing or malformed value (exit status 2). */
export class UsageError extends CliError {
  constructor(message: string) {
    super(message, EXIT_USAGE);
    this.name = 'UsageError';
  }
}

/** Any error as a single line: messages from Redis or Node may span several. */
export function oneLine(error: unknown): string {
  return messageOf(error).replace(/\s+/g, ' ').trim() || 'unknown error';
}

/** An error's message; duck-typed, as errors from another realm (a VM context, a worker) are not `instanceof Error`. */
export function messageOf(error: unknown): string {
  const message = (error as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : String(error);
}
