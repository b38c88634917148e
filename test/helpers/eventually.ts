/**
 * Bounded polling on a condition, the one way tests wait for something asynchronous. The bound is a
 * safety net for a hung test, not a statement about speed: it is generous (30 s by default) so a busy
 * machine only makes a test slower, never red. Never sleep-then-count: wait for the condition itself.
 */
export interface PollOptions {
  /** Give up after this long (default 30 s). */
  timeoutMs?: number;
  /** Pause between checks (default 20 ms). */
  everyMs?: number;
}

export const DEFAULT_POLL_TIMEOUT_MS = 30_000;

/** Resolves true as soon as `check()` is true, false once the bound has passed (checked one last time). */
export async function poll(check: () => boolean | Promise<boolean>, opts: PollOptions = {}): Promise<boolean> {
  const end = Date.now() + (opts.timeoutMs ?? DEFAULT_POLL_TIMEOUT_MS);
  const every = opts.everyMs ?? 20;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, every));
  }
}

/** Like `poll`, but throws `timed out waiting for <what>` when the bound passes. */
export async function eventually(what: string, check: () => boolean | Promise<boolean>, opts: PollOptions = {}): Promise<void> {
  if (!(await poll(check, opts))) throw new Error(`timed out waiting for ${what} (${opts.timeoutMs ?? DEFAULT_POLL_TIMEOUT_MS} ms)`);
}
