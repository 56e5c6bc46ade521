/**
 * Key labels: free text an operator reads in `keys show` and `keys list`. Measured in Unicode code points (what a
 * person counts), not UTF-16 units; characters that change how a terminal renders the line around them are refused.
 */

export const MAX_LABEL_CODE_POINTS = 200;

/**
 * C0 and C1 controls, DEL, and the bidirectional formatting characters (LRM/RLM, ALM, the embeddings and overrides
 * U+202A-U+202E, the isolates U+2066-U+2069) plus the line/paragraph separators: a U+202E in a label reverses the
 * text printed after it ("Trojan Source"), a newline forges a second output line.
 */
// eslint-disable-next-line no-control-regex
const REFUSED = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;

export const labelLength = (text: string): number => [...text].length;

/** Why a label is refused, or null when it is fine. */
export function labelProblem(text: string): string | null {
  if (labelLength(text) > MAX_LABEL_CODE_POINTS) return `is longer than ${MAX_LABEL_CODE_POINTS} characters`;
  const refused = REFUSED.exec(text);
  if (refused !== null) {
    const bidi = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/u.test(refused[0]);
    return `contains a ${bidi ? 'bidi' : 'control'} character (${codePoint(refused[0])})`;
  }
  // Labels are printed everywhere; a pasted token would put its secret in every `keys list`.
  if (/fty_[0-9A-Za-z]{12}_/i.test(text))
    return 'looks like it contains an API token; never put a token in a label';
  // A lone surrogate is not text: it prints as U+FFFD and cannot be stored as UTF-8.
  if (!isWellFormed(text)) return 'is not valid Unicode (lone surrogate)';
  return null;
}

/** The label with refused characters shown as `<U+202E>`, for printing labels stored before these rules. */
export function printableLabel(text: string): string {
  return text.replace(new RegExp(REFUSED.source, 'gu'), (c) => `<${codePoint(c)}>`);
}

const codePoint = (c: string): string =>
  `U+${(c.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;

function isWellFormed(text: string): boolean {
  return !/\p{Surrogate}/u.test(text);
}
