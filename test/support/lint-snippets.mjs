// Lints snippets with the project's ESLint config through ESLint's Node API, in a separate Node process (Jest's
// VM cannot import the ESM config). Input on stdin: [{ file, code }]; output: one array of "rule: message" per
// snippet.
import { ESLint } from 'eslint';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const snippets = JSON.parse(Buffer.concat(chunks).toString('utf8'));
const eslint = new ESLint({ cwd: process.cwd() });
const out = [];
for (const { file, code } of snippets) {
  const [result] = await eslint.lintText(code, { filePath: file });
  out.push((result?.messages ?? []).map((m) => `${m.ruleId ?? 'parse'}: ${m.message}`));
}
process.stdout.write(JSON.stringify(out));
