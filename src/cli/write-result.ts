/**
 * The output of write commands (keys create/edit/rotate/revoke, users put/deactivate). With --json a command prints
 * exactly one line, a JSON object, for scripts; without it, the human lines. Every object from a command that
 * publishes an event carries `sidecarsNotified` (the PUBLISH receiver count). `--wait --json` prints instead exactly
 * the object issue 11 specifies, {seq, sidecars, applied, pending, elapsedMs} (keys revoke: keyId first), so a
 * script waiting on sidecars reads one fixed shape whatever the command.
 */
import { flagOption, type OptionValues } from './args';
import type { Context } from './context';
import { reportWait, type WaitResult } from './sidecars';
import { sidecarLine } from './users';

export const JSON_OPTION = { json: { type: 'boolean' } } as const;

/** Prints `result` as one JSON line under --json, else the human lines. */
export function printWriteResult(
  ctx: Context,
  values: OptionValues,
  result: object,
  human: () => readonly string[],
): void {
  if (flagOption(values, 'json')) {
    ctx.io.out(JSON.stringify(result));
    return;
  }
  for (const line of human()) ctx.io.out(line);
}

/**
 * A write that published an event: `result` (with sidecarsNotified) as JSON, or the human lines followed by the
 * sidecar line; under --wait the wait's outcome replaces the sidecar line and joins the JSON object.
 */
export function reportWrite(
  ctx: Context,
  values: OptionValues,
  result: { sidecarsNotified: number },
  human: () => readonly string[],
  wait: { json: boolean; timeoutMs: number; what: string; extra?: Record<string, unknown> } | null,
  waited: WaitResult | null,
): void {
  if (wait !== null && waited !== null) {
    if (!wait.json) for (const line of human()) ctx.io.out(line);
    reportWait(ctx, waited, wait);
    return;
  }
  printWriteResult(ctx, values, result, () => [...human(), sidecarLine(result.sidecarsNotified)]);
}
