/**
 * Per-key token buckets (units per second with a burst), with the idle buckets swept away. Used per
 * device for readings (pipeline) and per source address for unauthenticated CONNECTs (broker).
 */

export interface RateLimit {
  /** Sustained units per second per key. */
  perSecond: number;
  /** Bucket size: units a key may spend at once after a quiet period. */
  burst: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/** Beyond this many keys the oldest-refilled state is dropped wholesale (a flood of distinct keys). */
const MAX_KEYS = 100_000;

export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();
  private lastSweep = 0;

  constructor(
    private readonly limit: RateLimit,
    private readonly now: () => number = Date.now,
  ) {}

  private bucket(key: string, now: number): Bucket {
    this.sweep(now);
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= MAX_KEYS) this.buckets.clear();
      b = { tokens: this.limit.burst, at: now };
      this.buckets.set(key, b);
    } else {
      b.tokens = Math.min(this.limit.burst, b.tokens + ((now - b.at) / 1000) * this.limit.perSecond);
      b.at = now;
    }
    return b;
  }

  /** Takes `n` tokens (default 1) for `key`; false, taking nothing, when fewer are left (over the limit). */
  take(key: string, n = 1): boolean {
    const b = this.bucket(key, this.now());
    if (b.tokens < n) return false;
    b.tokens -= n;
    return true;
  }

  /** Gives `n` tokens back (never above the burst), e.g. a CONNECT that turned out to be authenticated. */
  refund(key: string, n = 1): void {
    const b = this.buckets.get(key);
    if (b) b.tokens = Math.min(this.limit.burst, b.tokens + n);
  }

  /** Milliseconds until `key` has `n` tokens again (0 when it has them now). */
  waitMs(key: string, n = 1): number {
    const b = this.bucket(key, this.now());
    return b.tokens >= n ? 0 : Math.ceil(((n - b.tokens) / this.limit.perSecond) * 1000);
  }

  /** Buckets refilled to full carry no state: drop them so the map stays as small as the active set. */
  private sweep(now: number): void {
    if (now - this.lastSweep < 60_000) return;
    this.lastSweep = now;
    const fullAfterMs = (this.limit.burst / this.limit.perSecond) * 1000;
    for (const [k, b] of this.buckets) if (now - b.at >= fullAfterMs) this.buckets.delete(k);
  }
}

/**
 * The rate-limit key of a source address: the IPv4 address itself (also when IPv4-mapped,
 * `::ffff:a.b.c.d`), the /64 prefix of an IPv6 address (one host usually holds a whole /64, so
 * rotating addresses inside it must not buy fresh buckets).
 */
export function addressKey(address: string | undefined): string {
  if (!address) return 'unknown';
  const v4 = /^(?:::ffff:)?(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  if (v4) return v4[1];
  if (!address.includes(':')) return address;
  const [head, tail] = address.split('%')[0].split('::');
  const left = head ? head.split(':') : [];
  const right = tail === undefined ? [] : tail ? tail.split(':') : [];
  const groups = tail === undefined ? left : [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  return groups.slice(0, 4).map((g) => (parseInt(g, 16) || 0).toString(16)).join(':') + '::/64';
}
