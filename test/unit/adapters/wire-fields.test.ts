/** The flat field walk shared by the health request decoder and the CheckResponse emit guard. */
import { walkFields } from '../../../src/adapters/grpc/wire-fields';

function fields(bytes: number[]): { ok: boolean; seen: Array<[number, number, number, number, number]> } {
  const seen: Array<[number, number, number, number, number]> = [];
  const ok = walkFields(Buffer.from(bytes), (...args) => seen.push(args));
  return { ok, seen };
}

describe('walkFields', () => {
  it('visits every wire type it knows, in order, with the value and its bounds', () => {
    expect(
      fields([0x08, 0x96, 0x01, 0x12, 0x02, 0x61, 0x62, 0x1d, 1, 2, 3, 4, 0x21, 1, 2, 3, 4, 5, 6, 7, 8]),
    ).toEqual({
      ok: true,
      seen: [
        [1, 0, 150, 1, 3],
        [2, 2, 2, 5, 7],
        [3, 5, 0, 8, 12],
        [4, 1, 0, 13, 21],
      ],
    });
    expect(fields([])).toEqual({ ok: true, seen: [] });
  });

  it.each([
    ['a truncated length-delimited field', [0x12, 0x05, 0x61]],
    ['a truncated fixed32', [0x1d, 1, 2]],
    ['a truncated fixed64', [0x21, 1, 2, 3, 4, 5, 6, 7]],
    ['a truncated varint', [0x08, 0x80]],
    ['a varint longer than 10 bytes', [0x08, ...Array(10).fill(0x80), 0x01]],
    ['a group (wire type 3)', [0x0b]],
    ['an end-group (wire type 4)', [0x0c]],
    ['wire type 6', [0x0e]],
    ['wire type 7', [0x0f]],
  ])('refuses %s', (_name, bytes) => {
    expect(fields(bytes).ok).toBe(false);
  });
});
