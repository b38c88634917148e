/**
 * Cursor paging for every list route: `?limit=` (default 100, at most 1000) and `?cursor=` (the
 * opaque `next` of the previous page). Lists are newest first; a cursor is the sort key of the last
 * item served, base64url JSON, so a page never repeats or skips an item when new ones arrive.
 * Cursors are hostile input: decoded, shape-checked, and refused with a 400 naming the problem.
 */
import { Type } from '@sinclair/typebox';
import { errors } from '../domain/errors.ts';

export const DEFAULT_PAGE = 100;
export const MAX_PAGE = 1000;

/** A sort key: strings and integers, compared element by element. */
export type PageKey = (string | number)[];

export const PageLimit = Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_PAGE, default: DEFAULT_PAGE, description: `page size (default ${DEFAULT_PAGE})` }));
export const PageCursor = Type.Optional(
  Type.String({ pattern: '^[A-Za-z0-9_-]{1,400}$', description: 'the `next` of the previous page (opaque); absent: the first page' }),
);
export const NextCursor = Type.Optional(Type.String({ description: 'pass as ?cursor= for the next page; absent on the last page' }));

export function encodeCursor(key: PageKey): string {
  return Buffer.from(JSON.stringify(key), 'utf8').toString('base64url');
}

/** The key in `cursor`, checked against `shape` ('s' string, 'n' safe integer per element). */
export function decodeCursor(cursor: string | undefined, shape: string): PageKey | undefined {
  if (cursor === undefined) return undefined;
  let key: unknown;
  try {
    key = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    key = undefined;
  }
  const ok =
    Array.isArray(key) &&
    key.length === shape.length &&
    key.every((v, i) => (shape[i] === 's' ? typeof v === 'string' && v.length <= 200 : Number.isSafeInteger(v)));
  if (!ok) throw errors.VALIDATION(`query parameter cursor ${JSON.stringify(cursor.slice(0, 40))} is not a cursor of this list: pass the \`next\` of the previous page as it was given`);
  return key as PageKey;
}

export function compareKeys(a: PageKey, b: PageKey): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const x = a[i];
    const y = b[i];
    if (x === y) continue;
    return x < y ? -1 : 1;
  }
  return a.length - b.length;
}

/**
 * One page of `items` in descending `key` order after `cursor` (items need not arrive sorted, and
 * may hold more than a page: the rest is what `next` leads to).
 */
export function pageOf<T>(items: T[], key: (item: T) => PageKey, limit: number, after: PageKey | undefined): { items: T[]; next?: string } {
  const keyed = items.map((item) => ({ item, k: key(item) }));
  keyed.sort((a, b) => compareKeys(b.k, a.k));
  const rest = after ? keyed.filter((x) => compareKeys(x.k, after) < 0) : keyed;
  const page = rest.slice(0, limit);
  if (rest.length > limit && page.length > 0) return { items: page.map((x) => x.item), next: encodeCursor(page[page.length - 1].k) };
  return { items: page.map((x) => x.item) };
}
