/**
 * Every rule of the product documentation, end to end: a real sidecar, a real redis-server, a real gRPC client.
 * Each row names the precise reason the sidecar must report (dynamic metadata), the HTTP status the client gets
 * and the gRPC status code Envoy acts on.
 */
import { formatToken } from '../../src/core/token';
import { envoyRequest, metadataOf, type EnvoyRequestOptions } from '../support/check-client';
import { createKey, putUser, randomBase62, revokeKey, type CreatedKey } from '../support/fixtures';
import { startHarness, verdict, type Harness } from '../support/sidecar-harness';
import { redisCommandsDuring } from '../support/redis-work';

let h: Harness;
const keys: Record<string, CreatedKey> = {};
const bearer = (name: string) => `Bearer ${(keys[name] as CreatedKey).token}`;

beforeAll(async () => {
  h = await startHarness({
    env: { FORTARY_OPEN_PATHS: '/v1/me,/v1/status/*', FORTARY_TRUSTED_PROXIES: '10.200.0.0/16' },
  });
  const r = h.admin;
  await putUser(r, { id: 'alice', developerVaults: ['alpha', 'beta'] });
  await putUser(r, { id: 'carol', developerVaults: ['alpha'] });
  await putUser(r, { id: 'ghost', developerVaults: ['alpha'] });
  await putUser(r, { id: 'dave', developerVaults: [] });
  keys.alpha = await createKey(r, { userId: 'alice', vaults: ['alpha'] });
  keys.noExpiry = await createKey(r, { userId: 'alice', vaults: ['alpha'], expiresAt: null });
  keys.expired = await createKey(r, { userId: 'alice', vaults: ['alpha'], expiresAt: Date.now() - 1000 });
  keys.revoked = await createKey(r, { userId: 'alice', vaults: ['alpha'] });
  await revokeKey(r, keys.revoked.keyId);
  keys.ip4 = await createKey(r, { userId: 'alice', vaults: ['alpha'], ipAllowlist: ['198.51.100.0/24'] });
  keys.ip6 = await createKey(r, { userId: 'alice', vaults: ['alpha'], ipAllowlist: ['2001:db8::/32'] });
  keys.inactiveOwner = await createKey(r, { userId: 'carol', vaults: ['alpha'] });
  keys.noRole = await createKey(r, { userId: 'dave', vaults: ['alpha'] });
  keys.ghostOwner = await createKey(r, { userId: 'ghost', vaults: ['alpha'] });
  // The portal rewrote or removed the owner record without an event; the key was created while all was well.
  await r.set(
    'fortary:user:carol',
    JSON.stringify({ v: 1, id: 'carol', active: false, developerVaults: ['alpha'], updatedAt: Date.now() }),
  );
  await r.del('fortary:user:ghost');
  keys.corrupt = await createKey(r, { userId: 'alice', vaults: ['alpha'] });
  await r.hset(`fortary:key:${keys.corrupt.keyId}`, 'record', '{"v":1,"id":');
});

afterAll(async () => {
  await h.stop();
});

interface Row {
  name: string;
  request: () => EnvoyRequestOptions;
  reason: string;
  http?: number;
  grpc?: number;
}

const ok = (name: string, request: () => EnvoyRequestOptions): Row => ({
  name,
  request,
  reason: 'allowed',
  grpc: 0,
});
const unauth = (name: string, reason: string, request: () => EnvoyRequestOptions): Row => ({
  name,
  request,
  reason,
  http: 401,
  grpc: 16,
});
const forbidden = (name: string, reason: string, request: () => EnvoyRequestOptions): Row => ({
  name,
  request,
  reason,
  http: 403,
  grpc: 7,
});
const alphaPath = '/v1/vaults/alpha/secrets/db?version=2';

