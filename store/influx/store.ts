/**
 * ReadingStore on InfluxDB, 1.x API (url + database [+ retention policy, username/password]) or 2.x
 * API (url + token + org + bucket; reads through the v1-compatible /query). Layout: store/influx/schema.ts;
 * design and trade-offs: docs/INFLUXDB.md.
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
 * Guarantee with one writer per device (one ingest process owns a device's writes; several processes
 * must partition devices): the rules hold exactly as in SQLite. With two writers for one device the
 * in-memory state of each is stale and neither the rules nor the arrival numbers hold.
 *
 * A duplicate found on the server (not in memory) is rewritten, which is idempotent and heals a write
 * cut in half by a crash. Commits are checked one at a time, in order; their lines go to the
 * LineWriter, and `commit()` resolves only when the server acknowledged them and the device mark
 * points (`reading_hw`: max seq and late count) that follow them (`stage` returns as soon as the lines
 * are queued, so the next batch can be checked while this one is written). A write that finally fails
 * rejects that commit and every later one, and drops all cached state (reloaded on next use).
 */
import { Decimal } from '../../domain/decimal.ts';
import { errors } from '../../domain/errors.ts';
import { checkReading, type DeviceReadings, type StoredReading } from '../../domain/ingest-rules.ts';
import type { Logger } from '../../domain/logger.ts';
import { isIntervalKind, isMetric, type Reading, type RejectReason } from '../../domain/reading.ts';
import { InfluxHttpError, ping, prepareBody, query, resolveTarget, writeBody, type InfluxConnection, type InfluxTarget, type PreparedBody, type Series } from './http.ts';
import { influxqlInt, influxqlString } from './line.ts';
import {
  BY_SEQ_COLUMNS,
  M_BY_SEQ,
  M_HW,
  M_LATE,
  M_READING,
  READING_COLUMNS,
  decodeBySeq,
  decodeReadings,
  hwLine,
  msToNs,
  readingLines,
} from './schema.ts';
import { LineWriter, type WriterStats } from './writer.ts';
import {
  clampListLimit,
  isVisible,
  type CommitOutcome,
  type ConsumeQuery,
  type CoverageQuery,
  type DeviceCoverage,
  type DeviceLimitsLookup,
  type ReadingFilter,
  type ReadingStore,
  type StagedCommit,
  type VisibilityMark,
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
}

/** Devices (or statements) per query request when loading state, marks or neighbours. */
const DEVICES_PER_QUERY = 50;
/** Seqs closer than this are looked up with one range query. */
const LOOKUP_GAP = 1000;
/** Rows per page when a visibility filter runs on this side (InfluxQL cannot test a missing field). */
const PAGE = 200;

interface MetricHead {
  /** Lowest seq of the metric stored. */
  first: number;
  /** The metric's reading with the highest seq. */
  last: Reading;
}

interface DeviceState {
  /** Highest seq stored or being stored; -1 when none. */
  maxSeq: number;
  /** The reading at maxSeq. */
  top?: Reading;
  heads: Map<string, MetricHead>;
  /** Late arrivals numbered so far (stored or being stored). */
  late: number;
  /** Readings of commits not yet acknowledged, by seq. */
  pending: Map<number, Reading>;
}

interface Prepared {
  outcomes: CommitOutcome[];
  acked: Promise<void>;
  added: { st: DeviceState; r: Reading }[];
}

const q = influxqlString;

function reject(reason: RejectReason, detail: string): CommitOutcome {
  return { status: 'rejected', reason, detail };
}

