/**
 * Rule 4: the vault comes from `/v1/vaults/{vaultId}` and everything below it; nothing is normalised here, and
 * any path two servers could read differently is refused. The attack table is in path-attacks.test.ts; this file
 * pins the classification rules themselves (docs/path-rules.md).
 */
import fc from 'fast-check';
import {
  isOpenPath,
  isPlainTarget,
  MAX_PATH_LENGTH,
  parseVaultPath,
  type PathInfo,
} from '../../../src/core/vault-path';

const vault = (vaultId: string, path: string): PathInfo => ({ kind: 'vault', vaultId, path });
const none = (path: string): PathInfo => ({ kind: 'none', path });

describe('parseVaultPath: what counts as a vault path', () => {
  it.each<[string, PathInfo]>([
    ['/v1/vaults/alpha', vault('alpha', '/v1/vaults/alpha')],
    ['/v1/vaults/alpha/', vault('alpha', '/v1/vaults/alpha/')],
    ['/v1/vaults/alpha/secrets/db', vault('alpha', '/v1/vaults/alpha/secrets/db')],
    ['/v1/vaults/alpha/secrets/db/', vault('alpha', '/v1/vaults/alpha/secrets/db/')],
    // The query string is not part of the path, whatever it contains.
    ['/v1/vaults/alpha?limit=10', vault('alpha', '/v1/vaults/alpha')],
    ['/v1/vaults/alpha?x=/v1/vaults/beta', vault('alpha', '/v1/vaults/alpha')],
    ['/v1/vaults/alpha?', vault('alpha', '/v1/vaults/alpha')],
    ['/v1/vaults/alpha/x?a#b', vault('alpha', '/v1/vaults/alpha/x')],
    // Vault ids: 1–64 of [A-Za-z0-9_-], starting alphanumeric; case is kept (ids are case-sensitive).
    ['/v1/vaults/a', vault('a', '/v1/vaults/a')],
    ['/v1/vaults/A_b-9', vault('A_b-9', '/v1/vaults/A_b-9')],
    ['/v1/vaults/ALPHA', vault('ALPHA', '/v1/vaults/ALPHA')],
    [`/v1/vaults/${'a'.repeat(64)}`, vault('a'.repeat(64), `/v1/vaults/${'a'.repeat(64)}`)],
    // Below the vault id, reserved characters may be percent-encoded: they cannot change the vault.
    ['/v1/vaults/alpha/a%20b', vault('alpha', '/v1/vaults/alpha/a%20b')],
    ['/v1/vaults/alpha/a%2Bb%40c', vault('alpha', '/v1/vaults/alpha/a%2Bb%40c')],
    ['/v1/vaults/alpha/.well-known', vault('alpha', '/v1/vaults/alpha/.well-known')],
    ['/v1/vaults/alpha/a.b', vault('alpha', '/v1/vaults/alpha/a.b')],
  ])('%j → vault', (path, expected) => {
    expect(parseVaultPath(path)).toEqual(expected);
  });

  it.each<[string, PathInfo]>([
    ['/', none('/')],
    ['/v1', none('/v1')],
    ['/v1/me', none('/v1/me')],
    ['/v1/me?x=1', none('/v1/me')],
    ['/v1/status/db', none('/v1/status/db')],
    ['/v1/vaults', none('/v1/vaults')],
    ['/v1/vaults?x=1', none('/v1/vaults')],
    ['/v1/vaults/', none('/v1/vaults/')],
    ['/v2/vaults/beta', none('/v2/vaults/beta')],
    ['/vaults/beta', none('/vaults/beta')],
    ['/x/v1/vaults/beta', none('/x/v1/vaults/beta')],
  ])('%j → names no vault', (path, expected) => {
    expect(parseVaultPath(path)).toEqual(expected);
  });

  it.each([
    ['vault id too long', `/v1/vaults/${'a'.repeat(65)}`],
    ['vault id starting with _', '/v1/vaults/_alpha'],
    ['vault id starting with -', '/v1/vaults/-alpha'],
    ['vault id with an encoded space', '/v1/vaults/alpha%20'],
    ['vault id with an encoded reserved char', '/v1/vaults/alpha%40x'],
    ['vault id with a dot', '/v1/vaults/alpha.json'],
    ['vault id with a colon', '/v1/vaults/alpha:x'],
    ['vault prefix in another case', '/V1/VAULTS/beta'],
    ['vault collection in another case', '/v1/Vaults'],
    // Pinned: a longer first word that starts with "vaults" is refused as non-canonical rather than "no vault"
    // (stricter than needed; see docs/path-rules.md).
    ['longer word starting with vaults', '/v1/vaultsbeta'],
  ])('%s (%j) → rejected', (_name, path) => {
    expect(parseVaultPath(path)).toMatchObject({ kind: 'rejected' });
  });
});

