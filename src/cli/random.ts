import { randomBytes } from 'node:crypto';
import { base62FromBytes } from '../core/token';

/** `length` base62 characters from the CSPRNG (rejection sampling in the core keeps them unbiased). */
export function randomBase62(length: number): string {
  for (;;) {
    const text = base62FromBytes(randomBytes(length + 16), length);
    if (text !== null) return text;
  }
}
