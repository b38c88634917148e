/**
 * Canonical JSON for hashing: object keys sorted by UTF-16 code unit order, no whitespace, arrays in
 * order, only strings, booleans, null, safe integers, arrays and plain objects (decimals travel as
 * their canonical text, bigints as decimal text). The same value always gives the same bytes, so its
 * hash can be recomputed by anyone with any JSON library that sorts keys.
 */
import { createHash } from 'node:crypto';

export type Canonical = string | number | boolean | null | Canonical[] | { [key: string]: Canonical };

export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'bigint') return JSON.stringify(value.toString());
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new TypeError(`canonicalJson: ${value} is not a safe integer (use decimal text)`);
    return String(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj)
      .filter((k) => obj[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
  }
  throw new TypeError(`canonicalJson: unsupported ${typeof value}`);
}

/** `0x` + sha256 of the UTF-8 canonical JSON (what `sha256sum` prints for the same bytes). */
export function canonicalHash(value: unknown): string {
  return `0x${createHash('sha256').update(canonicalJson(value), 'utf8').digest('hex')}`;
}
