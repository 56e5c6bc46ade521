/** The Dockerfile and .dockerignore follow the review rules (dockerfile-checks.ts); each rule is shown to fire. */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { checkDockerfile, checkDockerignore, parseDockerfile } from './dockerfile-checks';

const ROOT = path.resolve(__dirname, '../..');
const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
const dockerignore = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8');

/** The Dockerfile with `from` replaced by `to`; fails if `from` is not there, so a breakage cannot go stale. */
function edit(from: string | RegExp, to: string): string {
  const out = dockerfile.replace(from, to);
  if (out === dockerfile) throw new Error(`${String(from)} not found in the Dockerfile`);
  return out;
}

describe('Dockerfile', () => {
  it('passes every review rule', () => {
    expect(checkDockerfile(dockerfile)).toEqual([]);
  });

  it('builds on node:20.20.2-bookworm-slim in both stages and starts dist/src/main.js', () => {
    const froms = parseDockerfile(dockerfile).filter((i) => i.keyword === 'FROM');
    expect(froms.map((f) => f.args.split(/\s+/)[0])).toEqual([
      'node:20.20.2-bookworm-slim',
      'node:20.20.2-bookworm-slim',
    ]);
    expect(dockerfile).toContain('ENTRYPOINT ["node", "dist/src/main.js"]');
  });

  const breakages: [string, string, RegExp][] = [
    [
      'latest tag',
      edit(/FROM node:20\.20\.2-bookworm-slim AS runtime/, 'FROM node:latest AS runtime'),
      /pinned/,
    ],
    [
      'floating major tag',
      edit(/FROM node:20\.20\.2-bookworm-slim AS build/, 'FROM node:20-bookworm-slim AS build'),
      /pinned/,
    ],
    [
      'base image from a variable',
      edit(/FROM node:20\.20\.2-bookworm-slim AS runtime/, 'FROM ${BASE} AS runtime'),
      /pinned/,
    ],
    [
      'single stage',
      edit(/^[\s\S]*?(?=FROM node:20\.20\.2-bookworm-slim AS runtime)/, ''),
      /multi-stage|COPY dist/,
    ],
    ['dev dependencies at run time', edit('npm ci --omit=dev', 'npm ci'), /npm ci --omit=dev/],
    ['npm install', edit('npm ci --omit=dev', 'npm install --omit=dev'), /npm ci, not npm install/],
    ['named user', edit('USER 10001:10001', 'USER node'), /numeric non-root USER/],
    ['root user', edit('USER 10001:10001', 'USER 0'), /numeric non-root USER/],
    ['no user', edit(/^USER .*$/m, ''), /numeric non-root USER/],
    ['shell-form entrypoint', edit(/^ENTRYPOINT .*$/m, 'ENTRYPOINT node dist/src/main.js'), /exec form/],
    ['wrong entrypoint', edit('dist/src/main.js"]', 'dist/main.js"]'), /exec form/],
    ['shell-form CMD', edit(/^ENTRYPOINT .*$/m, '$&\nCMD node dist/src/main.js'), /CMD must be in exec form/],
    ['no NODE_ENV', edit('ENV NODE_ENV=production', 'ENV NODE_ENV=development'), /NODE_ENV=production/],
    [
      'REDIS_URL with a password',
      edit('ENV NODE_ENV=production', 'ENV NODE_ENV=production REDIS_URL=rediss://:pw@redis:6380'),
      /looks like a secret/,
    ],
    [
      'build-time token',
      edit('WORKDIR /app', 'ARG NPM_TOKEN\nWORKDIR /app'),
      /ARG NPM_TOKEN looks like a secret/,
    ],
    [
      'legacy ENV password',
      edit('WORKDIR /app', 'ENV DB_PASSWORD hunter2\nWORKDIR /app'),
      /DB_PASSWORD looks like a secret/,
    ],
    [
      '.npmrc copied',
      edit('COPY package.json package-lock.json ./', 'COPY .npmrc package.json package-lock.json ./'),
      /credentials file/,
    ],
    ['health check in the image', edit('HEALTHCHECK NONE', 'HEALTHCHECK CMD node -e 1'), /HEALTHCHECK/],
    ['protos left out', edit(/^COPY proto .*$/m, ''), /must COPY proto\//],
    ['port not exposed', edit('EXPOSE 9191 9192 9464', 'EXPOSE 9191'), /EXPOSE 9192 is missing/],
  ];

  it.each(breakages)('catches: %s', (_name, broken, expected) => {
    expect(checkDockerfile(broken)).toEqual(expect.arrayContaining([expect.stringMatching(expected)]));
  });

  it('reads instructions as Docker does: continuations joined, comments dropped', () => {
    const parsed = parseDockerfile('FROM a AS b\n# c\nRUN x \\\n # inside\n  && y\nFROM b\nUSER 1\n');
    expect(parsed).toEqual([
      { keyword: 'FROM', args: 'a AS b', stage: 0 },
      { keyword: 'RUN', args: 'x && y', stage: 0 },
      { keyword: 'FROM', args: 'b', stage: 1 },
      { keyword: 'USER', args: '1', stage: 1 },
    ]);
  });
});

describe('.dockerignore', () => {
  it('keeps node_modules, .git, dist and coverage out of the build context', () => {
    expect(checkDockerignore(dockerignore)).toEqual([]);
  });

  it.each(['node_modules', '.git', 'dist', 'coverage'])('catches a missing %s', (entry) => {
    const without = dockerignore
      .split('\n')
      .filter((l) => l.trim() !== entry)
      .join('\n');
    expect(checkDockerignore(without)).toEqual([`.dockerignore must exclude ${entry}`]);
  });

  it('catches a re-included entry', () => {
    expect(checkDockerignore(`${dockerignore}\n!dist/src\n`)).toEqual(['.dockerignore re-includes dist']);
  });
});

describe('runtime dependencies (the image installs `dependencies` only)', () => {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
    dependencies: Record<string, string>;
  };

  /** Bare packages the compiled sidecar loads: value imports in src/ (type-only imports are erased). */
  function runtimeImports(dir: string): Map<string, string> {
    const found = new Map<string, string>();
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const file = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        for (const [name, where] of runtimeImports(file)) found.set(name, where);
        continue;
      }
      if (!file.endsWith('.ts')) continue;
      const text = readFileSync(file, 'utf8');
      for (const match of text.matchAll(/^import (?!type )[^;]*? from '([^'.][^']*)';/gms)) {
        const specifier = match[1] as string;
        if (specifier.startsWith('node:')) continue;
        const name = specifier.startsWith('@')
          ? specifier.split('/').slice(0, 2).join('/')
          : specifier.split('/')[0];
        found.set(name as string, path.relative(ROOT, file));
      }
    }
    return found;
  }

  it('every package src/ loads at run time is a production dependency', () => {
    const imports = runtimeImports(path.join(ROOT, 'src'));
    expect(imports.size).toBeGreaterThan(5);
    const missing = [...imports].filter(([name]) => pkg.dependencies[name] === undefined);
    expect(missing).toEqual([]);
  });
});
