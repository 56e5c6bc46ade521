/**
 * The Redis key names and the event channel of the contract (docs/redis-contract.md), defined here once for the
 * sidecar and the CLI. functions.lua cannot import them and spells them out; a unit test holds its copies equal to
 * these, and an ESLint rule keeps `fortary:` literals out of the rest of src/.
 */

/** Hash `fortary:key:<keyId>`: fields `record` (JSON) and `revokedAt`. */
export const KEY_PREFIX = 'fortary:key:';
/** String `fortary:user:<userId>`: the user record (JSON). */
export const USER_PREFIX = 'fortary:user:';
/** Set `fortary:user-keys:<userId>`: the ids of the user's keys. */
export const USER_KEYS_PREFIX = 'fortary:user-keys:';
/** Hash `fortary:last-used:<keyId>`: fields `at`, `ip`, `vault`, written by the sidecars. */
export const LAST_USED_PREFIX = 'fortary:last-used:';
/** The sequence number every change event advances. */
export const SEQUENCE_KEY = 'fortary:events:seq';
/** The pub/sub channel of change events. */
export const EVENTS_CHANNEL = 'fortary:events';
/** String `fortary:sidecar:<id>`, one per running sidecar: the sequence it has applied (ack-reporter.ts). */
export const SIDECAR_KEY_PREFIX = 'fortary:sidecar:';

export const keyHash = (keyId: string): string => KEY_PREFIX + keyId;
export const userString = (userId: string): string => USER_PREFIX + userId;
export const userKeysSet = (userId: string): string => USER_KEYS_PREFIX + userId;
export const lastUsedHash = (keyId: string): string => LAST_USED_PREFIX + keyId;
