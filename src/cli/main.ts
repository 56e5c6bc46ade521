/**
 * `fortary-authz`: operator commands for API keys and users in Redis. run() is the whole CLI behind an injectable
 * I/O, so tests call it in-process; main() wires it to the process. Every failure is exactly one stderr line,
 * `fortary-authz: <message>`, with exit status 2 for bad input and 1 for anything else.
 */
import { Context, HelpRequested, type CliIo } from './context';
import { CliError, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, oneLine, UsageError } from './errors';
import { keysCommand } from './keys';
import { redactTokens } from './redact';
import { sidecarsCommand } from './sidecars';
import { ensureLibrary } from './redis';
import { usersCommand } from './users';

export type { CliIo } from './context';

export const USAGE = `Usage: fortary-authz [--redis <url>] <command> [options]

Manage Fortary API keys and the users they belong to, in the Redis the fortary-authz sidecars read.

Commands:
  setup
      Load the Redis function library (idempotent); prints "loaded" or "current".
  users put <userId> [--developer <vaultId>]... [--inactive] [--json] [--wait [--timeout <N>s|<N>ms]]
      Create or replace a user: the vaults it holds the Developer role on, and its status.
      --inactive deactivates the user: all of its keys are revoked.
  users deactivate <userId> [--json] [--wait [--timeout <N>s|<N>ms]]
      Deactivate a user; all of its keys are revoked and stop working.
  keys create --user <userId> --vault <vaultId>... [--ip <cidr>]...
              [--expires-in <N>d | --expires-at <ISO-8601> | --no-expiry] [--label <text>] [--json]
      Create a key for an active user holding Developer on every vault given. The expiry defaults to 365 days.
      Prints the token once; --json prints {"keyId", "token", "expiresAt"} on one line.
  keys edit <keyId> [--vault <vaultId>]... [--ip <cidr>]... [--no-ip-restriction]
              [--expires-in <N>d | --expires-at <ISO-8601> | --no-expiry] [--reactivate] [--label <text>]
              [--json] [--wait [--timeout <N>s|<N>ms]]
      Edit a key in place. Given --vault values replace the vault list (they must be Developer vaults of the
      owner), given --ip values replace the IP allowlist, --no-ip-restriction clears it. The secret never changes;
      a revoked key cannot be edited. A new expiry must lie in the future (to stop a key now, revoke it); an
      expired key gets one only with --reactivate, which makes it work again.
  keys rotate <keyId> [--grace <N>d|h|m] [--expires-in <N>d | --expires-at <ISO-8601> | --no-expiry] [--json]
      Replace a key: a successor with the same owner, scope, vaults, IPs and label and a fresh expiry (365 days,
      or the flags; none if the old key had none and no flag is given). Prints its token once. The old key keeps
      working for the grace period (default 7d; 0m to 365d; never past its current expiry) and then expires.
      Both keys link each other (keys show). A revoked, expired or already rotated key cannot be rotated.
      --json prints {"keyId", "token", "expiresAt", "previous": {"keyId", "expiresAt"}} on one line.
  keys revoke <keyId|token> | --token-stdin [--json] [--wait [--timeout <N>s|<N>ms]]
      Revoke a key, at once and for good; prints how many sidecars received the event. A leaked token names its
      key: give the whole token (its checksum and secret are verified), or pipe it in with --token-stdin to keep it
      out of shell history (printf '%s' "$TOKEN" | fortary-authz keys revoke --token-stdin).
  keys show <keyId|token> | --token-stdin [--json]
      Show a key (never its secret): owner, scopes, vaults, IPs, expiry, label, times, status, rotation links,
      and its effective access: whether the owner is active and holds Developer on each of the key's vaults now
      (a key is only as good as its owner's live roles; 'effect:' names what the sidecar will deny), and its last
      use (time, client address and vault of the last allowed request, as the sidecars recorded it; each sidecar
      writes it at most once per FORTARY_LAST_USED_FLUSH_S, so it can lag by that much). --json gives
      lastUsedAt (ISO-8601 or null), lastUsedIp and lastUsedVault.
  keys list --user <userId> [--expiring-within <N>d] [--unused-for <N>d] [--json]
  keys list --expiring-within <N>d [--unused-for <N>d] [--json]
  keys list --unused-for <N>d [--json]
      Show a user's keys, oldest first. --expiring-within lists only the keys that work now and expire within
      N days (1-36500): those that will soon stop working. Already expired and revoked keys are not listed
      (they have stopped), nor keys without an expiry. --unused-for lists only the keys that still work
      and were not used for N days (never used: counted from creation): candidates to revoke. Both together:
      keys that pass both. Without --user, either filter searches the keys of every user (a SCAN of the key
      records, needs +scan) and lists them soonest expiry first (no expiry last), ties by key id; a record that
      breaks the contract is skipped with one stderr line naming the key, and the exit status stays 0 (such a
      key already allows nothing; see keys show <keyId>). --json prints an array of the objects keys show
      --json prints.
  sidecars [--json]
      List the live sidecars (heard from within 3 heartbeats): id, version, appliedSeq (the last change event
      applied), lagEvents (events behind the current sequence), lastSeenMs. --json prints an array of objects.
  help
      Print this text (also --help or -h, anywhere).

Every write command accepts --json: it then prints one JSON object on one line (keys create and rotate as shown
above; keys edit {"key", "reactivated", "sidecarsNotified"}; keys revoke {"keyId", "revokedAt", "alreadyRevoked",
"sidecarsNotified"}; users put {"userId", "created", "active", "developerVaults", "sidecarsNotified"}; users
deactivate {"userId", "revokedKeys", "sidecarsNotified"}). With --wait it prints instead exactly {"seq",
"sidecars", "applied", "pending", "elapsedMs"} (keys revoke: {"keyId", ...} first). Errors stay one line on stderr.

Options:
  --redis <url>              redis:// or rediss:// URL, password in the URL (default: $REDIS_URL, else
                             redis://127.0.0.1:6379)
  --expires-in <N>d          expire N days from now (1-36500)
  --expires-at <ISO-8601>    expire at a date (2026-06-30, meaning 00:00 UTC) or a date-time with a zone
                             (2026-06-30T12:00:00Z, 2026-06-30T14:00:00+02:00)
  --no-expiry                never expire
  --wait                     after the write, wait until every live sidecar has applied its event; prints
                             "applied on 6/6 sidecars in 3 ms", or with --json {"seq", "sidecars", "applied",
                             "pending": [ids], "elapsedMs"} (keys revoke: with "keyId" first)
  --timeout <N>s|<N>ms       how long --wait waits (default 5s, at most 3600s)

Limits (anything else is refused, nothing is written):
  <userId>                   1-128 of A-Z a-z 0-9 _ . @ -, starting with a letter or digit
  <vaultId>                  1-64 of A-Z a-z 0-9 _ -, starting with a letter or digit
  <keyId>                    12 base62 characters (A-Z a-z 0-9)
  --ip <cidr>                IPv4 or IPv6 network in network form: 203.0.113.0/24, 2001:db8::/32, 198.51.100.7/32;
                             no host bits (1.2.3.4/8 is refused: did you mean 1.0.0.0/8?), no leading zeros in
                             the prefix length (/08) or in IPv4 octets, no zone ids; at most 1000 per key
  --vault                    at most 1000 per key
  --label <text>             at most 200 Unicode characters (code points); control characters (U+0000-U+001F,
                             U+007F-U+009F), line/paragraph separators and bidi controls (U+061C, U+200E, U+200F,
                             U+202A-U+202E, U+2066-U+2069) are refused

Environment:
  REDIS_URL                  Redis to use when --redis is not given
  FORTARY_BCRYPT_COST        bcrypt cost of new keys' hashes, 4-15 (default 10)

No output or error message ever contains a token's secret: token-shaped text is printed with its secret replaced
by [redacted] (only the token of a newly created key is printed, once).

Exit status: 0 success, 1 failure (unknown user or key, refused by Redis, Redis unreachable), 2 usage error,
3 written but not confirmed (--wait: some live sidecar had not applied the change by the timeout; the change is
durable in Redis all the same).`;

