/** Issue 12: FORTARY_TRUSTED_PROXIES uses the strict CIDR parser; every bad entry is one startup problem. */
import { readConfig } from '../../src/config';

function problems(proxies: string): string[] {
  const result = readConfig({ FORTARY_TRUSTED_PROXIES: proxies });
  return result.ok ? [] : result.problems;
}

describe('FORTARY_TRUSTED_PROXIES', () => {
  it('refuses host bits and suggests the network, one problem per entry, with the other problems', () => {
    const result = readConfig({
      FORTARY_TRUSTED_PROXIES: '10.200.0.1/16,10.0.0.0/08,2001:db8::1/32,192.168.0.0/16',
      FORTARY_ROLE_MAX_STALENESS_S: '0',
    });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problems).toEqual(
      expect.arrayContaining([
        'FORTARY_TRUSTED_PROXIES entry "10.200.0.1/16" is not a CIDR range: host bits are set (did you mean 10.200.0.0/16?)',
        'FORTARY_TRUSTED_PROXIES entry "10.0.0.0/08" is not a CIDR range: the prefix length must be a decimal number without leading zeros',
        'FORTARY_TRUSTED_PROXIES entry "2001:db8::1/32" is not a CIDR range: host bits are set (did you mean 2001:db8::/32?)',
        expect.stringContaining('FORTARY_ROLE_MAX_STALENESS_S'),
      ]),
    );
    expect(result.problems.filter((p) => p.includes('192.168.0.0/16'))).toEqual([]);
  });

  it('accepts network forms', () => {
    expect(problems('10.200.0.0/16, 2001:db8::/32,203.0.113.7/32')).toEqual([]);
  });
});
