/**
 * The ingest pipeline, independent of aedes: validate -> queue -> signatures (per batch) -> group
 * commit -> acknowledge.
 *
 * `submit(ctx, payload)` resolves only after the readings of that payload have landed in a
 * `ReadingStore.commit` (durable) and its rejections are in the rejections log; the caller acks then.
 * Many submits share one commit. A batch is flushed when it reaches `maxBatch` readings, or (default
 * `maxDelayMs` 0) as soon as the event loop has handled the I/O it already read: everything that
 * arrived while the previous commit ran forms the next batch, so batches grow with the load and an
 * idle broker commits a lone reading at once. (bench/ingest.ts measured this above a 1, 2 or 4 ms
 * gathering delay: in a closed loop of acknowledgements the delay costs more than it batches.)
 *
 * Stores with `stage` (InfluxDB) get the next batch checked and queued while earlier ones are still
 * being written, up to `maxInFlight` batches; others (embedded SQLite, which commits synchronously)
 * run one commit at a time. A batch whose signatures went to the verifier's worker threads hands on
 * as soon as they are verified: the next batch is taken and its signatures verified while this one
 * stages or commits (batches still stage in the order they were taken).
 *
 * Back-pressure, not buffering: at most `maxQueuedBytes` of payload is admitted (being validated,
 * queued or committed). Further submits wait in FIFO order before being parsed, so their callers'
 * callbacks stay held (aedes then stops reading those sockets, TCP pushes back on the devices).
 *
 * If a commit throws, every submit admitted before the failure rejects (nothing may be acked; the
 * device redelivers, and no later seq of the same device can be stored ahead of a failed one: a
 * staged store fails the batches staged after a failed one itself, see ReadingStore.stage).
 *
 * One file (~530 lines) because it is one closure: admission, batching, staging and failure handling
 * share the queue and in-flight state; validation (validate.ts) and rate limits (ratelimit.ts) are apart.
 */
import type { Registry as PromRegistry } from 'prom-client';
import { validatePayload, type ValidationResult } from './validate.ts';
import { ingestMetrics, type IngestMetrics } from './metrics.ts';
import { TokenBuckets, type RateLimit } from './ratelimit.ts';
import { checkSignatures } from './signatures.ts';
import { createVerifier, type SignatureVerifier } from './verify-pool.ts';
import { errors } from '../domain/errors.ts';
import type { Logger } from '../domain/logger.ts';
import { MAX_REJECTION_PAYLOAD_BYTES } from '../domain/limits.ts';
import type { Reading, RejectReason, Rejection } from '../domain/reading.ts';
import type { CommitOutcome, FacilityRegistry, ReadingStore, StagedCommit } from '../store/types.ts';

export interface IngestContext {
  facilityId: string;
  deviceId: string;
}

export interface IngestResult {
  stored: number;
  duplicates: number;
  /** Each rejected element (or the whole payload) with its seq when it could be read. */
  rejected: { seq?: number; reason: RejectReason; detail?: string }[];
}

