/**
 * The change events published on `fortary:events` (docs/redis-contract.md). Every event carries the value of
 * `fortary:events:seq` it advanced to, which is how a sidecar notices a message it never received.
 */

export const EVENT_TYPES = ['key.revoked', 'key.updated', 'user.updated', 'user.deactivated'] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export interface ChangeEvent {
  seq: number;
  type: EventType;
  id: string;
  /** Epoch ms when Redis applied the change; absent in hand-published messages. */
  at: number | null;
}

const MAX_EVENT_LENGTH = 1024;

/** Parses a message; null when it is not a valid event (the caller then resyncs: it may have meant anything). */
export function parseEvent(text: string): ChangeEvent | null {
  if (text.length > MAX_EVENT_LENGTH) return null;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const { seq, type, id, at } = value as Record<string, unknown>;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) return null;
  if (!EVENT_TYPES.includes(type as EventType)) return null;
  if (typeof id !== 'string' || id.length === 0 || id.length > 128) return null;
  const time = typeof at === 'number' && Number.isFinite(at) ? at : null;
  return { seq, type: type as EventType, id, at: time };
}
