// Validates Kubernetes objects against the Kubernetes OpenAPI schemas with `kubernetes-models`.
// That package is ESM-only (its exports have only an `import` condition), which Jest's CommonJS runtime cannot
// load, so test/deploy/k8s.ts runs this script in a plain Node process.
//
// stdin: a JSON array of objects. stdout: a JSON array of { ref, errors } in the same order; `errors` is empty
// when the object is valid. A kind that kubernetes-models does not know (a CRD, a typo) is an error.
import { readFileSync } from 'node:fs';

const objects = JSON.parse(readFileSync(0, 'utf8'));

/** kubernetes-models lays classes out as <group>/<version>/<Kind>, with the core group as plain <version>. */
function modulePath(apiVersion, kind) {
  if (typeof apiVersion !== 'string' || !/^([a-z0-9.-]+\/)?v\d+((alpha|beta)\d+)?$/.test(apiVersion))
    return null;
  if (typeof kind !== 'string' || !/^[A-Z][A-Za-z]*$/.test(kind)) return null;
  return `kubernetes-models/${apiVersion}/${kind}`;
}

const results = [];
for (const object of objects) {
  const ref = `${object?.apiVersion}/${object?.kind} ${object?.metadata?.name}`;
  const path = modulePath(object?.apiVersion, object?.kind);
  let Model;
  try {
    if (path === null) throw new Error('no apiVersion/kind');
    Model = (await import(path))[object.kind];
    if (typeof Model !== 'function') throw new Error('no such model');
  } catch {
    results.push({ ref, errors: [`unknown kind ${object?.apiVersion}/${object?.kind}`] });
    continue;
  }
  try {
    new Model(object).validate();
    results.push({ ref, errors: [] });
  } catch (e) {
    const details = Array.isArray(e?.errors) ? e.errors.map((x) => `${x.instancePath} ${x.message}`) : [];
    results.push({ ref, errors: details.length > 0 ? details : [String(e?.message ?? e)] });
  }
}
process.stdout.write(JSON.stringify(results));