export interface IngestPipelineDeps {
  store: ReadingStore;
  /** `devicePublicKey`: the keys of signing devices, read once per device per batch (absent: no device signs). */
  registry: Pick<FacilityRegistry, 'addRejections'> & Partial<Pick<FacilityRegistry, 'pruneRejections' | 'devicePublicKey'>>;
  /**
   * Verifies the signatures of a batch (broker/verify-pool.ts createVerifier; its owner closes it).
   * Absent: verified inline on the event loop (signatures are checked either way).
   */
  verifier?: SignatureVerifier;
  logger: Logger;
  metrics: PromRegistry;
  /** Epoch ms; receive time of readings and reference for 'future_ts'. */
  clock?: () => number;
  /** Readings per group commit (flush by size). Default 1000. */
  maxBatch?: number;
  /** Longest wait before a non-full batch is flushed, ms; 0 (default): once the I/O already read is handled. */
  maxDelayMs?: number;
  /**
   * With a store that has `stage`: batches between staged and durable at once (the write of one
   * overlaps the checks of the next). Default 4; 1 is strictly one commit at a time.
   */
  maxInFlight?: number;
  /** Payload bytes admitted at once (validating, queued, committing). Default 8 MiB. */
  maxQueuedBytes?: number;
  /**
   * Per-device rate in READINGS (an array of 500 counts 500; a payload that is not an array of
   * readings counts 1); `false` disables. Default 200/s, burst 2000. Over it, submit rejects with RATE_LIMITED.
   */
  rateLimit?: RateLimit | false;
  /**
   * Rejections older than this (ms, by their last occurrence) are pruned from the log, on start and
   * every `pruneEveryMs` (default 1 h). 0 or absent: kept forever.
   */
  rejectionRetentionMs?: number;
  pruneEveryMs?: number;
  /** Validation (tests may inject); defaults to broker/validate.ts. */
  validate?: (bytes: Buffer, ctx: IngestContext & { now: number }) => ValidationResult;
}

export interface IngestPipeline {
  submit(ctx: IngestContext, payload: Buffer): Promise<IngestResult>;
  /** Logs a rejection found outside the payload (topic, packet size): batched with the next commit. */
  recordRejection(row: Rejection): void;
  /** Admitted payload bytes, queued jobs and waiting submits (for tests and the bench). */
  stats(): { queuedBytes: number; queuedJobs: number; waiting: number; committing: boolean; inFlight: number };
  /** Stops admitting new submits, flushes everything queued, resolves when the last commit landed. */
  close(): Promise<void>;
}

export const DEFAULT_RATE_LIMIT: RateLimit = { perSecond: 200, burst: 2000 };

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

/** The seq of a rejected element, read from its text when it is one reading object (else undefined). */
const SEQ_RE = /"seq"\s*:\s*(\d{1,16})[\s,}]/;
function seqOfRejection(r: Rejection): number | undefined {
  if (!r.payload.startsWith('{')) return undefined;
  const m = SEQ_RE.exec(r.payload);
  if (!m) return undefined;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) ? n : undefined;
}

function readingText(r: Reading): string {
  return JSON.stringify({
    seq: r.seq,
    ts: new Date(r.ts).toISOString(),
    metric: r.metric,
    value: r.sentValue ?? r.value,
    unit: r.sentUnit ?? r.unit,
    ...(r.reset ? { reset: true } : {}),
    ...(r.prev !== undefined ? { prev: r.prev } : {}),
    ...(r.sig !== undefined ? { sig: r.sig } : {}),
  });
}

/** Thrown inside flush for a batch whose jobs an earlier failure has already refused the queue of. */
const STALE = new Error('stale batch');