const rows: Row[] = [
  // 1. Credential
  ok('a valid key on an allowed vault', () => ({ authorization: bearer('alpha'), path: alphaPath })),
  ok('the Bearer scheme in any case', () => ({ authorization: bearer('alpha').replace('Bearer', 'bEaReR') })),
  unauth('no Authorization header', 'credentials_missing', () => ({})),
  unauth('key in X-API-Key', 'credentials_misplaced', () => ({
    extraHeaders: [['x-api-key', (keys.alpha as CreatedKey).token]],
  })),
  unauth('key in the query string', 'credentials_misplaced', () => ({
    path: `/v1/vaults/alpha?api_key=${(keys.alpha as CreatedKey).token}`,
  })),
  unauth('a token in the query beside a valid bearer', 'credentials_misplaced', () => ({
    authorization: bearer('alpha'),
    path: `/v1/vaults/alpha/items?page=2&q=${(keys.noExpiry as CreatedKey).token}`,
  })),
  unauth('the bearer token itself repeated in the query', 'credentials_misplaced', () => ({
    authorization: bearer('alpha'),
    path: `/v1/vaults/alpha/items?access=${(keys.alpha as CreatedKey).token}`,
  })),
  unauth('a percent-encoded token in the query beside a valid bearer', 'credentials_misplaced', () => ({
    authorization: bearer('alpha'),
    path: `/v1/vaults/alpha/items?k=${(keys.alpha as CreatedKey).token.replace(/_/g, '%5F')}`,
  })),
  ok('a bearer with an ordinary query string', () => ({
    authorization: bearer('alpha'),
    path: '/v1/vaults/alpha/items?key=fty_&token=abc',
  })),
  unauth('Basic auth', 'credentials_misplaced', () => ({
    authorization: `Basic ${Buffer.from(`x:${(keys.alpha as CreatedKey).token}`).toString('base64')}`,
  })),
  unauth('two Authorization headers (joined by Envoy)', 'credentials_misplaced', () => ({
    authorization: [bearer('alpha'), bearer('alpha')],
  })),
  unauth('two Authorization headers (raw header_map)', 'credentials_misplaced', () => ({
    authorization: [bearer('alpha'), bearer('noExpiry')],
    rawHeaders: true,
  })),
  unauth('a malformed token', 'token_malformed', () => ({ authorization: 'Bearer fty_nope' })),
  unauth('a token with a bad checksum', 'token_malformed', () => ({
    authorization: bearer('alpha').slice(0, -1) + (bearer('alpha').endsWith('A') ? 'B' : 'A'),
  })),
  // 2. Key
  unauth('an unknown key id', 'key_unknown', () => ({
    authorization: `Bearer ${formatToken(randomBase62(12), randomBase62(43))}`,
  })),
  unauth('a wrong secret for a real key id', 'secret_mismatch', () => ({
    authorization: `Bearer ${formatToken((keys.alpha as CreatedKey).keyId, randomBase62(43))}`,
  })),
  unauth('a revoked key', 'key_revoked', () => ({ authorization: bearer('revoked') })),
  unauth('an expired key', 'key_expired', () => ({ authorization: bearer('expired') })),
  ok('a key with no expiry', () => ({ authorization: bearer('noExpiry') })),
  unauth('a corrupt key record', 'record_invalid', () => ({ authorization: bearer('corrupt') })),
  // 3. Scope
  ok('HEAD is a read', () => ({ authorization: bearer('alpha'), method: 'HEAD' })),
  ...['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'].map((method) =>
    forbidden(`${method} needs more than vault:read`, 'scope_insufficient', () => ({
      authorization: bearer('alpha'),
      method,
    })),
  ),
  // 4. Vault
  forbidden('a vault not on the allowlist', 'vault_not_allowed', () => ({
    authorization: bearer('alpha'),
    path: '/v1/vaults/beta/secrets',
  })),
  forbidden('a path naming no vault', 'vault_missing', () => ({
    authorization: bearer('alpha'),
    path: '/v1/users',
  })),
  forbidden('the vault list itself', 'vault_missing', () => ({
    authorization: bearer('alpha'),
    path: '/v1/vaults',
  })),
  ok('an operator-opened exact path', () => ({ authorization: bearer('alpha'), path: '/v1/me' })),
  ok('an operator-opened prefix', () => ({ authorization: bearer('alpha'), path: '/v1/status/db' })),
  {
    ...forbidden('dot segments', 'path_rejected', () => ({
      authorization: bearer('alpha'),
      path: '/v1/vaults/alpha/../beta',
    })),
    http: 400,
    grpc: 3,
  },
  {
    ...forbidden('an encoded slash', 'path_rejected', () => ({
      authorization: bearer('alpha'),
      path: '/v1/vaults/alpha%2F..%2Fbeta',
    })),
    http: 400,
    grpc: 3,
  },
  // Fuzz finding 8: a byte that is not UTF-8 arrives decoded as U+FFFD; raw non-ASCII is refused in the query too.
  ...['\uFFFD', 'é', ' ', '\t'].map((char) => ({
    ...forbidden(`a raw ${JSON.stringify(char)} in the query`, 'path_rejected', () => ({
      authorization: bearer('alpha'),
      path: `/v1/vaults/alpha/items?next=/v1/vaults/bet${char}`,
    })),
    http: 400,
    grpc: 3,
  })),
  ok('percent-encoded non-ASCII in the query', () => ({
    authorization: bearer('alpha'),
    path: '/v1/vaults/alpha/items?q=%C3%A9%EF%BF%BD%20',
  })),
  ok('the query string is not part of the path', () => ({
    authorization: bearer('alpha'),
    path: '/v1/vaults/alpha?next=/v1/vaults/beta',
  })),
  // 5. Source IP
  ok('a client inside the IPv4 allowlist', () => ({
    authorization: bearer('ip4'),
    sourceIp: '198.51.100.20',
  })),
  forbidden('a client outside the IPv4 allowlist', 'ip_not_allowed', () => ({
    authorization: bearer('ip4'),
    sourceIp: '203.0.113.9',
  })),
  ok('an IPv4-mapped IPv6 client in the IPv4 range', () => ({
    authorization: bearer('ip4'),
    sourceIp: '::ffff:198.51.100.20',
  })),
  ok('a client inside the IPv6 allowlist', () => ({
    authorization: bearer('ip6'),
    sourceIp: '2001:db8:1::5',
  })),
  forbidden('a client outside the IPv6 allowlist', 'ip_not_allowed', () => ({
    authorization: bearer('ip6'),
    sourceIp: '2001:db9::5',
  })),
  forbidden('a forged X-Forwarded-For from an untrusted peer', 'ip_not_allowed', () => ({
    authorization: bearer('ip4'),
    sourceIp: '203.0.113.9',
    forwardedFor: '198.51.100.20',
  })),
  ok('X-Forwarded-For through a trusted proxy: the rightmost untrusted hop', () => ({
    authorization: bearer('ip4'),
    sourceIp: '10.200.0.5',
    forwardedFor: '203.0.113.9, 198.51.100.20, 10.200.0.7',
  })),
  forbidden('trusted proxy: a forged leftmost hop is not believed', 'ip_not_allowed', () => ({
    authorization: bearer('ip4'),
    sourceIp: '10.200.0.5',
    forwardedFor: '198.51.100.20, 203.0.113.9',
  })),
  forbidden('a Unix-socket peer when the key has an allowlist', 'ip_not_allowed', () => ({
    authorization: bearer('ip4'),
    address: { pipe: { path: '/run/envoy.sock' } },
  })),
  ok('a Unix-socket peer when the key has no allowlist', () => ({
    authorization: bearer('alpha'),
    address: { pipe: { path: '/run/envoy.sock' } },
  })),
  // 6. Owner
  unauth('a deactivated owner', 'owner_inactive', () => ({ authorization: bearer('inactiveOwner') })),
  forbidden('an owner without the Developer role on the vault', 'role_missing', () => ({
    authorization: bearer('noRole'),
  })),
  unauth('an owner with no user record', 'record_invalid', () => ({ authorization: bearer('ghostOwner') })),
];

