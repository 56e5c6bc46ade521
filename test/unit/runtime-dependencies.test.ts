/**
 * The runtime dependencies must not slow down the whole process by accident. ioredis 6.0.0 declared
 * `class VerbatimString extends String`, which leaves String.prototype in V8's dictionary mode: every string method
 * call in optimised code (`charCodeAt`, `slice`, `indexOf`, here and in grpc-js) became a generic property lookup,
 * about 20k instructions per warm Check (bench/README.md). ioredis 6.1.0 restores fast properties; this keeps any
 * dependency from bringing the problem back unnoticed.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '../..');
const dependencies = Object.keys(
  (
    JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    }
  ).dependencies,
);
const PROTOTYPES = ['String', 'Object', 'Array', 'Function', 'Uint8Array'];

/** `%HasFastProperties` of each builtin prototype, in a fresh node after requiring `modules` (V8 natives syntax). */
function fastPrototypes(modules: readonly string[]): Record<string, boolean> {
  const script = `
    for (const name of ${JSON.stringify(modules)}) require(name);
    const out = {};
    for (const name of ${JSON.stringify(PROTOTYPES)}) out[name] = %HasFastProperties(globalThis[name].prototype);
    out.Buffer = %HasFastProperties(Buffer.prototype);
    process.stdout.write(JSON.stringify(out));`;
  const output = execFileSync(process.execPath, ['--allow-natives-syntax', '-e', script], { cwd: ROOT });
  return JSON.parse(output.toString()) as Record<string, boolean>;
}

const ALL_FAST = Object.fromEntries([...PROTOTYPES, 'Buffer'].map((name) => [name, true]));

test('the probe sees a prototype turned slow (an object whose prototype is String.prototype)', () => {
  const script = `Object.create(String.prototype); process.stdout.write(String(%HasFastProperties(String.prototype)))`;
  const output = execFileSync(process.execPath, ['--allow-natives-syntax', '-e', script]).toString();
  expect(output).toBe('false');
});

test.each(dependencies)('requiring %s leaves the builtin prototypes with fast properties', (name) => {
  expect(fastPrototypes([name])).toEqual(ALL_FAST);
});

test('so does loading every runtime dependency together', () => {
  expect(fastPrototypes(dependencies)).toEqual(ALL_FAST);
});
