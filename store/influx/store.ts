/**
 * ReadingStore on InfluxDB, 1.x API (url + database [+ retention policy, username/password]) or 2.x
 * API (url + token + org + bucket; reads through the v1-compatible /query). Layout: store/influx/schema.ts;
 * the queries (state loading, lookups, reads): store/influx/queries.ts; design and trade-offs:
 * docs/INFLUXDB.md.
 *
 * Commit: each reading is decided by the shared rules (domain/ingest-rules.ts) through a
 * `DeviceReadings` lookup served from per-device state kept in memory: the reading with the highest
 * seq, the reading with the highest seq of each metric, the first seq of each metric, the late-arrival
 * count, and the readings of commits not yet acknowledged. So the common case (seq above the device's
 * max) needs no query. A reading at or below the device's max seq (a redelivery or a late arrival) is
 * looked up on the server: the stored reading with its seq, and its neighbours by seq on both sides per
 * metric (`GROUP BY "metric" ORDER BY time DESC|ASC LIMIT 1` on `reading_seq`). A device's state is
 * loaded from InfluxDB the first time the device commits.
 *
 * Several writers (with `coordinator`, i.e. DATABASE_URL; store/influx/coordinator.ts): each commit
 * holds its devices' locks in PostgreSQL from before its checks until InfluxDB acknowledged its lines
 * and mark points, and uses its cached state of a device only when no other process wrote the device
 * since (otherwise it reloads it from InfluxDB). So the rules and the arrival numbers hold exactly as in
 * SQLite whatever process writes a device. Commits of one process are then checked and written one at
 * a time (no pipelining: `stage` resolves after the acknowledgement).
 *
 * Without a coordinator the guarantee is for one writer per device (one ingest process owns a device's
 * writes; several processes must partition devices): the rules hold exactly as in SQLite. With two
 * writers for one device the in-memory state of each is stale and neither the rules nor the arrival
 * numbers hold.
 *
 * A duplicate found on the server (not in memory) is rewritten, which is idempotent and heals a write
 * cut in half by a crash. Commits are checked one at a time, in order; their lines go to the
 * LineWriter, and `commit()` resolves only when the server acknowledged them and the device mark
 * points (`reading_hw`: max seq and late count) that follow them (`stage` returns as soon as the lines
 * are queued, so the next batch can be checked while this one is written). A write that finally fails
 * rejects that commit and every later one, and drops all cached state (reloaded on next use).
 */
import { Decimal } from '../../domain/decimal.ts';
import { DomainError, errors, isError } from '../../domain/errors.ts';
import { checkReading, type DeviceReadings, type StoredReading } from '../../domain/ingest-rules.ts';
import type { Logger } from '../../domain/logger.ts';
import { isIntervalKind, isMetric, type Reading, type RejectReason } from '../../domain/reading.ts';
import { ping, prepareBody, query, resolveTarget, writeBody, type InfluxConnection, type InfluxTarget, type PreparedBody, type Series } from './http.ts';
import type { DeviceLease, InfluxCoordinator } from './coordinator.ts';
import { InfluxQueries, type DeviceState } from './queries.ts';
import { hwLine, readingLines } from './schema.ts';
import { LineWriter, type WriterStats } from './writer.ts';
import type {
  CommitOutcome,
  ConsumeQuery,
  CoverageQuery,
  DeviceCoverage,
  DeviceLimitsLookup,
  ReadingFilter,
  ReadingStore,
  StagedCommit,
  VisibilityMark,
} from '../types.ts';

export interface InfluxStoreOptions extends InfluxConnection {
  logger: Logger;
  /** Capacity and reporting interval per device (the registry's); absent: the defaults. */
  limits?: DeviceLimitsLookup;
  /** Lines per write request (default 5000). */
  batchSize?: number;
  /** Longest wait before a partial batch is sent (default 5 ms). */
  flushMs?: number;
  /** Bound on lines queued or in flight; beyond it commits wait (default 100,000). */
  maxBufferLines?: number;
  /** How long one batch is retried before its commits fail (default 60 s). */
  maxRetryMs?: number;
  retryBaseMs?: number;
  retryMaxDelayMs?: number;
  /** Per HTTP request (default 15 s). */
  requestTimeoutMs?: number;
  /** gzip write bodies (default true). */
  gzip?: boolean;
  /** close() waits this long for queued writes before failing them (default 10 s). */
  closeTimeoutMs?: number;
  /**
   * Serialises each device's commits across processes through PostgreSQL (several writers); closed
   * with the store. Absent: one writer per device.
   */
  coordinator?: InfluxCoordinator;
}

