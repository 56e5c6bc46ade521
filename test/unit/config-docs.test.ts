/**
 * The README's configuration table is the operator's reference: it must name every variable the sidecar reads
 * and state each default the code applies (issue 11 item 7 found the docs saying "core count" where the code
 * used cores − 1). Each documented default is checked by setting it explicitly: the resulting config must equal
 * the config with the variable unset.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readConfig } from '../../src/config';

const ROOT = path.join(__dirname, '..', '..');
const read = (file: string): string => fs.readFileSync(path.join(ROOT, file), 'utf8');

interface Row {
  names: string[];
  defaultText: string;
}

/** Rows of the README's `## Configuration` table: the variables of the first column and the default column. */
function readmeRows(): Row[] {
  const readme = read('README.md');
  const section = readme.slice(readme.indexOf('## Configuration'));
  const table = section.slice(0, section.indexOf('\n## '));
  return table
    .split('\n')
    .filter((line) => line.startsWith('| `'))
    .map((line) => {
      const [first = '', second = ''] = line.split('|').slice(1);
      return {
        names: [...first.matchAll(/`([A-Z_]+)`/g)].map((m) => m[1] as string),
        defaultText: second.trim(),
      };
    });
}

/** The variables src/config.ts reads: every FORTARY_ / REDIS_ name it spells as a literal or `env.` property. */
function variablesRead(): string[] {
  const source = read('src/config.ts');
  const names = new Set<string>();
  for (const m of source.matchAll(/'((?:FORTARY|REDIS)_[A-Z_]+)'/g)) names.add(m[1] as string);
  for (const m of source.matchAll(/env\.((?:FORTARY|REDIS)_[A-Z_]+)/g)) names.add(m[1] as string);
  return [...names].sort();
}

function configWith(env: Record<string, string>): unknown {
  const result = readConfig(env);
  if (!result.ok) throw new Error(`invalid: ${result.problems.join('; ')}`);
  return result.config;
}

/** What the default column says, as the value to set; null for "unset"/"empty" (nothing to set). */
function documentedValue(text: string): string | null {
  if (text === 'unset' || text === 'empty') return null;
  if (text.startsWith('cores − 1')) return String(Math.max(1, os.availableParallelism() - 1));
  const literal = /^`([^`]*)`$/.exec(text);
  if (literal === null) throw new Error(`default column not understood: ${text}`);
  return literal[1] as string;
}

describe('README configuration table', () => {
  const rows = readmeRows();

  it('names every variable the sidecar reads, and no other', () => {
    const documented = rows.flatMap((row) => row.names).sort();
    expect(documented).toEqual(variablesRead());
  });

  it.each(rows.flatMap((row) => row.names.map((name) => [name, row.defaultText] as const)))(
    '%s: the documented default (%s) is what the code applies',
    (name, defaultText) => {
      const value = documentedValue(defaultText);
      if (value === null) {
        expect(configWith({ [name]: '' })).toEqual(configWith({}));
        return;
      }
      expect(configWith({ [name]: value })).toEqual(configWith({}));
    },
  );

  it('would catch a wrong default (the check is not vacuous)', () => {
    expect(configWith({ FORTARY_BCRYPT_QUEUE: '33' })).not.toEqual(configWith({}));
    expect(configWith({ FORTARY_BCRYPT_CONCURRENCY: String(os.availableParallelism() + 1) })).not.toEqual(
      configWith({}),
    );
  });
});

describe('docs/architecture.md', () => {
  it('points to the README table instead of keeping a second copy that drifts', () => {
    const doc = read('docs/architecture.md');
    expect(doc).not.toMatch(/^\| `FORTARY_/m);
    expect(doc).toContain('README.md#configuration');
  });
});