export function buildIngestPipeline(deps: IngestPipelineDeps): IngestPipeline {
  const log = deps.logger.child({ component: 'ingest' });
  const m: IngestMetrics = ingestMetrics(deps.metrics);
  const clock = deps.clock ?? Date.now;
  const maxBatch = deps.maxBatch ?? 1000;
  const maxDelayMs = deps.maxDelayMs ?? 0;
  const maxQueuedBytes = deps.maxQueuedBytes ?? 8 * 1024 * 1024;
  const maxInFlight = Math.max(1, deps.maxInFlight ?? 4);
  const validate = deps.validate ?? ((bytes, ctx) => validatePayload(bytes, ctx));
  const verifier = deps.verifier ?? createVerifier({ workers: 0 });
  const limit = deps.rateLimit === false ? undefined : (deps.rateLimit ?? DEFAULT_RATE_LIMIT);
  const buckets = limit ? new TokenBuckets(limit, clock) : undefined;
  /** Last time a 'rate_limited' row was logged per device: at most one a second reaches the log. */
  const rateLogged = new Map<string, number>();

  const pending = new Fifo<Job>();
  const waiters = new Fifo<Job>();
  let orphanRejections: Rejection[] = [];
  let pendingReadings = 0;
  let queuedBytes = 0;
  /** A batch is being staged (one at a time); batches between stage and durable (at most maxInFlight). */
  let staging = false;
  let inFlight = 0;
  /** Resolved when the last batch taken has staged (or failed): the next one stages after it. */
  let stageTurn: Promise<void> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  let immediateFlush: NodeJS.Immediate | undefined;
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
    // A message that waited for room behind one of its device's that was refused meanwhile: refused too.
    const stillThrottled = throttledNow(job.ctx, job.payload);
    if (stillThrottled) {
      job.reject(stillThrottled);
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
        rejections: [{ ...job.ctx, receivedAt: now, reason: 'invalid_json', detail: 'validation failed', payload: job.payload.subarray(0, MAX_REJECTION_PAYLOAD_BYTES).toString('utf8') }],
      };
    }
    // The rate limit counts readings: every element, accepted or not (a payload-level refusal counts 1).
    if (buckets) {
      const n = Math.max(1, v.readings.length + v.rejections.length);
      if (!buckets.take(job.ctx.deviceId, Math.min(n, limit!.burst))) {
        queuedBytes -= job.payload.length;
        job.reject(refuseRate(job.ctx, job.payload, n, now));
        return;
      }
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
    if (staging || inFlight >= maxInFlight) return; // the running stage or durable wait reschedules
    if (pending.length === 0 && orphanRejections.length === 0) return;
    if (pendingReadings >= maxBatch || immediate || closed) {
      if (timer) clearTimeout(timer);
      timer = undefined;
      if (immediateFlush) clearImmediate(immediateFlush);
      immediateFlush = undefined;
      void flush();
      return;
    }
    if (!timer && !immediateFlush) {
      if (maxDelayMs === 0) {
        // After the I/O already read in this turn of the event loop has been handled.
        immediateFlush = setImmediate(() => {
          immediateFlush = undefined;
          void flush();
        });
      } else {
        timer = setTimeout(() => {
          timer = undefined;
          void flush();
        }, maxDelayMs);
      }
    }
  }

  function failAdmitted(e: Error, jobs: Job[], readings: number): void {
    lastFailure = e;
    epoch++;
    const queued = pending.drain();
    pendingReadings = 0;
    log.error({ err: e, readings, jobs: jobs.length + queued.length }, 'group commit failed: nothing acknowledged');
    for (const job of jobs) job.reject(e);
    for (const job of queued) {
      queuedBytes -= job.payload.length;
      job.reject(e);
    }
  }

  /** Outcomes -> per-job results, rejection rows into the log, metrics. Throws if the log write fails. */
  function finish(batch: Job[], orphans: Rejection[], outcomes: CommitOutcome[]): IngestResult[] {
    const rows: Rejection[] = orphans.slice();
    const results: IngestResult[] = [];
    let stored = 0;
    let dups = 0;
    let i = 0;
    for (const job of batch) {
      const res: IngestResult = { stored: 0, duplicates: 0, rejected: job.rejections.map((r) => ({ seq: seqOfRejection(r), reason: r.reason, detail: r.detail })) };
      for (const r of job.rejections) rows.push(r);
      for (const reading of job.readings) {
        const o = outcomes[i++];
        if (o.status === 'stored') res.stored++;
        else if (o.status === 'duplicate') res.duplicates++;
        else {
          res.rejected.push({ seq: reading.seq, reason: o.reason, detail: o.detail });
          rows.push({ ...job.ctx, receivedAt: reading.receivedAt, reason: o.reason, detail: o.detail, payload: readingText(reading) });
        }
      }
      stored += res.stored;
      dups += res.duplicates;
      results.push(res);
    }
    if (rows.length > 0) {
      const logged = deps.registry.addRejections(rows);
      if (logged) logged.catch((err: unknown) => log.warn({ err, rows: rows.length }, 'could not write the rejections log'));
      // Out-of-band rows were counted by recordRejection.
      for (let k = orphans.length; k < rows.length; k++) m.rejected.inc({ reason: rows[k].reason });
    }
    m.stored.inc(stored);
    m.duplicate.inc(dups);
    m.accepted.inc(stored + dups);
    return results;
  }

  /**
   * The signature step (SPEC "Device signatures"), between validation and commit: the keys of the
   * batch's devices are read from the registry (one probe per device per batch, so a key set or
   * rotated applies from the next batch), the batch's signatures verified in one verifier call;
   * refused readings leave their job's readings for its rejections (`bad_signature`). Returns the
   * readings left to commit, in order, and how many signatures were verified.
   */
  async function checkBatchSignatures(batch: Job[], readings: Reading[]): Promise<{ readings: Reading[]; verified: number }> {
    const keys = new Map<string, string | undefined>();
    const keyOf = (deviceId: string): string | undefined => {
      if (!keys.has(deviceId)) keys.set(deviceId, deps.registry.devicePublicKey?.(deviceId));
      return keys.get(deviceId);
    };
    const check = await checkSignatures(readings, keyOf, verifier);
    if (check.rejected.length === 0 && check.accepted.every((r, i) => r === readings[i])) return { readings, verified: check.verified };
    const refused = new Map<Reading, string>();
    for (const rj of check.rejected) refused.set(rj.reading, rj.detail);
    let k = 0;
    for (const job of batch) {
      const kept: Reading[] = [];
      for (const r of job.readings) {
        const detail = refused.get(r);
        if (detail === undefined) kept.push(check.accepted[k++]);
        else job.rejections.push({ ...job.ctx, receivedAt: r.receivedAt, reason: 'bad_signature', detail, payload: readingText(r) });
      }
      job.readings = kept;
    }
    return { readings: check.accepted, verified: check.verified };
  }

  /**
   * Takes the next batch and stages it (checks + writes, one batch at a time, in order); while it
   * becomes durable the next batch may already be staged (up to `maxInFlight` batches between stage
   * and durable). Jobs resolve once their batch is durable and its rejections are logged.
   */
  async function flush(): Promise<void> {
    if (staging || inFlight >= maxInFlight) return;
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
    staging = true;
    inFlight++;
    // Batches stage in the order they were taken (the next one may be verifying while this one stages).
    const turn = stageTurn;
    let endTurn!: () => void;
    stageTurn = new Promise<void>((resolve) => (endTurn = resolve));
    let handedOn = false;
    const batchBytes = batch.reduce((s, j) => s + j.payload.length, 0);
    let readings: Reading[] = n === 0 ? [] : batch.length === 1 ? batch[0].readings : batch.flatMap((j) => j.readings);
    let carriedOver = false;
    const end = readings.length > 0 ? m.commitSeconds.startTimer() : undefined;
    try {
      let outcomes: CommitOutcome[] = [];
      try {
        let staged: StagedCommit = { done: Promise.resolve([]) };
        try {
          if (readings.length > 0) {
            const checked = await checkBatchSignatures(batch, readings);
            readings = checked.readings;
            if (checked.verified > 0 && verifier.workers > 0 && !closed) {
              // Signatures went to the worker threads: take the next batch now, so that its
              // signatures are verified while this one stages (it stages after this one).
              staging = false;
              handedOn = true;
              schedule(pending.length > 0);
            }
          }
          await turn;
          // A batch taken before an earlier one failed: refused like the jobs queued behind that failure.
          if (handedOn && batch.some((j) => j.epoch !== epoch)) throw STALE;
          if (readings.length > 0) staged = deps.store.stage ? await deps.store.stage(readings) : { done: Promise.resolve(await deps.store.commit(readings)) };
        } finally {
          if (!handedOn) staging = false;
          endTurn();
        }
        // With a staging store the next batch may be staged while this one is written. (A plain commit
        // is already durable here: its submits resolve first, then the next batch starts.)
        if (deps.store.stage) schedule(pending.length > 0);
        outcomes = await staged.done;
      } finally {
        end?.(); // failed commits are timed too
      }
      if (outcomes.length !== readings.length) throw new Error(`store returned ${outcomes.length} outcomes for ${readings.length} readings`);
      try {
        const results = finish(batch, orphans, outcomes);
        batch.forEach((job, k) => job.resolve(results[k]));
      } catch (err) {
        if (batch.length === 0) {
          // Only out-of-band rows: keep them for the next flush rather than lose them.
          orphanRejections = orphans.concat(orphanRejections).slice(0, 10_000);
          carriedOver = true;
        }
        throw err;
      }
    } catch (err) {
      if (err === STALE) for (const job of batch) job.reject(lastFailure ?? errors.STORE_UNAVAILABLE('earlier commit failed'));
      else failAdmitted(storeFailed(err), batch, readings.length);
    } finally {
      inFlight--;
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
      if (!staging && inFlight === 0 && pending.length === 0 && waiters.length === 0 && !timer && !immediateFlush) {
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
   * of a refused one (every submit of the device stays refused until the bucket could take the refused
   * message's readings again). A throttled device is refused before its payload is parsed.
   */
  function throttledNow(ctx: IngestContext, payload: Buffer): Error | undefined {
    if (!buckets) return undefined;
    const now = clock();
    const until = throttled.get(ctx.deviceId);
    if (until === undefined) return undefined;
    if (now >= until) {
      throttled.delete(ctx.deviceId);
      return undefined;
    }
    return refuseRate(ctx, payload, 0, now);
  }

  /** Records a rate-limit refusal (`n` readings refused now; 0: the device is still throttled). */
  function refuseRate(ctx: IngestContext, payload: Buffer, n: number, now: number): Error {
    if (n > 0) {
      if (throttled.size > 100_000) throttled.clear();
      throttled.set(ctx.deviceId, now + Math.max(1, buckets!.waitMs(ctx.deviceId, Math.min(n, limit!.burst))));
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
        detail: `over ${limit!.perSecond} readings/s (burst ${limit!.burst}): not acknowledged, the device must redeliver`,
        payload: payload.subarray(0, MAX_REJECTION_PAYLOAD_BYTES).toString('utf8'),
      });
    }
    return errors.RATE_LIMITED();
  }

  /** Retention of the rejections log: prune now and then (the log write is the pipeline's job). */
  const retentionMs = deps.rejectionRetentionMs ?? 0;
  let pruneTimer: NodeJS.Timeout | undefined;
  function prune(): void {
    if (retentionMs <= 0 || !deps.registry.pruneRejections) return;
    try {
      const pruned = deps.registry.pruneRejections(clock() - retentionMs);
      if (typeof pruned === 'object') pruned.catch((err: unknown) => log.warn({ err }, 'pruning the rejections log failed'));
    } catch (err) {
      log.warn({ err }, 'pruning the rejections log failed');
    }
  }
  if (retentionMs > 0 && deps.registry.pruneRejections) {
    prune();
    pruneTimer = setInterval(prune, deps.pruneEveryMs ?? 3_600_000);
    pruneTimer.unref();
  }

  const pipeline: IngestPipeline = {
    submit(ctx, payload) {
      if (closed) return Promise.reject(errors.STORE_UNAVAILABLE('ingest pipeline closed'));
      const limited = throttledNow(ctx, payload);
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
      orphanRejections.push({ ...row, payload: row.payload.slice(0, MAX_REJECTION_PAYLOAD_BYTES) });
      schedule();
    },
    stats() {
      return { queuedBytes, queuedJobs: pending.length, waiting: waiters.length, committing: staging || inFlight > 0, inFlight };
    },
    async close() {
      closed = true;
      if (pruneTimer) clearInterval(pruneTimer);
      pruneTimer = undefined;
      if (!staging && inFlight === 0 && pending.length === 0 && waiters.length === 0 && orphanRejections.length === 0) {
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