describe.each([false, true])('with rawHeaders=%s', (rawHeaders) => {
  it.each(rows.map((row) => [row.name, row] as const))('%s', async (_name, row) => {
    const options = { path: alphaPath, ...row.request() };
    const response = await h.client(envoyRequest({ rawHeaders, ...options }));
    const v = verdict(response);
    expect(metadataOf(response).reason).toBe(row.reason);
    expect(v.allow).toBe(row.reason === 'allowed');
    if (row.grpc !== undefined) expect(v.grpc).toBe(row.grpc);
    if (row.http !== undefined) expect(v.http).toBe(row.http);
  });
});

describe('answers Envoy can act on', () => {
  it('allows with overwriting identity headers and strips the credential', async () => {
    const response = await h.client(
      envoyRequest({
        authorization: bearer('alpha'),
        path: alphaPath,
        extraHeaders: [
          ['x-fortary-key-id', 'spoofed'],
          ['x-fortary-admin', 'true'],
        ],
      }),
    );
    expect(response.status).toBeDefined();
    expect(response.status.code ?? 0).toBe(0);
    expect(response.denied_response).toBeUndefined();
    const headers = response.ok_response.headers as Array<Record<string, any>>;
    expect(
      headers.map((h) => [h.header.key, h.header.value, h.append?.value ?? false, h.append_action]),
    ).toEqual([
      ['x-fortary-key-id', (keys.alpha as CreatedKey).keyId, false, 2],
      ['x-fortary-user-id', 'alice', false, 2],
    ]);
    expect(headers.every((h) => h.append !== undefined)).toBe(true);
    expect(response.ok_response.headers_to_remove).toEqual(['authorization', 'x-fortary-admin']);
    expect(metadataOf(response)).toMatchObject({
      decision: 'allow',
      key_id: (keys.alpha as CreatedKey).keyId,
      user_id: 'alice',
    });
  });

  it('denies 401 with a JSON body, a bearer challenge and the same message for every 401 reason', async () => {
    const bodies = new Set<string>();
    for (const name of ['revoked', 'expired', 'inactiveOwner', 'corrupt']) {
      const response = await h.client(envoyRequest({ authorization: bearer(name) }));
      const denied = response.denied_response;
      expect(response.status.code).toBe(16);
      expect(denied.status.code).toBe(401);
      const headers = Object.fromEntries(
        (denied.headers as Array<Record<string, any>>).map((h) => [h.header.key, h.header.value]),
      );
      expect(headers['content-type']).toBe('application/json');
      expect(headers['www-authenticate']).toMatch(/^Bearer realm="fortary", error="invalid_token"/);
      expect(JSON.parse(denied.body)).toEqual({
        error: { code: 'unauthenticated', message: expect.any(String) },
      });
      bodies.add(denied.body);
    }
    const unknown = await h.client(
      envoyRequest({ authorization: `Bearer ${formatToken(randomBase62(12), randomBase62(43))}` }),
    );
    bodies.add(unknown.denied_response.body);
    expect(bodies.size).toBe(1);
    expect([...bodies][0]).toMatch(/bearer token/i);
  });

  it('denies 403 with a JSON body that names the refusal', async () => {
    const response = await h.client(
      envoyRequest({ authorization: bearer('alpha'), path: '/v1/vaults/beta' }),
    );
    expect(response.status.code).toBe(7);
    expect(response.denied_response.status.code).toBe(403);
    expect(JSON.parse(response.denied_response.body).error.code).toBe('vault_not_allowed');
  });
});

