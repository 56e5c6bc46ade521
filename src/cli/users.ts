/** `fortary-authz users …`: the user records keys inherit their owner's live roles from. */
import { serializeUserRecord } from '../core/records';
import { flagOption, listOption, requireUserId, vaultIds } from './args';
import { HelpRequested, type Context } from './context';
import { CliError, UsageError } from './errors';
import { ensureLibrary, fcall, userKeysSet, userString } from './redis';
import { waitForSidecars, waitRequest, WAIT_OPTIONS } from './sidecars';
import { reportWrite } from './write-result';

export async function usersCommand(ctx: Context, args: readonly string[]): Promise<void> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'put':
      return putUser(ctx, rest);
    case 'deactivate':
      return deactivateUser(ctx, rest);
    case undefined:
      throw new UsageError('users: missing subcommand (put or deactivate)');
    default:
      if (sub === '--help' || sub === '-h') throw new HelpRequested();
      throw new UsageError(`users: unknown subcommand ${JSON.stringify(sub)}`);
  }
}

/** users put <userId> [--developer <vaultId>]... [--inactive] */
async function putUser(ctx: Context, args: readonly string[]): Promise<void> {
  const { values, positionals } = ctx.parse(
    'users put',
    args,
    { developer: { type: 'string', multiple: true }, inactive: { type: 'boolean' }, ...WAIT_OPTIONS },
    ['<userId>'],
  );
  const wait = waitRequest('users put', values);
  const userId = requireUserId(positionals[0], '<userId>');
  const developerVaults = vaultIds(listOption(values, 'developer'), '--developer');
  const active = !flagOption(values, 'inactive');
  const result = await ctx.withRedis(async (redis) => {
    const before = await redis.get(userString(userId));
    await ensureLibrary(redis);
    const updatedAt = Math.max(ctx.now(), (before !== null ? storedUpdatedAt(before) : 0) + 1);
    const record = serializeUserRecord({ id: userId, active, developerVaults, updatedAt });
    const receivers = await fcall(redis, 'fortary_put_user', userId, record);
    return {
      created: before === null,
      receivers,
      waited: wait && (await waitForSidecars(redis, wait.timeoutMs)),
    };
  });
  const what = active ? 'the user record' : 'the deactivation';
  const roles = developerVaults.length > 0 ? developerVaults.join(', ') : 'no vault';
  const json = {
    userId,
    created: result.created,
    active,
    developerVaults,
    sidecarsNotified: result.receivers,
  };
  const human = () => [
    `${result.created ? 'Created' : 'Updated'} user ${userId}: ${active ? 'active' : 'inactive'}, Developer on ${roles}.`,
    ...(active ? [] : ['The user is inactive: all of its keys are revoked.']),
  ];
  reportWrite(ctx, values, json, human, wait && { ...wait, what }, result.waited);
}

/** users deactivate <userId> [--wait [--timeout <N>s|ms] [--json]] */
async function deactivateUser(ctx: Context, args: readonly string[]): Promise<void> {
  const { values, positionals } = ctx.parse('users deactivate', args, WAIT_OPTIONS, ['<userId>']);
  const wait = waitRequest('users deactivate', values);
  const userId = requireUserId(positionals[0], '<userId>');
  const { keys, receivers, waited } = await ctx.withRedis(async (redis) => {
    // Only existence is checked: an unreadable record must not stand in the way of a deactivation.
    if ((await redis.exists(userString(userId))) === 0) throw new CliError(`unknown user ${userId}`);
    const keys = await redis.scard(userKeysSet(userId));
    await ensureLibrary(redis);
    const receivers = await fcall(redis, 'fortary_deactivate_user', userId);
    return { keys, receivers, waited: wait && (await waitForSidecars(redis, wait.timeoutMs)) };
  });
  const result = { userId, revokedKeys: keys, sidecarsNotified: receivers };
  const human = () => [`Deactivated user ${userId}; its ${keys} key(s) are revoked.`];
  reportWrite(ctx, values, result, human, wait && { ...wait, what: 'the deactivation' }, waited);
}

/** The stored record's updatedAt, so a rewrite's updatedAt always moves forward; 0 when unreadable. */
function storedUpdatedAt(text: string): number {
  try {
    const value = (JSON.parse(text) as { updatedAt?: unknown }).updatedAt;
    return typeof value === 'number' && Number.isSafeInteger(value) ? value : 0;
  } catch {
    return 0;
  }
}

export function sidecarLine(receivers: number): string {
  if (receivers === 0) {
    return 'No sidecar received the event (none is subscribed now); a sidecar resyncs when it subscribes.';
  }
  return `${receivers} sidecar(s) received the event.`;
}