interface Prepared {
  outcomes: CommitOutcome[];
  acked: Promise<void>;
  added: { st: DeviceState; r: Reading }[];
}

function reject(reason: RejectReason, detail: string): CommitOutcome {
  return { status: 'rejected', reason, detail };
}

/** Checks one reading's own shape; returns its canonical value or a rejection. */
function validate(r: Reading): { value: string } | CommitOutcome {
  if (typeof r.deviceId !== 'string' || typeof r.facilityId !== 'string' || r.deviceId === '' || r.facilityId === '' || /[\r\n\\\0]/.test(r.deviceId + r.facilityId)) {
    return reject('invalid_shape', 'facility or device id cannot be stored');
  }
  if (!Number.isSafeInteger(r.seq) || r.seq < 0) return reject('invalid_seq', 'seq must be a non-negative safe integer');
  if (!Number.isSafeInteger(r.ts)) return reject('invalid_ts', 'ts must be integer epoch milliseconds');
  if (!isMetric(r.metric)) return reject('unknown_metric', `unknown metric ${String(r.metric).slice(0, 64)}`);
  if (typeof r.unit !== 'string' || /[\r\n]/.test(r.unit)) return reject('unknown_unit', 'unit cannot be stored');
  try {
    return { value: Decimal.parse(r.value).toString() };
  } catch {
    return reject('invalid_value', 'value is not a decimal');
  }
}

/**
 * The lookup of domain/ingest-rules.ts for one reading of one device. Above the device's max seq the
 * in-memory state answers; at or below it, the candidates: what the server returned for this seq
 * (same seq, neighbours per metric), the device's state before this batch, and every reading not yet
 * acknowledged (this batch's included). The true neighbour is always among them, so the nearest
 * candidate is it.
 */
class InfluxDeviceReadings implements DeviceReadings {
  constructor(
    private readonly st: DeviceState,
    private readonly candidates: () => Iterable<Reading>,
    private readonly same: Reading | undefined,
  ) {}

  at(seq: number): StoredReading | undefined {
    if (seq > this.st.maxSeq) return undefined;
    const known = this.st.pending.get(seq) ?? this.same;
    if (known) return known;
    for (const c of this.candidates()) if (c.seq === seq) return c;
    return undefined;
  }

  below(seq: number, metric?: string): StoredReading | undefined {
    if (seq > this.st.maxSeq) return metric === undefined ? this.st.top : this.st.heads.get(metric)?.last;
    let best: Reading | undefined;
    for (const c of this.candidates()) if (c.seq < seq && (metric === undefined || c.metric === metric) && (!best || c.seq > best.seq)) best = c;
    return best;
  }

  above(seq: number, metric?: string): StoredReading | undefined {
    if (seq >= this.st.maxSeq) return undefined;
    let best: Reading | undefined;
    for (const c of this.candidates()) if (c.seq > seq && (metric === undefined || c.metric === metric) && (!best || c.seq < best.seq)) best = c;
    return best;
  }
}

export class InfluxReadingStore implements ReadingStore {
  readonly kind = 'influxdb' as const;
  readonly target: InfluxTarget;
  private readonly log: Logger;
  private readonly writer: LineWriter;
  private readonly timeoutMs: number;
  private readonly closeTimeoutMs: number;
  private readonly cache = new Map<string, DeviceState>();
  private readonly limits?: DeviceLimitsLookup;
  /** Bumped whenever cached state is dropped after a failed write. */
  private generation = 0;
  private chain: Promise<unknown> = Promise.resolve();
  private closed = false;
  private readonly reads: InfluxQueries;
  private readonly coordinator?: InfluxCoordinator;
  /** With a coordinator: the epoch at which this process last wrote each cached device. */
  private readonly epochs = new Map<string, number>();

