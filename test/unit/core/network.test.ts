/**
 * Rule 5: IP allowlists (CIDR, IPv4 and IPv6; IPv4-mapped IPv6 matches its IPv4 range) and which address is the
 * client (Envoy's TCP peer; X-Forwarded-For only from configured trusted proxies, rightmost untrusted hop).
 */
import {
  cidrProblem,
  clientAddress,
  clientAddressText,
  compileCidrs,
  parseCidr,
  inRanges,
  isValidCidr,
  parseIp,
  type CidrList,
} from '../../../src/core/network';
import type { PeerAddress } from '../../../src/core/types';

function ranges(...cidrs: string[]): CidrList {
  const compiled = compileCidrs(cidrs);
  if (!compiled.ok) throw new Error(`test CIDRs invalid: ${compiled.invalid.join(', ')}`);
  return compiled.ranges;
}

function matches(cidr: string, ip: string): boolean {
  const address = parseIp(ip);
  if (address === null) throw new Error(`test IP invalid: ${ip}`);
  return inRanges(ranges(cidr), address);
}

describe('CIDR validation', () => {
  it.each([
    ['10.0.0.0/8'],
    ['0.0.0.0/0'],
    ['203.0.113.7/32'],
    ['2001:db8::/32'],
    ['2001:DB8::/32 (uppercase hex)'],
    ['::/0'],
    ['::1/128'],
    ['fe80::/10'],
    ['::ffff:10.0.0.0/104'],
    ['::ffff:0:0/96'],
    ['::ffff:a00:0/104 (mapped, hex form)'],
  ])('accepts %s', (row) => {
    const cidr = row.split(' ')[0] as string;
    expect(isValidCidr(cidr)).toBe(true);
    expect(compileCidrs([cidr]).ok).toBe(true);
  });

  it.each([
    ['prefix too long for IPv4', '10.0.0.1/33'],
    ['prefix too long for IPv6', '2001:db8::/129'],
    ['prefix too long for mapped IPv6', '::ffff:10.0.0.0/129'],
    ['three-part IPv4', '1.2.3/8'],
    ['two-part IPv4', '10.1/16'],
    ['octal-looking octet', '010.0.0.1/8'],
    ['hex octet', '0x0a.0.0.0/8'],
    ['integer address', '167772160/8'],
    ['octet out of range', '256.0.0.0/8'],
    ['five octets', '10.0.0.0.0/8'],
    ['leading space', ' 10.0.0.0/8'],
    ['trailing space', '10.0.0.0/8 '],
    ['space before prefix', '10.0.0.0 /8'],
    ['space in prefix', '10.0.0.0/ 8'],
    ['newline', '10.0.0.0\n/8'],
    ['no prefix length', '10.0.0.0'],
    ['empty prefix length', '10.0.0.0/'],
    ['no address', '/8'],
    ['two prefix lengths', '10.0.0.0/8/8'],
    ['negative prefix', '10.0.0.0/-1'],
    ['signed prefix', '10.0.0.0/+8'],
    ['fractional prefix', '10.0.0.0/8.0'],
    ['hex prefix', '10.0.0.0/0x8'],
    ['four-digit prefix', '10.0.0.0/0008'],
    ['leading zero in the prefix', '10.0.0.0/08'],
    ['leading zero in a zero prefix', '0.0.0.0/00'],
    ['leading zero in an IPv6 prefix', '2001:db8::/032'],
    ['fullwidth digit in address', '\uff11\uff10.0.0.0/8'],
    ['fullwidth digit in prefix', '10.0.0.0/\uff18'],
    ['netmask instead of prefix', '10.0.0.0/255.0.0.0'],
    ['zone id on the address', 'fe80::1%eth0/64'],
    ['zone id after the prefix', 'fe80::/64%eth0'],
    ['numeric zone id', 'fe80::1%25/64'],
    ['bad IPv6 digit', '2001:db8::g/32'],
    ['triple colon', ':::/0'],
    ['two double colons', '2001::db8::/32'],
    ['bracketed IPv6', '[2001:db8::]/32'],
    ['host name', 'localhost/8'],
    ['empty string', ''],
    ['range syntax', '10.0.0.0-10.0.0.255'],
  ])('refuses %s (%j)', (_name, cidr) => {
    expect(isValidCidr(cidr)).toBe(false);
    expect(compileCidrs([cidr])).toEqual({ ok: false, invalid: [cidr] });
  });

  // Reported defect, fixed (isStrictIPv6): ipaddr.js reads the dotted tail of an IPv6 literal leniently, so the octal/hex forms that
  // are refused as plain IPv4 ('010.0.0.1/8', '0x0a.0.0.0/8') are accepted inside IPv4-mapped IPv6 and read as
  // 10.0.0.0/8, while inet_aton-style readers take '010' as octal 8. An ambiguous allowlist entry must be refused.
  it.each([
    ['octal-looking octet inside mapped IPv6', '::ffff:010.0.0.0/104'],
    ['hex octet inside mapped IPv6', '::ffff:0x0a.0.0.0/104'],
    ['leading-zero last octet inside mapped IPv6', '::ffff:10.0.0.01/128'],
  ])('refuses %s (%j)', (_name, cidr) => {
    expect(isValidCidr(cidr)).toBe(false);
  });

  it('reports every invalid entry, and no ranges, when any entry is invalid', () => {
    expect(compileCidrs(['10.0.0.0/8', 'bad', '10.0.0.1/33', '::/0'])).toEqual({
      ok: false,
      invalid: ['bad', '10.0.0.1/33'],
    });
  });

  // Issue 12: a host-bits typo (1.2.3.4/8 for 1.2.3.4/32) used to be stored and compiled as 1.0.0.0/8.
  it.each([
    ['1.2.3.4/8', '1.0.0.0/8'],
    ['10.200.0.1/16', '10.200.0.0/16'],
    ['203.0.113.7/24', '203.0.113.0/24'],
    ['0.0.0.1/0', '0.0.0.0/0'],
    ['10.0.0.1/31', '10.0.0.0/31'],
    ['2001:db8::1/32', '2001:db8::/32'],
    ['2001:db8:1234:5678::/33', '2001:db8::/33'],
    ['fe80::1/10', 'fe80::/10'],
    ['::1/0', '::/0'],
    ['::ffff:10.0.0.1/104', '::ffff:a00:0/104'],
  ])('refuses %s (host bits set) and suggests %s', (cidr, network) => {
    expect(parseCidr(cidr)).toEqual({
      ok: false,
      problem: `host bits are set (did you mean ${network}?)`,
      suggestion: network,
    });
    expect(isValidCidr(cidr)).toBe(false);
    expect(cidrProblem(cidr)).toBe(
      `${JSON.stringify(cidr)} is not a CIDR range: host bits are set (did you mean ${network}?)`,
    );
    // The suggestion is itself accepted.
    expect(isValidCidr(network)).toBe(true);
  });

  it.each([['10.0.0.0/08'], ['10.0.0.0/0008'], ['2001:db8::/032']])(
    'names the leading zero of %s as the problem',
    (cidr) => {
      expect(cidrProblem(cidr)).toBe(
        `${JSON.stringify(cidr)} is not a CIDR range: the prefix length must be a decimal number without leading zeros`,
      );
    },
  );

  it('accepts host addresses written as /32 and /128, and the network form of each prefix', () => {
    for (const cidr of ['1.2.3.4/32', '2001:db8::1/128', '1.2.3.0/24', '1.2.3.4/30', '10.0.0.0/0']) {
      expect(cidrProblem(cidr === '10.0.0.0/0' ? '0.0.0.0/0' : cidr)).toBeNull();
    }
    expect(cidrProblem('10.0.0.0/0')).toContain('did you mean 0.0.0.0/0?');
  });

  it('an empty allowlist compiles to no ranges', () => {
    expect(compileCidrs([])).toEqual({ ok: true, ranges: [] });
  });
});

