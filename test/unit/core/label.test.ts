/** Issue 12: labels are limited in code points and refuse controls and bidi overrides. */
import { labelLength, labelProblem, MAX_LABEL_CODE_POINTS, printableLabel } from '../../../src/core/label';

describe('key labels', () => {
  it('counts code points, not UTF-16 units', () => {
    expect(labelLength('😀'.repeat(3))).toBe(3);
    expect(labelProblem('😀'.repeat(MAX_LABEL_CODE_POINTS))).toBeNull();
    expect(labelProblem('é'.repeat(MAX_LABEL_CODE_POINTS))).toBeNull();
    expect(labelProblem('😀'.repeat(MAX_LABEL_CODE_POINTS + 1))).toBe('is longer than 200 characters');
    expect(labelProblem('x'.repeat(MAX_LABEL_CODE_POINTS + 1))).toBe('is longer than 200 characters');
  });

  it.each([
    ['right-to-left override', '\u202e', 'bidi', 'U+202E'],
    ['left-to-right embedding', '\u202a', 'bidi', 'U+202A'],
    ['pop directional formatting', '\u202c', 'bidi', 'U+202C'],
    ['right-to-left isolate', '\u2067', 'bidi', 'U+2067'],
    ['pop directional isolate', '\u2069', 'bidi', 'U+2069'],
    ['right-to-left mark', '\u200f', 'bidi', 'U+200F'],
    ['arabic letter mark', '\u061c', 'bidi', 'U+061C'],
    ['newline', '\n', 'control', 'U+000A'],
    ['NUL', '\u0000', 'control', 'U+0000'],
    ['escape', '\u001b', 'control', 'U+001B'],
    ['DEL', '\u007f', 'control', 'U+007F'],
    ['C1 CSI', '\u009b', 'control', 'U+009B'],
    ['line separator', '\u2028', 'control', 'U+2028'],
  ])('refuses a %s', (_name, char, kind, code) => {
    expect(labelProblem(`CI ${char}key`)).toBe(`contains a ${kind} character (${code})`);
    expect(printableLabel(`a${char}b`)).toBe(`a<${code}>b`);
  });

  it('refuses a label that carries a token', () => {
    expect(labelProblem('backup fty_AAAAAAAAAAAA_secret')).toBe(
      'looks like it contains an API token; never put a token in a label',
    );
    expect(labelProblem('fty key for CI')).toBeNull();
  });

  it('refuses a lone surrogate', () => {
    expect(labelProblem('a\ud800b')).toBe('is not valid Unicode (lone surrogate)');
  });

  it('accepts ordinary text in any script', () => {
    for (const text of ['', 'CI key', 'déploiement – prod', 'مفتاح', '鍵 🔑', 'tab-free']) {
      expect(labelProblem(text)).toBeNull();
      expect(printableLabel(text)).toBe(text);
    }
  });
});
