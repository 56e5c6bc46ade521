/**
 * Fakes for the app layer's unit tests: an in-memory RecordStore (records as the Redis contract stores them,
 * counted reads, switchable failure), a clock the test moves by hand, and a secret compare that counts calls.
 * The integration suites run the same code against a real redis-server and bcrypt.
 */
import { StoreUnavailableError, type Clock, type RecordStore, type SecretCompare } from '../../src/app/ports';
import type { KeyHashFields } from '../../src/core/records';
import { serializeKeyRecord, serializeUserRecord } from '../../src/core/records';
import { formatToken } from '../../src/core/token';
import type { KeyRecord, UserRecord } from '../../src/core/types';

export class ManualClock implements Clock {
  constructor(private time: number) {}

  now(): number {
    return this.time;
  }

  advance(ms: number): void {
    this.time += ms;
  }

  set(time: number): void {
    this.time = time;
  }
}

export class InMemoryStore implements RecordStore {
  readonly keys = new Map<string, KeyHashFields>();
  readonly users = new Map<string, string>();
  sequence = 0;
  /** When set, every read fails as Redis being unreachable does. */
  down = false;
  reads = { key: 0, user: 0, sequence: 0 };

  async getKey(keyId: string): Promise<KeyHashFields | null> {
    this.reads.key++;
    this.fail();
    return this.keys.get(keyId) ?? null;
  }

  async getUser(userId: string): Promise<string | null> {
    this.reads.user++;
    this.fail();
    return this.users.get(userId) ?? null;
  }

  async getSequence(): Promise<number> {
    this.reads.sequence++;
    this.fail();
    return this.sequence;
  }

  putKey(record: KeyRecord): void {
    const { revokedAt, ...rest } = record;
    this.keys.set(record.id, {
      record: serializeKeyRecord(rest),
      revokedAt: revokedAt === null ? null : String(revokedAt),
    });
  }

  putUser(record: UserRecord): void {
    this.users.set(record.id, serializeUserRecord(record));
  }

  private fail(): void {
    if (this.down) throw new StoreUnavailableError('redis is down (test)');
  }
}

/** A bcrypt hash's shape (the record parser checks it); the fake compare below knows which token it stands for. */
export function fakeHash(n: number): string {
  return `$2b$04$${String(n).padStart(53, 'x')}`;
}

/** A secret compare over fakeHash(): `secrets` maps each hash to its one right token. Counts its calls. */
export function fakeCompare(secrets: Map<string, string>): SecretCompare & { calls: number } {
  const compare = Object.assign(
    async (token: string, hash: string) => {
      compare.calls++;
      return secrets.get(hash) === token;
    },
    { calls: 0 },
  );
  return compare;
}

/** A token for `keyId` (12 base62 characters) with a secret derived from `n`. */
export function tokenFor(keyId: string, n: number): string {
  return formatToken(keyId, String(n).padStart(43, 'S'));
}
