/**
 * Batching line writer with acknowledgement per submission ("ticket"), a bounded buffer with
 * back-pressure, retries with backoff, and no silent drops.
 *
 * - `submit(lines, follow)` waits while the buffer is full (back-pressure: FIFO, never dropping), then
 *   queues the lines and returns `acked`, which resolves only once the server acknowledged (2xx) every
 *   line of the ticket, every `follow` line, and everything submitted before it.
 * - `follow` lines are sent only after the ticket's own lines *and all earlier tickets' lines* were
 *   acknowledged (the store uses them for its high-water points, which must never get ahead of the
 *   data they cover).
 * - One request in flight at a time: the acknowledged data is always a prefix of the submission order,
 *   which is what makes the high-water marks sound. Batches hold up to `batchSize` lines; a partial
 *   batch is sent after `flushMs`.
 * - A failed request is retried with exponential backoff and jitter (network errors, timeouts, 408,
 *   429, 5xx) until `maxRetryMs` after its first attempt; other statuses fail at once. When a batch
 *   finally fails, the tickets with lines in it and every later ticket (their checks assumed the failed
 *   data) reject, the waiting submitters reject, and `onFatal` runs (the store drops its cached state).
 */
import { errors } from '../../domain/errors.ts';
import type { Logger } from '../../domain/logger.ts';

export interface WriterOptions {
  /** Sends one batch; throws an error with `retryable: boolean` on failure. */
  send(lines: string, signal: AbortSignal): Promise<void>;
  batchSize: number;
  flushMs: number;
  maxBufferLines: number;
  maxRetryMs: number;
  retryBaseMs: number;
  retryMaxDelayMs: number;
  logger: Logger;
  onFatal?(err: Error): void;
}

export interface WriterStats {
  /** Lines queued or in flight (what the bound applies to). */
  buffered: number;
  /** Submitters waiting for buffer space. */
  waiting: number;
  /** Tickets not yet acknowledged or failed. */
  pendingTickets: number;
  requests: number;
  failedAttempts: number;
  ackedLines: number;
  fatalFailures: number;
}

interface Ticket {
  id: number;
  lines: number;
  remaining: number;
  phase: 'main' | 'follow';
  follow: string[];
  settled: boolean;
  resolve(): void;
  reject(err: Error): void;
}

interface Item {
  line: string;
  ticket: Ticket;
}

interface Waiter {
  n: number;
  resolve(): void;
  reject(err: Error): void;
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

export class LineWriter {
  private readonly o: WriterOptions;
  private readonly log: Logger;
  private queue: Item[] = [];
  private followQueue: Item[] = [];
  private tickets: Ticket[] = [];
  private waiters: Waiter[] = [];
  private buffered = 0;
  /** Space granted to submitters that have not queued their lines yet. */
  private reserved = 0;
  private nextId = 1;
  private sending = false;
  private timer: NodeJS.Timeout | undefined;
  private closing = false;
  private readonly abort = new AbortController();
  private idleWaiters: (() => void)[] = [];
  private readonly counters = { requests: 0, failedAttempts: 0, ackedLines: 0, fatalFailures: 0 };

  constructor(opts: WriterOptions) {
    this.o = opts;
    this.log = opts.logger;
  }

  stats(): WriterStats {
    return { buffered: this.buffered, waiting: this.waiters.length, pendingTickets: this.tickets.length, ...this.counters };
  }

  /**
   * Waits for buffer space, then queues the lines. The returned `acked` settles when they (and the
   * follow lines, and everything before) are acknowledged, or rejects when they finally fail.
   * `stillValid` is asked once the space is granted: false (the caller's checks are stale) throws.
   */
  async submit(lines: string[], follow: string[] = [], stillValid: () => boolean = () => true): Promise<{ acked: Promise<void> }> {
    const n = lines.length + follow.length;
    await this.reserve(n);
    this.reserved -= n;
    if (!stillValid()) {
      this.wake();
      throw errors.STORE_UNAVAILABLE('an earlier write failed while this commit waited; it was not written');
    }
    let resolve!: () => void;
    let reject!: (err: Error) => void;
    const acked = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // Callers may not await `acked` before a later failure; never let it surface as unhandled.
    acked.catch(() => undefined);
    const ticket: Ticket = { id: this.nextId++, lines: lines.length + follow.length, remaining: lines.length, phase: 'main', follow, settled: false, resolve, reject };
    this.tickets.push(ticket);
    this.buffered += ticket.lines;
    for (const line of lines) this.queue.push({ line, ticket });
    this.progress();
    this.schedule();
    return { acked };
  }

  private fits(n: number): boolean {
    const used = this.buffered + this.reserved;
    // An oversized submission is let in when the buffer is empty, so it cannot wait forever.
    return used + n <= this.o.maxBufferLines || used === 0;
  }

  private reserve(n: number): Promise<void> {
    if (this.closing) return Promise.reject(errors.STORE_UNAVAILABLE('store is closing'));
    if (this.waiters.length === 0 && this.fits(n)) {
      this.reserved += n;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => this.waiters.push({ n, resolve, reject }));
  }

