/**
 * Reads the vault a request path names, refusing any path that two servers could resolve differently
 * (docs/path-rules.md). Envoy normalises paths before ext_authz when configured as in envoy/envoy.yaml; this
 * is the second line: nothing is normalised here, anything ambiguous is refused.
 */

export type PathInfo =
  | { kind: 'vault'; vaultId: string; path: string }
  | { kind: 'none'; path: string }
  | { kind: 'rejected'; detail: string };

export const VAULT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
export const MAX_PATH_LENGTH = 4096;
const VAULTS_PREFIX = '/v1/vaults';

/** Characters RFC 3986 calls unreserved: encoding them is never needed, so an encoded one is an evasion attempt. */
const UNRESERVED = /[A-Za-z0-9\-._~]/;

/**
 * The common request target, checked in one regexp pass (irregexp, several times faster than a charCodeAt loop): a
 * path of printable ASCII without `#`, `%`, `;`, `?` or `\`, then an optional query of printable ASCII. Whatever it
 * accepts, the character checks of pathProblem and queryProblem accept too; anything else goes through them.
 */
const PLAIN_TARGET = /^\/[\x21\x22\x24\x26-\x3a\x3c-\x3e\x40-\x5b\x5d-\x7e]*(?:\?[\x21-\x7e]*)?$/;

/** True for a request target without escapes or characters any check refuses (see PLAIN_TARGET). */
export function isPlainTarget(rawPath: string): boolean {
  return PLAIN_TARGET.test(rawPath);
}

export function parseVaultPath(rawPath: string): PathInfo {
  if (rawPath.length > MAX_PATH_LENGTH) return rejected('path too long');
  const query = rawPath.indexOf('?');
  const path = query < 0 ? rawPath : rawPath.slice(0, query);
  const problem = isPlainTarget(rawPath)
    ? plainSegmentsProblem(path)
    : (pathProblem(path) ?? (query < 0 ? null : queryProblem(rawPath, query + 1)));
  if (problem !== null) return rejected(problem);
  if (!path.startsWith(VAULTS_PREFIX + '/')) {
    if (path === VAULTS_PREFIX) return { kind: 'none', path };
    // `/V1/Vaults/x` names a vault on a case-insensitive upstream: refuse rather than call it "no vault".
    if (path.toLowerCase().startsWith(VAULTS_PREFIX)) return rejected('vault prefix in non-canonical case');
    return { kind: 'none', path };
  }
  const rest = path.slice(VAULTS_PREFIX.length + 1);
  const slash = rest.indexOf('/');
  const vaultId = slash < 0 ? rest : rest.slice(0, slash);
  if (vaultId === '') return { kind: 'none', path };
  if (!VAULT_ID_PATTERN.test(vaultId)) return rejected('vault segment is not a vault id');
  return { kind: 'vault', vaultId, path };
}

/**
 * The query never names the vault, but it reaches upstream: raw control characters, whitespace and non-ASCII (a
 * byte that was not UTF-8 arrives here as U+FFFD) are invalid in a request target (RFC 3986) and each server
 * reads them its own way, so they are refused there as in the path. Escapes in the query are left alone.
 */
function queryProblem(rawPath: string, from: number): string | null {
  for (let i = from; i < rawPath.length; i++) {
    const c = rawPath.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return `character 0x${c.toString(16)} in the query`;
  }
  return null;
}

/** Returns why a path (query removed) is ambiguous, or null when every server reads it the same way. */
function pathProblem(path: string): string | null {
  if (path.charCodeAt(0) !== 0x2f) return 'path does not start with /';
  let escaped = false;
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    // Control characters, DEL, non-ASCII (look-alikes, overlong UTF-8), backslash, `;` path parameters, `#`.
    if (c < 0x21 || c > 0x7e || c === 0x5c || c === 0x3b || c === 0x23)
      return `character 0x${c.toString(16)}`;
    if (c === 0x25) {
      const problem = encodingProblem(path, i);
      if (problem !== null) return problem;
      escaped = true;
      i += 2;
    }
  }
  return escaped ? escapedSegmentsProblem(path) : plainSegmentsProblem(path);
}

/**
 * segmentProblem for a path without escapes, without splitting it: every request pays this. Whitespace, `?` and
 * `#` cannot occur here (the loop above refused them), so a segment is ambiguous only as `.`, `..` or when it
 * ends with a dot; an empty segment only when it is not the last.
 */
function plainSegmentsProblem(path: string): string | null {
  for (let start = 1; start <= path.length;) {
    let end = path.indexOf('/', start);
    if (end < 0) end = path.length;
    const length = end - start;
    if (length === 0 && end < path.length) return 'empty segment';
    if (length > 0 && path.charCodeAt(end - 1) === 0x2e) {
      return length <= 2 && (length === 1 || path.charCodeAt(start) === 0x2e)
        ? 'dot segment'
        : 'segment ends with a dot';
    }
    start = end + 1;
  }
  return null;
}

function escapedSegmentsProblem(path: string): string | null {
  const segments = path.split('/');
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i] as string;
    if (segment === '' && i < segments.length - 1) return 'empty segment';
    const problem = segmentProblem(segment.includes('%') ? decodeEscapes(segment) : segment);
    if (problem !== null) return problem;
  }
  return null;
}

/**
 * Judged on the decoded segment: servers that decode and then trim (IIS, Spring's trimTokens) read `..%20` as
 * `..`, Windows strips trailing dots, and a decoded `?` or `#` ends the path for a server that decodes first.
 */
function segmentProblem(decoded: string): string | null {
  const cut = decoded.search(/[?#]/);
  for (const text of cut < 0 ? [decoded] : [decoded, decoded.slice(0, cut)]) {
    const trimmed = text.trim();
    if (trimmed === '.' || trimmed === '..') return 'dot segment';
    if (trimmed !== text) return 'segment starts or ends with whitespace';
    if (text.endsWith('.')) return 'segment ends with a dot';
  }
  return null;
}

/** Decodes the escapes pathProblem already allowed (printable ASCII only). */
function decodeEscapes(segment: string): string {
  return segment.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

function encodingProblem(path: string, at: number): string | null {
  const hex = path.slice(at + 1, at + 3);
  if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return 'broken percent-encoding';
  const code = parseInt(hex, 16);
  const char = String.fromCharCode(code);
  if (code < 0x20 || code > 0x7e) return 'encoded control or non-ASCII byte';
  if (UNRESERVED.test(char) || char === '/' || char === '\\' || char === '%' || char === ';') {
    return `encoded ${JSON.stringify(char)}`;
  }
  return null;
}

/**
 * Paths the operator opened to any valid key (FORTARY_OPEN_PATHS): an exact path, or a prefix written `/x/*`
 * that matches `/x` and everything below it.
 */
export function isOpenPath(path: string, openPaths: readonly string[]): boolean {
  for (const pattern of openPaths) {
    if (pattern.endsWith('/*')) {
      const base = pattern.slice(0, -2);
      if (path === base || path.startsWith(base + '/')) return true;
    } else if (path === pattern) {
      return true;
    }
  }
  return false;
}

const rejected = (detail: string): PathInfo => ({ kind: 'rejected', detail });
