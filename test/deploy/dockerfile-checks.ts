/**
 * Review rules for the Dockerfile and .dockerignore, checked on the text (there is no Docker engine in CI).
 * Each function returns every problem it finds.
 */

export interface Instruction {
  keyword: string;
  args: string;
  /** Index of the FROM that starts the instruction's stage (-1 before the first FROM). */
  stage: number;
}

/** Instructions with line continuations joined and comment lines dropped, as Docker reads them. */
export function parseDockerfile(text: string): Instruction[] {
  const instructions: Instruction[] = [];
  let stage = -1;
  let pending = '';
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line.startsWith('#') || (line === '' && pending === '')) continue;
    const continued = line.endsWith('\\');
    pending += `${continued ? line.slice(0, -1).trimEnd() : line} `;
    if (continued) continue;
    const m = /^(\S+)\s*(.*)$/.exec(pending.trim());
    pending = '';
    if (m?.[1] === undefined) continue;
    const keyword = m[1].toUpperCase();
    if (keyword === 'FROM') stage += 1;
    instructions.push({ keyword, args: (m[2] ?? '').trim(), stage });
  }
  return instructions;
}

/** `ENV A=1 B="2"` and the legacy `ENV A 1`, as name/value pairs. */
function envPairs(args: string): [string, string][] {
  const legacy = /^([A-Za-z_][\w.-]*)\s+([^=]*)$/.exec(args);
  if (legacy?.[1] !== undefined && !args.includes('=')) return [[legacy[1], legacy[2] ?? '']];
  return [...args.matchAll(/([A-Za-z_][\w.-]*)(?:=("[^"]*"|'[^']*'|\S*))?/g)].map((m) => [
    m[1] ?? '',
    (m[2] ?? '').replace(/^["']|["']$/g, ''),
  ]);
}

const SECRET_NAME = /PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL/i;
const URL_WITH_CREDENTIALS = /:\/\/[^/\s@]*:[^@\s]+@/;
/** node:<major>.<minor>.<patch>[-variant], optionally with a digest. */
const PINNED_NODE = /^node:20\.\d+\.\d+(-[a-z0-9.-]+)?(@sha256:[a-f0-9]{64})?$/;

export const ENTRYPOINT = ['node', 'dist/src/main.js'];
export const EXPOSED_PORTS = ['9191', '9192', '9464'];

export function checkDockerfile(text: string): string[] {
  const problems: string[] = [];
  const all = parseDockerfile(text);
  const froms = all.filter((i) => i.keyword === 'FROM');
  const stageNames = new Set<string>();

  if (froms.length < 2) problems.push('must be a multi-stage build (a build stage and a runtime stage)');
  for (const from of froms) {
    const words = from.args.split(/\s+/).filter((w) => !w.startsWith('--'));
    const image = words[0] ?? '';
    if (!stageNames.has(image) && !PINNED_NODE.test(image)) {
      problems.push(`base image ${image} must be an official Node 20 image pinned to an exact version tag`);
    }
    if (words[1]?.toUpperCase() === 'AS' && words[2] !== undefined) stageNames.add(words[2]);
  }

  for (const i of all) {
    if (i.keyword === 'ENV' || i.keyword === 'ARG') {
      for (const [name, value] of envPairs(i.args)) {
        if (SECRET_NAME.test(name) || URL_WITH_CREDENTIALS.test(value)) {
          problems.push(`${i.keyword} ${name} looks like a secret baked into the image`);
        }
      }
    }
    if (
      (i.keyword === 'COPY' || i.keyword === 'ADD') &&
      /(^|[\s/])(\.env\S*|\.npmrc|\S+\.pem|\S+\.key)(\s|$)/.test(i.args)
    ) {
      problems.push(`${i.keyword} ${i.args} copies a credentials file into the image`);
    }
    if (i.keyword === 'RUN' && /\bnpm\s+(install|i)\b/.test(i.args))
      problems.push('use npm ci, not npm install');
  }

  const last = froms.length - 1;
  const final = all.filter((i) => i.stage === last && last >= 0);
  const runs = final.filter((i) => i.keyword === 'RUN').map((i) => i.args);
  const npmCi = runs.filter((r) => /\bnpm\s+ci\b/.test(r));
  if (npmCi.length === 0 || !npmCi.every((r) => /--omit[= ]dev\b/.test(r))) {
    problems.push('the runtime stage must install with npm ci --omit=dev');
  }
  if (
    !final.some(
      (i) => i.keyword === 'ENV' && envPairs(i.args).some(([n, v]) => n === 'NODE_ENV' && v === 'production'),
    )
  ) {
    problems.push('the runtime stage must set NODE_ENV=production');
  }

  const user = final.filter((i) => i.keyword === 'USER').pop()?.args;
  const uid = user === undefined ? undefined : /^(\d+)(:\d+)?$/.exec(user)?.[1];
  if (uid === undefined || Number(uid) === 0)
    problems.push(`the runtime stage must run as a numeric non-root USER, not ${user}`);

  const entrypoint = final.filter((i) => i.keyword === 'ENTRYPOINT').pop()?.args;
  let entry: unknown;
  try {
    entry = entrypoint === undefined ? undefined : JSON.parse(entrypoint);
  } catch {
    entry = undefined;
  }
  if (JSON.stringify(entry) !== JSON.stringify(ENTRYPOINT)) {
    problems.push(`ENTRYPOINT must be the exec form ${JSON.stringify(ENTRYPOINT)} so SIGTERM reaches node`);
  }
  const cmd = final.filter((i) => i.keyword === 'CMD').pop()?.args;
  if (cmd !== undefined && !cmd.startsWith('[')) problems.push('CMD must be in exec form');

  const exposed = final
    .filter((i) => i.keyword === 'EXPOSE')
    .flatMap((i) => i.args.split(/\s+/).map((p) => p.replace(/\/tcp$/, '')));
  for (const port of EXPOSED_PORTS) if (!exposed.includes(port)) problems.push(`EXPOSE ${port} is missing`);

  const healthcheck = final.filter((i) => i.keyword === 'HEALTHCHECK').pop();
  if (healthcheck !== undefined && healthcheck.args.toUpperCase() !== 'NONE') {
    problems.push('HEALTHCHECK must be NONE or absent (Kubernetes probes check health)');
  }

  const copied = final.filter((i) => i.keyword === 'COPY').map((i) => i.args);
  for (const [what, pattern] of [
    ['dist/ from the build stage', /--from=\S+\s+\S*dist\b/],
    ['package.json', /(^|\s)package\.json\s/],
    ['proto/ (the service definitions @grpc/proto-loader loads)', /^proto\/?\s/],
  ] as const) {
    if (!copied.some((c) => pattern.test(c))) problems.push(`the runtime stage must COPY ${what}`);
  }
  return problems;
}

export const DOCKERIGNORE_REQUIRED = ['node_modules', '.git', 'dist', 'coverage'];

export function checkDockerignore(text: string): string[] {
  const entries = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  const normalise = (e: string): string =>
    e
      .replace(/^!/, '')
      .replace(/^(\*\*\/|\/)/, '')
      .replace(/\/$/, '');
  const problems: string[] = [];
  for (const required of DOCKERIGNORE_REQUIRED) {
    if (!entries.some((e) => !e.startsWith('!') && normalise(e) === required))
      problems.push(`.dockerignore must exclude ${required}`);
    if (entries.some((e) => e.startsWith('!') && normalise(e).split('/')[0] === required)) {
      problems.push(`.dockerignore re-includes ${required}`);
    }
  }
  return problems;
}
