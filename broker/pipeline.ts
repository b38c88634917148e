/**
 * The ingest pipeline, independent of aedes: validate -> queue -> group commit -> acknowledge.
 *
 * `submit(ctx, payload)` resolves only after the readings of that payload have landed in a
 * `ReadingStore.commit` (durable) and its rejections are in the rejections log; the caller acks then.
 * Many submits share one commit: a batch is flushed when it reaches `maxBatch` readings or `maxDelayMs`
 * after the first one queued, and one commit runs at a time (the next batch gathers meanwhile).
 *
 * Back-pressure, not buffering: at most `maxQueuedBytes` of payload is admitted (being validated,
 * queued or committed). Further submits wait in FIFO order before being parsed, so their callers'
 * callbacks stay held (aedes then stops reading those sockets, TCP pushes back on the devices).
 *
 * If a commit throws, every submit admitted before the failure rejects (nothing may be acked; the
 * device redelivers, and no later seq of the same device can be stored ahead of a failed one).
 */
import type { Registry as PromRegistry } from 'prom-client';
import { validatePayload, type ValidationResult } from './validate.ts';
import { ingestMetrics, type IngestMetrics } from './metrics.ts';
import { TokenBuckets, type RateLimit } from './ratelimit.ts';
import { errors } from '../domain/errors.ts';
import type { Logger } from '../domain/logger.ts';
import type { Reading, RejectReason, Rejection } from '../domain/reading.ts';
import type { CommitOutcome, ReadingStore, Registry } from '../store/types.ts';

export interface IngestContext {
  facilityId: string;
  deviceId: string;
}

export interface IngestResult {
  stored: number;
  duplicates: number;
  rejected: { reason: RejectReason; detail?: string }[];
}

export interface IngestPipelineDeps {
  store: ReadingStore;
  registry: Pick<Registry, 'addRejections'>;
  logger: Logger;
  metrics: PromRegistry;
  /** Epoch ms; receive time of readings and reference for 'future_ts'. */
  clock?: () => number;
  /** Readings per group commit (flush by size). Default 1000. */
  maxBatch?: number;
  /** Longest wait before a non-full batch is flushed, ms. Default 2. */
  maxDelayMs?: number;
  /** Payload bytes admitted at once (validating, queued, committing). Default 8 MiB. */
  maxQueuedBytes?: number;
  /** Per-device message rate; `false` disables. Default 200/s, burst 2000. Over it, submit rejects with RATE_LIMITED. */
  rateLimit?: RateLimit | false;
  /** Validation (tests may inject); defaults to broker/validate.ts. */
  validate?: (bytes: Buffer, ctx: IngestContext & { now: number }) => ValidationResult;
}

export interface IngestPipeline {
  submit(ctx: IngestContext, payload: Buffer): Promise<IngestResult>;
  /** Logs a rejection found outside the payload (topic, packet size): batched with the next commit. */
  recordRejection(row: Rejection): void;
  /** Admitted payload bytes, queued jobs and waiting submits (for tests and the bench). */
  stats(): { queuedBytes: number; queuedJobs: number; waiting: number; committing: boolean };
  /** Stops admitting new submits, flushes everything queued, resolves when the last commit landed. */
  close(): Promise<void>;
}

export const DEFAULT_RATE_LIMIT: RateLimit = { perSecond: 200, burst: 2000 };
const MAX_REJECTION_TEXT = 4096;

interface Job {
  ctx: IngestContext;
  payload: Buffer;
  epoch: number;
  readings: Reading[];
  rejections: Rejection[];
  resolve: (r: IngestResult) => void;
  reject: (e: Error) => void;
}

/** FIFO with O(1) shift. */
class Fifo<T> {
  private items: T[] = [];
  private head = 0;
  get length(): number {
    return this.items.length - this.head;
  }
  push(x: T): void {
    this.items.push(x);
  }
  peek(): T | undefined {
    return this.items[this.head];
  }
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const x = this.items[this.head];
    this.items[this.head++] = undefined as T;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return x;
  }
  drain(): T[] {
    const out = this.items.slice(this.head);
    this.items = [];
    this.head = 0;
    return out;
  }
}

function readingText(r: Reading): string {
  return JSON.stringify({ seq: r.seq, ts: new Date(r.ts).toISOString(), metric: r.metric, value: r.value, unit: r.unit, ...(r.reset ? { reset: true } : {}) });
}