describe('CIDR matching', () => {
  it.each([
    // IPv4
    ['10.0.0.0/8', '10.0.0.0', true],
    ['10.0.0.0/8', '10.255.255.255', true],
    ['10.0.0.0/8', '11.0.0.0', false],
    ['10.0.0.0/8', '9.255.255.255', false],
    ['203.0.113.7/32', '203.0.113.7', true],
    ['203.0.113.7/32', '203.0.113.8', false],
    ['203.0.113.7/32', '203.0.113.6', false],
    ['0.0.0.0/0', '1.2.3.4', true],
    ['0.0.0.0/0', '255.255.255.255', true],
    ['0.0.0.0/0', '::1', false],
    ['0.0.0.0/0', '2001:db8::1', false],
    // IPv6
    ['2001:db8::/32', '2001:db8:ffff::1', true],
    ['2001:db8::/32', '2001:DB8::1', true],
    ['2001:db8::/32', '2001:db9::1', false],
    ['::1/128', '::1', true],
    ['::1/128', '0:0:0:0:0:0:0:1', true],
    ['::1/128', '::2', false],
    ['::/0', '2001:db8::1', true],
    ['::/0', '::1', true],
    ['2001:db8::/32', '10.0.0.1', false],
    // IPv4-mapped IPv6 client against an IPv4 range.
    ['10.0.0.0/8', '::ffff:10.1.2.3', true],
    ['10.0.0.0/8', '::ffff:a01:203', true],
    ['10.0.0.0/8', '::FFFF:10.1.2.3', true],
    ['10.0.0.0/8', '0:0:0:0:0:ffff:a01:203', true],
    ['10.0.0.0/8', '::ffff:11.1.2.3', false],
    ['203.0.113.7/32', '::ffff:203.0.113.7', true],
    // IPv4 client against an IPv4-mapped IPv6 range (the other direction).
    ['::ffff:10.0.0.0/104', '10.1.2.3', true],
    ['::ffff:10.0.0.0/104', '11.0.0.1', false],
    ['::ffff:10.0.0.0/104', '::ffff:10.1.2.3', true],
    ['::ffff:203.0.113.7/128', '203.0.113.7', true],
    ['::ffff:203.0.113.7/128', '203.0.113.8', false],
    ['::ffff:0:0/96', '1.2.3.4', true],
    ['::ffff:0:0/96', '2001:db8::1', false],
    // Fail-closed choice (reported as a note): an IPv6 range wider than /96 that merely contains the mapped block
    // is not treated as an IPv4 range, so IPv4 clients never match it.
    ['::/0', '1.2.3.4', false],
    ['::/0', '::ffff:1.2.3.4', false],
    ['::fffe:0:0/95', '10.0.0.1', false],
  ])('%s contains %s: %s', (cidr, ip, expected) => {
    expect(matches(cidr, ip)).toBe(expected);
  });

  it('matches when any range of a list contains the address', () => {
    const list = ranges('192.0.2.0/24', '2001:db8::/32', '10.0.0.0/8');
    expect(inRanges(list, parseIp('10.2.3.4')!)).toBe(true);
    expect(inRanges(list, parseIp('2001:db8::5')!)).toBe(true);
    expect(inRanges(list, parseIp('198.51.100.1')!)).toBe(false);
    expect(inRanges([], parseIp('10.2.3.4')!)).toBe(false);
  });
});