  constructor(opts: InfluxStoreOptions) {
    this.target = resolveTarget(opts);
    this.log = opts.logger; // bound to its component by the caller (store/open.ts)
    this.reads = new InfluxQueries((statements, epoch) => this.run(statements, epoch), this.log);
    this.timeoutMs = opts.requestTimeoutMs ?? 15_000;
    this.closeTimeoutMs = opts.closeTimeoutMs ?? 10_000;
    this.limits = opts.limits;
    this.coordinator = opts.coordinator;
    const useGzip = opts.gzip ?? true;
    let memo: { lines: string; body: PreparedBody } | undefined;
    this.writer = new LineWriter({
      send: async (lines, signal) => {
        // A retry sends the same string: compress it once.
        if (memo?.lines !== lines) memo = { lines, body: await prepareBody(lines, useGzip) };
        return writeBody(this.target, memo.body, this.timeoutMs, signal);
      },
      batchSize: opts.batchSize ?? 5000,
      flushMs: opts.flushMs ?? 5,
      maxBufferLines: opts.maxBufferLines ?? 100_000,
      maxRetryMs: opts.maxRetryMs ?? 60_000,
      retryBaseMs: opts.retryBaseMs ?? 100,
      retryMaxDelayMs: opts.retryMaxDelayMs ?? 5_000,
      logger: this.log,
      onFatal: () => {
        this.generation++;
        this.cache.clear();
        this.epochs.clear();
      },
    });
    this.log.info({ target: this.target.describe }, 'influx reading store');
  }

  /** Writer counters (tests, metrics). */
  stats(): WriterStats & { cachedDevices: number } {
    return { ...this.writer.stats(), cachedDevices: this.cache.size };
  }

  private ensureOpen(): void {
    if (this.closed) throw errors.STORE_UNAVAILABLE('influx store closed');
  }

  private async run(statements: string[], epoch: 'ns' | 'ms'): Promise<Series[][]> {
    try {
      return await query(this.target, statements.join('; '), epoch, this.timeoutMs);
    } catch (err) {
      throw unavailable(err);
    }
  }

