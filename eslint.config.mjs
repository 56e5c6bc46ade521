import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Redis key names and the event channel live in one module (the sidecar's and the CLI's single definition). */
const KEYSPACE_LITERALS = [
  {
    selector: 'Literal[value=/^fortary:/]',
    message: 'Redis key names and the event channel come from src/adapters/redis/keyspace.ts.',
  },
  {
    selector: 'TemplateElement[value.raw=/^fortary:/]',
    message: 'Redis key names and the event channel come from src/adapters/redis/keyspace.ts.',
  },
];

/**
 * Libraries through their public, documented API only: pino's internal symbols and stream, prom-client's private
 * state, deep imports into a package's lib/, and a hand-built HMAC (one-shot hash() over ipad/opad buffers instead
 * of createHmac) are refused everywhere. test/unit/lint-rules.test.ts proves each selector fires.
 */
const PRIVATE_MEMBERS = [
  'symbols',
  'hashMap',
  'streamSym',
  'chindingsSym',
  'needsMetadataGsym',
  // Node's undocumented Buffer methods behind toString/write: Buffer#toString(encoding, start, end) is the API.
  'utf8Slice',
  'latin1Slice',
  'asciiSlice',
  'utf8Write',
  'latin1Write',
];
const PUBLIC_API_SYNTAX = PRIVATE_MEMBERS.flatMap((name) => [
  {
    selector: `MemberExpression[property.name='${name}']`,
    message: `'${name}' is a library internal (pino, prom-client, Node's Buffer): use the documented API.`,
  },
  {
    selector: `MemberExpression[computed=true][property.value='${name}']`,
    message: `'${name}' is a library internal (pino, prom-client, Node's Buffer): use the documented API.`,
  },
  {
    selector: `ObjectPattern > Property[key.name='${name}']`,
    message: `'${name}' is a library internal (pino, prom-client, Node's Buffer): use the documented API.`,
  },
]);
const PUBLIC_API_IMPORTS = {
  paths: ['crypto', 'node:crypto'].map((name) => ({
    name,
    importNames: ['hash'],
    message:
      'HMACs come from createHmac and digests from createHash: no hand-built HMAC over one-shot hash().',
  })),
  patterns: [
    {
      group: ['pino/lib/*', 'prom-client/lib/*', 'sonic-boom', 'sonic-boom/*'],
      message:
        "A library's internals are not its API: use pino (pino.destination) and prom-client's exports.",
    },
  ],
};

const NO_HTTP2 = ['http2', 'node:http2'].map((name) => ({
  name,
  message: 'src/ serves gRPC with @grpc/grpc-js, not node:http2.',
}));

export default tseslint.config(
  { ignores: ['dist/**', 'coverage/**', 'node_modules/**', '**/*.js', '**/*.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      eqeqeq: ['error', 'always'],
      'no-console': 'off',
    },
  },
  {
    rules: {
      'no-restricted-syntax': ['error', ...PUBLIC_API_SYNTAX],
      'no-restricted-imports': ['error', PUBLIC_API_IMPORTS],
    },
  },
  {
    files: ['src/**/*.ts'],
    ignores: ['src/adapters/redis/keyspace.ts'],
    rules: { 'no-restricted-syntax': ['error', ...PUBLIC_API_SYNTAX, ...KEYSPACE_LITERALS] },
  },
  {
    // Tests read decoded protobuf objects, whose shape is checked by the assertions themselves.
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    // gRPC is served by @grpc/grpc-js: a hand-written HTTP/2 server is not to come back (bench/ and test/ may use
    // node:http2 as a client or a baseline). src/core repeats these in its own, longer list below.
    files: ['src/**/*.ts'],
    // Rules of one name replace each other: the public-API list is repeated here.
    rules: {
      'no-restricted-imports': [
        'error',
        { paths: NO_HTTP2.concat(PUBLIC_API_IMPORTS.paths), patterns: PUBLIC_API_IMPORTS.patterns },
      ],
    },
  },
  {
    // The one place that imports the one-shot hash(): the verified-token digest, a salted SHA-256 (not an HMAC),
    // where it saves a Hash object per warm Check. Everything else the rules above refuse still applies.
    files: ['src/app/secret-verifier.ts'],
    rules: {
      'no-restricted-imports': ['error', { paths: NO_HTTP2, patterns: PUBLIC_API_IMPORTS.patterns }],
    },
  },
  {
    // The decision core is pure: no I/O, no clock, no protocol or storage libraries.
    files: ['src/core/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            'ioredis',
            'pino',
            'bcrypt',
            'prom-client',
            'fs',
            'net',
            'http',
            'http2',
            'child_process',
            'dgram',
          ]
            .flatMap((m) => [m, `node:${m}`])
            .filter(
              (m) =>
                m !== 'node:ioredis' && m !== 'node:pino' && m !== 'node:bcrypt' && m !== 'node:prom-client',
            )
            .map((name) => ({ name, message: 'src/core is pure: do I/O in an adapter.' }))
            .concat(PUBLIC_API_IMPORTS.paths),
          patterns: [
            ...PUBLIC_API_IMPORTS.patterns,
            { group: ['@grpc/*'], message: 'src/core is pure: protocol types belong in src/adapters.' },
            { group: ['**/adapters/**', '**/app/**'], message: 'src/core must not depend on outer layers.' },
          ],
        },
      ],
      'no-restricted-globals': [
        'error',
        { name: 'Date', message: 'src/core takes time as an argument.' },
        { name: 'setTimeout', message: 'src/core has no timers.' },
        { name: 'process', message: 'src/core reads no environment.' },
      ],
      'no-restricted-properties': [
        'error',
        { object: 'Math', property: 'random', message: 'src/core is deterministic.' },
      ],
    },
  },
);