describe('undecodable requests', () => {
  it('fail the call (Envoy answers status_on_error), are counted, and log one throttled line', async () => {
    const before = await malformedCount(h);
    for (let i = 0; i < 5; i++) {
      await expect(
        h.client.raw(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01])),
      ).rejects.toMatchObject({
        code: 13,
      });
    }
    expect((await malformedCount(h)) - before).toBe(5);
    expect(h.logs.filter((l) => l.msg === 'undecodable CheckRequest refused')).toHaveLength(1);
    expect(
      verdict(await h.client(envoyRequest({ authorization: bearer('alpha'), path: alphaPath }))).allow,
    ).toBe(true);
  });
});

async function malformedCount(harness: Harness): Promise<number> {
  const metric = harness.sidecar.metrics.registry.getSingleMetric('fortary_authz_malformed_requests_total');
  return (await metric?.get())?.values[0]?.value ?? 0;
}

describe('cost of the warm path', () => {
  it('makes no bcrypt call and no Redis round trip once a token is verified and cached', async () => {
    const request = envoyRequest({ authorization: bearer('noExpiry'), path: alphaPath });
    expect(verdict(await h.client(request)).allow).toBe(true);
    const bcryptBefore = h.bcryptCalls();
    const commands = await redisCommandsDuring(h.admin, async () => {
      for (let i = 0; i < 50; i++) expect(verdict(await h.client(request)).allow).toBe(true);
    });
    expect(h.bcryptCalls()).toBe(bcryptBefore);
    expect(commands).toEqual({});
  });

  it('a cache miss costs one read of the key record (and at most one of its owner)', async () => {
    const fresh = await createKey(h.admin, { userId: 'alice', vaults: ['alpha'] });
    const request = envoyRequest({ authorization: `Bearer ${fresh.token}`, path: alphaPath });
    const commands = await redisCommandsDuring(h.admin, async () => {
      expect(verdict(await h.client(request)).allow).toBe(true);
    });
    expect(commands.hmget).toBe(1);
    expect(commands.get ?? 0).toBeLessThanOrEqual(1);
    expect(Object.keys(commands).filter((name) => name !== 'hmget' && name !== 'get')).toEqual([]);
  });

  it('shares one bcrypt between concurrent first requests for one token', async () => {
    const fresh = await createKey(h.admin, { userId: 'alice', vaults: ['alpha'] });
    const before = h.bcryptCalls();
    const answers = await Promise.all(
      Array.from({ length: 20 }, () =>
        h.client(envoyRequest({ authorization: `Bearer ${fresh.token}`, path: alphaPath })),
      ),
    );
    expect(answers.every((a) => verdict(a).allow)).toBe(true);
    expect(h.bcryptCalls() - before).toBe(1);
  });

  it('never calls bcrypt for malformed tokens, unknown ids, revoked or expired keys, and not twice for a known wrong secret', async () => {
    const neverUsed = await createKey(h.admin, { userId: 'alice', vaults: ['alpha'] });
    const before = h.bcryptCalls();
    const wrong = `Bearer ${formatToken(neverUsed.keyId, randomBase62(43))}`;
    for (const authorization of [
      'Bearer fty_garbage',
      `Bearer ${formatToken(randomBase62(12), randomBase62(43))}`,
      bearer('revoked'),
      bearer('expired'),
    ]) {
      await h.client(envoyRequest({ authorization }));
    }
    expect(h.bcryptCalls()).toBe(before);
    await h.client(envoyRequest({ authorization: wrong }));
    await h.client(envoyRequest({ authorization: wrong }));
    expect(h.bcryptCalls()).toBe(before + 1);
    // Once the right secret has verified, every other secret for the key is refused without bcrypt.
    await h.client(envoyRequest({ authorization: `Bearer ${neverUsed.token}`, path: alphaPath }));
    const afterRight = h.bcryptCalls();
    await h.client(
      envoyRequest({ authorization: `Bearer ${formatToken(neverUsed.keyId, randomBase62(43))}` }),
    );
    expect(h.bcryptCalls()).toBe(afterRight);
  });
});