  /** A read of the store: whatever fails surfaces as STORE_UNAVAILABLE. */
  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    this.ensureOpen();
    try {
      return await fn();
    } catch (err) {
      throw unavailable(err);
    }
  }

  /** Runs commits' checks one at a time, in call order. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn);
    this.chain = next.catch(() => undefined);
    return next;
  }

  async commit(readings: Reading[]): Promise<CommitOutcome[]> {
    return (await this.stage(readings)).done;
  }

  /**
   * Resolves once the batch is checked and its lines are queued behind every earlier batch's; `done`
   * once the server acknowledged them. So the ingest pipeline can check batch N+1 while N's write is
   * in flight (the checks already see N's readings as pending).
   */
  async stage(readings: Reading[]): Promise<StagedCommit> {
    return this.guard(() => this.staged(readings));
  }

  private async staged(readings: Reading[]): Promise<StagedCommit> {
    if (readings.length === 0) return { done: Promise.resolve([]) };
    if (this.coordinator) {
      const outcomes = await this.serial(() => this.coordinated(readings, this.coordinator as InfluxCoordinator));
      return { done: Promise.resolve(outcomes) };
    }
    const p = await this.serial(() => this.prepare(readings));
    const acked = p.acked.then(() => p.outcomes);
    // Registered first, so it runs before whoever awaits `done` sees the result.
    const forget = () => {
      for (const { st, r } of p.added) if (st.pending.get(r.seq) === r) st.pending.delete(r.seq);
    };
    acked.then(forget, forget);
    const done = acked.catch((err: unknown) => {
      throw unavailable(err);
    });
    // As before: a caller that drops `done` causes no unhandled rejection; one that awaits it sees the failure.
    done.catch(() => undefined);
    return { done };
  }

  /**
   * One commit under its devices' locks: stale cached state dropped (reloaded by `prepare`), checked,
   * written, acknowledged, then the devices marked clean at this commit's epoch and the locks released.
   */
  private async coordinated(readings: Reading[], coordinator: InfluxCoordinator): Promise<CommitOutcome[]> {
    this.ensureOpen();
    // Only the devices of readings that can be stored (their ids are safe to send anywhere).
    const devices = [...new Set(readings.filter((r) => !('status' in validate(r))).map((r) => r.deviceId))];
    let lease: DeviceLease;
    try {
      lease = await coordinator.acquire(devices);
    } catch (err) {
      if (err instanceof DomainError) throw err;
      throw errors.STORE_UNAVAILABLE(`device locks in PostgreSQL: ${(err as Error).message}`);
    }
    let written = false;
    try {
      for (const d of devices) {
        const at = lease.current.get(d);
        if (at === undefined || this.epochs.get(d) !== at) {
          this.cache.delete(d);
          this.epochs.delete(d);
        }
      }
      const p = await this.prepare(readings);
      try {
        await p.acked;
      } finally {
        for (const { st, r } of p.added) if (st.pending.get(r.seq) === r) st.pending.delete(r.seq);
      }
      written = true;
      await lease.release(true);
      for (const [d, epoch] of lease.epochs) this.epochs.set(d, epoch);
      return p.outcomes;
    } catch (err) {
      if (!written) await lease.release(false).catch((e) => this.log.warn({ err: e }, 'releasing influx device locks failed'));
      // Whatever this commit assumed of these devices is reloaded by the next one.
      for (const d of devices) {
        this.cache.delete(d);
        this.epochs.delete(d);
      }
      if (err instanceof DomainError) throw err;
      // Written but not marked clean (the lock's transaction failed): not acknowledged; a redelivery
      // finds it stored.
      throw errors.STORE_UNAVAILABLE(`device locks in PostgreSQL: ${(err as Error).message}`);
    }
  }

  private async prepare(readings: Reading[]): Promise<Prepared> {
    this.ensureOpen();
    const gen = this.generation;
    const outcomes: CommitOutcome[] = new Array(readings.length);
    const values: string[] = new Array(readings.length);
    const devices = new Set<string>();
    readings.forEach((r, i) => {
      const v = validate(r);
      if ('status' in v) outcomes[i] = v;
      else {
        values[i] = v.value;
        devices.add(r.deviceId);
      }
    });

    const lines: string[] = [];
    const touched = new Set<string>();

    // 1. State of devices seen for the first time (and the repair of a write a crash cut short).
    const loaded = await this.reads.loadStates([...devices].filter((d) => !this.cache.has(d)));
    for (const [deviceId, { repair }] of loaded) {
      for (const r of repair) lines.push(...readingLines(r));
      if (repair.length > 0) touched.add(deviceId);
    }
    const stateOf = (d: string) => (this.cache.get(d) ?? loaded.get(d)?.state) as DeviceState;

    // 2. Readings at or below their device's max seq: the stored reading with that seq (by seq range),
    //    then, for those not stored, their neighbours on the server. What is pending now is kept aside:
    //    it may be acknowledged (and forgotten) while the queries run, and it is not yet on the server
    //    when they started.
    const base = new Map<string, { top?: Reading; heads: Reading[]; pending: Reading[] }>();
    for (const d of devices) {
      const st = stateOf(d);
      base.set(d, { top: st.top, heads: [...st.heads.values()].map((h) => h.last), pending: [...st.pending.values()] });
    }
    const wanted = new Map<string, number[]>();
    readings.forEach((r, i) => {
      if (outcomes[i]) return;
      const st = stateOf(r.deviceId);
      if (r.seq <= st.maxSeq && !st.pending.has(r.seq)) {
        const list = wanted.get(r.deviceId) ?? [];
        list.push(r.seq);
        wanted.set(r.deviceId, list);
      }
    });
    const found = await this.reads.lookup(wanted);
    const missing: { deviceId: string; seq: number }[] = [];
    for (const [deviceId, seqs] of wanted) for (const seq of new Set(seqs)) if (!found.has(`${deviceId}\n${seq}`)) missing.push({ deviceId, seq });
    const near = await this.reads.neighbours(missing);

    if (gen !== this.generation || this.closed) {
      throw errors.STORE_UNAVAILABLE('an earlier write failed while this commit was being checked; it was not written');
    }
    for (const [d, { state }] of loaded) this.cache.set(d, state);

    // 3. The rules, in input order, against stored state plus earlier readings of this batch.
    const added: Prepared['added'] = [];
    const limitsByDevice = new Map<string, ReturnType<DeviceLimitsLookup>>();
    readings.forEach((input, i) => {
      if (outcomes[i]) return;
      const st = this.cache.get(input.deviceId) as DeviceState;
      const r: Reading = { ...input, value: values[i], reset: input.reset === true };
      delete r.arrival;
      const key = `${r.deviceId}\n${r.seq}`;
      const b = base.get(r.deviceId);
      const candidates = function* (): Iterable<Reading> {
        yield* near.get(key) ?? [];
        if (b?.top) yield b.top;
        yield* b?.heads ?? [];
        yield* b?.pending ?? [];
        yield* st.pending.values();
      };
      if (!limitsByDevice.has(r.deviceId)) limitsByDevice.set(r.deviceId, this.limits?.(r.deviceId));
      const existing = found.get(key);
      const outcome = checkReading(r, new InfluxDeviceReadings(st, candidates, existing), limitsByDevice.get(r.deviceId));
      outcomes[i] = outcome;
      if (outcome.status === 'duplicate') {
        if (existing && !st.pending.has(r.seq)) {
          // Idempotent rewrite of the stored point: heals a write cut short by a crash.
          lines.push(...readingLines(existing));
          touched.add(r.deviceId);
        }
        return;
      }
      if (outcome.status !== 'stored') return;
      if (r.seq < st.maxSeq) r.arrival = ++st.late;
      else {
        st.maxSeq = r.seq;
        st.top = r;
      }
      const head = st.heads.get(r.metric);
      if (!head) st.heads.set(r.metric, { first: r.seq, last: r });
      else {
        if (r.seq < head.first) head.first = r.seq;
        if (r.seq > head.last.seq) head.last = r;
      }
      st.pending.set(r.seq, r);
      added.push({ st, r });
      lines.push(...readingLines(r));
      touched.add(r.deviceId);
    });

    // 4. Queue the lines (waiting for buffer space), then the mark points that follow them.
    const follow = [...touched].map((d) => {
      const st = this.cache.get(d) as DeviceState;
      return hwLine(d, st.maxSeq, st.late);
    });
    try {
      const { acked } = await this.writer.submit(lines, follow, () => gen === this.generation);
      return { outcomes, acked, added };
    } catch (err) {
      // Not queued: undo this commit's optimistic state by dropping it (reloaded on next use).
      if (gen === this.generation) {
        this.generation++;
        this.cache.clear();
      }
      throw err;
    }
  }

  async marks(deviceIds: string[]): Promise<Map<string, VisibilityMark>> {
    return this.guard(() => this.reads.marks(deviceIds));
  }

  async consume(cq: ConsumeQuery): Promise<Reading[]> {
    return this.guard(() => this.reads.consume(cq));
  }

  async hasReading(deviceId: string, from: number, to: number, mark: VisibilityMark): Promise<boolean> {
    return this.guard(() => this.reads.hasReading(deviceId, from, to, mark));
  }

  async coverage(cq: CoverageQuery): Promise<DeviceCoverage> {
    const out = await this.guard(() => this.reads.coverage(cq));
    if (!out.interval) {
      const kind = this.limits?.(cq.deviceId)?.kind;
      if (kind !== undefined && isIntervalKind(kind)) out.interval = true;
    }
    return out;
  }

  async list(filter: ReadingFilter): Promise<Reading[]> {
    return this.guard(() => this.reads.list(filter));
  }

  async get(deviceId: string, seq: number): Promise<Reading | undefined> {
    return this.guard(() => this.reads.get(deviceId, seq));
  }

  async ping(): Promise<boolean> {
    if (this.closed) return false;
    return ping(this.target, Math.min(this.timeoutMs, 5_000));
  }

  /** Sends what is queued (waiting up to closeTimeoutMs), then fails what is left. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // The writer refuses new lines at once, so a commit still being checked cannot hold this up.
    await Promise.all([this.writer.close(this.closeTimeoutMs), this.chain.catch(() => undefined)]);
    await this.coordinator?.close();
  }
}

/**
 * Every failure of the store as STORE_UNAVAILABLE (the ingest refuses the batch, no PUBACK; the oracle
 * retries later): its own errors pass through, anything else (an HTTP failure, a point that does not
 * decode, an unexpected error) is wrapped with its message.
 */
function unavailable(err: unknown): DomainError {
  if (isError(err, errors.STORE_UNAVAILABLE)) return err as DomainError;
  return errors.STORE_UNAVAILABLE(err instanceof Error ? err.message : String(err));
}

export function openInfluxStore(opts: InfluxStoreOptions): InfluxReadingStore {
  return new InfluxReadingStore(opts);
}
