/** Issue 12 item 3: the CLI's last line of defence against printing a token's secret. */
import { redactTokens } from '../../../src/cli/redact';

const TOKEN = 'fty_3fA9kQ2mZ8xY_abcdefghijABCDEFGHIJ0123456789abcdefghijABCDE0a1b2c';

describe('redactTokens', () => {
  it.each([
    [`unknown key ${TOKEN}`, 'unknown key fty_3fA9kQ2mZ8xY_[redacted]'],
    [`"${TOKEN}" is not a user id`, '"fty_3fA9kQ2mZ8xY_[redacted]" is not a user id'],
    [`--${TOKEN}=1`, '--fty_3fA9kQ2mZ8xY_[redacted]'],
    [`${TOKEN.toUpperCase()} x`, 'fty_3FA9KQ2MZ8XY_[redacted] x'],
    ['fty_short-and-wrong x', 'fty_[redacted] x'],
    [`${TOKEN}-extra.bits`, 'fty_3fA9kQ2mZ8xY_[redacted]'],
    [`a ${TOKEN} b ${TOKEN}`, 'a fty_3fA9kQ2mZ8xY_[redacted] b fty_3fA9kQ2mZ8xY_[redacted]'],
  ])('redacts %j', (input, output) => {
    expect(redactTokens(input)).toBe(output);
  });

  it.each([['Created key 3fA9kQ2mZ8xY for user alice.'], ['the fty_ prefix'], ['label:    (none)'], ['']])(
    'leaves %j alone',
    (text) => {
      expect(redactTokens(text)).toBe(text);
    },
  );
});