  /** Lets waiting submitters in, in order, while their lines fit. */
  private wake(): void {
    while (this.waiters.length > 0 && this.fits(this.waiters[0].n)) {
      const w = this.waiters.shift() as Waiter;
      this.reserved += w.n;
      w.resolve();
    }
  }

  /** Moves acknowledged tickets forward: queue follow lines in order, resolve the acknowledged prefix. */
  private progress(): void {
    for (const t of this.tickets) {
      if (t.phase === 'follow') continue;
      if (t.remaining > 0) break;
      t.phase = 'follow';
      t.remaining = t.follow.length;
      for (const line of t.follow) this.followQueue.push({ line, ticket: t });
    }
    while (this.tickets.length > 0 && this.tickets[0].phase === 'follow' && this.tickets[0].remaining === 0) {
      const t = this.tickets.shift() as Ticket;
      t.settled = true;
      this.buffered -= t.lines;
      t.resolve();
    }
    if (this.tickets.length === 0 && !this.sending) {
      const idle = this.idleWaiters;
      this.idleWaiters = [];
      for (const f of idle) f();
    }
  }

  private schedule(): void {
    if (this.sending) return;
    const pending = this.queue.length + this.followQueue.length;
    if (pending === 0) return;
    if (this.closing || this.o.flushMs <= 0 || pending >= this.o.batchSize || this.followQueue.length > 0) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      void this.flush();
    } else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        void this.flush();
      }, this.o.flushMs);
    }
  }

  private async flush(): Promise<void> {
    if (this.sending) return;
    const take = Math.min(this.o.batchSize, this.followQueue.length);
    const batch = this.followQueue.splice(0, take);
    if (batch.length < this.o.batchSize) batch.push(...this.queue.splice(0, this.o.batchSize - batch.length));
    if (batch.length === 0) return;
    this.sending = true;
    const body = batch.map((i) => i.line).join('\n');
    const started = Date.now();
    let attempt = 0;
    let failure: Error | undefined;
    for (;;) {
      this.counters.requests++;
      try {
        await this.o.send(body, this.abort.signal);
        break;
      } catch (err) {
        const e = err as Error & { retryable?: boolean };
        this.counters.failedAttempts++;
        attempt++;
        const delay = Math.min(this.o.retryMaxDelayMs, this.o.retryBaseMs * 2 ** Math.min(attempt - 1, 20)) * (0.5 + Math.random() / 2);
        const giveUp = !e.retryable || this.abort.signal.aborted || Date.now() - started + delay > this.o.maxRetryMs;
        if (giveUp) {
          failure = e;
          break;
        }
        this.log.warn({ err: e.message, attempt, lines: batch.length, retryInMs: Math.round(delay) }, 'influx write failed, retrying');
        await sleep(delay, this.abort.signal);
      }
    }
    this.sending = false;
    if (failure) this.fail(batch, failure);
    else {
      this.counters.ackedLines += batch.length;
      for (const item of batch) if (!item.ticket.settled) item.ticket.remaining--;
      this.progress();
    }
    this.wake();
    this.schedule();
    if (this.tickets.length === 0 && this.queue.length === 0 && this.followQueue.length === 0) this.progress();
  }

  private fail(batch: Item[], cause: Error): void {
    this.counters.fatalFailures++;
    const err = errors.STORE_UNAVAILABLE(`influx write failed: ${cause.message}`);
    let from = Infinity;
    for (const item of batch) if (!item.ticket.settled) from = Math.min(from, item.ticket.id);
    this.log.error({ err: cause.message, lines: batch.length, fromTicket: from }, 'influx write failed for good; rejecting the affected commits');
    const keep: Ticket[] = [];
    for (const t of this.tickets) {
      if (t.id >= from) {
        t.settled = true;
        this.buffered -= t.lines;
        t.reject(err);
      } else keep.push(t);
    }
    this.tickets = keep;
    this.queue = this.queue.filter((i) => !i.ticket.settled);
    this.followQueue = this.followQueue.filter((i) => !i.ticket.settled);
    // Waiting submitters checked their readings against state that assumed the failed data.
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(err);
    this.o.onFatal?.(err);
    this.progress();
  }

  /** Resolves when nothing is queued or in flight. */
  private idle(): Promise<void> {
    if (this.tickets.length === 0 && !this.sending && this.queue.length === 0 && this.followQueue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Sends what is queued and waits up to `graceMs` for it; then aborts, rejecting what is left.
   * New submissions are refused from the start.
   */
  async close(graceMs: number): Promise<void> {
    this.closing = true;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(errors.STORE_UNAVAILABLE('store is closing'));
    this.schedule();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.idle(), new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.abort.abort();
    const err = errors.STORE_UNAVAILABLE('store closed before the write was acknowledged');
    for (const t of this.tickets) {
      t.settled = true;
      t.reject(err);
    }
    this.tickets = [];
    this.queue = [];
    this.followQueue = [];
    this.buffered = 0;
  }
}
