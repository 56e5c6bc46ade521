/**
 * The Redis key names and the event channel are defined once, in src/adapters/redis/keyspace.ts. functions.lua
 * cannot import them, so its copies are held equal here (test/unit/lint-rules.test.ts: ESLint keeps `fortary:`
 * literals out of the rest of src/).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as keyspace from '../../../src/adapters/redis/keyspace';

const ROOT = path.resolve(__dirname, '../../..');
const LUA = readFileSync(path.join(ROOT, 'src/adapters/redis/functions.lua'), 'utf8');

describe('keyspace', () => {
  it('functions.lua uses exactly the channel, sequence key and key prefixes of keyspace.ts', () => {
    expect(LUA).toContain(`local EVENTS_CHANNEL = '${keyspace.EVENTS_CHANNEL}'`);
    expect(LUA).toContain(`local SEQ_KEY = '${keyspace.SEQUENCE_KEY}'`);
    expect(LUA).toMatch(
      new RegExp(`function key_hash\\(key_id\\)\\s+return '${keyspace.KEY_PREFIX}' \\.\\. key_id`),
    );
    expect(LUA).toMatch(
      new RegExp(`function user_string\\(user_id\\)\\s+return '${keyspace.USER_PREFIX}' \\.\\. user_id`),
    );
    expect(LUA).toMatch(
      new RegExp(
        `function user_keys_set\\(user_id\\)\\s+return '${keyspace.USER_KEYS_PREFIX}' \\.\\. user_id`,
      ),
    );
    expect(LUA).toContain(`local LAST_USED_PREFIX = '${keyspace.LAST_USED_PREFIX}'`);
    // ...and names no other fortary: key than those.
    const names = new Set([...LUA.matchAll(/'(fortary:[^']*)'/g)].map((m) => m[1]));
    expect([...names].sort()).toEqual(
      [
        keyspace.EVENTS_CHANNEL,
        keyspace.SEQUENCE_KEY,
        keyspace.KEY_PREFIX,
        keyspace.USER_PREFIX,
        keyspace.USER_KEYS_PREFIX,
        keyspace.LAST_USED_PREFIX,
      ].sort(),
    );
  });

  it('builds the names the contract documents', () => {
    expect(keyspace.keyHash('abc')).toBe('fortary:key:abc');
    expect(keyspace.userString('u1')).toBe('fortary:user:u1');
    expect(keyspace.userKeysSet('u1')).toBe('fortary:user-keys:u1');
    expect(keyspace.lastUsedHash('abc')).toBe('fortary:last-used:abc');
    expect(keyspace.SEQUENCE_KEY).toBe('fortary:events:seq');
    expect(keyspace.EVENTS_CHANNEL).toBe('fortary:events');
  });
});
