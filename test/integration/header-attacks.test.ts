/**
 * Attacks through request headers, end to end (real sidecar, redis-server and gRPC client):
 * - client-sent `x-fortary-*` headers never reach upstream: the identity headers are overwritten, every other
 *   `x-fortary-*` name is removed, whatever the case, count or header shape;
 * - Authorization values that are duplicated, comma-joined, carry several tokens, extra spaces or tabs, bytes that
 *   are not UTF-8, or 64 KiB, are refused before any Redis or bcrypt work, and a flood of them leaves the sidecar
 *   answering good requests;
 * - X-Forwarded-For changes nothing unless trusted proxies are configured, and then only the rightmost untrusted
 *   hop is believed.
 * Requests that Envoy cannot produce (duplicate map keys, bytes that are not UTF-8) are built by hand on the wire.
 */
import { formatToken } from '../../src/core/token';
import {
  checkRequestBytes,
  decodeCheckResponse,
  envoyRequest,
  makeCheckClient,
  metadataOf,
  type CheckClient,
} from '../support/check-client';
import { createKey, putUser, randomBase62, type CreatedKey } from '../support/fixtures';
import { redisCommandsDuring } from '../support/redis-work';
import { startHarness, verdict, type Harness } from '../support/sidecar-harness';

let h: Harness;
/** Same Redis, FORTARY_TRUSTED_PROXIES=10.200.0.0/16. */
let proxied: Harness;
let open: CreatedKey;
let ip4: CreatedKey;
const ALPHA = '/v1/vaults/alpha/items/1';

beforeAll(async () => {
  h = await startHarness();
  proxied = await startHarness({ redis: h.redis, env: { FORTARY_TRUSTED_PROXIES: '10.200.0.0/16' } });
  await putUser(h.admin, { id: 'alice', developerVaults: ['alpha'] });
  open = await createKey(h.admin, { userId: 'alice', vaults: ['alpha'] });
  ip4 = await createKey(h.admin, { userId: 'alice', vaults: ['alpha'], ipAllowlist: ['198.51.100.0/24'] });
});

afterAll(async () => {
  await proxied.stop();
  await h.stop();
});

// --- A minimal protobuf writer, for requests protobufjs cannot express (duplicate map keys, raw bytes). ---

const varint = (n: number): Buffer => {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
};
const bytesOf = (v: string | Buffer) => (typeof v === 'string' ? Buffer.from(v, 'utf8') : v);
const field = (no: number, payload: string | Buffer): Buffer => {
  const p = bytesOf(payload);
  return Buffer.concat([varint((no << 3) | 2), varint(p.length), p]);
};

interface WireRequest {
  method?: string;
  path?: string;
  ip?: string;
  /** `headers` map entries, one wire entry each (repeats allowed). */
  headers?: Array<[string, string | Buffer]>;
  /** `header_map` entries with raw_value. */
  headerMap?: Array<[string, string | Buffer]>;
}

function wire(req: WireRequest): Buffer {
  const http = Buffer.concat([
    field(2, req.method ?? 'GET'),
    ...(req.headers ?? []).map(([k, v]) => field(3, Buffer.concat([field(1, k), field(2, v)]))),
    field(4, req.path ?? ALPHA),
    ...(req.headerMap === undefined
      ? []
      : [
          field(
            13,
            Buffer.concat(req.headerMap.map(([k, v]) => field(1, Buffer.concat([field(1, k), field(3, v)])))),
          ),
        ]),
  ]);
  const source = field(1, field(1, field(1, field(2, req.ip ?? '203.0.113.7'))));
  return field(1, Buffer.concat([source, field(4, field(2, http))]));
}

async function ask(harness: Harness, bytes: Buffer) {
  const response = decodeCheckResponse(await harness.client.raw(bytes));
  return { response, ...verdict(response), reason: metadataOf(response).reason };
}