/** Checks one reading's own shape; returns its canonical value or a rejection. */
function validate(r: Reading): { value: string } | CommitOutcome {
  if (typeof r.deviceId !== 'string' || typeof r.facilityId !== 'string' || r.deviceId === '' || r.facilityId === '' || /[\r\n\\]/.test(r.deviceId + r.facilityId)) {
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

/** Latest time InfluxDB can store: int64 nanoseconds, about 2262-04-11. */
const MAX_TIME_MS = 9_223_372_036_854;

/**
 * A time bound in ms as InfluxQL nanoseconds, clamped to what a reading can have: ts is never before
 * the epoch (validation refuses it) nor after InfluxDB's int64 range. InfluxQL rejects a literal
 * outside that range with a parse error, so an open bound such as MIN_SAFE_INTEGER must not reach it.
 */
function timeBound(ms: number): bigint {
  return msToNs(Math.min(Math.max(ms, 0), MAX_TIME_MS));
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

  constructor(opts: InfluxStoreOptions) {
    this.target = resolveTarget(opts);
    this.log = opts.logger; // bound to its component by the caller (store/open.ts)
    this.timeoutMs = opts.requestTimeoutMs ?? 15_000;
    this.closeTimeoutMs = opts.closeTimeoutMs ?? 10_000;
    this.limits = opts.limits;
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
      if (err instanceof InfluxHttpError) throw errors.STORE_UNAVAILABLE(err.message);
      throw err;
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
    this.ensureOpen();
    if (readings.length === 0) return { done: Promise.resolve([]) };
    const p = await this.serial(() => this.prepare(readings));
    const done = p.acked.then(() => p.outcomes);
    // Registered first, so it runs before whoever awaits `done` sees the result.
    const forget = () => {
      for (const { st, r } of p.added) if (st.pending.get(r.seq) === r) st.pending.delete(r.seq);
    };
    done.then(forget, forget);
    return { done };
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
    const loaded = await this.loadStates([...devices].filter((d) => !this.cache.has(d)));
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
    const found = await this.lookup(wanted);
    const missing: { deviceId: string; seq: number }[] = [];
    for (const [deviceId, seqs] of wanted) for (const seq of new Set(seqs)) if (!found.has(`${deviceId}\n${seq}`)) missing.push({ deviceId, seq });
    const near = await this.neighbours(missing);

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

  /**
   * Loads devices' state: the last reading per metric and the first seq per metric from reading_seq,
   * the mark from reading_hw, the highest arrival number from reading_late.
   */
  private async loadStates(deviceIds: string[]): Promise<Map<string, { state: DeviceState; repair: Reading[] }>> {
    const out = new Map<string, { state: DeviceState; repair: Reading[] }>();
    const repairs: { deviceId: string; from: number; to: number; lateAfter: number; lateTo: number }[] = [];
    const PER = 4;
    for (let i = 0; i < deviceIds.length; i += DEVICES_PER_QUERY) {
      const chunk = deviceIds.slice(i, i + DEVICES_PER_QUERY);
      const stmts: string[] = [];
      for (const d of chunk) {
        stmts.push(`SELECT ${BY_SEQ_COLUMNS} FROM "${M_BY_SEQ}" WHERE "device" = ${q(d)} GROUP BY "metric" ORDER BY time DESC LIMIT 1`);
        stmts.push(`SELECT first("value") AS "value" FROM "${M_BY_SEQ}" WHERE "device" = ${q(d)} GROUP BY "metric"`);
        stmts.push(`SELECT "seq", "late" FROM "${M_HW}" WHERE "device" = ${q(d)} ORDER BY time DESC LIMIT 1`);
        stmts.push(`SELECT last("seq") AS "seq" FROM "${M_LATE}" WHERE "device" = ${q(d)}`);
      }
      const res = await this.run(stmts, 'ns');
      chunk.forEach((d, j) => {
        const state: DeviceState = { maxSeq: -1, heads: new Map(), late: 0, pending: new Map() };
        const firsts = new Map<string, number>();
        for (const s of res[PER * j + 1] ?? []) firsts.set(s.tags?.metric ?? '', Number(s.values[0][0]));
        for (const last of decodeBySeq(res[PER * j] ?? [])) {
          state.heads.set(last.metric, { first: firsts.get(last.metric) ?? last.seq, last });
          if (last.seq > state.maxSeq) {
            state.maxSeq = last.seq;
            state.top = last;
          }
        }
        const hw = res[PER * j + 2]?.[0]?.values[0];
        const hwSeq = hw ? Number(hw[1]) : -1;
        const hwLate = hw && typeof hw[2] === 'number' ? hw[2] : 0;
        const lastPointer = res[PER * j + 3]?.[0]?.values[0];
        const maxArrival = lastPointer ? Number(lastPointer[0]) : 0;
        state.late = Math.max(hwLate, maxArrival);
        out.set(d, { state, repair: [] });
        if (state.maxSeq > hwSeq || maxArrival > hwLate) {
          repairs.push({ deviceId: d, from: hwSeq + 1, to: state.maxSeq, lateAfter: hwLate, lateTo: maxArrival });
        }
      });
    }
    for (const rep of repairs) {
      this.log.warn(rep, 'readings above the mark (an interrupted write): rewriting them');
      const repair: Reading[] = [];
      if (rep.to >= rep.from) {
        const [series] = await this.run(
          [`SELECT ${BY_SEQ_COLUMNS} FROM "${M_BY_SEQ}" WHERE "device" = ${q(rep.deviceId)} AND time >= ${influxqlInt(rep.from)} AND time <= ${influxqlInt(rep.to)}`],
          'ns',
        );
        repair.push(...decodeBySeq(series ?? []));
      }
      if (rep.lateTo > rep.lateAfter) {
        const seqs = await this.pointers(rep.deviceId, rep.lateAfter, rep.lateTo);
        const have = new Set(repair.map((r) => r.seq));
        for (const r of await this.fetchSeqs(rep.deviceId, seqs.filter((x) => !have.has(x)))) if (r.arrival !== undefined) repair.push(r);
      }
      (out.get(rep.deviceId) as { repair: Reading[] }).repair = repair;
    }
    return out;
  }

  /** Stored readings for the given (device, seqs), keyed `device\nseq`; one range per cluster of seqs. */
  private async lookup(wanted: Map<string, number[]>): Promise<Map<string, Reading>> {
    const stmts: { stmt: string; want: Set<number> }[] = [];
    for (const [d, seqs] of wanted) {
      const sorted = [...new Set(seqs)].sort((a, b) => a - b);
      let lo = 0;
      for (let i = 1; i <= sorted.length; i++) {
        if (i === sorted.length || sorted[i] - sorted[i - 1] > LOOKUP_GAP) {
          stmts.push({
            stmt: `SELECT ${BY_SEQ_COLUMNS} FROM "${M_BY_SEQ}" WHERE "device" = ${q(d)} AND time >= ${influxqlInt(sorted[lo])} AND time <= ${influxqlInt(sorted[i - 1])}`,
            want: new Set(sorted.slice(lo, i)),
          });
          lo = i;
        }
      }
    }
    const out = new Map<string, Reading>();
    for (let i = 0; i < stmts.length; i += DEVICES_PER_QUERY) {
      const chunk = stmts.slice(i, i + DEVICES_PER_QUERY);
      const res = await this.run(chunk.map((c) => c.stmt), 'ns');
      chunk.forEach((c, j) => {
        for (const r of decodeBySeq(res[j] ?? [])) if (c.want.has(r.seq)) out.set(`${r.deviceId}\n${r.seq}`, r);
      });
    }
    return out;
  }

  /** For each (device, seq): the stored neighbours below and above it, one per metric, keyed `device\nseq`. */
  private async neighbours(at: { deviceId: string; seq: number }[]): Promise<Map<string, Reading[]>> {
    const out = new Map<string, Reading[]>();
    const stmts: string[] = [];
    for (const { deviceId, seq } of at) {
      const where = `"device" = ${q(deviceId)}`;
      stmts.push(`SELECT ${BY_SEQ_COLUMNS} FROM "${M_BY_SEQ}" WHERE ${where} AND time < ${influxqlInt(seq)} GROUP BY "metric" ORDER BY time DESC LIMIT 1`);
      stmts.push(`SELECT ${BY_SEQ_COLUMNS} FROM "${M_BY_SEQ}" WHERE ${where} AND time > ${influxqlInt(seq)} GROUP BY "metric" ORDER BY time ASC LIMIT 1`);
    }
    for (let i = 0; i < stmts.length; i += DEVICES_PER_QUERY) {
      const res = await this.run(stmts.slice(i, i + DEVICES_PER_QUERY), 'ns');
      res.forEach((series, j) => {
        const { deviceId, seq } = at[(i + j) >> 1];
        const key = `${deviceId}\n${seq}`;
        const list = out.get(key) ?? [];
        list.push(...decodeBySeq(series ?? []));
        out.set(key, list);
      });
    }
    return out;
  }

  /** The seqs that the device's late-arrival pointers in (after, upTo] name. */
  private async pointers(deviceId: string, after: number, upTo: number): Promise<number[]> {
    const [series] = await this.run(
      [`SELECT "seq" FROM "${M_LATE}" WHERE "device" = ${q(deviceId)} AND time > ${influxqlInt(after)} AND time <= ${influxqlInt(upTo)}`],
      'ns',
    );
    return [...new Set((series ?? []).flatMap((s) => s.values.map((v) => Number(v[1]))))];
  }

  /** The stored readings with these seqs (one exact-time statement each: InfluxQL has no OR of times). */
  private async fetchSeqs(deviceId: string, seqs: number[]): Promise<Reading[]> {
    const out: Reading[] = [];
    for (let i = 0; i < seqs.length; i += DEVICES_PER_QUERY) {
      const chunk = seqs.slice(i, i + DEVICES_PER_QUERY);
      const res = await this.run(
        chunk.map((seq) => `SELECT ${BY_SEQ_COLUMNS} FROM "${M_BY_SEQ}" WHERE "device" = ${q(deviceId)} AND time = ${influxqlInt(seq)}`),
        'ns',
      );
      for (const series of res) out.push(...decodeBySeq(series ?? []));
    }
    return out;
  }

  async marks(deviceIds: string[]): Promise<Map<string, VisibilityMark>> {
    this.ensureOpen();
    const out = new Map<string, VisibilityMark>();
    const ids = [...new Set(deviceIds)];
    for (let i = 0; i < ids.length; i += DEVICES_PER_QUERY) {
      const chunk = ids.slice(i, i + DEVICES_PER_QUERY);
      const where = chunk.map((d) => `"device" = ${q(d)}`).join(' OR ');
      const [series] = await this.run([`SELECT "seq", "late" FROM "${M_HW}" WHERE ${where} GROUP BY "device" ORDER BY time DESC LIMIT 1`], 'ns');
      for (const s of series ?? []) {
        const d = s.tags?.device;
        const row = s.values[0];
        if (d !== undefined && chunk.includes(d) && row) out.set(d, { maxSeq: Number(row[1]), late: typeof row[2] === 'number' ? row[2] : 0 });
      }
    }
    return out;
  }

  /** reading_seq rows of a device with seq in [from, to] and ts < before. */
  private async bySeqRange(deviceId: string, from: number, to: number, before: number): Promise<Reading[]> {
    if (to < from) return [];
    const [s] = await this.run(
      [
        `SELECT ${BY_SEQ_COLUMNS} FROM "${M_BY_SEQ}" WHERE "device" = ${q(deviceId)} AND time >= ${influxqlInt(Math.max(0, from))} AND time <= ${influxqlInt(to)} AND "ts" < ${influxqlInt(before)}`,
      ],
      'ns',
    );
    return decodeBySeq(s ?? []);
  }

  async consume(cq: ConsumeQuery): Promise<Reading[]> {
    this.ensureOpen();
    const { mark, before, deviceId } = cq;
    if (mark.maxSeq < 0) return [];
    if (!cq.prev) {
      // First settlement of the device: everything visible and due (every visible seq is <= maxSeq).
      return (await this.bySeqRange(deviceId, 0, mark.maxSeq, before)).filter((r) => isVisible(r, mark)).sort((a, b) => a.seq - b.seq);
    }
    const prev = cq.prev;
    const out = new Map<number, Reading>();
    // 1. In-order readings above the previous mark's max seq: a seq range of reading_seq.
    if (mark.maxSeq > prev.mark.maxSeq) {
      for (const r of await this.bySeqRange(deviceId, prev.mark.maxSeq + 1, mark.maxSeq, before)) if (r.arrival === undefined) out.set(r.seq, r);
    }
    // 2. Late arrivals since the previous mark: their pointers (a range of reading_late), then each by seq.
    if (mark.late > prev.mark.late) {
      const seqs = await this.pointers(deviceId, prev.mark.late, mark.late);
      for (const r of await this.fetchSeqs(deviceId, seqs)) {
        if (r.arrival !== undefined && r.arrival > prev.mark.late && r.arrival <= mark.late && r.ts < before) out.set(r.seq, r);
      }
    }
    // 3. Seen by the previous settlement but not yet due then: a ts range of `reading`.
    if (prev.before < before) {
      const lo = timeBound(prev.before);
      const hi = timeBound(before);
      if (lo < hi) {
        const [s] = await this.run(
          [`SELECT ${READING_COLUMNS} FROM "${M_READING}" WHERE "device" = ${q(deviceId)} AND time >= ${lo} AND time < ${hi} AND "seq" <= ${influxqlInt(mark.maxSeq)}`],
          'ms',
        );
        for (const r of decodeReadings(s ?? [])) if (isVisible(r, mark) && isVisible(r, prev.mark)) out.set(r.seq, r);
      }
    }
    return [...out.values()].sort((a, b) => a.seq - b.seq);
  }

  /**
   * Visible readings of `reading` with from <= ts < to, in time order (or reverse), page by page until
   * `enough` says stop. The visibility filter runs here: InfluxQL cannot test a missing field.
   */
  private async scanVisible(deviceId: string, from: number, to: number, mark: VisibilityMark, desc: boolean, enough: (r: Reading) => boolean): Promise<void> {
    let lo = Math.max(from, 0);
    let hi = Math.min(to, MAX_TIME_MS);
    const select = (a: number, b: number, limit: string) =>
      `SELECT ${READING_COLUMNS} FROM "${M_READING}" WHERE "device" = ${q(deviceId)} AND time >= ${timeBound(a)} AND time < ${timeBound(b)} AND "seq" <= ${influxqlInt(mark.maxSeq)} ORDER BY time ${desc ? 'DESC' : 'ASC'}${limit}`;
    const feed = (rows: Reading[]) => rows.some((r) => isVisible(r, mark) && enough(r));
    while (lo < hi) {
      const [s] = await this.run([select(lo, hi, ` LIMIT ${PAGE}`)], 'ms');
      const page = decodeReadings(s ?? []);
      if (page.length < PAGE) {
        feed(page);
        return;
      }
      // Times come back in ms: finish the page's last millisecond in full, then go past it.
      const edge = page[page.length - 1].ts;
      if (feed(page.filter((r) => r.ts !== edge))) return;
      const [e] = await this.run([select(edge, edge + 1, '')], 'ms');
      if (feed(decodeReadings(e ?? []))) return;
      if (desc) hi = edge;
      else lo = edge + 1;
    }
  }

  async hasReading(deviceId: string, from: number, to: number, mark: VisibilityMark): Promise<boolean> {
    this.ensureOpen();
    if (mark.maxSeq < 0) return false;
    let any = false;
    await this.scanVisible(deviceId, from, to, mark, false, () => (any = true));
    return any;
  }

  async coverage(cq: CoverageQuery): Promise<DeviceCoverage> {
    this.ensureOpen();
    const { deviceId, mark } = cq;
    const out: DeviceCoverage = { after: false, between: 0, interval: false };
    if (mark.maxSeq >= 0) {
      // The greatest-seq visible reading of a ts range: ts never decreases along seq, so the first
      // visible one from the end, or one with the same ts and a higher seq.
      const last = async (from: number, to: number) => {
        let best: Reading | undefined;
        await this.scanVisible(deviceId, from, to, mark, true, (r) => {
          if (best && r.ts < best.ts) return true;
          if (!best || r.seq > best.seq) best = r;
          return false;
        });
        return best;
      };
      const before = await last(Number.MIN_SAFE_INTEGER, cq.start);
      const lastIn = await last(cq.start, cq.end);
      out.after = await this.hasReading(deviceId, cq.end, MAX_TIME_MS, mark);
      if (before) out.before = { seq: before.seq, ts: before.ts };
      if (lastIn) {
        out.lastIn = { seq: lastIn.seq, ts: lastIn.ts };
        const rows = (await this.bySeqRange(deviceId, (before?.seq ?? -1) + 1, lastIn.seq, Number.MAX_SAFE_INTEGER)).filter((r) => isVisible(r, mark));
        if (before) out.between = rows.length;
        out.interval = rows.some((r) => r.metric === 'co2_direct');
      }
    }
    if (!out.interval) {
      const kind = this.limits?.(deviceId)?.kind;
      if (kind !== undefined && isIntervalKind(kind)) out.interval = true;
    }
    return out;
  }

  async list(filter: ReadingFilter): Promise<Reading[]> {
    this.ensureOpen();
    const where = [`"facility" = ${q(filter.facilityId)}`];
    if (filter.deviceId !== undefined) where.push(`"device" = ${q(filter.deviceId)}`);
    if (filter.metric !== undefined) where.push(`"metric" = ${q(filter.metric)}`);
    if (filter.from !== undefined) where.push(`time >= ${timeBound(Math.ceil(filter.from))}`);
    if (filter.to !== undefined) where.push(`time < ${timeBound(Math.ceil(filter.to))}`);
    const limit = clampListLimit(filter.limit);
    const [s] = await this.run([`SELECT ${READING_COLUMNS} FROM "${M_READING}" WHERE ${where.join(' AND ')} ORDER BY time DESC LIMIT ${limit}`], 'ms');
    return decodeReadings(s ?? []).sort((a, b) => b.ts - a.ts || (a.deviceId < b.deviceId ? 1 : a.deviceId > b.deviceId ? -1 : b.seq - a.seq));
  }

  async get(deviceId: string, seq: number): Promise<Reading | undefined> {
    this.ensureOpen();
    if (!Number.isSafeInteger(seq) || seq < 0) return undefined;
    const [s] = await this.run([`SELECT ${BY_SEQ_COLUMNS} FROM "${M_BY_SEQ}" WHERE "device" = ${q(deviceId)} AND time = ${influxqlInt(seq)}`], 'ns');
    return decodeBySeq(s ?? [])[0];
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
  }
}

export function openInfluxStore(opts: InfluxStoreOptions): InfluxReadingStore {
  return new InfluxReadingStore(opts);
}
