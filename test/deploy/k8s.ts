/** Renders the kustomizations with the real kubectl and validates the objects against the Kubernetes schemas. */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { isObj, type Obj } from './json';

export const ROOT = path.resolve(__dirname, '../..');
const KUBECTL = process.env.KUBECTL ?? 'kubectl';

/** `kubectl kustomize <dir>` (dir relative to the repository root), parsed. */
export function kustomize(dir: string): Obj[] {
  const out = execFileSync(KUBECTL, ['kustomize', path.join(ROOT, dir)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return parseAllDocuments(out).map((doc) => {
    if (doc.errors.length > 0) throw doc.errors[0];
    const value: unknown = doc.toJS();
    if (!isObj(value)) throw new Error(`kustomize ${dir} produced a non-object document`);
    return value;
  });
}

export interface SchemaResult {
  ref: string;
  errors: string[];
}

/** One result per object, in order (see validate-k8s.mjs for why this runs in a separate Node process). */
export function validateSchemas(objects: unknown[]): SchemaResult[] {
  const out = execFileSync(process.execPath, [path.join(__dirname, 'validate-k8s.mjs')], {
    cwd: ROOT,
    input: JSON.stringify(objects),
    encoding: 'utf8',
  });
  return JSON.parse(out) as SchemaResult[];
}