describe('parseVaultPath: length bound', () => {
  const base = '/v1/vaults/alpha/';

  it(`accepts exactly ${MAX_PATH_LENGTH} characters and refuses one more`, () => {
    expect(MAX_PATH_LENGTH).toBe(4096);
    const longest = base + 'a'.repeat(MAX_PATH_LENGTH - base.length);
    expect(parseVaultPath(longest)).toMatchObject({ kind: 'vault', vaultId: 'alpha' });
    expect(parseVaultPath(longest + 'a')).toEqual({ kind: 'rejected', detail: 'path too long' });
  });

  it('counts the query string towards the bound (the whole :path is bounded)', () => {
    expect(parseVaultPath(base + '?' + 'q'.repeat(MAX_PATH_LENGTH))).toEqual({
      kind: 'rejected',
      detail: 'path too long',
    });
  });

  it('refuses a 1 MiB path quickly', () => {
    const huge = base + 'a/'.repeat(512 * 1024);
    const start = process.hrtime.bigint();
    for (let i = 0; i < 1000; i++) parseVaultPath(huge);
    expect(Number(process.hrtime.bigint() - start) / 1e6).toBeLessThan(500);
  });
});

describe('parseVaultPath: every raw character', () => {
  // Printable ASCII is allowed except: backslash (IIS/Windows read it as /), `;` (path parameters, Tomcat `..;`),
  // `#` (a fragment never belongs in :path), space; `?` starts the query and `%` an escape.
  // Controls, DEL and every non-ASCII code point (look-alikes, overlong forms after decoding) are refused.
  const REFUSED_PRINTABLE = new Set(['\\', ';', '#', ' ']);

  it('refuses exactly the documented set (code points 0–0x2FF and a few notable others)', () => {
    const points = [
      ...Array.from({ length: 0x300 }, (_, i) => i),
      0x2215,
      0x2044,
      0xff0f,
      0xff0e,
      0xfeff,
      0x1f600,
    ];
    for (const cp of points) {
      const c = String.fromCodePoint(cp);
      if (c === '?' || c === '%') continue;
      const result = parseVaultPath(`/v1/vaults/alpha/x${c}y`);
      const refused = cp < 0x20 || cp > 0x7e || REFUSED_PRINTABLE.has(c);
      expect({ cp, kind: result.kind }).toEqual({ cp, kind: refused ? 'rejected' : 'vault' });
    }
  });

  it('a raw ? starts the query, a lone % is a broken escape', () => {
    expect(parseVaultPath('/v1/vaults/alpha/x?y')).toMatchObject({
      kind: 'vault',
      path: '/v1/vaults/alpha/x',
    });
    expect(parseVaultPath('/v1/vaults/alpha/x%y')).toMatchObject({ kind: 'rejected' });
    expect(parseVaultPath('/v1/vaults/alpha/x%')).toMatchObject({ kind: 'rejected' });
    expect(parseVaultPath('/v1/vaults/alpha/x%2')).toMatchObject({ kind: 'rejected' });
    expect(parseVaultPath('/v1/vaults/alpha/x%g0')).toMatchObject({ kind: 'rejected' });
  });
});