describe('logs', () => {
  it('log one line per decision with its reason, and never a token, header or hash', async () => {
    const marker = `req-${randomBase62(8)}`;
    await h.client(envoyRequest({ authorization: bearer('alpha'), path: alphaPath, requestId: marker }));
    const line = h.logs.find((l) => l.requestId === marker);
    expect(line).toMatchObject({ msg: 'check', decision: 'allow', reason: 'allowed', userId: 'alice' });
    const text = h.logText();
    for (const key of Object.values(keys)) {
      expect(text).not.toContain(key.token);
      expect(text).not.toContain(key.secretHash);
      expect(text).not.toContain(key.token.slice(17, 60));
    }
    expect(text).not.toMatch(/Bearer /);
  });

  const lineFor = async (options: EnvoyRequestOptions) => {
    const requestId = `req-${randomBase62(8)}`;
    await h.client(envoyRequest({ ...options, requestId }));
    return h.logs.find((l) => l.requestId === requestId && l.msg === 'check');
  };

  it('an allow says the vault and the trusted X-Forwarded-For hop the IP rules compared (issue 12 item 8)', async () => {
    const line = await lineFor({
      authorization: bearer('ip4'),
      path: alphaPath,
      sourceIp: '10.200.0.5',
      forwardedFor: '203.0.113.9, 198.51.100.20, 10.200.0.7',
    });
    expect(line).toMatchObject({ decision: 'allow', vault: 'alpha', clientIp: '198.51.100.20' });
    expect(line).not.toHaveProperty('code');
  });

  it('a denial says the public code, the vault asked for and the client address', async () => {
    expect(
      await lineFor({ authorization: bearer('alpha'), path: '/v1/vaults/beta/x', sourceIp: '2001:db8:0::9' }),
    ).toMatchObject({
      decision: 'deny',
      reason: 'vault_not_allowed',
      code: 'vault_not_allowed',
      vault: 'beta',
      clientIp: '2001:db8::9',
    });
    expect(await lineFor({ authorization: bearer('ip4'), sourceIp: '203.0.113.9' })).toMatchObject({
      reason: 'ip_not_allowed',
      code: 'ip_not_allowed',
      clientIp: '203.0.113.9',
    });
    expect(await lineFor({ authorization: bearer('revoked'), path: alphaPath })).toMatchObject({
      reason: 'key_revoked',
      code: 'unauthenticated',
      vault: 'alpha',
      clientIp: '203.0.113.7',
    });
    // A forged hop from an untrusted peer is not what the rules compared: the peer is.
    expect(
      await lineFor({ authorization: bearer('ip4'), sourceIp: '203.0.113.9', forwardedFor: '198.51.100.20' }),
    ).toMatchObject({ reason: 'ip_not_allowed', clientIp: '203.0.113.9' });
  });

  it('a token in the query string never reaches the log line, nor does the header or the hash', async () => {
    const key = keys.alpha as CreatedKey;
    const before = h.logText().length;
    const line = await lineFor({
      authorization: bearer('alpha'),
      path: `/v1/vaults/alpha/items?api_key=${key.token}&enc=${key.token.replace(/_/g, '%5F')}`,
    });
    expect(line).toMatchObject({ reason: 'credentials_misplaced', code: 'unauthenticated', vault: 'alpha' });
    const text = h.logText().slice(before);
    expect(text).toContain('credentials_misplaced');
    for (const secret of [key.token, key.token.slice(17, 60), key.secretHash, key.secretHash.slice(7)])
      expect(text).not.toContain(secret);
    expect(text).not.toMatch(/bearer|authorization|fty_|%5F/i);
  });

  it('bounds a client-sent x-request-id in the decision line', async () => {
    const huge = `big-${'r'.repeat(20_000)}`;
    await h.client(envoyRequest({ authorization: bearer('alpha'), path: alphaPath, requestId: huge }));
    const line = h.logs.find((l) => typeof l.requestId === 'string' && l.requestId.startsWith('big-'));
    expect(line?.requestId).toBe(huge.slice(0, 128));
  });
});
