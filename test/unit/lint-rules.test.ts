/**
 * The project's own ESLint rules fire: each snippet is linted with the real config (eslint.config.mjs) through
 * ESLint's API (test/support/lint-snippets.mjs) as if it were a file at the given path, and must be refused with the rule's message; the allowed spelling next to it must
 * pass. A rule that silently stopped matching (a selector typo, a config block that no longer applies) fails here.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '../..');

/** ESLint's findings ("rule: message") for each snippet, linted as the file at its path. */
function lint(snippets: { file: string; code: string }[]): string[][] {
  const out = execFileSync(process.execPath, [path.join(ROOT, 'test/support/lint-snippets.mjs')], {
    cwd: ROOT,
    input: JSON.stringify(snippets.map((s) => ({ ...s, file: path.join(ROOT, s.file) }))),
  });
  return JSON.parse(out.toString('utf8')) as string[][];
}

const refused: [string, string, string, RegExp][] = [
  [
    'a Redis key name spelled outside keyspace.ts',
    'src/cli/probe.ts',
    "export const k = (id: string) => 'fortary:key:' + id;\n",
    /keyspace\.ts/,
  ],
  [
    'a key name in a template literal',
    'src/app/probe.ts',
    'export const k = (id: string) => `fortary:user:${id}`;\n',
    /keyspace\.ts/,
  ],
  [
    "pino's internal symbols",
    'src/observability/probe.ts',
    "import pino from 'pino';\nexport const s = pino.symbols.streamSym;\n",
    /'symbols' is a library internal/,
  ],
  [
    "pino's symbols, destructured",
    'src/observability/probe.ts',
    "import pino from 'pino';\nexport const { symbols } = pino;\n",
    /'symbols' is a library internal/,
  ],
  [
    "pino's stream through a symbol held elsewhere",
    'bench/probe.ts',
    'export const f = (logger: any, s: any) => logger[s.streamSym];\n',
    /'streamSym' is a library internal/,
  ],
  [
    "prom-client's private histogram map",
    'src/observability/probe.ts',
    'export const f = (h: any) => Object.values(h.hashMap);\n',
    /'hashMap' is a library internal/,
  ],
  [
    "prom-client's private map by a computed name",
    'src/observability/probe.ts',
    "export const f = (h: any) => h['hashMap'];\n",
    /'hashMap' is a library internal/,
  ],
  [
    "Node's undocumented Buffer#utf8Slice",
    'src/adapters/probe.ts',
    'export const s = (b: Buffer) => (b as any).utf8Slice(0, 1);\n',
    /'utf8Slice' is a library internal/,
  ],
  [
    'a hand-built HMAC over one-shot hash()',
    'src/app/probe.ts',
    "import { hash } from 'node:crypto';\nexport const h = (b: Buffer) => hash('sha256', b, 'binary');\n",
    /createHmac/,
  ],
  [
    'one-shot hash() in the pure core too',
    'src/core/probe.ts',
    "import { hash } from 'crypto';\nexport const h = (b: Buffer) => hash('sha256', b);\n",
    /createHmac/,
  ],
  [
    'node:http2 in the one file allowed the one-shot hash()',
    'src/app/secret-verifier.ts',
    "import http2 from 'node:http2';\nexport const s = http2.createServer;\n",
    /@grpc\/grpc-js, not node:http2/,
  ],
  [
    "pino's internals in the one file allowed the one-shot hash()",
    'src/app/secret-verifier.ts',
    "import symbols from 'pino/lib/symbols';\nexport default symbols;\n",
    /internals are not its API/,
  ],
  [
    "a deep import of pino's internals",
    'src/observability/probe.ts',
    "import symbols from 'pino/lib/symbols';\nexport default symbols;\n",
    /internals are not its API/,
  ],
  [
    "a hand-made destination built on pino's SonicBoom",
    'src/observability/probe.ts',
    "import SonicBoom from 'sonic-boom';\nexport default SonicBoom;\n",
    /pino\.destination/,
  ],
];

/** Snippets that must pass: the allowed spelling of each refused one. */
const allowed: [string, string, string][] = [
  [
    'the key names in keyspace.ts itself',
    'src/adapters/redis/keyspace.ts',
    "export const KEY_PREFIX = 'fortary:key:';\n",
  ],
  [
    'a key name built from keyspace.ts',
    'src/cli/probe.ts',
    "import { keyHash } from '../adapters/redis/keyspace';\nexport const k = keyHash('abc');\n",
  ],
  [
    'the public pino, prom-client and crypto APIs',
    'src/observability/probe.ts',
    [
      "import { createHash, createHmac } from 'node:crypto';",
      "import pino from 'pino';",
      "import { Histogram } from 'prom-client';",
      "const h = new Histogram({ name: 'x', help: 'x', labelNames: ['outcome'] as const });",
      "h.labels('allow').observe(1);",
      'export const log = pino({}, pino.destination({ dest: 1, sync: false })).bindings();',
      "export const mac = createHmac('sha256', 'k').update('m').digest('hex');",
      "export const digest = createHash('sha256').update('m').digest('hex');",
      '',
    ].join('\n'),
  ],
  [
    "the verified-token digest's one-shot hash() (salted SHA-256, not an HMAC), in secret-verifier.ts only",
    'src/app/secret-verifier.ts',
    "import { hash } from 'node:crypto';\nexport const d = (s: string) => hash('sha256', s, 'binary');\n",
  ],
];

describe('ESLint rules of this project', () => {
  // One ESLint process for every snippet.
  const results = lint([...refused, ...allowed].map(([, file, code]) => ({ file, code })));

  it.each(refused.map((row, i) => [...row, i] as const))('refuses %s', (_name, _file, _code, expected, i) => {
    expect(results[i]).toEqual(expect.arrayContaining([expect.stringMatching(expected)]));
  });

  it.each(allowed.map((row, i) => [...row, refused.length + i] as const))(
    'allows %s',
    (_name, _file, _code, i) => {
      expect(results[i]).toEqual([]);
    },
  );
});
