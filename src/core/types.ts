/**
 * Shapes shared by the pure decision core and its adapters. Nothing here knows about gRPC, Redis or the clock.
 */

/** The only scope v1 knows. */
export type Scope = 'vault:read';
export const KNOWN_SCOPES: readonly Scope[] = ['vault:read'];

/** Where the client connected from, as Envoy reports it in `attributes.source.address`. */
export type PeerAddress = { kind: 'ip'; ip: string } | { kind: 'none'; detail: string };

/**
 * What the Check handler extracted from a CheckRequest: only the fields the decision reads.
 * Header names are lowercase (Envoy lowercases them).
 */
export interface AuthzRequest {
  method: string;
  /** `:path` as Envoy sent it: raw, query string included, not percent-decoded. */
  path: string;
  /**
   * Every Authorization value. From the `headers` map this is one entry (duplicates arrive comma-joined);
   * from `header_map` it is one entry per header line.
   */
  authorization: readonly string[];
  /** True when the client sent an `x-api-key` header (a credential in the wrong place). */
  apiKeyHeader: boolean;
  /** Every X-Forwarded-For value, joined with ',' (as Envoy joins duplicates). */
  forwardedFor: string | undefined;
  source: PeerAddress;
  /** Client-sent `x-fortary-*` header names; they never reach upstream. */
  fortaryHeaders: readonly string[];
  /** `x-request-id`, for log correlation only. */
  requestId: string | undefined;
}

/** A key record as the portal stores it (see docs/redis-contract.md), validated. Times are epoch ms. */
export interface KeyRecord {
  id: string;
  userId: string;
  secretHash: string;
  scopes: readonly Scope[];
  vaults: readonly string[];
  ipAllowlist: readonly string[];
  expiresAt: number | null;
  label: string;
  createdAt: number;
  updatedAt: number;
  revokedAt: number | null;
  /** The successor `keys rotate` created for this key (absent/null: never rotated). */
  rotatedTo?: string | null;
  /** The key this one was rotated from (absent/null: created afresh). */
  rotatedFrom?: string | null;
}

/** A user record as the portal stores it, validated. */
export interface UserRecord {
  id: string;
  active: boolean;
  developerVaults: readonly string[];
  updatedAt: number;
}
