#!/usr/bin/env node
// Builds dist/ with `tsc -p tsconfig.build.json` when an entry point is missing or older than a file under src/.
// Plain JavaScript so it runs before anything is compiled (npm `prestart`, bin/fortary-authz.js).
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');

/** Compiled entry points, each required when its source exists. */
const ENTRY_POINTS = [
  ['src/main.ts', 'dist/src/main.js'],
  ['src/cli/main.ts', 'dist/src/cli/main.js'],
];

function newestMtime(dir) {
  let newest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    const mtime = entry.isDirectory() ? newestMtime(full) : fs.statSync(full).mtimeMs;
    if (mtime > newest) newest = mtime;
  }
  return newest;
}

/** Why a build is needed, or null when dist/ is current. */
function staleReason() {
  const sourceDir = path.join(root, 'src');
  if (!fs.existsSync(sourceDir)) return null; // an install without sources runs what it has
  const newestSource = newestMtime(sourceDir);
  for (const [source, output] of ENTRY_POINTS) {
    if (!fs.existsSync(path.join(root, source))) continue;
    const file = path.join(root, output);
    if (!fs.existsSync(file)) return `${output} is missing`;
    if (fs.statSync(file).mtimeMs < newestSource) return `${output} is older than src/`;
  }
  return null;
}

/** Runs tsc if needed; returns the exit status (tsc's output goes to stderr so stdout stays the caller's). */
function buildIfNeeded({ force = false } = {}) {
  const reason = force ? 'a fresh build was asked for' : staleReason();
  if (reason === null) return 0;
  let tsc;
  try {
    tsc = require.resolve('typescript/bin/tsc', { paths: [root] });
  } catch {
    process.stderr.write(
      `fortary-authz: ${reason} and TypeScript is not installed to build it (npm ci, npm run build)\n`,
    );
    return 1;
  }
  process.stderr.write(`fortary-authz: ${reason}; building (tsc -p tsconfig.build.json)\n`);
  const result = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], {
    cwd: root,
    stdio: ['ignore', process.stderr, process.stderr],
  });
  if (result.status !== 0) return result.status ?? 1;
  // tsc --incremental rewrites only what changed; mark the entry points current so the next run does not rebuild.
  const now = new Date();
  for (const [source, output] of ENTRY_POINTS) {
    const file = path.join(root, output);
    if (fs.existsSync(path.join(root, source)) && fs.existsSync(file)) fs.utimesSync(file, now, now);
  }
  return 0;
}

module.exports = { buildIfNeeded, staleReason };

if (require.main === module) process.exitCode = buildIfNeeded();
