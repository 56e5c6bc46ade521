/**
 * docs/architecture.md's "Outcomes" table is the outcome table (src/core/outcome.ts) written out: one row per
 * reason with its kind (the log's and Envoy metadata's `decision`, the metric's `outcome` label), HTTP status,
 * gRPC code and public code. Compared cell by cell, so the docs cannot drift from the code; on a mismatch the
 * expected rows are in the failure diff, ready to paste (then `npx prettier --write docs/architecture.md`).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { DENY_REASONS, outcomeFor } from '../../../src/core/outcome';

const DOC = path.resolve(__dirname, '../../../docs/architecture.md');
const START = '<!-- outcome-table:start -->';
const END = '<!-- outcome-table:end -->';

const code = (text: string) => `\`${text}\``;

function expectedRows(): string[][] {
  return [
    ['reason', 'decision / `outcome` label', 'HTTP', 'gRPC', 'public `error.code`'],
    [code('allowed'), code('allow'), 'upstream', '0', '—'],
    ...DENY_REASONS.map((reason) => {
      const o = outcomeFor(reason);
      return [code(reason), code(o.kind), String(o.httpStatus), String(o.grpcCode), code(o.publicCode)];
    }),
  ];
}

function documentedRows(): string[][] {
  const text = readFileSync(DOC, 'utf8');
  const start = text.indexOf(START);
  const end = text.indexOf(END);
  if (start === -1 || end < start) throw new Error(`docs/architecture.md lacks ${START} ... ${END}`);
  return text
    .slice(start + START.length, end)
    .split('\n')
    .filter((line) => line.startsWith('|') && !/^\|[\s|:-]+\|$/.test(line))
    .map((line) =>
      line
        .slice(1, -1)
        .split('|')
        .map((cell) => cell.trim()),
    );
}

test('docs/architecture.md lists every reason exactly as the outcome table maps it', () => {
  expect(documentedRows()).toEqual(expectedRows());
});
