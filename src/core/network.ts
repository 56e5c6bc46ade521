/**
 * Client addresses and CIDR allowlists. Ranges are compiled once, when a record enters the cache; matching
 * is then a few integer comparisons.
 */
import ipaddr from 'ipaddr.js';
import type { PeerAddress } from './types';

type Address = ipaddr.IPv4 | ipaddr.IPv6;
export type CompiledRange = [Address, number];
export type CidrList = readonly CompiledRange[];

/** Parses an IP literal; IPv4-mapped IPv6 (`::ffff:a.b.c.d`) becomes IPv4 so it matches IPv4 ranges. */
export function parseIp(text: string): Address | null {
  const trimmed = text.trim();
  // ipaddr.js also accepts shorthand like "10.1" or octal; an address from Envoy or XFF must be canonical.
  if (ipaddr.IPv4.isValidFourPartDecimal(trimmed)) return ipaddr.IPv4.parse(trimmed);
  const v6 = parseStrictIPv6(trimmed);
  if (v6 === null) return null;
  return v6.isIPv4MappedAddress() ? v6.toIPv4Address() : v6;
}

/** Compiles CIDR ranges; returns the entries that are not valid CIDRs instead when there are any. */
export function compileCidrs(
  cidrs: readonly string[],
): { ok: true; ranges: CidrList } | { ok: false; invalid: string[] } {
  const ranges: CompiledRange[] = [];
  const invalid: string[] = [];
  for (const cidr of cidrs) {
    const parsed = parseCidr(cidr);
    if (parsed.ok) ranges.push(parsed.range);
    else invalid.push(cidr);
  }
  return invalid.length > 0 ? { ok: false, invalid } : { ok: true, ranges };
}

export type CidrParse =
  | { ok: true; range: CompiledRange }
  | {
      ok: false;
      problem: string;
      /** The network form, when only host bits were wrong. */ suggestion?: string;
    };

/**
 * Strict CIDR parsing, shared by the CLI (--ip), the config (FORTARY_TRUSTED_PROXIES) and record validation:
 * canonical address, decimal prefix without leading zeros, and no host bits. `1.2.3.4/8` would otherwise mean
 * 1.0.0.0/8, so a typo for a /32 would silently open the allowlist to sixteen million addresses.
 */
export function parseCidr(cidr: string): CidrParse {
  const slash = cidr.indexOf('/');
  if (slash < 0) return { ok: false, problem: 'no prefix length (e.g. 203.0.113.0/24)' };
  const ip = cidr.slice(0, slash);
  const bitsText = cidr.slice(slash + 1);
  if (!/^(0|[1-9][0-9]{0,2})$/.test(bitsText)) {
    return { ok: false, problem: 'the prefix length must be a decimal number without leading zeros' };
  }
  const bits = Number(bitsText);
  let address: Address;
  if (ipaddr.IPv4.isValidFourPartDecimal(ip)) address = ipaddr.IPv4.parse(ip);
  else {
    const v6 = parseStrictIPv6(ip);
    if (v6 === null) return { ok: false, problem: 'not an IPv4 or IPv6 address' };
    address = v6;
  }
  const maxBits = address.kind() === 'ipv4' ? 32 : 128;
  if (bits > maxBits) return { ok: false, problem: `the prefix length must be at most ${maxBits}` };
  const network = networkOf(address, bits);
  if (network.toString() !== address.toString()) {
    const text = network.kind() === 'ipv4' ? network.toString() : (network as ipaddr.IPv6).toRFC5952String();
    const suggestion = `${text}/${bits}`;
    return { ok: false, problem: `host bits are set (did you mean ${suggestion}?)`, suggestion };
  }
  if (address.kind() === 'ipv6') {
    const v6 = address as ipaddr.IPv6;
    // `::ffff:10.0.0.0/104` is an IPv4 range in disguise; store it as one so IPv4 clients match it.
    if (v6.isIPv4MappedAddress() && bits >= 96) return { ok: true, range: [v6.toIPv4Address(), bits - 96] };
  }
  return { ok: true, range: [address, bits] };
}

