/**
 * Fuzzing the ext_authz Check endpoint over gRPC (docs/hardening.md).
 *
 * Cases are generated with fast-check from a seed. Each one is a CheckRequest built field by field with a small wire
 * writer, so it can hold what protobufjs cannot express: duplicate fields and map keys, unknown fields at every
 * level, both header shapes, several Authorization lines, bytes that are not UTF-8. About a sixth of the cases are
 * then mutated at the byte level (bit flips, inserted/deleted/duplicated ranges, huge lengths, truncation), and a
 * few are plain garbage. Each case is sent to a running sidecar, and its answer is checked:
 *
 * - the RPC completes within the deadline (no hang). It either fails closed (INTERNAL for a request that cannot be
 *   decoded, which Envoy turns into status_on_error) or returns a non-empty CheckResponse. That response starts with
 *   `status`, and has `ok_response` exactly when the code is 0. A denial carries a 4xx/5xx `denied_response`, and is
 *   never `internal_error`;
 * - an allow is justified by the ORACLE below, which is written independently of src/: the request carried exactly
 *   one Authorization line, `Bearer <token>`, where the token is the valid token of a seeded key whose owner is
 *   active; the method is GET or HEAD; the vault of the path, read two simple ways, is in that key's allowlist and
 *   in the owner's Developer vaults; and, for a key with an IP allowlist, the client address (the peer, or through
 *   the configured trusted proxy the rightmost untrusted X-Forwarded-For hop) is in it. The request is read with a
 *   trimmed protobufjs schema that has only the fields on this path. It takes every string as bytes and decodes
 *   them as strict UTF-8, and a request it cannot read is never justified;
 * - an allow overwrites x-fortary-key-id/-user-id with the right ids (append false, OVERWRITE_IF_EXISTS_OR_ADD). It
 *   removes `authorization`, every other client-sent x-fortary-* name and a sent x-api-key, and never one of the two
 *   identity headers.
 *
 * The long run (run by hand, not in CI):
 *   npx tsc -p tsconfig.build.json && node dist/bench/fuzz.js --cases 100000 --seed 90210 --concurrency 128
 * starts its own redis-server and the built sidecar (dist/src/main.js) as a child process, seeds the world, fuzzes,
 * then checks that the process is alive, still allows a good request, and counted no internal error. It exits 1
 * on any violation. `--case <k>` replays one case of a seed and prints it (the seed also fixes the world's key ids and
 * tokens, so the bytes are the same). CI runs a fixed-seed sample of the same generator and oracle:
 * test/fuzz/check.fuzz.test.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net, { BlockList } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import bcrypt from 'bcrypt';
import fc from 'fast-check';
import Redis from 'ioredis';
import { Root, type Type } from 'protobufjs';
import { ensureFunctionLibrary } from '../src/adapters/redis/function-library';
import { serializeKeyRecord, serializeUserRecord } from '../src/core/records';
import { base62FromBytes, formatToken } from '../src/core/token';

// ---------------------------------------------------------------------------------------------------------------
// The seeded world, and what the oracle knows about it (computed from what was written, not from the sidecar)
// ---------------------------------------------------------------------------------------------------------------

export interface SeededKey {
  name: string;
  keyId: string;
  userId: string;
  token: string;
  /** Vaults a request may reach with this key (key allowlist ∩ owner's Developer vaults); empty when never allowed. */
  reachable: readonly string[];
  /** IP allowlist as written; empty means any address. */
  ipAllowlist: readonly string[];
}

export interface World {
  keys: readonly SeededKey[];
  /** CIDRs the sidecar under test is configured with in FORTARY_TRUSTED_PROXIES. */
  trustedProxies: readonly string[];
  /** Well-formed tokens with the right key id and a wrong secret (a few per key, so bcrypt runs once each). */
  wrongSecrets: readonly string[];
  /** Well-formed tokens whose key id does not exist. */
  unknownTokens: readonly string[];
}

export const TRUSTED_PROXIES = ['10.200.0.0/16'];

/** Base62 text from a seeded generator (mulberry32): the same seed gives the same key ids and tokens. */
function base62Source(seed: number): (length: number) => string {
  let state = seed >>> 0;
  const byte = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) & 0xff;
  };
  return (length) => randomBase62(length, byte);
}

function randomBase62(length: number, byte: () => number): string {
  for (;;) {
    const bytes = new Uint8Array(length * 2);
    for (let i = 0; i < bytes.length; i++) bytes[i] = byte();
    const text = base62FromBytes(bytes, length);
    if (text !== null) return text;
  }
}

/** Writes users and keys through the function library (as the portal does), plus the corruptions the contract forbids. */
export async function seedWorld(redis: Redis, seed = 1): Promise<World> {
  const randomBase62 = base62Source(seed);
  await ensureFunctionLibrary(redis);
  const now = Date.now();
  const users: Record<string, { active: boolean; developerVaults: string[] }> = {
    alice: { active: true, developerVaults: ['alpha', 'gamma'] },
    bob: { active: true, developerVaults: ['delta'] },
    carol: { active: true, developerVaults: ['alpha'] },
    dave: { active: true, developerVaults: [] },
    ghost: { active: true, developerVaults: ['alpha'] },
  };
  for (const [id, user] of Object.entries(users)) {
    const record = serializeUserRecord({ id, ...user, updatedAt: now });
    await redis.call('FCALL', 'fortary_put_user', '1', id, record);
  }
  const specs: Array<{
    name: string;
    userId: string;
    vaults: string[];
    ipAllowlist: string[];
    expiresAt: number | null;
  }> = [
    { name: 'open', userId: 'alice', vaults: ['alpha', 'beta'], ipAllowlist: [], expiresAt: null },
    {
      name: 'ip4',
      userId: 'alice',
      vaults: ['alpha'],
      ipAllowlist: ['198.51.100.0/24'],
      expiresAt: now + 86_400_000,
    },
    {
      name: 'ip6',
      userId: 'bob',
      vaults: ['delta', 'alpha'],
      ipAllowlist: ['2001:db8::/32', '192.0.2.0/28'],
      expiresAt: null,
    },
    { name: 'revoked', userId: 'alice', vaults: ['alpha'], ipAllowlist: [], expiresAt: null },
    { name: 'expired', userId: 'alice', vaults: ['alpha'], ipAllowlist: [], expiresAt: now - 1000 },
    { name: 'inactive', userId: 'carol', vaults: ['alpha'], ipAllowlist: [], expiresAt: null },
    { name: 'noRole', userId: 'dave', vaults: ['alpha'], ipAllowlist: [], expiresAt: null },
    { name: 'orphan', userId: 'ghost', vaults: ['alpha'], ipAllowlist: [], expiresAt: null },
    { name: 'corrupt', userId: 'alice', vaults: ['alpha'], ipAllowlist: [], expiresAt: null },
  ];
  const keys: SeededKey[] = [];
  const wrongSecrets: string[] = [];
  for (const spec of specs) {
    const keyId = randomBase62(12);
    const token = formatToken(keyId, randomBase62(43));
    const record = serializeKeyRecord({
      id: keyId,
      userId: spec.userId,
      secretHash: await bcrypt.hash(token, 4),
      scopes: ['vault:read'],
      vaults: spec.vaults,
      ipAllowlist: spec.ipAllowlist,
      expiresAt: spec.expiresAt,
      label: spec.name,
      createdAt: now,
      updatedAt: now,
    });
    await redis.call('FCALL', 'fortary_put_key', '1', keyId, record, 'create');
    const owner = users[spec.userId] as { developerVaults: string[] };
    const allowable = ['open', 'ip4', 'ip6'].includes(spec.name);
    keys.push({
      name: spec.name,
      keyId,
      userId: spec.userId,
      token,
      reachable: allowable ? spec.vaults.filter((v) => owner.developerVaults.includes(v)) : [],
      ipAllowlist: spec.ipAllowlist,
    });
    for (let i = 0; i < 2; i++) wrongSecrets.push(formatToken(keyId, randomBase62(43)));
  }
  const byName = (name: string) => keys.find((k) => k.name === name) as SeededKey;
  await redis.call('FCALL', 'fortary_revoke', '1', byName('revoked').keyId);
  // Behind the functions' back, as a tired operator would: an inactive owner with a live key, a deleted owner,
  // a corrupt key record. Announced with an event like any direct write should be.
  await redis.set(
    'fortary:user:carol',
    serializeUserRecord({ id: 'carol', active: false, developerVaults: ['alpha'], updatedAt: now }),
  );
  await redis.del('fortary:user:ghost');
  await redis.hset(`fortary:key:${byName('corrupt').keyId}`, 'record', '{"v":1,"id":');
  const seq = await redis.incr('fortary:events:seq');
  await redis.publish('fortary:events', JSON.stringify({ seq, type: 'user.updated', id: 'carol' }));
  const unknownTokens = Array.from({ length: 8 }, () => formatToken(randomBase62(12), randomBase62(43)));
  return { keys, trustedProxies: TRUSTED_PROXIES, wrongSecrets, unknownTokens };
}

