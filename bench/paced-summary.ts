/**
 * Turning the paced client's raw samples into figures: latency quantiles over a sample array, and the status code of
 * an encoded CheckResponse (read from the bytes, so the client needs no protobuf codec on its hot path).
 */
import type { LatencySummary } from './paced-types';

export function summarize(values: ArrayLike<number>, count = values.length): LatencySummary {
  const sorted = Float64Array.from({ length: count }, (_, i) => values[i] as number).sort();
  const pick = (q: number) =>
    count === 0 ? NaN : (sorted[Math.min(count - 1, Math.ceil(q * count) - 1)] as number);
  let sum = 0;
  for (let i = 0; i < count; i++) sum += sorted[i] as number;
  return {
    n: count,
    p50: pick(0.5),
    p90: pick(0.9),
    p99: pick(0.99),
    p999: pick(0.999),
    max: count === 0 ? NaN : (sorted[count - 1] as number),
    mean: count === 0 ? NaN : sum / count,
  };
}

/** status.code of an encoded CheckResponse (field 1 -> google.rpc.Status field 1); 0 when absent. */
export function checkResponseCode(bytes: Buffer): number {
  let pos = 0;
  const varint = (): number => {
    let value = 0;
    let shift = 0;
    for (;;) {
      const b = bytes[pos++];
      if (b === undefined) throw new Error('truncated varint');
      value += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return value;
      shift += 7;
    }
  };
  while (pos < bytes.length) {
    const tag = varint();
    const wire = tag & 7;
    if (wire === 0) {
      varint();
    } else if (wire === 2) {
      const len = varint();
      if (tag >>> 3 === 1) {
        const end = pos + len;
        while (pos < end) {
          const inner = varint();
          if (inner === 0x08) return varint();
          if ((inner & 7) === 2) pos += varint();
          else if ((inner & 7) === 0) varint();
          else throw new Error('unexpected wire type in Status');
        }
        return 0;
      }
      pos += len;
    } else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else throw new Error(`unexpected wire type ${wire}`);
  }
  throw new Error('CheckResponse without status');
}
