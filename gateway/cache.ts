/**
 * A tiny time-to-live cache with single flight: concurrent callers of the same key share one
 * backend call. Used for chain reads, which change at most once per block.
 */
export interface TtlCache {
  get<T>(key: string, load: () => Promise<T>): Promise<T>;
  invalidate(prefix?: string): void;
}

export function createTtlCache(ttlMs: number, now: () => number = Date.now, maxEntries = 5000): TtlCache {
  const entries = new Map<string, { until: number; value: Promise<unknown> }>();
  return {
    get<T>(key: string, load: () => Promise<T>): Promise<T> {
      if (ttlMs <= 0) return load();
      const t = now();
      const hit = entries.get(key);
      if (hit && hit.until > t) return hit.value as Promise<T>;
      const value = load();
      if (entries.size >= maxEntries) entries.clear();
      entries.set(key, { until: t + ttlMs, value });
      // A failure is not cached.
      value.catch(() => {
        if (entries.get(key)?.value === value) entries.delete(key);
      });
      return value;
    },
    invalidate(prefix) {
      if (prefix === undefined) entries.clear();
      else for (const k of entries.keys()) if (k.startsWith(prefix)) entries.delete(k);
    },
  };
}
