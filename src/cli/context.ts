/** What a command runs with: output, environment, clock and the Redis connection settings. */
import type Redis from 'ioredis';
import { parseCommand, stringOption, type OptionSpec, type ParsedCommand } from './args';
import { UsageError } from './errors';
import { redisUrl, withRedis } from './redis';

export interface CliIo {
  /** Writes one line to stdout. */
  out(line: string): void;
  /** Writes one line to stderr. */
  err(line: string): void;
  env: Record<string, string | undefined>;
  /** Epoch ms; Date.now unless a test fixes it. */
  now?: () => number;
  /** All of standard input (for --token-stdin); the process' stdin unless a test gives one. */
  readStdin?: () => Promise<string>;
}

/** Thrown by `--help` anywhere: run() prints the usage and exits 0. */
export class HelpRequested extends Error {}

export class Context {
  private redisFlag: string | undefined;

  /**
   * @param io output here is already redacted (see redact.ts)
   * @param revealOut the unredacted stdout, for the one line that hands a new token to its owner
   */
  constructor(
    readonly io: CliIo,
    globalRedisFlag: string | undefined,
    private readonly revealOut: (line: string) => void = io.out,
  ) {
    this.redisFlag = globalRedisFlag;
  }

  /** Prints a line that carries a new token, bypassing redaction; nothing else may use this. */
  reveal(line: string): void {
    this.revealOut(line);
  }

  now(): number {
    return this.io.now ? this.io.now() : Date.now();
  }

  /** Parses a command's arguments; `--help` ends the command, `--redis` is remembered for withRedis(). */
  parse(
    command: string,
    args: readonly string[],
    options: OptionSpec,
    positionals: string[] = [],
  ): ParsedCommand {
    const parsed = parseCommand(command, args, options, positionals);
    if (parsed.values.help === true) throw new HelpRequested();
    const flag = stringOption(parsed.values, 'redis');
    if (flag !== undefined) {
      if (this.redisFlag !== undefined) throw new UsageError(`${command}: --redis given more than once`);
      this.redisFlag = flag;
    }
    return parsed;
  }

  /** The Redis URL the command will use; validated (usage error) before anything connects. */
  redisUrl(): string {
    return redisUrl(this.redisFlag, this.io.env);
  }

  withRedis<T>(fn: (redis: Redis) => Promise<T>): Promise<T> {
    return withRedis(this.redisUrl(), fn);
  }
}