// ---------------------------------------------------------------------------------------------------------------
// Cases: a structured CheckRequest, optional byte mutations, or garbage
// ---------------------------------------------------------------------------------------------------------------

export interface HeaderLine {
  name: string;
  value: Uint8Array;
}

export type Source =
  | { kind: 'socket'; ip: string; port: boolean }
  | { kind: 'pipe' }
  | { kind: 'internal' }
  | { kind: 'no-address' }
  | { kind: 'empty-address' }
  | { kind: 'socket-and-pipe'; ip: string };

/** Levels where unknown (or known but unread) fields are inserted. */
const LEVELS = [
  'top',
  'attributes',
  'peer',
  'address',
  'socket',
  'request',
  'http',
  'line',
  'header_map',
] as const;
type Level = (typeof LEVELS)[number];

export interface ExtraField {
  level: Level;
  field: number;
  wire: 0 | 1 | 2 | 5;
  payload: Uint8Array;
}

export type Shape =
  'headers' | 'headers-envoy' | 'header_map' | 'header_map-value' | 'header_map-both' | 'both';
export type Duplicate = 'none' | 'attributes' | 'source' | 'address' | 'request' | 'http' | 'header_map';

export interface Mutation {
  op: 'flip' | 'set' | 'insert' | 'delete' | 'duplicate' | 'truncate' | 'huge-length' | 'append';
  /** Position as a fraction of the current length, so a mutation survives shrinking of the request. */
  at: number;
  length: number;
  bytes: Uint8Array;
}

export interface FuzzCase {
  garbage: Uint8Array | null;
  method: Uint8Array | null;
  path: Uint8Array | null;
  source: Source;
  lines: HeaderLine[];
  /** Header lines of the second copy when a message is duplicated (a different reading of the same request). */
  altLines: HeaderLine[];
  shape: Shape;
  duplicate: Duplicate;
  extras: ExtraField[];
  reversed: boolean;
  mutations: Mutation[];
}

const utf8 = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'utf8'));

function tokenVariants(world: World): fc.Arbitrary<string> {
  const valid = world.keys.map((k) => k.token);
  const mutateToken = fc
    .tuple(
      fc.constantFrom(...valid),
      fc.nat(),
      fc.constantFrom('flip', 'truncate', 'extend', 'case', 'swap-id'),
    )
    .map(([token, n, how]) => {
      const i = n % token.length;
      switch (how) {
        case 'flip':
          return token.slice(0, i) + (token[i] === 'A' ? 'B' : 'A') + token.slice(i + 1);
        case 'truncate':
          return token.slice(0, i);
        case 'extend':
          return token + 'A';
        case 'case':
          return token.slice(0, i) + (token[i] as string).toUpperCase() + token.slice(i + 1).toLowerCase();
        default: {
          const other = valid[n % valid.length] as string;
          return token.slice(0, 17) + other.slice(17);
        }
      }
    });
  return fc.oneof(
    { weight: 12, arbitrary: fc.constantFrom(...valid) },
    { weight: 2, arbitrary: fc.constantFrom(...world.wrongSecrets) },
    { weight: 1, arbitrary: fc.constantFrom(...world.unknownTokens) },
    { weight: 3, arbitrary: mutateToken },
    { weight: 1, arbitrary: fc.string({ maxLength: 80 }) },
  );
}

function authorizationValues(world: World): fc.Arbitrary<Uint8Array> {
  const tokens = tokenVariants(world);
  const composed = fc
    .record({
      scheme: fc.constantFrom(
        'Bearer',
        'Bearer',
        'Bearer',
        'Bearer',
        'bearer',
        'BEARER',
        'bEaReR',
        'Basic',
        'Token',
        '',
      ),
      sep: fc.constantFrom(' ', ' ', ' ', ' ', ' ', ' ', '  ', '\t', '', ' \t', '\u00a0', '\r\n '),
      token: tokens,
      prefix: fc.constantFrom('', '', '', '', '', '', ' ', '\t', ','),
      suffix: fc.constantFrom('', '', '', '', '', '', '', ' ', '\t', ',', '\0', ',Bearer x', ' extra', ';'),
    })
    .map(({ scheme, sep, token, prefix, suffix }) => utf8(prefix + scheme + sep + token + suffix));
  const twoTokens = fc
    .tuple(tokens, tokens, fc.constantFrom(',', ', ', ' ', ',Bearer ', ', Bearer '))
    .map(([a, b, join]) => utf8(`Bearer ${a}${join}${b}`));
  const notUtf8 = fc
    .tuple(
      composed,
      fc.nat(),
      fc.uint8Array({ minLength: 1, maxLength: 3 }).map((b) => b.map((x) => x | 0x80)),
    )
    .map(([value, n, bad]) => {
      const i = n % (value.length + 1);
      return new Uint8Array([...value.subarray(0, i), ...bad, ...value.subarray(i)]);
    });
  const huge = fc
    .tuple(tokens, fc.constantFrom(' ', 'A', ',', '\u00e9'))
    .map(([token, fill]) => utf8(`Bearer ${token}`.padEnd(65536, fill)));
  return fc.oneof(
    { weight: 20, arbitrary: composed },
    { weight: 2, arbitrary: twoTokens },
    { weight: 2, arbitrary: notUtf8 },
    { weight: 1, arbitrary: huge },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 100 }) },
  );
}

const IPS = [
  '198.51.100.20',
  '198.51.100.255',
  '198.51.100.0',
  '203.0.113.9',
  '192.0.2.5',
  '192.0.2.17',
  '10.200.0.5',
  '10.200.9.9',
  '10.201.0.1',
  '2001:db8::1',
  '2001:DB8:ffff::9',
  '2001:db9::1',
  '::ffff:198.51.100.20',
  '::ffff:c633:6414',
  '0:0:0:0:0:ffff:198.51.100.7',
  '::ffff:10.200.0.5',
  '::198.51.100.20',
  '::10.200.0.5',
  '0198.51.100.20',
  '198.51.100.020',
  '0xc6.51.100.20',
  '198.51.100.20 ',
  ' 198.51.100.20',
  '198.51.100.20:80',
  '[2001:db8::1]',
  'fe80::1%eth0',
  '2001:db8::1%1',
  '',
  'localhost',
  '::1',
  '127.0.0.1',
  '198.51.100',
  '198.51.100.20.1',
  '1.2.3.4\u0000',
];