describe('parseIp (peer and X-Forwarded-For literals)', () => {
  it.each([
    ['1.2.3.4', 'ipv4', '1.2.3.4'],
    [' 1.2.3.4 ', 'ipv4', '1.2.3.4'],
    ['::1', 'ipv6', '::1'],
    ['2001:DB8::1', 'ipv6', '2001:db8::1'],
    ['::ffff:1.2.3.4', 'ipv4', '1.2.3.4'],
    ['::ffff:102:304', 'ipv4', '1.2.3.4'],
  ])('%j is %s %s', (text, kind, canonical) => {
    const ip = parseIp(text);
    expect(ip?.kind()).toBe(kind);
    expect(ip?.toString()).toBe(canonical);
  });

  it.each([
    '',
    'unix:/var/run/envoy.sock',
    '1.2.3',
    '127.1',
    '010.0.0.1',
    '0x7f.0.0.1',
    '2130706433',
    '256.1.1.1',
    '1.2.3.4:443',
    '[::1]',
    '[::1]:443',
    'fe80::1%eth0',
    'fe80::1%25eth0',
    '1.2.3.4/32',
    'localhost',
    '1.2.3.4, 5.6.7.8',
  ])('refuses %j', (text) => {
    expect(parseIp(text)).toBeNull();
  });

  // Reported defect, fixed: same lenient dotted tail as in compileCidr.
  it.each(['::ffff:010.0.0.1', '::ffff:0x7f.0.0.1'])('refuses %j', (text) => {
    expect(parseIp(text)).toBeNull();
  });
});

