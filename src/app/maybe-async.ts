/**
 * The warm path is synchronous (everything cached); only misses wait on Redis or bcrypt. Continuing synchronously
 * when a value is not a promise keeps a hit free of promise allocations and microtask hops.
 */
export type MaybePromise<T> = T | Promise<T>;

/**
 * Every promise here is native (async functions, ioredis, bcrypt), so `instanceof` suffices. Testing for a `then`
 * property instead would load a property that is absent from most of the values it sees (strings, entries and
 * decisions of several shapes): a megamorphic miss, looked up the slow way on every warm Check.
 */
export function isPromise<T>(value: MaybePromise<T>): value is Promise<T> {
  return value instanceof Promise;
}
