/**
 * Issue 12 item 4, end to end (real sidecar, redis-server, gRPC client): an allowed request whose key expires within
 * FORTARY_EXPIRY_WARNING_DAYS gets `x-fortary-key-expires-at: <ISO 8601 UTC>` in ok_response.response_headers_to_add,
 * set with overwrite so an upstream copy cannot stand in for it; later or no expiry, a denial, or a window of 0
 * gets no such header.
 */
import { envoyRequest, metadataOf } from '../support/check-client';
import { createKey, DAY_MS, putUser, type CreatedKey } from '../support/fixtures';
import { startHarness, verdict, type Harness } from '../support/sidecar-harness';

let h: Harness;
let off: Harness;
let soon: CreatedKey;
let later: CreatedKey;
let never: CreatedKey;
let soonAt: number;

beforeAll(async () => {
  h = await startHarness({ env: { FORTARY_EXPIRY_WARNING_DAYS: '30' } });
  off = await startHarness({ redis: h.redis, env: { FORTARY_EXPIRY_WARNING_DAYS: '0' } });
  await putUser(h.admin, { id: 'alice', developerVaults: ['alpha'] });
  soonAt = Date.now() + 10 * DAY_MS + 123;
  soon = await createKey(h.admin, { userId: 'alice', vaults: ['alpha'], expiresAt: soonAt });
  later = await createKey(h.admin, {
    userId: 'alice',
    vaults: ['alpha'],
    expiresAt: Date.now() + 31 * DAY_MS,
  });
  never = await createKey(h.admin, { userId: 'alice', vaults: ['alpha'], expiresAt: null });
});

afterAll(async () => {
  await off.stop();
  await h.stop();
});

async function ask(harness: Harness, key: CreatedKey, path = '/v1/vaults/alpha/items') {
  const response = await harness.client(envoyRequest({ authorization: `Bearer ${key.token}`, path }));
  return { response, ...verdict(response) };
}

const added = (response: Record<string, any>) =>
  (response.ok_response?.response_headers_to_add ?? []) as Array<Record<string, any>>;

test('a key expiring within the window: the allow carries its expiry for the client, overwriting', async () => {
  // Twice: the second answer comes from the warm path, which must not lose the header.
  for (let i = 0; i < 2; i++) {
    const { response, allow } = await ask(h, soon);
    expect(allow).toBe(true);
    expect(added(response)).toEqual([
      {
        header: { key: 'x-fortary-key-expires-at', value: new Date(soonAt).toISOString() },
        append: { value: false },
        append_action: 2,
      },
    ]);
    expect(new Date(soonAt).toISOString()).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    // The request side is unchanged: identity headers set, the credential removed.
    expect(response.ok_response.headers_to_remove).toEqual(['authorization']);
    expect(metadataOf(response)).toMatchObject({ decision: 'allow', key_id: soon.keyId });
  }
});

test('a key expiring after the window, or never, gets no header', async () => {
  for (const key of [later, never]) {
    const { response, allow } = await ask(h, key);
    expect(allow).toBe(true);
    expect(response.ok_response.response_headers_to_add).toBeUndefined();
  }
});

test('a denial of a soon-expiring key carries no ok_response and so no header', async () => {
  const { response, allow, http } = await ask(h, soon, '/v1/vaults/beta/items');
  expect(allow).toBe(false);
  expect(http).toBe(403);
  expect(response.ok_response).toBeUndefined();
  expect(JSON.stringify(response)).not.toContain('x-fortary-key-expires-at');
});

test('FORTARY_EXPIRY_WARNING_DAYS=0 turns the warning off', async () => {
  const { response, allow } = await ask(off, soon);
  expect(allow).toBe(true);
  expect(response.ok_response.response_headers_to_add).toBeUndefined();
});