function ipText(): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(...IPS) },
    { weight: 1, arbitrary: fc.ipV4() },
    { weight: 1, arbitrary: fc.ipV6() },
    { weight: 1, arbitrary: fc.string({ maxLength: 20 }) },
  );
}

const xffValue = fc
  .tuple(
    fc.array(ipText(), { minLength: 0, maxLength: 5 }),
    fc.constantFrom(',', ', ', ' , '),
    fc.nat({ max: 40 }),
  )
  .map(([hops, join, many]) => (many === 40 ? Array(70).fill('198.51.100.20').join(',') : hops.join(join)));

/** Each dimension of a case has values that keep a request valid and values that attack it. */
interface Dimension<T> {
  good: fc.Arbitrary<T>;
  bad: fc.Arbitrary<T>;
}

const METHOD: Dimension<Uint8Array | null> = {
  good: fc.constantFrom('GET', 'GET', 'GET', 'HEAD').map(utf8),
  bad: fc.oneof(
    {
      weight: 6,
      arbitrary: fc
        .constantFrom(
          'POST',
          'PUT',
          'DELETE',
          'PATCH',
          'OPTIONS',
          'CONNECT',
          'TRACE',
          'get',
          'Get',
          'GET ',
          ' GET',
          'GE',
          'GETS',
          '',
          'G\u0000ET',
          'ＧＥＴ',
        )
        .map(utf8),
    },
    { weight: 2, arbitrary: fc.string({ maxLength: 10 }).map(utf8) },
    { weight: 1, arbitrary: fc.constant(null) },
  ),
};

const PATH: Dimension<Uint8Array | null> = {
  good: fc
    .tuple(
      fc.constantFrom('alpha', 'alpha', 'alpha', 'delta', 'delta', 'beta', 'gamma'),
      fc.constantFrom('', '/', '/items/1', '/secrets/db-password', '/x%20y', '/a/b/c', '/%21'),
      fc.constantFrom('', '', '?a=1', '?next=/v1/vaults/beta', '?x=%2e%2e'),
    )
    .map(([vault, below, query]) => utf8(`/v1/vaults/${vault}${below}${query}`)),
  bad: fc.oneof(
    {
      weight: 30,
      arbitrary: fc
        .tuple(
          fc.constantFrom(
            '/v1/vaults/',
            '/v1/vaults/',
            '/v1/vaults/',
            '/V1/vaults/',
            '/v1/VAULTS/',
            '//v1/vaults/',
            'v1/vaults/',
            '/v1/vaults',
            '/v1/vaultsx/',
            'http://api/v1/vaults/',
            '/v2/vaults/',
            '/v1/%76aults/',
            '/v1/vaults/alpha/../',
            '/v1/me',
            '/',
          ),
          fc.oneof(
            { weight: 4, arbitrary: fc.constantFrom('alpha', 'beta', 'delta') },
            {
              weight: 4,
              arbitrary: fc.constantFrom(
                'ALPHA',
                'alph',
                'alpha2',
                'alpha.',
                '%61lpha',
                'alpha%00',
                '..',
                '.',
                '',
                'al pha',
                'a'.repeat(65),
                'Alpha',
                'alpha;x',
                'alpha\\',
                'аlpha',
              ),
            },
            { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
          ),
          fc.oneof(
            {
              weight: 4,
              arbitrary: fc.constantFrom(
                '/../beta',
                '/..',
                '/./x',
                '//x',
                '/%2e%2e/beta',
                '/x%2Fy',
                ';x',
                '\\x',
                '/x#y',
                '/..%20/beta',
                '/%20',
                '/caf%C3%A9',
                '/%zz',
                '/%',
                '/.%2e/delta',
                '/x\u0000',
                '/\u00e9',
              ),
            },
            { weight: 1, arbitrary: fc.constantFrom('', '/items/1') },
            { weight: 1, arbitrary: fc.string({ maxLength: 20 }) },
          ),
          fc.constantFrom('', '', '?a=1', '??', '?/v1/vaults/alpha', '#frag'),
        )
        .map(([p, v, s, q]) => utf8(p + v + s + q)),
    },
    { weight: 2, arbitrary: fc.string({ maxLength: 40 }).map(utf8) },
    { weight: 1, arbitrary: fc.constant(utf8('/v1/vaults/alpha/' + 'x'.repeat(5000))) },
    { weight: 1, arbitrary: fc.constant(null) },
  ),
};

const SOURCE: Dimension<Source> = {
  good: fc.record({
    kind: fc.constant('socket' as const),
    ip: fc.constantFrom(
      '198.51.100.20',
      '203.0.113.7',
      '2001:db8::1',
      '192.0.2.5',
      '10.200.0.5',
      '::ffff:198.51.100.20',
    ),
    port: fc.boolean(),
  }),
  bad: fc.oneof(
    {
      weight: 12,
      arbitrary: fc.record({ kind: fc.constant('socket' as const), ip: ipText(), port: fc.boolean() }),
    },
    { weight: 1, arbitrary: fc.constant({ kind: 'pipe' as const }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'internal' as const }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'no-address' as const }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'empty-address' as const }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('socket-and-pipe' as const), ip: ipText() }) },
  ),
};

function shuffled(lines: HeaderLine[], seed: number): HeaderLine[] {
  // A deterministic shuffle from a generated seed keeps cases reproducible.
  let s = seed;
  for (let i = lines.length - 1; i > 0; i--) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const j = s % (i + 1);
    [lines[i], lines[j]] = [lines[j] as HeaderLine, lines[i] as HeaderLine];
  }
  return lines;
}

function linesDimension(world: World): Dimension<HeaderLine[]> {
  const allowable = world.keys.filter((k) => k.reachable.length > 0).map((k) => k.token);
  const goodToken = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...allowable) },
    { weight: 2, arbitrary: fc.constantFrom(...world.keys.map((k) => k.token)) },
    { weight: 1, arbitrary: fc.constantFrom(...world.wrongSecrets, ...world.unknownTokens) },
  );
  const goodAuth = fc
    .tuple(fc.constantFrom('Bearer', 'Bearer', 'Bearer', 'bearer', 'BEARER'), goodToken)
    .map(([scheme, token]) => ({ name: 'authorization', value: utf8(`${scheme} ${token}`) }));
  const badAuth = fc.record({
    name: fc.constantFrom(
      'authorization',
      'authorization',
      'authorization',
      'authorization',
      'Authorization',
      'AUTHORIZATION',
      'authorization ',
      'authorisation',
    ),
    value: authorizationValues(world),
  });
  const fortary = fc.record({
    name: fc.constantFrom(
      'x-fortary-key-id',
      'x-fortary-user-id',
      'X-Fortary-Key-Id',
      'X-Fortary-Admin',
      'x-fortary-role',
      'x-fortary-',
      'x-fortary-vault',
    ),
    value: fc.string({ maxLength: 16 }).map(utf8),
  });
  const other = fc.oneof(
    { weight: 3, arbitrary: fc.record({ name: fc.constant('x-forwarded-for'), value: xffValue.map(utf8) }) },
    { weight: 1, arbitrary: fc.record({ name: fc.constant('X-Forwarded-For'), value: xffValue.map(utf8) }) },
    {
      weight: 1,
      arbitrary: fc.record({ name: fc.constant('x-api-key'), value: tokenVariants(world).map(utf8) }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        name: fc.constant('x-request-id'),
        value: fc.string({ maxLength: 40 }).map(utf8),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({ name: fc.string({ maxLength: 16 }), value: fc.uint8Array({ maxLength: 32 }) }),
    },
  );
  const pseudo: HeaderLine[] = [
    { name: ':authority', value: utf8('api.fortary.example') },
    { name: ':scheme', value: utf8('https') },
    { name: 'user-agent', value: utf8('fuzz/1.0') },
  ];
  const build = (auth: fc.Arbitrary<HeaderLine[]>) =>
    fc
      .tuple(auth, fc.array(fortary, { maxLength: 3 }), fc.array(other, { maxLength: 4 }), fc.nat())
      .map(([a, f, o, seed]) => shuffled([...pseudo, ...a, ...f, ...o], seed));
  return {
    good: build(goodAuth.map((line) => [line])),
    bad: build(
      fc.oneof(
        { weight: 6, arbitrary: fc.array(badAuth, { minLength: 1, maxLength: 1 }) },
        { weight: 2, arbitrary: fc.array(fc.oneof(badAuth, goodAuth), { minLength: 0, maxLength: 3 }) },
      ),
    ),
  };
}

