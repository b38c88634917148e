/** Settlement windows aligned to the UTC epoch: windowStart = floor(ts / W) * W. All times epoch ms. */

export interface Window {
  start: number;
  end: number;
}

export function windowOf(ts: number, windowMs: number): Window {
  const start = Math.floor(ts / windowMs) * windowMs;
  return { start, end: start + windowMs };
}

/** The first window that starts at or after `ts`. */
export function nextWindowStart(ts: number, windowMs: number): number {
  return Math.ceil(ts / windowMs) * windowMs;
}

/** Whether window `w` may be settled at `now`: now >= windowEnd + grace. */
export function isClosed(w: Window, now: number, graceMs: number): boolean {
  return now >= w.end + graceMs;
}