describe('client-sent x-fortary-* headers never reach upstream', () => {
  const spoofed: Array<[string, string]> = [
    ['x-fortary-key-id', 'AAAAAAAAAAAA'],
    ['X-Fortary-Key-Id', 'BBBBBBBBBBBB'],
    ['x-fortary-user-id', 'root'],
    ['x-fortary-user-id', 'admin'],
    ['X-FORTARY-ADMIN', 'true'],
    ['x-fortary-role', 'owner'],
    ['x-fortary-', 'bare prefix'],
    ['x-fortary-vault', 'beta'],
    ['x-fortary-vault', 'gamma'],
  ];
  const expectedRemoved = [
    'authorization',
    'x-fortary-admin',
    'x-fortary-role',
    'x-fortary-',
    'x-fortary-vault',
  ];

  test.each([
    [
      'header_map (one entry per line, names as sent)',
      () => wire({ headerMap: [['authorization', `Bearer ${open.token}`], ...spoofed] }),
    ],
    [
      'headers map (one wire entry per line, names as sent)',
      () => wire({ headers: [['authorization', `Bearer ${open.token}`], ...spoofed] }),
    ],
    [
      'headers map as Envoy builds it (lowercase, duplicates comma-joined)',
      () =>
        checkRequestBytes(
          envoyRequest({
            authorization: `Bearer ${open.token}`,
            path: ALPHA,
            extraHeaders: spoofed.map(([k, v]) => [k.toLowerCase(), v] as const),
          }),
        ),
    ],
  ])('%s: identity headers overwritten, every other x-fortary-* removed', async (_shape, build) => {
    const { response, allow } = await ask(h, build());
    expect(allow).toBe(true);
    const ok = response.ok_response;
    expect(
      (ok.headers as Array<Record<string, any>>).map((x) => [
        x.header.key,
        x.header.value,
        x.append?.value,
        x.append_action,
      ]),
    ).toEqual([
      ['x-fortary-key-id', open.keyId, false, 2],
      ['x-fortary-user-id', 'alice', false, 2],
    ]);
    expect([...(ok.headers_to_remove as string[])].sort()).toEqual([...expectedRemoved].sort());
    // Removal runs after the set in Envoy: listing our own identity headers would delete them.
    expect(ok.headers_to_remove).not.toContain('x-fortary-key-id');
    expect(ok.headers_to_remove).not.toContain('x-fortary-user-id');
    expect(ok.response_headers_to_add ?? []).toEqual([]);
    expect(ok.query_parameters_to_set ?? []).toEqual([]);
  });

  test('two hundred distinct x-fortary-* names are all removed, each once', async () => {
    const names = Array.from({ length: 200 }, (_, i) => `x-fortary-n${i}`);
    const { response, allow } = await ask(
      h,
      wire({
        headerMap: [
          ['authorization', `Bearer ${open.token}`],
          ...names.map((n) => [n, 'x'] as [string, string]),
          ...names.map((n) => [n.toUpperCase(), 'y'] as [string, string]),
        ],
      }),
    );
    expect(allow).toBe(true);
    expect(response.ok_response.headers_to_remove).toEqual(['authorization', ...names]);
  });

  test('a credential also sent in X-API-Key is removed with the rest', async () => {
    const { response, allow } = await ask(
      h,
      wire({
        headerMap: [
          ['authorization', `Bearer ${open.token}`],
          ['x-api-key', open.token],
          ['x-fortary-admin', '1'],
        ],
      }),
    );
    expect(allow).toBe(true);
    expect([...(response.ok_response.headers_to_remove as string[])].sort()).toEqual(
      ['authorization', 'x-api-key', 'x-fortary-admin'].sort(),
    );
  });
});