const DUPLICATE: Dimension<Duplicate> = {
  good: fc.constant('none'),
  bad: fc.constantFrom<Duplicate>('attributes', 'source', 'address', 'request', 'http', 'header_map'),
};

/** Good: unknown field numbers only (>= 100), which every reader skips. Bad: low numbers, which may hit read fields. */
const EXTRAS: Dimension<ExtraField[]> = {
  good: fc.oneof(
    { weight: 2, arbitrary: fc.constant<ExtraField[]>([]) },
    {
      weight: 1,
      arbitrary: fc.array(
        fc.record({
          level: fc.constantFrom(...LEVELS),
          field: fc.integer({ min: 100, max: 536_870_911 }),
          wire: fc.constantFrom(0 as const, 1 as const, 2 as const, 5 as const),
          payload: fc.uint8Array({ maxLength: 24 }),
        }),
        { minLength: 1, maxLength: 4 },
      ),
    },
  ),
  bad: fc.array(
    fc.record({
      level: fc.constantFrom(...LEVELS),
      field: fc.integer({ min: 1, max: 20 }),
      wire: fc.constantFrom(0 as const, 1 as const, 2 as const, 5 as const),
      payload: fc.uint8Array({ maxLength: 24 }),
    }),
    { minLength: 1, maxLength: 4 },
  ),
};

const MUTATIONS: Dimension<Mutation[]> = {
  good: fc.constant<Mutation[]>([]),
  bad: fc.array(
    fc.record({
      op: fc.constantFrom<Mutation['op']>(
        'flip',
        'flip',
        'set',
        'insert',
        'delete',
        'duplicate',
        'truncate',
        'huge-length',
        'append',
      ),
      at: fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
      length: fc.integer({ min: 1, max: 16 }),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }),
    }),
    { minLength: 1, maxLength: 3 },
  ),
};

const SHAPES = fc.constantFrom<Shape>(
  'headers',
  'headers',
  'headers-envoy',
  'headers-envoy',
  'header_map',
  'header_map',
  'header_map-value',
  'header_map-both',
  'both',
);

type DimensionName = 'method' | 'path' | 'source' | 'lines' | 'duplicate' | 'extras' | 'mutations';
const DIMENSIONS: DimensionName[] = ['method', 'path', 'source', 'lines', 'duplicate', 'extras', 'mutations'];

/**
 * The case mix: a third clean requests (every dimension valid: the allow path, unknown fields, both header shapes,
 * spoofed x-fortary-* and X-Forwarded-For), a third with exactly one dimension attacked, a quarter with every
 * dimension drawn from either side (mutations included), and the rest plain garbage bytes.
 */
export function caseArbitrary(world: World): fc.Arbitrary<FuzzCase> {
  const lines = linesDimension(world);
  const dims = {
    method: METHOD,
    path: PATH,
    source: SOURCE,
    lines,
    duplicate: DUPLICATE,
    extras: EXTRAS,
    mutations: MUTATIONS,
  };
  const pick = <T>(d: Dimension<T>, side: 'good' | 'bad' | 'either'): fc.Arbitrary<T> =>
    side === 'either' ? fc.oneof(d.good, d.bad) : d[side];
  const build = (side: (name: DimensionName) => 'good' | 'bad' | 'either'): fc.Arbitrary<FuzzCase> =>
    fc.record({
      garbage: fc.constant(null),
      method: pick(dims.method, side('method')),
      path: pick(dims.path, side('path')),
      source: pick(dims.source, side('source')),
      lines: pick(dims.lines, side('lines')),
      altLines: lines.bad,
      shape: SHAPES,
      duplicate: pick(dims.duplicate, side('duplicate')),
      extras: pick(dims.extras, side('extras')),
      reversed: fc.boolean(),
      mutations: pick(dims.mutations, side('mutations')),
    });
  const garbage = fc.record({
    garbage: fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ maxLength: 2048 })),
    method: fc.constant(null),
    path: fc.constant(null),
    source: fc.constant<Source>({ kind: 'no-address' }),
    lines: fc.constant<HeaderLine[]>([]),
    altLines: fc.constant<HeaderLine[]>([]),
    shape: fc.constant<Shape>('headers'),
    duplicate: fc.constant<Duplicate>('none'),
    extras: fc.constant<ExtraField[]>([]),
    reversed: fc.constant(false),
    mutations: fc.constant<Mutation[]>([]),
  });
  return fc.oneof(
    { weight: 8, arbitrary: build(() => 'good') },
    {
      weight: 8,
      arbitrary: fc
        .constantFrom(...DIMENSIONS)
        .chain((bad) => build((name) => (name === bad ? 'bad' : 'good'))),
    },
    { weight: 6, arbitrary: build(() => 'either') },
    { weight: 1, arbitrary: garbage },
  );
}

// --- The wire writer ---