describe('clientAddress', () => {
  const ip = (address: string): PeerAddress => ({ kind: 'ip', ip: address });
  const none: PeerAddress = { kind: 'none', detail: 'peer is a Unix socket' };
  const NO_PROXIES: CidrList = [];
  const PROXIES = ranges('10.0.0.0/8', 'fd00::/8');

  const resolve = (source: PeerAddress, xff: string | undefined, trusted: CidrList): string => {
    const result = clientAddress(source, xff, trusted);
    return result.ok ? result.ip.toString() : `refused: ${result.detail}`;
  };

  it.each<[string, PeerAddress, string | undefined, CidrList, string]>([
    // Without trusted proxies the TCP peer is the client, whatever the headers say.
    ['peer, no XFF', ip('198.51.100.1'), undefined, NO_PROXIES, '198.51.100.1'],
    [
      'forged XFF ignored without trusted proxies',
      ip('198.51.100.1'),
      '203.0.113.7',
      NO_PROXIES,
      '198.51.100.1',
    ],
    ['forged XFF chain ignored', ip('198.51.100.1'), '203.0.113.7, 10.0.0.1', NO_PROXIES, '198.51.100.1'],
    [
      'garbage XFF ignored without trusted proxies',
      ip('198.51.100.1'),
      'garbage',
      NO_PROXIES,
      '198.51.100.1',
    ],
    ['IPv4-mapped peer becomes IPv4', ip('::ffff:198.51.100.1'), undefined, NO_PROXIES, '198.51.100.1'],
    ['IPv6 peer', ip('2001:db8::7'), undefined, NO_PROXIES, '2001:db8::7'],
    // Peer not a trusted proxy: its XFF is client-written and ignored.
    ['untrusted peer: XFF ignored', ip('198.51.100.1'), '203.0.113.7', PROXIES, '198.51.100.1'],
    ['untrusted peer claiming a trusted hop', ip('198.51.100.1'), '10.0.0.9', PROXIES, '198.51.100.1'],
    // Trusted peer: the rightmost hop that is not a trusted proxy is the client.
    ['trusted peer, one hop', ip('10.0.0.2'), '203.0.113.7', PROXIES, '203.0.113.7'],
    [
      'trusted peer, client-forged leftmost hop not believed',
      ip('10.0.0.2'),
      '6.6.6.6, 203.0.113.7',
      PROXIES,
      '203.0.113.7',
    ],
    [
      'trusted peer, two trusted hops skipped',
      ip('10.0.0.2'),
      '6.6.6.6, 203.0.113.7, 10.0.0.3, 10.1.1.1',
      PROXIES,
      '203.0.113.7',
    ],
    ['trusted peer, spaces around hops', ip('10.0.0.2'), ' 6.6.6.6 ,  203.0.113.7 ', PROXIES, '203.0.113.7'],
    ['trusted peer, IPv4-mapped hop', ip('10.0.0.2'), '::ffff:203.0.113.7', PROXIES, '203.0.113.7'],
    ['trusted IPv4-mapped peer', ip('::ffff:10.0.0.2'), '203.0.113.7', PROXIES, '203.0.113.7'],
    ['trusted IPv6 peer and hops', ip('fd00::1'), '2001:db8::7, fd00::2', PROXIES, '2001:db8::7'],
    ['trusted peer, no XFF: the peer', ip('10.0.0.2'), undefined, PROXIES, '10.0.0.2'],
    ['trusted peer, empty XFF: the peer', ip('10.0.0.2'), '', PROXIES, '10.0.0.2'],
    [
      'garbage left of the client is never read',
      ip('10.0.0.2'),
      'garbage, 203.0.113.7',
      PROXIES,
      '203.0.113.7',
    ],
    // All hops trusted: the leftmost (oldest) trusted hop is the client.
    ['all hops trusted', ip('10.0.0.2'), '10.0.0.5, 10.0.0.4', PROXIES, '10.0.0.5'],
    // Refusals.
    ['no IP peer (Unix socket)', none, undefined, NO_PROXIES, 'refused: peer is a Unix socket'],
    [
      'no IP peer even with trusted proxies and XFF',
      none,
      '203.0.113.7',
      PROXIES,
      'refused: peer is a Unix socket',
    ],
    ['peer not an IP', ip('envoy.local'), undefined, NO_PROXIES, 'refused: peer address is not an IP'],
    [
      'garbage rightmost hop',
      ip('10.0.0.2'),
      '203.0.113.7, garbage',
      PROXIES,
      'refused: X-Forwarded-For hop is not an IP',
    ],
    [
      'garbage hop between proxies',
      ip('10.0.0.2'),
      '203.0.113.7, nope, 10.0.0.3',
      PROXIES,
      'refused: X-Forwarded-For hop is not an IP',
    ],
    [
      'empty trailing hop',
      ip('10.0.0.2'),
      '203.0.113.7,',
      PROXIES,
      'refused: X-Forwarded-For hop is not an IP',
    ],
    [
      'hop with a port',
      ip('10.0.0.2'),
      '203.0.113.7:443',
      PROXIES,
      'refused: X-Forwarded-For hop is not an IP',
    ],
    [
      'bracketed IPv6 hop',
      ip('10.0.0.2'),
      '[2001:db8::7]',
      PROXIES,
      'refused: X-Forwarded-For hop is not an IP',
    ],
    ['octal hop', ip('10.0.0.2'), '010.0.0.1', PROXIES, 'refused: X-Forwarded-For hop is not an IP'],
  ])('%s', (_name, source, xff, trusted, expected) => {
    expect(resolve(source, xff, trusted)).toBe(expected);
  });

  it('bounds the hops it reads: 64 are walked, 65 are refused', () => {
    const hops = (n: number) => Array.from({ length: n }, (_, i) => `10.0.${i >> 8}.${i & 255}`).join(',');
    expect(resolve(ip('10.0.0.2'), hops(64), PROXIES)).toBe('10.0.0.0');
    expect(resolve(ip('10.0.0.2'), hops(65), PROXIES)).toBe('refused: X-Forwarded-For has too many hops');
  });
});

