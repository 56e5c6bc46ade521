/**
 * Loads the `fortary` Redis function library (functions.lua) when it is missing or another version, and leaves
 * it alone otherwise, so every CLI run and every sidecar start can call ensureFunctionLibrary() cheaply.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type Redis from 'ioredis';

export const FUNCTION_LIBRARY_NAME = 'fortary';
/** Must equal `local VERSION` in functions.lua (checked when the file is read). */
export const FUNCTION_LIBRARY_VERSION = '1';

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
 * Loads the library unless this version is already there. Concurrent callers may both load it; REPLACE makes
 * that harmless. Errors (an ACL without FUNCTION, Redis < 7 without functions) are thrown as they come.
 */
export async function ensureFunctionLibrary(redis: Redis): Promise<'loaded' | 'current'> {
  const source = functionLibrarySource();
  if ((await loadedFunctionLibraryVersion(redis)) === FUNCTION_LIBRARY_VERSION) return 'current';
  await redis.call('FUNCTION', 'LOAD', 'REPLACE', source);
  return 'loaded';
}