export function buildIngestPipeline(deps: IngestPipelineDeps): IngestPipeline {
  const log = deps.logger.child({ component: 'ingest' });
  const m: IngestMetrics = ingestMetrics(deps.metrics);
  const clock = deps.clock ?? Date.now;
  const maxBatch = deps.maxBatch ?? 1000;
  const maxDelayMs = deps.maxDelayMs ?? 2;
  const maxQueuedBytes = deps.maxQueuedBytes ?? 8 * 1024 * 1024;
  const validate = deps.validate ?? ((bytes, ctx) => validatePayload(bytes, ctx));
  const limit = deps.rateLimit === false ? undefined : (deps.rateLimit ?? DEFAULT_RATE_LIMIT);
  const buckets = limit ? new TokenBuckets(limit, clock) : undefined;
  /** Last time a 'rate_limited' row was logged per device: at most one a second reaches the log. */
  const rateLogged = new Map<string, number>();

  const pending = new Fifo<Job>();
  const waiters = new Fifo<Job>();
  let orphanRejections: Rejection[] = [];
  let pendingReadings = 0;
  let queuedBytes = 0;
  let committing = false;
  let timer: NodeJS.Timeout | undefined;
  let epoch = 0;
  let closed = false;
  let idleWaiters: (() => void)[] = [];

  function hasRoom(bytes: number): boolean {
    return queuedBytes === 0 || queuedBytes + bytes <= maxQueuedBytes;
  }

  function storeFailed(err: unknown): Error {
    return errors.STORE_UNAVAILABLE(err instanceof Error ? err.message : String(err));
  }
  let lastFailure: Error | undefined;

  function admit(job: Job): void {
    if (job.epoch !== epoch) {
      job.reject(lastFailure ?? errors.STORE_UNAVAILABLE('earlier commit failed'));
      return;
    }
    queuedBytes += job.payload.length;
    const now = clock();
    let v: ValidationResult;
    try {
      v = validate(job.payload, { ...job.ctx, now });
    } catch (err) {
      // A bug in validation must not take the broker down: treat the payload as invalid.
      log.error({ err, deviceId: job.ctx.deviceId }, 'validation threw');
      v = {
        readings: [],
        rejections: [{ ...job.ctx, receivedAt: now, reason: 'invalid_json', detail: 'validation failed', payload: job.payload.subarray(0, MAX_REJECTION_TEXT).toString('utf8') }],
      };
    }
    job.readings = v.readings;
    job.rejections = v.rejections;
    pending.push(job);
    pendingReadings += v.readings.length;
    schedule();
  }

  function admitWaiters(): void {
    while (waiters.length > 0 && hasRoom(waiters.peek()!.payload.length)) admit(waiters.shift()!);
  }

  function schedule(immediate = false): void {
    if (committing) return; // the running flush reschedules when it ends
    if (pending.length === 0 && orphanRejections.length === 0) return;
    if (pendingReadings >= maxBatch || immediate || closed) {
      if (timer) clearTimeout(timer);
      timer = undefined;
      void flush();
      return;
    }
    if (!timer) {
      timer = setTimeout(() => {
        timer = undefined;
        void flush();
      }, maxDelayMs);
    }
  }

  async function flush(): Promise<void> {
    if (committing) return;
    const batch: Job[] = [];
    let n = 0;
    while (pending.length > 0 && (batch.length === 0 || n + pending.peek()!.readings.length <= maxBatch)) {
      const j = pending.shift()!;
      batch.push(j);
      n += j.readings.length;
    }
    pendingReadings -= n;
    const orphans = orphanRejections;
    orphanRejections = [];
    if (batch.length === 0 && orphans.length === 0) return;
    committing = true;
    const batchBytes = batch.reduce((s, j) => s + j.payload.length, 0);
    const readings: Reading[] = n === 0 ? [] : batch.length === 1 ? batch[0].readings : batch.flatMap((j) => j.readings);
    let carriedOver = false;
    try {
      let outcomes: CommitOutcome[] = [];
      if (readings.length > 0) {
        const end = m.commitSeconds.startTimer();
        try {
          outcomes = await deps.store.commit(readings);
        } finally {
          end();
        }
        if (outcomes.length !== readings.length) throw new Error(`store returned ${outcomes.length} outcomes for ${readings.length} readings`);
      }
      const rows: Rejection[] = orphans.slice();
      const results: IngestResult[] = [];
      let stored = 0;
      let dups = 0;
      let i = 0;
      for (const job of batch) {
        const res: IngestResult = { stored: 0, duplicates: 0, rejected: job.rejections.map((r) => ({ reason: r.reason, detail: r.detail })) };
        for (const r of job.rejections) rows.push(r);
        for (const reading of job.readings) {
          const o = outcomes[i++];
          if (o.status === 'stored') res.stored++;
          else if (o.status === 'duplicate') res.duplicates++;
          else {
            res.rejected.push({ reason: o.reason, detail: o.detail });
            rows.push({ ...job.ctx, receivedAt: reading.receivedAt, reason: o.reason, detail: o.detail, payload: readingText(reading) });
          }
        }
        stored += res.stored;
        dups += res.duplicates;
        results.push(res);
      }
      if (rows.length > 0) {
        try {
          deps.registry.addRejections(rows);
        } catch (err) {
          if (batch.length === 0) {
            // Only out-of-band rows: keep them for the next flush rather than lose them.
            orphanRejections = rows.concat(orphanRejections).slice(0, 10_000);
            carriedOver = true;
          }
          throw err;
        }
        // Out-of-band rows were counted by recordRejection.
        for (let k = orphans.length; k < rows.length; k++) m.rejected.inc({ reason: rows[k].reason });
      }
      m.stored.inc(stored);
      m.duplicate.inc(dups);
      m.accepted.inc(stored + dups);
      batch.forEach((job, k) => job.resolve(results[k]));
    } catch (err) {
      const e = storeFailed(err);
      lastFailure = e;
      epoch++;
      const queued = pending.drain();
      pendingReadings = 0;
      log.error({ err, readings: readings.length, jobs: batch.length + queued.length }, 'group commit failed: nothing acknowledged');
      for (const job of batch) job.reject(e);
      for (const job of queued) {
        queuedBytes -= job.payload.length;
        job.reject(e);
      }
    } finally {
      committing = false;
      queuedBytes -= batchBytes;
      admitWaiters();
      if (carriedOver && closed) {
        log.error({ rows: orphanRejections.length }, 'closing with rejections the log could not take: counted, not logged');
        orphanRejections = [];
        schedule(pending.length > 0);
      } else if (carriedOver && pending.length === 0) {
        // Retry the out-of-band rows later without spinning.
        if (!timer) timer = setTimeout(() => ((timer = undefined), void flush()), 1000);
      } else {
        schedule(pending.length > 0);
      }
      if (!committing && pending.length === 0 && waiters.length === 0 && !timer) {
        const w = idleWaiters;
        idleWaiters = [];
        for (const f of w) f();
      }
    }
  }

  /** Devices refused by the rate limit, until when: later messages of theirs are refused too. */
  const throttled = new Map<string, number>();

  /**
   * Over the rate limit the submit is refused (not acked): the broker closes the connection and the
   * device redelivers later, so nothing is lost, and no later seq of that device can be stored ahead
   * of a refused one (every submit of the device stays refused until the bucket has a token again).
   */
  function rateLimited(ctx: IngestContext, payload: Buffer): Error | undefined {
    if (!buckets) return undefined;
    const now = clock();
    const until = throttled.get(ctx.deviceId);
    if (until !== undefined && now >= until) throttled.delete(ctx.deviceId);
    if ((until !== undefined && now < until) || !buckets.take(ctx.deviceId)) {
      if (until === undefined || now >= until) {
        if (throttled.size > 100_000) throttled.clear();
        throttled.set(ctx.deviceId, now + Math.ceil(1000 / limit!.perSecond));
      }
      const last = rateLogged.get(ctx.deviceId) ?? 0;
      if (now - last < 1000) m.rejected.inc({ reason: 'rate_limited' });
      else {
        rateLogged.set(ctx.deviceId, now);
        if (rateLogged.size > 100_000) rateLogged.clear();
        pipeline.recordRejection({
          ...ctx,
          receivedAt: now,
          reason: 'rate_limited',
          detail: `over ${limit!.perSecond} messages/s (burst ${limit!.burst}): not acknowledged, the device must redeliver; logged at most once a second`,
          payload: payload.subarray(0, MAX_REJECTION_TEXT).toString('utf8'),
        });
      }
      return errors.RATE_LIMITED();
    }
    return undefined;
  }

  const pipeline: IngestPipeline = {
    submit(ctx, payload) {
      if (closed) return Promise.reject(errors.STORE_UNAVAILABLE('ingest pipeline closed'));
      const limited = rateLimited(ctx, payload);
      if (limited) return Promise.reject(limited);
      return new Promise<IngestResult>((resolve, reject) => {
        const job: Job = { ctx, payload, epoch, readings: [], rejections: [], resolve, reject };
        if (waiters.length === 0 && hasRoom(payload.length)) admit(job);
        else waiters.push(job);
      });
    },
    recordRejection(row) {
      m.rejected.inc({ reason: row.reason });
      if (orphanRejections.length >= 10_000) {
        log.warn({ deviceId: row.deviceId, reason: row.reason }, 'rejections log backlog full: row counted, not logged');
        return;
      }
      orphanRejections.push({ ...row, payload: row.payload.slice(0, MAX_REJECTION_TEXT) });
      schedule();
    },
    stats() {
      return { queuedBytes, queuedJobs: pending.length, waiting: waiters.length, committing };
    },
    async close() {
      closed = true;
      if (!committing && pending.length === 0 && waiters.length === 0 && orphanRejections.length === 0) {
        if (timer) clearTimeout(timer);
        timer = undefined;
        return;
      }
      await new Promise<void>((resolve) => {
        idleWaiters.push(resolve);
        schedule(true);
      });
    },
  };
  return pipeline;
}