describe('clientAddressText: what the decision log shows as clientIp', () => {
  const peer = (ip: string): PeerAddress => ({ kind: 'ip', ip });
  it.each<[string, PeerAddress, string | undefined, string[], string | undefined]>([
    ['the TCP peer without trusted proxies', peer('203.0.113.7'), '198.51.100.1', [], '203.0.113.7'],
    ['IPv6 in its canonical short form', peer('2001:db8:0:0::9'), undefined, [], '2001:db8::9'],
    ['an IPv4-mapped peer as IPv4', peer('::ffff:198.51.100.20'), undefined, [], '198.51.100.20'],
    [
      'the rightmost untrusted hop behind a trusted proxy',
      peer('10.0.0.5'),
      '1.2.3.4, 198.51.100.20, 10.0.0.7',
      ['10.0.0.0/8'],
      '198.51.100.20',
    ],
    [
      'a forged hop from an untrusted peer is ignored',
      peer('203.0.113.9'),
      '198.51.100.20',
      ['10.0.0.0/8'],
      '203.0.113.9',
    ],
    ['no address for a Unix-socket peer', { kind: 'none', detail: 'pipe' }, undefined, [], undefined],
    ['no address when a trusted hop is garbage', peer('10.0.0.5'), 'nonsense', ['10.0.0.0/8'], undefined],
  ])('%s', (_name, source, xff, trusted, expected) => {
    expect(clientAddressText(source, xff, ranges(...trusted))).toBe(expected);
  });
});
