/**
 * Loads the `fortary` Redis function library (functions.lua) when it is missing or OLDER than this code's, and
 * leaves it alone otherwise, so every CLI run and every sidecar (re)connect can call ensureFunctionLibrary()
 * cheaply. Never downgrading is what keeps a rolling upgrade from flapping: old and new pods both re-check on every
 * reconnect, and if each replaced a *differing* version they would swap the library back and forth. A newer
 * library keeps every function and argument older code calls (docs/redis-contract.md), so old pods run on it.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type Redis from 'ioredis';

export const FUNCTION_LIBRARY_NAME = 'fortary';
/**
 * Must equal `local VERSION` in functions.lua (checked when the file is read). Dot-separated non-negative integers
 * ('3', '3.1'), compared numerically: bump it on every change to functions.lua.
 */
export const FUNCTION_LIBRARY_VERSION = '3';

/** Where the library lives in the sources, relative to the package root (tsc does not copy .lua files). */
const LIBRARY_PATH = path.join('src', 'adapters', 'redis', 'functions.lua');

/**
 * The library file: `src/adapters/redis/functions.lua` under the package root (the nearest directory above `from`
 * with package.json), which serves both src/ under Jest and dist/src/ after tsc; else a copy next to the compiled
 * module, as the Docker image ships it (dist/src/adapters/redis/functions.lua, no src/).
 */
export function functionLibraryPath(from: string = __dirname): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, LIBRARY_PATH))) {
      return path.join(dir, LIBRARY_PATH);
    }
    if (path.dirname(dir) === dir) break;
  }
  const sibling = path.join(from, 'functions.lua');
  if (existsSync(sibling)) return sibling;
  throw new Error(`cannot find ${LIBRARY_PATH} above ${from}, nor functions.lua beside it`);
}

let cachedSource: string | null = null;

/** The library's Lua source, checked to declare the expected name and version. */
export function functionLibrarySource(): string {
  if (cachedSource !== null) return cachedSource;
  const source = readFileSync(functionLibraryPath(), 'utf8');
  if (!source.startsWith(`#!lua name=${FUNCTION_LIBRARY_NAME}\n`)) {
    throw new Error(`functions.lua does not declare the library ${FUNCTION_LIBRARY_NAME}`);
  }
  const version = /^local VERSION = '([^']*)'$/m.exec(source)?.[1];
  if (version !== FUNCTION_LIBRARY_VERSION) {
    throw new Error(
      `functions.lua is version ${version ?? '(none)'}, the code expects ${FUNCTION_LIBRARY_VERSION}`,
    );
  }
  cachedSource = source;
  return source;
}

/** The version loaded in Redis, or null when the library (or its version function) is not loaded. */
export async function loadedFunctionLibraryVersion(redis: Redis): Promise<string | null> {
  try {
    const version = await redis.call('FCALL_RO', 'fortary_version', '0');
    return typeof version === 'string' ? version : String(version);
  } catch (error) {
    // Duck-typed: under a VM context (Jest) errors need not be `instanceof Error` of this realm.
    const message = (error as { message?: unknown } | null)?.message;
    if (typeof message === 'string' && /function not found/i.test(message)) return null;
    throw error;
  }
}

/**
 * Orders two library versions: negative when `a` is older than `b`, 0 when equal, positive when newer. Each is
 * dot-separated non-negative integers, compared numerically part by part ('10' > '9', '2.1' > '2'); a version
 * that is not in that form is older than any that is (no loader of this code wrote it).
 */
export function compareLibraryVersions(a: string, b: string): number {
  const pa = parseVersion(a);
  const pb = parseVersion(b);
  if (pa === null || pb === null) return pa === null ? (pb === null ? 0 : -1) : 1;
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0n) - (pb[i] ?? 0n);
    if (d !== 0n) return d < 0n ? -1 : 1;
  }
  return 0;
}

function parseVersion(version: string): bigint[] | null {
  if (!/^\d+(?:\.\d+)*$/.test(version)) return null;
  return version.split('.').map((part) => BigInt(part));
}

export interface FunctionLibrary {
  source: string;
  version: string;
}

/**
 * Loads the library when it is missing or older than `library` (this code's by default); leaves an equal or newer
 * one in place ('current' / 'newer'). Concurrent loaders of one version may both load it; REPLACE makes that
 * harmless. A loader that read an older version just before a newer loader replaced it can still put its own back
 * once (Redis has no compare-and-load); the newer pods restore theirs at their next reconnect, and nothing loops.
 * Errors (an ACL without FUNCTION, Redis < 7 without functions) are thrown as they come.
 */
export async function ensureFunctionLibrary(
  redis: Redis,
  library: FunctionLibrary = { source: functionLibrarySource(), version: FUNCTION_LIBRARY_VERSION },
): Promise<'loaded' | 'current' | 'newer'> {
  const loaded = await loadedFunctionLibraryVersion(redis);
  if (loaded !== null) {
    const order = compareLibraryVersions(loaded, library.version);
    if (order === 0) return 'current';
    if (order > 0) return 'newer';
  }
  await redis.call('FUNCTION', 'LOAD', 'REPLACE', library.source);
  return 'loaded';
}
