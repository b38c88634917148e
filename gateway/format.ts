/** Small conversions between internal values and the API's JSON (ISO times, integer-text grams). */
import { errors } from '../domain/errors.ts';
import type { Grams } from './deps.ts';

export function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** Integer grams as text; throws on anything that is not an integer (a float would be a bug upstream). */
export function gramsText(v: Grams | null | undefined): string {
  if (v === null || v === undefined) return '0';
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) throw new Error(`not an integer gram amount: ${v}`);
    return String(v);
  }
  return BigInt(v).toString();
}

/** Query time: epoch ms digits or ISO-8601 with zone (already pattern-checked by the schema). */
export function parseTimeQuery(text: string | undefined, name: string): number | undefined {
  if (text === undefined) return undefined;
  const ms = /^[0-9]+$/.test(text) ? Number(text) : Date.parse(text);
  if (!Number.isFinite(ms)) throw errors.VALIDATION(`querystring/${name} is not a time`);
  return ms;
}

/** Deep copy with bigints as decimal text, so any record can be serialised as JSON. */
export function jsonSafe(v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (Array.isArray(v)) return v.map(jsonSafe);
  if (v && typeof v === 'object') {
    if (v instanceof Date) return v.toISOString();
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = jsonSafe(x);
    return out;
  }
  return v;
}
