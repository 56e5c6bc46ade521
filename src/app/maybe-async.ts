/**
 * The warm path is synchronous (everything cached); only misses wait on Redis or bcrypt. Chaining through this
 * helper keeps a hit free of promise allocations and microtask hops.
 */
export type MaybePromise<T> = T | Promise<T>;

export function isPromise<T>(value: MaybePromise<T>): value is Promise<T> {
  return typeof (value as Promise<T> | undefined)?.then === 'function';
}

export function chain<T, U>(value: MaybePromise<T>, next: (v: T) => MaybePromise<U>): MaybePromise<U> {
  return isPromise(value) ? value.then(next) : next(value);
}
