#!/usr/bin/env node
// `fortary-authz` operator CLI (src/cli/main.ts). Runs the compiled CLI, building dist/ first if it is missing.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const entry = path.join(__dirname, '..', 'dist', 'src', 'cli', 'main.js');
const builder = path.join(__dirname, '..', 'scripts', 'build-if-needed.js');
// In a checkout, rebuild when src/ changed (cheap mtime walk); an installed image has no scripts/ and no src/.
if (fs.existsSync(builder)) require(builder).buildIfNeeded();
if (!fs.existsSync(entry)) {
  if (!fs.existsSync(entry)) {
    process.stderr.write(
      `fortary-authz: ${path.relative(process.cwd(), entry)} is missing and could not be built\n`,
    );
    process.exit(1);
  }
}
require(entry).main();