describe('parseVaultPath: every percent-escape', () => {
  // An escape is allowed only for a printable ASCII character that needs no encoding-independent meaning:
  // never an unreserved character (encoding it is only ever evasion), `/`, `\`, `%` (double encoding) or `;`;
  // never a control byte or a byte >= 0x80 (overlong UTF-8, look-alikes).
  const ALLOWED = ` !"#$&'()*+,:<=>?@[]^\`{|}`;

  it('allows exactly the documented set, in both hex cases', () => {
    for (let byte = 0; byte < 256; byte++) {
      const allowed = ALLOWED.includes(String.fromCharCode(byte));
      for (const hex of [
        byte.toString(16).padStart(2, '0'),
        byte.toString(16).padStart(2, '0').toUpperCase(),
      ]) {
        const result = parseVaultPath(`/v1/vaults/alpha/x%${hex}y`);
        expect({ hex, kind: result.kind }).toEqual({ hex, kind: allowed ? 'vault' : 'rejected' });
      }
    }
  });
});

describe('parseVaultPath: segment rules', () => {
  it.each([
    ['single dot segment', '/v1/vaults/alpha/./x'],
    ['double dot segment', '/v1/vaults/alpha/x/..'],
    ['double dot at the root', '/../v1/vaults/alpha'],
    ['empty segment in the middle', '/v1/vaults/alpha//x'],
    ['leading double slash', '//v1/vaults/alpha'],
    ['segment ending with a dot', '/v1/vaults/alpha/x.'],
    ['segment of three dots', '/v1/vaults/alpha/...'],
    ['vault segment ending with a dot', '/v1/vaults/alpha.'],
  ])('%s (%j) → rejected', (_name, path) => {
    expect(parseVaultPath(path)).toMatchObject({ kind: 'rejected' });
  });

  it.each([
    ['empty', ''],
    ['relative', 'v1/vaults/alpha'],
    ['query only', '?x=1'],
    ['asterisk form', '*'],
    ['absolute form', 'http://api/v1/vaults/alpha'],
  ])('does not start with / (%s) → rejected', (_name, path) => {
    expect(parseVaultPath(path)).toEqual({ kind: 'rejected', detail: 'path does not start with /' });
  });
});

describe('isOpenPath', () => {
  const OPEN = ['/v1/me', '/v1/status/*'];

  it.each<[string, boolean]>([
    ['/v1/me', true],
    ['/v1/me/', false],
    ['/v1/me/keys', false],
    ['/v1/mex', false],
    ['/V1/me', false],
    ['/v1/status', true],
    ['/v1/status/', true],
    ['/v1/status/db', true],
    ['/v1/status/db/replicas', true],
    ['/v1/statusx', false],
    ['/v1/statu', false],
    ['/v1', false],
    ['/', false],
    ['', false],
  ])('%j is open: %s', (path, expected) => {
    expect(isOpenPath(path, OPEN)).toBe(expected);
  });

  it('nothing is open by default', () => {
    expect(isOpenPath('/v1/me', [])).toBe(false);
    expect(isOpenPath('/', [])).toBe(false);
  });

  it('a bare * is an exact path, not a wildcard', () => {
    expect(isOpenPath('/v1/me', ['*'])).toBe(false);
    expect(isOpenPath('/v1/me', ['/v1/*'])).toBe(true);
  });
});

describe('paths without escapes (the split-free fast path)', () => {
  /** The split-based reading every path had before the fast path: it must still agree on each one. */
  function splitReading(path: string): string | null {
    const segments = path.split('/');
    for (let i = 1; i < segments.length; i++) {
      const segment = segments[i] as string;
      if (segment === '' && i < segments.length - 1) return 'empty segment';
      if (segment === '.' || segment === '..') return 'dot segment';
      if (segment.endsWith('.')) return 'segment ends with a dot';
    }
    return null;
  }

  it('agrees with the split-based reading on every plain path', () => {
    const char = fc.constantFrom('a', 'Z', '0', '.', '/', '-', '_', '~');
    fc.assert(
      fc.property(fc.array(char, { maxLength: 24 }), (chars) => {
        const path = `/v1/vaults/a/${chars.join('')}`;
        const expected = splitReading(path);
        const info = parseVaultPath(path);
        if (expected === null) expect(info.kind).not.toBe('rejected');
        else expect(info).toEqual({ kind: 'rejected', detail: expected });
      }),
      { numRuns: 5000 },
    );
  });

  it.each([
    ['/', null],
    ['/v1/vaults/a/', null],
    ['/v1/vaults/a/.', 'dot segment'],
    ['/v1/vaults/a/..', 'dot segment'],
    ['/v1/vaults/a/.../b', 'segment ends with a dot'],
    ['/v1/vaults/a./b', 'segment ends with a dot'],
    ['/v1/vaults/a/.b', null],
    ['//v1/vaults/a', 'empty segment'],
  ])('%j', (path, problem) => {
    const info = parseVaultPath(path);
    if (problem === null) expect(info.kind).not.toBe('rejected');
    else expect(info).toEqual({ kind: 'rejected', detail: problem });
  });
});

