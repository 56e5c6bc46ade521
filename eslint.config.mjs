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
    files: ['src/**/*.ts'],
    ignores: ['src/adapters/redis/keyspace.ts'],
    rules: { 'no-restricted-syntax': ['error', ...KEYSPACE_LITERALS] },
  },
  {
    // Tests read decoded protobuf objects, whose shape is checked by the assertions themselves.
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
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
            .map((name) => ({ name, message: 'src/core is pure: do I/O in an adapter.' })),
          patterns: [
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