describe('Authorization values are refused with bounded work', () => {
  const t = () => open.token;
  const bearer = () => `Bearer ${open.token}`;
  const other = () => `Bearer ${formatToken(randomBase62(12), randomBase62(43))}`;
  const MISPLACED = 'credentials_misplaced';
  const MALFORMED = 'token_malformed';
  const nonUtf8 = (...parts: Array<string | number[]>) =>
    Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))));

  /** [name, request bytes, reason]: every one carries the valid token somewhere, and none may be allowed. */
  const rows: Array<[string, () => Buffer, string]> = [
    [
      'two lines, comma-joined by Envoy',
      () => wire({ headers: [['authorization', `${bearer()},${bearer()}`]] }),
      MISPLACED,
    ],
    [
      'comma and space between two tokens',
      () => wire({ headers: [['authorization', `${bearer()}, ${other()}`]] }),
      MISPLACED,
    ],
    ['a trailing comma', () => wire({ headers: [['authorization', `${bearer()},`]] }), MISPLACED],
    [
      'two header_map lines, same token',
      () =>
        wire({
          headerMap: [
            ['authorization', bearer()],
            ['authorization', bearer()],
          ],
        }),
      MISPLACED,
    ],
    [
      'two header_map lines, the second one empty',
      () =>
        wire({
          headerMap: [
            ['authorization', bearer()],
            ['authorization', ''],
          ],
        }),
      MISPLACED,
    ],
    [
      'two headers-map entries with the same key on the wire',
      () =>
        wire({
          headers: [
            ['authorization', bearer()],
            ['authorization', bearer()],
          ],
        }),
      MISPLACED,
    ],
    [
      'authorization and Authorization',
      () =>
        wire({
          headerMap: [
            ['authorization', bearer()],
            ['Authorization', bearer()],
          ],
        }),
      MISPLACED,
    ],
    [
      'two tokens after one scheme',
      () => wire({ headers: [['authorization', `${bearer()} ${t()}`]] }),
      MALFORMED,
    ],
    [
      'two schemes and tokens, space-separated',
      () => wire({ headers: [['authorization', `${bearer()} ${bearer()}`]] }),
      MALFORMED,
    ],
    [
      'two tokens joined by a semicolon',
      () => wire({ headers: [['authorization', `${bearer()};${t()}`]] }),
      MALFORMED,
    ],
    [
      'two spaces after the scheme',
      () => wire({ headers: [['authorization', `Bearer  ${t()}`]] }),
      MALFORMED,
    ],
    ['a leading space', () => wire({ headers: [['authorization', ` ${bearer()}`]] }), MISPLACED],
    ['a trailing space', () => wire({ headers: [['authorization', `${bearer()} `]] }), MALFORMED],
    ['a tab instead of the space', () => wire({ headers: [['authorization', `Bearer\t${t()}`]] }), MISPLACED],
    ['a tab after the space', () => wire({ headers: [['authorization', `Bearer \t${t()}`]] }), MALFORMED],
    ['a trailing tab', () => wire({ headers: [['authorization', `${bearer()}\t`]] }), MALFORMED],
    ['CRLF inside', () => wire({ headers: [['authorization', `Bearer\r\n ${t()}`]] }), MISPLACED],
    ['a trailing NUL', () => wire({ headers: [['authorization', `${bearer()}\0`]] }), MALFORMED],
    [
      'no-break space (U+00A0) as separator',
      () => wire({ headers: [['authorization', `Bearer\u00a0${t()}`]] }),
      MISPLACED,
    ],
    [
      'raw byte 0xA0 (Latin-1 no-break space)',
      () => wire({ headerMap: [['authorization', nonUtf8('Bearer', [0xa0], t())]] }),
      MISPLACED,
    ],
    [
      'overlong UTF-8 space (C0 A0)',
      () => wire({ headerMap: [['authorization', nonUtf8('Bearer', [0xc0, 0xa0], t())]] }),
      MISPLACED,
    ],
    [
      'a token byte replaced by 0xFF',
      () =>
        wire({
          headerMap: [['authorization', nonUtf8(`Bearer ${t().slice(0, 30)}`, [0xff], t().slice(31))]],
        }),
      MALFORMED,
    ],
    [
      'a trailing 0x80 byte',
      () => wire({ headerMap: [['authorization', nonUtf8(bearer(), [0x80])]] }),
      MALFORMED,
    ],
    [
      'the value in UTF-16',
      () => wire({ headerMap: [['authorization', Buffer.from(bearer(), 'utf16le')]] }),
      MALFORMED,
    ],
    [
      'not UTF-8 in the headers map (a string field)',
      () => wire({ headers: [['authorization', nonUtf8(bearer(), [0xfe, 0xff])]] }),
      MALFORMED,
    ],
    [
      'fullwidth letters in the scheme',
      () => wire({ headers: [['authorization', `Ｂearer ${t()}`]] }),
      MISPLACED,
    ],
    [
      '64 KiB: the token then spaces',
      () => wire({ headers: [['authorization', bearer().padEnd(65536, ' ')]] }),
      MALFORMED,
    ],
    [
      '64 KiB: one long token',
      () => wire({ headers: [['authorization', `Bearer ${'A'.repeat(65536 - 7)}`]] }),
      MALFORMED,
    ],
    [
      '64 KiB: the token repeated, comma-joined',
      () => wire({ headers: [['authorization', Array(1000).fill(bearer()).join(',').slice(0, 65536)]] }),
      MISPLACED,
    ],
    [
      '64 KiB: bytes that are not UTF-8',
      () =>
        wire({
          headerMap: [
            ['authorization', Buffer.concat([Buffer.from('Bearer '), Buffer.alloc(65536 - 7, 0xff)])],
          ],
        }),
      MALFORMED,
    ],
    [
      '64 KiB in each of 8 header_map lines',
      () =>
        wire({
          headerMap: Array.from(
            { length: 8 },
            () => ['authorization', bearer().padEnd(65536, 'x')] as [string, string],
          ),
        }),
      MISPLACED,
    ],
  ];

  test.each(rows)('%s: 401 before any Redis or bcrypt work', async (_name, build, reason) => {
    const bcryptBefore = h.bcryptCalls();
    const commands = await redisCommandsDuring(h.admin, async () => {
      const result = await ask(h, build());
      expect(result).toMatchObject({ allow: false, grpc: 16, http: 401, reason });
    });
    expect(h.bcryptCalls()).toBe(bcryptBefore);
    expect(commands).toEqual({});
  });

  test('a flood of every refused shape leaves good requests answered and the sidecar serving', async () => {
    const good = wire({ headerMap: [['authorization', `Bearer ${open.token}`]] });
    const bad = rows.map(([, build]) => build());
    const calls: Array<Promise<boolean>> = [];
    for (let round = 0; round < 20; round++) {
      for (const bytes of bad) calls.push(ask(h, bytes).then((r) => r.allow === false && r.http === 401));
      calls.push(ask(h, good).then((r) => r.allow));
    }
    expect((await Promise.all(calls)).every(Boolean)).toBe(true);
    expect(h.sidecar.health.serving).toBe(true);
    expect((await ask(h, good)).allow).toBe(true);
  });

  test('a CheckRequest over the 4 MiB receive limit fails the RPC (Envoy: 503), and the sidecar keeps serving', async () => {
    const client: CheckClient = makeCheckClient(`127.0.0.1:${h.sidecar.grpcPort}`);
    try {
      const huge = wire({ headerMap: [['authorization', `Bearer ${'A'.repeat(4.5 * 1024 * 1024)}`]] });
      await expect(client.raw(huge)).rejects.toMatchObject({ code: 8 });
      expect((await ask(h, wire({ headerMap: [['authorization', `Bearer ${open.token}`]] }))).allow).toBe(
        true,
      );
    } finally {
      client.close();
    }
  });
});