export async function run(argv: readonly string[], rawIo: CliIo): Promise<number> {
  // Every line passes through redaction; only Context.reveal (a new token for its owner) goes to rawIo.out.
  const io: CliIo = {
    ...rawIo,
    out: (line) => rawIo.out(redactTokens(line)),
    err: (line) => rawIo.err(redactTokens(line)),
  };
  try {
    const { redisFlag, rest } = globalOptions(argv);
    const [command, ...args] = rest;
    const ctx = new Context(io, redisFlag, rawIo.out);
    switch (command) {
      case 'setup':
        await setup(ctx, args);
        break;
      case 'users':
        await usersCommand(ctx, args);
        break;
      case 'keys':
        await keysCommand(ctx, args);
        break;
      case 'sidecars':
        await sidecarsCommand(ctx, args);
        break;
      case 'help':
        throw new HelpRequested();
      case undefined:
        throw new UsageError('missing command (see fortary-authz --help)');
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command)} (see fortary-authz --help)`);
    }
    return EXIT_OK;
  } catch (error) {
    if (error instanceof HelpRequested) {
      for (const line of USAGE.split('\n')) io.out(line);
      return EXIT_OK;
    }
    io.err(`fortary-authz: ${oneLine(error)}`);
    return error instanceof CliError ? error.exitCode : EXIT_FAILURE;
  }
}

/** Options before the command: `--redis <url>` / `--redis=<url>` and `--help`. */
function globalOptions(argv: readonly string[]): { redisFlag: string | undefined; rest: string[] } {
  const rest = [...argv];
  let redisFlag: string | undefined;
  for (;;) {
    const arg = rest[0];
    if (arg === '--help' || arg === '-h') throw new HelpRequested();
    if (arg !== '--redis' && !arg?.startsWith('--redis=')) break;
    if (redisFlag !== undefined) throw new UsageError('--redis given more than once');
    rest.shift();
    if (arg === '--redis') {
      const value = rest.shift();
      if (value === undefined || value.startsWith('-')) throw new UsageError('--redis needs a value');
      redisFlag = value;
    } else {
      redisFlag = arg.slice('--redis='.length);
    }
  }
  if (rest[0]?.startsWith('-')) throw new UsageError(`unknown option ${rest[0]} (see fortary-authz --help)`);
  return { redisFlag, rest };
}

/** setup: loads the function library unless this version or a newer one is loaded already. */
async function setup(ctx: Context, args: readonly string[]): Promise<void> {
  ctx.parse('setup', args, {});
  const result = await ctx.withRedis((redis) => ensureLibrary(redis));
  ctx.io.out(result);
}

/** The process entry point, called by bin/fortary-authz.js. */
export async function main(argv: readonly string[] = process.argv.slice(2)): Promise<void> {
  // A closed pipe (`fortary-authz --help | head -1`) is not an error worth a stack trace.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE') throw error;
    });
  }
  const write = (stream: NodeJS.WriteStream) => (line: string) => void stream.write(`${line}\n`);
  const code = await run(argv, {
    out: write(process.stdout),
    err: write(process.stderr),
    env: process.env,
    readStdin: () => readAll(process.stdin),
  });
  process.exitCode = code;
  // The work is done and reported; a timer ioredis left behind (a command timeout on an abandoned connection)
  // must not hold the process. stdout/stderr writes to files and pipes are synchronous on Linux.
  setTimeout(() => process.exit(code), 50).unref();
}

/** All of a stream, as UTF-8; bounded, since a token is 66 bytes and stdin may be a mistaken multi-GB file. */
async function readAll(stream: NodeJS.ReadableStream, limit = 64 * 1024): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
    size += buffer.length;
    if (size > limit)
      throw new UsageError(`standard input is longer than ${limit} bytes; expected one token`);
    chunks.push(buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export { EXIT_FAILURE, EXIT_OK, EXIT_USAGE };
