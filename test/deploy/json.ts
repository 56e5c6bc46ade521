/** Typed access to parsed YAML/JSON documents whose shape is not known in advance. */

export type Obj = Record<string, unknown>;

export const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The value at `path`, or undefined as soon as a step does not exist. */
export function at(v: unknown, ...path: (string | number)[]): unknown {
  let cur = v;
  for (const step of path) {
    if (typeof step === 'number') {
      if (!Array.isArray(cur)) return undefined;
      cur = cur[step];
    } else {
      if (!isObj(cur)) return undefined;
      cur = cur[step];
    }
  }
  return cur;
}

export const obj = (v: unknown): Obj => (isObj(v) ? v : {});
export const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
export const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
export const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);

/** Every string anywhere inside `v` (object values and array items, recursively). */
export function strings(v: unknown): string[] {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) return v.flatMap(strings);
  if (isObj(v)) return Object.values(v).flatMap(strings);
  return [];
}

/** A deep copy for mutation tests. */
export const clone = <T>(v: T): T => structuredClone(v);