function varint(n: number): number[] {
  const out: number[] = [];
  let v = n;
  while (v >= 0x80) {
    out.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

const cat = (parts: Array<Uint8Array | number[]>): Uint8Array => {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};
const ld = (field: number, payload: Uint8Array | string): Uint8Array => {
  const bytes = typeof payload === 'string' ? utf8(payload) : payload;
  return cat([varint(field * 8 + 2), varint(bytes.length), bytes]);
};

function encodeExtra(x: ExtraField): Uint8Array {
  const tag = varint(x.field * 8 + x.wire);
  switch (x.wire) {
    case 0:
      return cat([tag, varint(x.payload.reduce((n, b) => (n * 7 + b) % 2 ** 40, 0))]);
    case 1:
      return cat([tag, Array.from({ length: 8 }, (_, i) => x.payload[i] ?? 0)]);
    case 5:
      return cat([tag, Array.from({ length: 4 }, (_, i) => x.payload[i] ?? 0)]);
    default:
      return cat([tag, varint(x.payload.length), x.payload]);
  }
}

function encodeLines(c: FuzzCase, lines: HeaderLine[], extrasOf: (level: Level) => Uint8Array[]) {
  const mapEntry = (l: HeaderLine) => ld(3, cat([ld(1, l.name), ld(2, l.value), ...extrasOf('line')]));
  const headerValue = (l: HeaderLine) => {
    const parts = [ld(1, l.name)];
    if (c.shape === 'header_map-value') parts.push(ld(2, l.value));
    else if (c.shape === 'header_map-both') parts.push(ld(2, utf8('decoy')), ld(3, l.value));
    else parts.push(ld(3, l.value));
    return ld(1, cat([...parts, ...extrasOf('line')]));
  };
  let map: Uint8Array[] = [];
  let headerMap: Uint8Array | null = null;
  if (c.shape === 'headers') map = lines.map(mapEntry);
  else if (c.shape === 'headers-envoy') {
    // Envoy's default: lowercase names, one entry per name, repeated lines joined with ','.
    const merged = new Map<string, Uint8Array>();
    for (const l of lines) {
      const name = l.name.toLowerCase();
      const prev = merged.get(name);
      merged.set(name, prev === undefined ? l.value : cat([prev, [0x2c], l.value]));
    }
    map = [...merged].map(([name, value]) => mapEntry({ name, value }));
  } else if (c.shape === 'both') {
    // Both shapes at once, with different content: header_map (non-empty) is the one that counts.
    map = c.altLines.map(mapEntry);
    headerMap = ld(13, cat([...lines.map(headerValue), ...extrasOf('header_map')]));
  } else headerMap = ld(13, cat([...lines.map(headerValue), ...extrasOf('header_map')]));
  return { map, headerMap };
}

/** The CheckRequest bytes of a case (mutations applied). */
export function encodeCase(c: FuzzCase): Buffer {
  if (c.garbage !== null) return Buffer.from(c.garbage);
  const extrasOf = (level: Level) => c.extras.filter((x) => x.level === level).map(encodeExtra);
  const http = (lines: HeaderLine[]) => {
    const { map, headerMap } = encodeLines(c, lines, extrasOf);
    const fields: Uint8Array[] = [];
    if (c.method !== null) fields.push(ld(2, c.method));
    fields.push(...map);
    if (c.path !== null) fields.push(ld(4, c.path));
    if (headerMap !== null) {
      fields.push(headerMap);
      if (c.duplicate === 'header_map')
        fields.push(encodeLines(c, c.altLines, extrasOf).headerMap ?? headerMap);
    }
    fields.push(...extrasOf('http'));
    if (c.reversed) fields.reverse();
    return cat(fields);
  };
  const request = (lines: HeaderLine[]) =>
    cat([
      ld(2, http(lines)),
      ...(c.duplicate === 'http' ? [ld(2, http(c.altLines))] : []),
      ...extrasOf('request'),
    ]);
  const socket = (ip: string, port: boolean) =>
    cat([ld(2, ip), ...(port ? [cat([[0x18], varint(51234)])] : []), ...extrasOf('socket')]);
  const s = c.source;
  let address: Uint8Array | null;
  switch (s.kind) {
    case 'socket':
      address = cat([ld(1, socket(s.ip, s.port)), ...extrasOf('address')]);
      break;
    case 'socket-and-pipe':
      address = cat([ld(1, socket(s.ip, false)), ld(2, ld(1, '/run/envoy.sock')), ...extrasOf('address')]);
      break;
    case 'pipe':
      address = cat([ld(2, ld(1, '/run/envoy.sock')), ...extrasOf('address')]);
      break;
    case 'internal':
      address = cat([ld(3, ld(1, 'internal_listener')), ...extrasOf('address')]);
      break;
    case 'empty-address':
      address = cat([...extrasOf('address')]);
      break;
    default:
      address = null;
  }
  const peerParts = address === null ? [] : [ld(1, address)];
  if (c.duplicate === 'address' && address !== null)
    peerParts.push(ld(1, cat([ld(1, socket('198.51.100.20', false))])));
  const peer = cat([...peerParts, ...extrasOf('peer')]);
  const attributes = (lines: HeaderLine[]) =>
    cat([
      ld(1, peer),
      ...(c.duplicate === 'source' ? [ld(1, ld(1, ld(1, ld(2, '10.200.0.5'))))] : []),
      ld(2, ld(1, ld(1, ld(2, '10.0.4.12')))),
      ld(4, request(lines)),
      ...(c.duplicate === 'request' ? [ld(4, request(c.altLines))] : []),
      ...extrasOf('attributes'),
    ]);
  let bytes = cat([
    ld(1, attributes(c.lines)),
    ...(c.duplicate === 'attributes' ? [ld(1, attributes(c.altLines))] : []),
    ...extrasOf('top'),
  ]);
  for (const m of c.mutations) bytes = mutate(bytes, m);
  return Buffer.from(bytes);
}

function mutate(bytes: Uint8Array, m: Mutation): Uint8Array {
  const at = Math.floor(m.at * bytes.length);
  const head = bytes.subarray(0, at);
  const tail = bytes.subarray(at);
  switch (m.op) {
    case 'flip': {
      if (bytes.length === 0) return bytes;
      const out = bytes.slice();
      out[at] = (out[at] as number) ^ (1 << ((m.bytes[0] as number) % 8));
      return out;
    }
    case 'set': {
      if (bytes.length === 0) return bytes;
      const out = bytes.slice();
      out[at] = m.bytes[0] as number;
      return out;
    }
    case 'insert':
      return cat([head, m.bytes, tail]);
    case 'delete':
      return cat([head, tail.subarray(m.length)]);
    case 'duplicate':
      return cat([head, tail.subarray(0, m.length * 8), tail]);
    case 'truncate':
      return head;
    case 'huge-length':
      return cat([head, [0xff, 0xff, 0xff, 0xff, 0x0f], tail]);
    default:
      return cat([bytes, m.bytes]);
  }
}

/** Case `k` of a run with `seed`: each case has its own seed, so any case replays alone. */
export function caseSeed(seed: number, k: number): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = (h + Math.imul(k + 1, 0xc2b2ae35)) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0x27d4eb2f) >>> 0;
  return (h ^ (h >>> 16)) | 0;
}

export function generateCase(arbitrary: fc.Arbitrary<FuzzCase>, seed: number, k: number): FuzzCase {
  return fc.sample(arbitrary, { seed: caseSeed(seed, k), numRuns: 1 })[0] as FuzzCase;
}

// ---------------------------------------------------------------------------------------------------------------
// The oracle: an independent reading of the request
// ---------------------------------------------------------------------------------------------------------------

/** Only the fields on the decision path; every string as bytes; map entries as a plain repeated message. */
const REFERENCE_ROOT = Root.fromJSON({
  nested: {
    ref: {
      nested: {
        CheckRequest: { fields: { attributes: { type: 'AttributeContext', id: 1 } } },
        AttributeContext: {
          fields: { source: { type: 'Peer', id: 1 }, request: { type: 'Request', id: 4 } },
        },
        Peer: { fields: { address: { type: 'Address', id: 1 } } },
        Address: {
          fields: {
            socket_address: { type: 'SocketAddress', id: 1 },
            pipe: { type: 'bytes', id: 2 },
            envoy_internal_address: { type: 'bytes', id: 3 },
          },
        },
        SocketAddress: { fields: { address: { type: 'bytes', id: 2 } } },
        Request: { fields: { http: { type: 'HttpRequest', id: 2 } } },
        HttpRequest: {
          fields: {
            method: { type: 'bytes', id: 2 },
            headers: { rule: 'repeated', type: 'Entry', id: 3 },
            path: { type: 'bytes', id: 4 },
            header_map: { type: 'HeaderMap', id: 13 },
          },
        },
        Entry: { fields: { key: { type: 'bytes', id: 1 }, value: { type: 'bytes', id: 2 } } },
        HeaderMap: { fields: { headers: { rule: 'repeated', type: 'HeaderValue', id: 1 } } },
        HeaderValue: {
          fields: {
            key: { type: 'bytes', id: 1 },
            value: { type: 'bytes', id: 2 },
            raw_value: { type: 'bytes', id: 3 },
          },
        },
      },
    },
  },
});
const ReferenceRequest = REFERENCE_ROOT.lookupType('ref.CheckRequest');