/** The address with every bit after the first `bits` cleared. */
function networkOf(address: Address, bits: number): Address {
  const bytes = address.toByteArray();
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    bytes[i] = (bytes[i] as number) & ((0xff << (8 - keep)) & 0xff);
  }
  return ipaddr.fromByteArray(bytes);
}

/** One line naming a refused entry and why: `"1.2.3.4/8" is not a CIDR range: host bits are set (did you mean 1.0.0.0/8?)`. */
export function cidrProblem(cidr: string): string | null {
  const parsed = parseCidr(cidr);
  return parsed.ok ? null : `${JSON.stringify(cidr)} is not a CIDR range: ${parsed.problem}`;
}

/**
 * IPv6 without zone ids. A dotted IPv4 tail must be plain four-part decimal (no octal or hex), and is rewritten to
 * hex groups before parsing: ipaddr.js reads the IPv4-compatible `::a.b.c.d` as the mapped `::ffff:a.b.c.d`, which
 * would let the IPv6 address ::c633:6414 pass an IPv4 allowlist or pose as a trusted IPv4 proxy.
 */
function parseStrictIPv6(text: string): ipaddr.IPv6 | null {
  if (text.includes('%')) return null;
  let hex = text;
  if (text.includes('.')) {
    const colon = text.lastIndexOf(':');
    const tail = text.slice(colon + 1);
    if (colon < 0 || !ipaddr.IPv4.isValidFourPartDecimal(tail)) return null;
    const [a, b, c, d] = tail.split('.').map(Number) as [number, number, number, number];
    hex = `${text.slice(0, colon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  if (!ipaddr.IPv6.isValid(hex)) return null;
  try {
    return ipaddr.IPv6.parse(hex);
  } catch {
    return null;
  }
}

export function isValidCidr(cidr: string): boolean {
  return parseCidr(cidr).ok;
}

export function inRanges(ranges: CidrList, ip: Address): boolean {
  const kind = ip.kind();
  for (const [range, bits] of ranges) {
    if (range.kind() === kind && ip.match(range, bits)) return true;
  }
  return false;
}

/**
 * The address a decision should use. With no trusted proxies it is Envoy's TCP peer (unspoofable). With trusted
 * proxies, and only when the peer is one of them, X-Forwarded-For is read from the right, skipping trusted hops:
 * the first untrusted address is the client. The leftmost entries are client-written and never believed.
 */
export function clientAddress(
  source: PeerAddress,
  forwardedFor: string | undefined,
  trustedProxies: CidrList,
): { ok: true; ip: Address } | { ok: false; detail: string } {
  if (source.kind === 'none') return { ok: false, detail: source.detail };
  const peer = parseIp(source.ip);
  if (peer === null) return { ok: false, detail: 'peer address is not an IP' };
  if (trustedProxies.length === 0 || !inRanges(trustedProxies, peer)) return { ok: true, ip: peer };
  if (forwardedFor === undefined || forwardedFor === '') return { ok: true, ip: peer };
  const hops = forwardedFor.split(',');
  if (hops.length > 64) return { ok: false, detail: 'X-Forwarded-For has too many hops' };
  let client: Address = peer;
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = parseIp(hops[i] as string);
    if (hop === null) return { ok: false, detail: 'X-Forwarded-For hop is not an IP' };
    client = hop;
    if (!inRanges(trustedProxies, hop)) break;
  }
  return { ok: true, ip: client };
}

/** clientAddress as text (IPv6 in its RFC 5952 form), or undefined when the request has no usable address. */
export function clientAddressText(
  source: PeerAddress,
  forwardedFor: string | undefined,
  trustedProxies: CidrList,
): string | undefined {
  const client = clientAddress(source, forwardedFor, trustedProxies);
  return client.ok ? client.ip.toString() : undefined;
}