describe('X-Forwarded-For', () => {
  const ALLOWED = '198.51.100.20';
  const OUTSIDE = '203.0.113.9';
  const PROXY = '10.200.0.5';
  const request = (peer: string, xff: string[] | null, rawHeaders: boolean, token = ip4.token) => {
    const headers: Array<[string, string]> = [['authorization', `Bearer ${token}`]];
    for (const line of xff ?? []) headers.push(['x-forwarded-for', line]);
    // Envoy's headers map joins repeated lines with ','; header_map keeps one entry per line.
    return rawHeaders
      ? wire({ ip: peer, headerMap: headers })
      : wire({
          ip: peer,
          headers:
            xff === null
              ? headers.slice(0, 1)
              : [headers[0] as [string, string], ['x-forwarded-for', xff.join(',')]],
        });
  };

  const forgeries: string[][] = [
    [ALLOWED],
    [OUTSIDE],
    [`${ALLOWED}, ${OUTSIDE}`],
    [`${OUTSIDE}, ${ALLOWED}`],
    [ALLOWED, OUTSIDE],
    ['not an ip'],
    [`${ALLOWED}:443`],
    [Array(100).fill(ALLOWED).join(',')],
    [`::ffff:${ALLOWED}`],
    [''],
    [PROXY],
  ];

  describe.each([false, true])('without trusted proxies (rawHeaders=%s)', (rawHeaders) => {
    test.each([
      ['a client inside the allowlist', ALLOWED, true],
      ['a client outside the allowlist', OUTSIDE, false],
      ['a peer that would be a proxy', PROXY, false],
    ])(
      '%s: every forged X-Forwarded-For gets the very answer of no X-Forwarded-For',
      async (_n, peer, allowed) => {
        const baseline = await h.client.raw(request(peer, null, rawHeaders));
        expect(verdict(decodeCheckResponse(baseline)).allow).toBe(allowed);
        for (const xff of forgeries) {
          const answer = await h.client.raw(request(peer, xff, rawHeaders));
          expect({ xff, answer: answer.toString('hex') }).toEqual({ xff, answer: baseline.toString('hex') });
        }
      },
    );
  });

  describe.each([false, true])('with trusted proxies 10.200.0.0/16 (rawHeaders=%s)', (rawHeaders) => {
    test.each([
      ['untrusted peer: X-Forwarded-For is ignored', OUTSIDE, [ALLOWED], false],
      ['untrusted peer: X-Forwarded-For is ignored either way', ALLOWED, [OUTSIDE], true],
      ['trusted peer, one hop', PROXY, [ALLOWED], true],
      ['trusted peer, trusted hops are skipped', PROXY, [`${ALLOWED}, 10.200.0.7, 10.200.3.1`], true],
      [
        'trusted peer: the leftmost (client-written) hop is not believed',
        PROXY,
        [`${ALLOWED}, ${OUTSIDE}`],
        false,
      ],
      ['trusted peer: the rightmost untrusted hop is believed', PROXY, [`${OUTSIDE}, ${ALLOWED}`], true],
      ['trusted peer: garbage left of the believed hop is never read', PROXY, [`<script>, ${ALLOWED}`], true],
      ['trusted peer: an unreadable rightmost hop refuses', PROXY, [`${ALLOWED}, not-an-ip`], false],
      ['trusted peer: a hop with a port is not an address', PROXY, [`${ALLOWED}:443`], false],
      ['trusted peer: an octal-looking hop is not an address', PROXY, ['0198.051.100.020'], false],
      ['trusted peer: hops on two header lines, client last', PROXY, [OUTSIDE, ALLOWED], true],
      ['trusted peer: hops on two header lines, forged first', PROXY, [ALLOWED, OUTSIDE], false],
      [
        'trusted peer: only trusted hops leave a proxy as the client',
        PROXY,
        ['10.200.0.1, 10.200.0.2'],
        false,
      ],
      ['trusted peer: more than 64 hops refuse', PROXY, [Array(65).fill(ALLOWED).join(',')], false],
      ['trusted peer: an IPv4-mapped hop', PROXY, [`::ffff:${ALLOWED}`], true],
      ['trusted peer: an empty header means the peer itself', PROXY, [''], false],
      ['an IPv4-mapped trusted peer', `::ffff:${PROXY}`, [ALLOWED], true],
    ] as Array<[string, string, string[], boolean]>)('%s', async (_name, peer, xff, allowed) => {
      const result = await ask(proxied, request(peer, xff, rawHeaders));
      expect(result).toMatchObject(
        allowed ? { allow: true } : { allow: false, http: 403, reason: 'ip_not_allowed' },
      );
    });

    test('a key without an allowlist ignores the address entirely', async () => {
      const result = await ask(proxied, request(PROXY, [`${ALLOWED}, not-an-ip`], rawHeaders, open.token));
      expect(result.allow).toBe(true);
    });
  });
});