describe('the query string (fuzz finding 8)', () => {
  it.each([
    ['/v1/vaults/a?x=\uFFFD', 'character 0xfffd in the query'],
    ['/v1/vaults/a?x=é', 'character 0xe9 in the query'],
    ['/v1/vaults/a?x=1 2', 'character 0x20 in the query'],
    ['/v1/vaults/a?x=\u0000', 'character 0x0 in the query'],
    ['/v1/vaults/a??\x7f', 'character 0x7f in the query'],
  ])('%j is refused', (path, detail) => {
    expect(parseVaultPath(path)).toEqual({ kind: 'rejected', detail });
  });

  it.each(['/v1/vaults/a?', '/v1/vaults/a?x=%C3%A9&y=%00', '/v1/vaults/a?next=/v1/vaults/b/../c#?;\\'])(
    '%j: printable ASCII and escapes in the query are left alone',
    (path) => {
      expect(parseVaultPath(path)).toEqual({ kind: 'vault', vaultId: 'a', path: '/v1/vaults/a' });
    },
  );
});

describe('isPlainTarget, the fast path of parseVaultPath', () => {
  // What pathProblem's and queryProblem's character checks refuse: before the first '?', anything outside printable
  // ASCII and '#', '%', ';', '\'; after it, anything outside printable ASCII.
  const refusedInPath = (c: number) =>
    c < 0x21 || c > 0x7e || c === 0x23 || c === 0x25 || c === 0x3b || c === 0x5c;
  const refusedInQuery = (c: number) => c < 0x21 || c > 0x7e;
  const spec = (raw: string): boolean => {
    if (raw.charCodeAt(0) !== 0x2f) return false;
    const query = raw.indexOf('?');
    for (let i = 0; i < raw.length; i++) {
      const c = raw.charCodeAt(i);
      if (query < 0 || i < query ? refusedInPath(c) : i > query && refusedInQuery(c)) return false;
    }
    return true;
  };
  const interesting = fc.constantFrom(
    ...'/?#%;\\ .aZ09-_~!$&\'()*+,=:@[]{}|^`"<>\t\r\n\u0000\u007f\u0080\u00e9\u2215\uff0f\ufffd'.split(''),
  );

  it('accepts exactly what the character checks accept (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: interesting, maxLength: 24 }), (tail) => {
        for (const raw of [tail, `/${tail}`, `/v1/vaults/${tail}`])
          expect(isPlainTarget(raw)).toBe(spec(raw));
      }),
      { numRuns: 5000 },
    );
  });

  it('gives the same answers as the character checks on paths it refuses', () => {
    expect(parseVaultPath('/v1/vaults/v1;x')).toEqual({ kind: 'rejected', detail: 'character 0x3b' });
    expect(parseVaultPath('/v1/vaults/v1/a?b=\u0001')).toEqual({
      kind: 'rejected',
      detail: 'character 0x1 in the query',
    });
    expect(parseVaultPath('/v1/vaults/v1/a?b=%zz;#')).toMatchObject({ kind: 'vault', vaultId: 'v1' });
    expect(parseVaultPath('/v1/vaults/v1/../x')).toEqual({ kind: 'rejected', detail: 'dot segment' });
  });
});