type Msg = Record<string, unknown>;
const child = (m: unknown, name: string): Msg | undefined => {
  const v = (m as Msg | undefined)?.[name];
  return v !== null && typeof v === 'object' ? (v as Msg) : undefined;
};
const bytesField = (m: unknown, name: string): Uint8Array | undefined => {
  const v = (m as Msg | undefined)?.[name];
  return v instanceof Uint8Array ? v : undefined;
};
const STRICT = new TextDecoder('utf-8', { fatal: true });
/** Strict UTF-8, or null: the oracle never guesses what invalid bytes meant. */
function strict(bytes: Uint8Array | undefined): string | null {
  if (bytes === undefined) return '';
  try {
    return STRICT.decode(bytes);
  } catch {
    return null;
  }
}

function blockList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [ip, bits] = cidr.split('/') as [string, string];
    list.addSubnet(ip, Number(bits), net.isIPv6(ip) ? 'ipv6' : 'ipv4');
  }
  return list;
}
const inList = (list: BlockList, ip: string) => list.check(ip, net.isIPv6(ip) ? 'ipv6' : 'ipv4');

/** The vault a path names: `/v1/vaults/<id>` then end or `/`, query cut at the first `?`. */
function simpleVault(path: string): string | null {
  const q = path.indexOf('?');
  const p = q < 0 ? path : path.slice(0, q);
  return /^\/v1\/vaults\/([A-Za-z0-9][A-Za-z0-9_-]{0,63})(?:\/.*)?$/s.exec(p)?.[1] ?? null;
}

/** A second reading, as a decoding server would: percent-decode once, `\` as `/`, resolve dot segments, merge `//`. */
function resolvedVault(path: string): string | null {
  const q = path.indexOf('?');
  let p = q < 0 ? path : path.slice(0, q);
  try {
    p = decodeURIComponent(p);
  } catch {
    return null;
  }
  const out: string[] = [];
  for (const segment of p.replace(/\\/g, '/').split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') out.pop();
    else out.push(segment);
  }
  return simpleVault('/' + out.join('/'));
}

export type Justification =
  { ok: true; key: SeededKey; fortaryNames: string[]; apiKey: boolean } | { ok: false; why: string };

/** Why an allow of these request bytes would be justified, or why not. */
export function justify(world: World, bytes: Uint8Array): Justification {
  let decoded: Msg;
  try {
    decoded = ReferenceRequest.toObject(ReferenceRequest.decode(bytes)) as Msg;
  } catch (error) {
    return { ok: false, why: `unreadable: ${(error as Error).message}` };
  }
  const attributes = child(decoded, 'attributes');
  const http = child(child(attributes, 'request'), 'http');
  if (http === undefined) return { ok: false, why: 'no http request' };
  const method = strict(bytesField(http, 'method'));
  if (method !== 'GET' && method !== 'HEAD') return { ok: false, why: `method ${JSON.stringify(method)}` };

  const headerMap = (child(http, 'header_map')?.headers as Msg[] | undefined) ?? [];
  const lines: Array<[string, Uint8Array]> =
    headerMap.length > 0
      ? headerMap.map((h) => {
          const raw = bytesField(h, 'raw_value');
          return [
            Buffer.from(bytesField(h, 'key') ?? []).toString('utf8'),
            raw !== undefined && raw.length > 0 ? raw : (bytesField(h, 'value') ?? new Uint8Array()),
          ];
        })
      : ((http.headers as Msg[] | undefined) ?? []).map((e) => [
          Buffer.from(bytesField(e, 'key') ?? []).toString('utf8'),
          bytesField(e, 'value') ?? new Uint8Array(),
        ]);
  const named = (name: string) => lines.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v);

  const authorization = named('authorization');
  if (authorization.length !== 1) return { ok: false, why: `${authorization.length} authorization lines` };
  const match = /^bearer ([\x21-\x7e]+)$/i.exec(
    Buffer.from(authorization[0] as Uint8Array).toString('latin1'),
  );
  if (match === null) return { ok: false, why: 'authorization is not `Bearer <token>`' };
  const key = world.keys.find((k) => k.token === match[1]);
  if (key === undefined) return { ok: false, why: 'not the token of a seeded key' };
  if (key.reachable.length === 0) return { ok: false, why: `key ${key.name} may never be allowed` };

  const path = strict(bytesField(http, 'path'));
  if (path === null) return { ok: false, why: 'path is not UTF-8' };
  const vault = simpleVault(path);
  if (vault === null || resolvedVault(path) !== vault)
    return { ok: false, why: `path ${JSON.stringify(path.slice(0, 80))} names no single vault` };
  if (!key.reachable.includes(vault))
    return { ok: false, why: `vault ${vault} not reachable with ${key.name}` };

  if (key.ipAllowlist.length > 0) {
    const address = child(child(attributes, 'source'), 'address');
    const socket = child(address, 'socket_address');
    if (
      socket === undefined ||
      address?.pipe !== undefined ||
      address?.envoy_internal_address !== undefined
    ) {
      return { ok: false, why: 'no single socket address' };
    }
    const peer = strict(bytesField(socket, 'address'))?.trim() ?? '';
    if (net.isIP(peer) === 0) return { ok: false, why: `peer ${JSON.stringify(peer)} is not an IP` };
    let client = peer;
    const trusted = blockList(world.trustedProxies);
    const forwarded = named('x-forwarded-for').map((v) => Buffer.from(v).toString('utf8'));
    if (inList(trusted, peer) && forwarded.length > 0 && forwarded.join(',') !== '') {
      // The rightmost hop that is not a trusted proxy; everything left of it was written by the client.
      const hops = forwarded.join(',').split(',');
      for (let i = hops.length - 1; i >= 0; i--) {
        const hop = (hops[i] as string).trim();
        if (net.isIP(hop) === 0)
          return { ok: false, why: `X-Forwarded-For hop ${JSON.stringify(hop)} is not an IP` };
        client = hop;
        if (!inList(trusted, hop)) break;
      }
    }
    if (!inList(blockList(key.ipAllowlist), client))
      return { ok: false, why: `client ${client} not in ${key.name}'s allowlist` };
  }
  const fortaryNames = [
    ...new Set(lines.map(([n]) => n.toLowerCase()).filter((n) => n.startsWith('x-fortary-'))),
  ];
  return { ok: true, key, fortaryNames, apiKey: named('x-api-key').length > 0 };
}

// ---------------------------------------------------------------------------------------------------------------
// Checking an answer
// ---------------------------------------------------------------------------------------------------------------

export type Outcome = { response: Buffer } | { error: { code: number; details: string } };

function repoRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'proto'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no repository root above ${__dirname}`);
  }
}

let checkResponseType: Type | null = null;
function CheckResponse(): Type {
  if (checkResponseType === null) {
    const root = new Root();
    const protoDir = path.join(repoRoot(), 'proto');
    root.resolvePath = (_origin, target) => path.resolve(protoDir, target);
    root.loadSync('envoy/service/auth/v3/external_auth.proto', { keepCase: true });
    root.resolveAll();
    checkResponseType = root.lookupType('envoy.service.auth.v3.CheckResponse');
  }
  return checkResponseType;
}

export interface Verdict {
  /** allow | deny:<reason> | rpc:<code> */
  outcome: string;
  problem: string | null;
  /** The oracle would have justified an allow. */
  justified: boolean;
}

/** What the answer was, and what is wrong with it (null when nothing is). */
export function judge(world: World, request: Uint8Array, result: Outcome): Verdict {
  if ('error' in result) {
    const { code, details } = result.error;
    // Fail closed: Envoy turns a failed RPC into status_on_error (503) and forwards nothing.
    const closed =
      (code === grpc.status.INTERNAL && /deserializ|malformed CheckRequest/i.test(details)) ||
      code === grpc.status.RESOURCE_EXHAUSTED;
    return {
      outcome: `rpc:${code}`,
      problem: closed ? null : `RPC failed: ${code} ${details}`,
      justified: false,
    };
  }
  const bytes = result.response;
  if (bytes.length === 0)
    return { outcome: 'empty', problem: 'empty CheckResponse (Envoy would allow)', justified: false };
  if (bytes[0] !== 0x0a)
    return { outcome: 'bad', problem: 'CheckResponse does not start with status', justified: false };
  let r: Msg;
  try {
    r = CheckResponse().toObject(CheckResponse().decode(bytes), {
      enums: Number,
      longs: String,
      defaults: false,
    }) as Msg;
  } catch (error) {
    return {
      outcome: 'bad',
      problem: `undecodable CheckResponse: ${(error as Error).message}`,
      justified: false,
    };
  }
  const status = child(r, 'status');
  const code = (status?.code as number | undefined) ?? 0;
  const fields = (child(child(r, 'dynamic_metadata'), 'fields') ?? {}) as Record<string, Msg>;
  const reason = String(fields.reason?.stringValue ?? '(none)');
  const ok = child(r, 'ok_response');
  const denied = child(r, 'denied_response');
  if (status === undefined)
    return { outcome: 'bad', problem: 'no status (Envoy would allow)', justified: false };
  if (code !== 0) {
    const outcome = `deny:${reason}`;
    if (ok !== undefined) return { outcome, problem: 'denial with ok_response', justified: false };
    const http = (child(denied, 'status')?.code as number | undefined) ?? 0;
    if (denied === undefined || http < 400 || http > 599)
      return { outcome, problem: `denial with HTTP ${http}`, justified: false };
    if (reason === 'internal_error')
      return { outcome, problem: 'internal_error (an exception path)', justified: false };
    return { outcome, problem: null, justified: false };
  }
  if (ok === undefined || denied !== undefined)
    return { outcome: 'allow', problem: 'code 0 without a clean ok_response', justified: false };
  const why = justify(world, request);
  if (!why.ok)
    return { outcome: 'allow', problem: `ALLOWED, but the oracle says: ${why.why}`, justified: false };
  const headers = ((ok.headers as Msg[] | undefined) ?? []).map((h) => {
    const header = child(h, 'header') ?? {};
    return [header.key, header.value, child(h, 'append')?.value ?? false, h.append_action ?? 0];
  });
  const expected = [
    ['x-fortary-key-id', why.key.keyId, false, 2],
    ['x-fortary-user-id', why.key.userId, false, 2],
  ];
  if (JSON.stringify(headers) !== JSON.stringify(expected)) {
    return { outcome: 'allow', problem: `identity headers ${JSON.stringify(headers)}`, justified: true };
  }
  const removed = new Set((ok.headers_to_remove as string[] | undefined) ?? []);
  const mustRemove = [
    'authorization',
    ...why.fortaryNames.filter((n) => n !== 'x-fortary-key-id' && n !== 'x-fortary-user-id'),
    ...(why.apiKey ? ['x-api-key'] : []),
  ];
  const missing = mustRemove.filter((n) => !removed.has(n));
  if (missing.length > 0)
    return { outcome: 'allow', problem: `headers_to_remove lacks ${missing.join(', ')}`, justified: true };
  if (removed.has('x-fortary-key-id') || removed.has('x-fortary-user-id')) {
    return { outcome: 'allow', problem: 'headers_to_remove deletes an identity header', justified: true };
  }
  return { outcome: 'allow', problem: null, justified: true };
}

// ---------------------------------------------------------------------------------------------------------------
// Sending
// ---------------------------------------------------------------------------------------------------------------

const CHECK_PATH = '/envoy.service.auth.v3.Authorization/Check';
const identity = (b: Buffer) => b;

export class RawCheckClient {
  private readonly client: grpc.Client;

  constructor(address: string) {
    this.client = new grpc.Client(address, grpc.credentials.createInsecure(), {
      'grpc.max_send_message_length': 4 * 1024 * 1024,
      // Its own connection: grpc-js otherwise shares one subchannel between clients of the same target.
      'grpc.use_local_subchannel_pool': 1,
    });
  }

  send(bytes: Buffer, deadlineMs = 10_000): Promise<Outcome> {
    return new Promise((resolve) => {
      this.client.makeUnaryRequest<Buffer, Buffer>(
        CHECK_PATH,
        identity,
        identity,
        bytes,
        { deadline: Date.now() + deadlineMs },
        (error, response) =>
          resolve(
            error !== null || response === undefined
              ? { error: { code: error?.code ?? -1, details: error?.details ?? String(error) } }
              : { response },
          ),
      );
    });
  }

  close(): void {
    this.client.close();
  }
}

export interface FuzzOptions {
  address: string;
  world: World;
  cases: number;
  seed: number;
  concurrency: number;
  /**
   * A call still unanswered after this long is a hang (default 60 s). Generous on purpose: under a saturating
   * closed loop, requests over the server's 64 KiB HTTP/2 window take seconds (docs/hardening.md, "Findings").
   */
  deadlineMs?: number;
  /** First case index (default 0). */
  from?: number;
  progress?: (done: number) => void;
}

export interface Violation {
  case: number;
  problem: string;
  outcome: string;
  request: string;
}

export interface FuzzReport {
  seed: number;
  cases: number;
  ms: number;
  perSecond: number;
  outcomes: Record<string, number>;
  /** Cases the oracle would have justified, and what the sidecar answered to those. */
  justifiable: number;
  justifiedOutcomes: Record<string, number>;
  /** Per-call latency seen by the client (with `concurrency` calls in flight, so mostly queueing). */
  latencyMs: { p50: number; p99: number; max: number };
  slowest: { case: number; ms: number; bytes: number };
  violations: Violation[];
  violationCount: number;
}

function percentile(values: number[], q: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number);
}

/** Sends `cases` generated cases with `concurrency` calls in flight and judges every answer. */
export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const arbitrary = caseArbitrary(options.world);
  const clients = Array.from({ length: 4 }, () => new RawCheckClient(options.address));
  const outcomes: Record<string, number> = {};
  const justifiedOutcomes: Record<string, number> = {};
  const latencies: number[] = [];
  let slowest = { case: -1, ms: 0, bytes: 0 };
  const violations: Violation[] = [];
  let violationCount = 0;
  let justifiable = 0;
  let next = options.from ?? 0;
  const end = next + options.cases;
  let done = 0;
  const started = performance.now();
  const worker = async (w: number) => {
    const client = clients[w % clients.length] as RawCheckClient;
    for (;;) {
      const k = next++;
      if (k >= end) return;
      const bytes = encodeCase(generateCase(arbitrary, options.seed, k));
      const sent = performance.now();
      const result = await client.send(bytes, options.deadlineMs ?? 60_000);
      const ms = performance.now() - sent;
      latencies.push(ms);
      if (ms > slowest.ms) slowest = { case: k, ms: Math.round(ms), bytes: bytes.length };
      const verdict = judge(options.world, bytes, result);
      outcomes[verdict.outcome] = (outcomes[verdict.outcome] ?? 0) + 1;
      if (verdict.justified || justify(options.world, bytes).ok) {
        justifiable++;
        justifiedOutcomes[verdict.outcome] = (justifiedOutcomes[verdict.outcome] ?? 0) + 1;
      }
      if (verdict.problem !== null) {
        violationCount++;
        if (violations.length < 20) {
          violations.push({
            case: k,
            problem: verdict.problem,
            outcome: verdict.outcome,
            request: bytes.subarray(0, 512).toString('hex'),
          });
        }
      }
      if (++done % 10_000 === 0) options.progress?.(done);
    }
  };
  try {
    await Promise.all(Array.from({ length: options.concurrency }, (_, w) => worker(w)));
  } finally {
    for (const c of clients) c.close();
  }
  const ms = performance.now() - started;
  return {
    seed: options.seed,
    cases: options.cases,
    ms: Math.round(ms),
    perSecond: Math.round((options.cases / ms) * 1000),
    outcomes,
    justifiable,
    justifiedOutcomes,
    latencyMs: { p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99), max: slowest.ms },
    slowest,
    violations,
    violationCount,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The long run: its own redis-server and the built sidecar as a child process
// ---------------------------------------------------------------------------------------------------------------

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function until(what: string, condition: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  // Each attempt is bounded too: a client that never settles must not hang the run.
  const attempt = () =>
    Promise.race([
      condition().catch(() => false),
      new Promise<boolean>((r) => setTimeout(() => r(false), 1000)),
    ]);
  while (!(await attempt())) {
    if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** PING over a raw socket: no client library state to get stuck in. */
function rawPing(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const done = (reply: string) => {
      socket.destroy();
      resolve(reply);
    };
    socket.setTimeout(500, () => done('timeout'));
    socket.once('error', () => done('error'));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (d) => done(d.toString().trim()));
  });
}

function httpGet(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

function argument(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<void> {
  const seed = Number(argument('seed') ?? Math.floor(Math.random() * 2 ** 31));
  const cases = Number(argument('cases') ?? 100_000);
  const concurrency = Number(argument('concurrency') ?? 128);
  const only = argument('case');
  const root = repoRoot();
  const redisPort = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fortary-fuzz-'));
  const children: ChildProcess[] = [];
  const stop = () => {
    for (const c of children.reverse()) if (c.exitCode === null) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const redisServer = spawn(
      'redis-server',
      ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(redisServer);
    let redisOutput = '';
    redisServer.stdout?.on('data', (d: Buffer) => (redisOutput = (redisOutput + d.toString()).slice(-4000)));
    redisServer.stderr?.on('data', (d: Buffer) => (redisOutput = (redisOutput + d.toString()).slice(-4000)));
    await until('redis-server answers PING', async () => {
      if (redisServer.exitCode !== null) throw new Error(`redis-server exited: ${redisOutput}`);
      return (await rawPing(redisPort)) === '+PONG';
    });
    const admin = new Redis(redisPort, '127.0.0.1', { maxRetriesPerRequest: 1 });
    admin.on('error', () => {});
    const world = await seedWorld(admin, seed);
    if (only !== undefined) {
      const c = generateCase(caseArbitrary(world), seed, Number(only));
      const bytes = encodeCase(c);
      console.log(
        JSON.stringify(
          { case: Number(only), seed, bytes: bytes.toString('hex'), oracle: justify(world, bytes) },
          null,
          2,
        ),
      );
      admin.disconnect();
      return;
    }
    const [grpcPort, adminPort] = [await freePort(), await freePort()];
    let sidecarOutput = '';
    const sidecar = spawn(process.execPath, [path.join(root, 'dist/src/main.js')], {
      cwd: root,
      env: {
        PATH: process.env.PATH ?? '',
        REDIS_URL: `redis://127.0.0.1:${redisPort}`,
        FORTARY_GRPC_ADDR: `127.0.0.1:${grpcPort}`,
        FORTARY_ADMIN_ADDR: `127.0.0.1:${adminPort}`,
        FORTARY_HEALTH_ADDR: 'off',
        FORTARY_TRUSTED_PROXIES: TRUSTED_PROXIES.join(','),
        FORTARY_LOG_LEVEL: 'warn',
        // e.g. --cpu-prof --cpu-prof-dir=/tmp/prof to profile the sidecar under fuzzing.
        NODE_OPTIONS: process.env.FUZZ_SIDECAR_NODE_OPTIONS ?? '',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(sidecar);
    sidecar.stdout?.on(
      'data',
      (d: Buffer) => (sidecarOutput = (sidecarOutput + d.toString()).slice(-20_000)),
    );
    sidecar.stderr?.on(
      'data',
      (d: Buffer) => (sidecarOutput = (sidecarOutput + d.toString()).slice(-20_000)),
    );
    let exited: number | null | undefined;
    sidecar.once('exit', (code) => (exited = code));
    await until('the sidecar is ready', async () => {
      if (exited !== undefined) throw new Error(`the sidecar exited (${String(exited)}): ${sidecarOutput}`);
      return (await httpGet(`http://127.0.0.1:${adminPort}/readyz`)).status === 200;
    }).catch((error: unknown) => {
      throw new Error(`${(error as Error).message}\n${sidecarOutput}`);
    });

    const report = await runFuzz({
      address: `127.0.0.1:${grpcPort}`,
      world,
      cases,
      seed,
      concurrency,
      progress: (done) => process.stderr.write(`fuzz: ${done}/${cases}\n`),
    });

    const after: string[] = [];
    if (exited !== undefined) after.push(`the sidecar exited (${String(exited)})`);
    const probe = new RawCheckClient(`127.0.0.1:${grpcPort}`);
    const open = world.keys.find((k) => k.name === 'open') as SeededKey;
    const good = encodeCase({
      garbage: null,
      method: utf8('GET'),
      path: utf8('/v1/vaults/alpha/x'),
      source: { kind: 'socket', ip: '203.0.113.7', port: true },
      lines: [{ name: 'authorization', value: utf8(`Bearer ${open.token}`) }],
      altLines: [],
      shape: 'headers',
      duplicate: 'none',
      extras: [],
      reversed: false,
      mutations: [],
    });
    const verdict = judge(world, good, await probe.send(good));
    probe.close();
    if (verdict.outcome !== 'allow' || verdict.problem !== null)
      after.push(`a good request afterwards: ${verdict.outcome} ${verdict.problem ?? ''}`);
    const metrics = (await httpGet(`http://127.0.0.1:${adminPort}/metrics`)).body;
    const internal =
      /fortary_authz_decisions_total\{[^}]*reason="internal_error"[^}]*\} (\d+)/.exec(metrics)?.[1] ?? '0';
    if (internal !== '0') after.push(`${internal} internal_error decisions counted`);
    const errors = sidecarOutput
      .split('\n')
      .filter((l) => /"level":"(error|fatal)"/.test(l) && !/corrupt record/.test(l));
    if (errors.length > 0) after.push(`error log lines: ${errors.slice(0, 3).join(' | ')}`);

    console.log(JSON.stringify({ ...report, afterwards: after.length === 0 ? 'ok' : after }, null, 2));
    admin.disconnect();
    if (report.violationCount > 0 || after.length > 0) process.exitCode = 1;
  } finally {
    stop();
  }
}

if (require.main === module) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