/**
 * Found by the fuzzer (docs/hardening.md), fixed in parseStrictIPv6: src/core/network.ts parses addresses with
 * ipaddr.js, which reads the deprecated IPv4-compatible spelling `::a.b.c.d` (RFC 4291 §2.5.5.1) as the IPv4-mapped
 * `::ffff:a.b.c.d` and so as the IPv4 address a.b.c.d. `::198.51.100.20` is the IPv6 address ::c633:6414, as its
 * hex spelling (read correctly) shows. A client that can use such a source address passes an IPv4 allowlist, or
 * poses as a trusted proxy and has its X-Forwarded-For believed.
 */
describe('IPv4-compatible addresses are IPv6 addresses (reported defect, fixed)', () => {
  const ask4 = (harness: Harness, ip: string, xff?: string) =>
    ask(
      harness,
      wire({
        ip,
        headerMap: [
          ['authorization', `Bearer ${ip4.token}`],
          ...(xff === undefined ? [] : [['x-forwarded-for', xff] as [string, string]]),
        ],
      }),
    );

  test('control: the hex spelling ::c633:6414 is not in 198.51.100.0/24', async () => {
    expect(await ask4(h, '::c633:6414')).toMatchObject({ allow: false, reason: 'ip_not_allowed' });
  });

  test('a peer ::198.51.100.20 is not in 198.51.100.0/24', async () => {
    expect(await ask4(h, '::198.51.100.20')).toMatchObject({ allow: false, reason: 'ip_not_allowed' });
  });

  test('a peer ::10.200.0.5 is not the trusted proxy 10.200.0.5: its X-Forwarded-For is not believed', async () => {
    expect(await ask4(proxied, '::10.200.0.5', '198.51.100.20')).toMatchObject({
      allow: false,
      reason: 'ip_not_allowed',
    });
  });

  test('a hop ::198.51.100.20 behind a trusted proxy is not 198.51.100.20', async () => {
    expect(await ask4(proxied, '10.200.0.5', '::198.51.100.20')).toMatchObject({
      allow: false,
      reason: 'ip_not_allowed',
    });
  });
});
