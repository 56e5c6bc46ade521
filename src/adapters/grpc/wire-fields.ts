/**
 * A flat walk over one protobuf message's fields, for the small messages read off the Check path: health
 * requests and the CheckResponse emit guard. (The CheckRequest decoder has its own walker, tuned for the hot path.)
 */

/**
 * Called once per field, in wire order. `value` is the varint for wire type 0 and the payload length for wire
 * type 2; `start`/`end` bound the value's bytes (the payload for wire type 2).
 */
export type FieldVisitor = (
  field: number,
  wireType: number,
  value: number,
  start: number,
  end: number,
) => void;

/** Visits every field of `bytes`; false (having visited a prefix) when they are not a well-formed message. */
export function walkFields(bytes: Buffer, visit: FieldVisitor): boolean {
  let at = 0;
  while (at < bytes.length) {
    const tag = readVarint(bytes, at);
    if (tag === null) return false;
    at = tag.next;
    const field = Math.floor(tag.value / 8);
    const wireType = tag.value & 7;
    if (wireType === 0) {
      const varint = readVarint(bytes, at);
      if (varint === null) return false;
      visit(field, wireType, varint.value, at, varint.next);
      at = varint.next;
    } else if (wireType === 2) {
      const length = readVarint(bytes, at);
      if (length === null || length.next + length.value > bytes.length) return false;
      visit(field, wireType, length.value, length.next, length.next + length.value);
      at = length.next + length.value;
    } else if (wireType === 1 || wireType === 5) {
      const end = at + (wireType === 5 ? 4 : 8);
      if (end > bytes.length) return false;
      visit(field, wireType, 0, at, end);
      at = end;
    } else {
      return false;
    }
  }
  return true;
}

function readVarint(bytes: Buffer, start: number): { value: number; next: number } | null {
  let value = 0;
  for (let i = 0; i < 10 && start + i < bytes.length; i++) {
    const byte = bytes[start + i] as number;
    value += (byte & 0x7f) * 2 ** (7 * i);
    if (byte < 0x80) return { value, next: start + i + 1 };
  }
  return null;
}
