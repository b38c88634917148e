/**
 * ReadingStore on InfluxDB, 1.x API (url + database [+ retention policy, username/password]) or 2.x
 * API (url + token + org + bucket; reads through the v1-compatible /query). Layout: store/influx-schema.ts;
 * design and trade-offs: docs/INFLUXDB.md.
 *
 * Commit: the stateful checks (duplicate / duplicate_conflict / seq_not_increasing /
 * register_backwards) run against per-device state kept in memory: highest seq, last value per
 * register metric, and the readings of commits not yet acknowledged. A device's state is loaded from
 * InfluxDB the first time the device commits (single writer per device assumed: one ingest process
 * owns a device's writes). A duplicate found on the server (not in memory) is rewritten, which is
 * idempotent and heals a write cut in half by a crash. Commits are checked one at a time, in order;
 * their lines go to the LineWriter, and `commit()` resolves only when the server acknowledged them and
 * the device high-water points that follow them (`stage` returns as soon as the lines are queued, so
 * the next batch can be checked while this one is written). A write that finally fails rejects that
 * commit and every later one, and drops all cached state (reloaded from the server on next use).
 */
import { Decimal } from '../domain/decimal.ts';
import { errors } from '../domain/errors.ts';
import type { Logger } from '../domain/logger.ts';
import { METRICS, isMetric, type Reading, type RejectReason } from '../domain/reading.ts';
import { InfluxHttpError, ping, prepareBody, query, resolveTarget, writeBody, type InfluxConnection, type InfluxTarget, type PreparedBody, type Series } from './influx-http.ts';
import { influxqlInt, influxqlString } from './influx-line.ts';
import {
  BY_SEQ_COLUMNS,
  M_BY_SEQ,
  M_HW,
  M_READING,
  READING_COLUMNS,
  decodeBySeq,
  decodeReadings,
  hwLine,
  msToNs,
  readingLines,
} from './influx-schema.ts';
import { LineWriter, type WriterStats } from './influx-writer.ts';
import type { CommitOutcome, ConsumeQuery, ReadingFilter, ReadingStore, StagedCommit } from './types.ts';

export interface InfluxStoreOptions extends InfluxConnection {
  logger: Logger;
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

export const DEFAULT_LIST_LIMIT = 100;
export const MAX_LIST_LIMIT = 1000;
/** Devices per statement batch when loading state or high-water marks. */
const DEVICES_PER_QUERY = 50;
/** Seqs closer than this are looked up with one range query. */
const LOOKUP_GAP = 1000;

interface Head {
  seq: number;
  value: Decimal;
}

interface DeviceState {
  /** Highest seq stored or being stored; -1 when none. */
  maxSeq: number;
  /** Last value per register metric (by seq), including readings not yet acknowledged. */
  heads: Map<string, Head>;
  /** Readings of commits not yet acknowledged, by seq. */
  pending: Map<number, Reading>;
  /**
   * Seqs (after, upTo] found above the device's high-water mark at load: a write cut short by a crash.
   * A missing seq in there may be a reading whose points did not all land: its redelivery is stored.
   */
  uncertain?: { after: number; upTo: number };
}

interface Prepared {
  outcomes: CommitOutcome[];
  acked: Promise<void>;
  added: { st: DeviceState; r: Reading }[];
}

const q = influxqlString;

function sameContent(a: Reading, b: Reading): boolean {
  return a.ts === b.ts && a.metric === b.metric && a.value === b.value && a.unit === b.unit && a.reset === b.reset;
}

function reject(reason: RejectReason, detail: string): CommitOutcome {
  return { status: 'rejected', reason, detail };
}

function isRegister(metric: string): boolean {
  return isMetric(metric) && METRICS[metric].kind === 'register';
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

export class InfluxReadingStore implements ReadingStore {
  readonly kind = 'influxdb' as const;
  readonly target: InfluxTarget;
  private readonly log: Logger;
  private readonly writer: LineWriter;
  private readonly timeoutMs: number;
  private readonly closeTimeoutMs: number;
  private readonly cache = new Map<string, DeviceState>();
  /** Bumped whenever cached state is dropped after a failed write. */
  private generation = 0;
  private chain: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(opts: InfluxStoreOptions) {
    this.target = resolveTarget(opts);
    this.log = opts.logger.child({ component: 'influx-store' });
    this.timeoutMs = opts.requestTimeoutMs ?? 15_000;
    this.closeTimeoutMs = opts.closeTimeoutMs ?? 10_000;
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
    const hw = new Map<string, number>();
    const bump = (deviceId: string, seq: number) => hw.set(deviceId, Math.max(hw.get(deviceId) ?? -1, seq));

    // 1. State of devices seen for the first time (and the repair of a write a crash cut short).
    const loaded = await this.loadStates([...devices].filter((d) => !this.cache.has(d)));
    for (const [deviceId, { repair }] of loaded) {
      for (const r of repair) {
        lines.push(...readingLines(r));
        bump(deviceId, r.seq);
      }
    }
    const stateOf = (d: string) => this.cache.get(d) ?? loaded.get(d)?.state;

    // 2. Stored readings for seqs at or below a device's highest seq (duplicates), fetched by seq range.
    const wanted = new Map<string, number[]>();
    readings.forEach((r, i) => {
      if (outcomes[i]) return;
      const st = stateOf(r.deviceId) as DeviceState;
      if (r.seq <= st.maxSeq && !st.pending.has(r.seq)) {
        const list = wanted.get(r.deviceId) ?? [];
        list.push(r.seq);
        wanted.set(r.deviceId, list);
      }
    });
    const found = await this.lookup(wanted);

    if (gen !== this.generation || this.closed) {
      throw errors.STORE_UNAVAILABLE('an earlier write failed while this commit was being checked; it was not written');
    }
    for (const [d, { state }] of loaded) this.cache.set(d, state);

    // 3. The checks, in input order, against stored state plus earlier readings of this batch.
    const added: Prepared['added'] = [];
    readings.forEach((input, i) => {
      if (outcomes[i]) return;
      const st = this.cache.get(input.deviceId) as DeviceState;
      const r: Reading = { ...input, value: values[i], reset: input.reset === true };
      if (r.seq <= st.maxSeq) {
        const mine = st.pending.get(r.seq);
        const existing = mine ?? found.get(`${r.deviceId}\n${r.seq}`);
        if (!existing && st.uncertain && r.seq > st.uncertain.after && r.seq <= st.uncertain.upTo) {
          // Part of an interrupted write (its reading_seq point never landed): store it now.
          st.pending.set(r.seq, r);
          added.push({ st, r });
          lines.push(...readingLines(r));
          bump(r.deviceId, r.seq);
          outcomes[i] = { status: 'stored' };
        } else if (!existing) {
          outcomes[i] = reject('seq_not_increasing', `seq ${r.seq} is not above the highest stored seq ${st.maxSeq}`);
        } else if (sameContent(existing, r)) {
          outcomes[i] = { status: 'duplicate' };
          if (!mine) {
            // Idempotent rewrite of the stored point: heals a write cut short by a crash.
            lines.push(...readingLines(existing));
            bump(r.deviceId, r.seq);
          }
        } else {
          outcomes[i] = reject('duplicate_conflict', `seq ${r.seq} already stored with different content`);
        }
        return;
      }
      const value = Decimal.parse(r.value);
      const head = st.heads.get(r.metric);
      if (isRegister(r.metric) && !r.reset && head && value.cmp(head.value) < 0) {
        outcomes[i] = reject('register_backwards', `${r.metric} ${r.value} is below the previous ${head.value.toString()} (seq ${head.seq}) without reset`);
        return;
      }
      st.maxSeq = r.seq;
      st.pending.set(r.seq, r);
      added.push({ st, r });
      if (isRegister(r.metric)) st.heads.set(r.metric, { seq: r.seq, value });
      lines.push(...readingLines(r));
      bump(r.deviceId, r.seq);
      outcomes[i] = { status: 'stored' };
    });

    // 4. Queue the lines (waiting for buffer space), then the high-water points that follow them.
    const follow = [...hw].map(([d, s]) => hwLine(d, s));
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

  /** Loads devices' state: highest seq and register heads from reading_seq, high-water from reading_hw. */
  private async loadStates(deviceIds: string[]): Promise<Map<string, { state: DeviceState; repair: Reading[] }>> {
    const out = new Map<string, { state: DeviceState; repair: Reading[] }>();
    const repairs: { deviceId: string; from: number; to: number }[] = [];
    for (let i = 0; i < deviceIds.length; i += DEVICES_PER_QUERY) {
      const chunk = deviceIds.slice(i, i + DEVICES_PER_QUERY);
      const stmts: string[] = [];
      for (const d of chunk) {
        stmts.push(`SELECT last("value") AS "value" FROM "${M_BY_SEQ}" WHERE "device" = ${q(d)} GROUP BY "metric"`);
        stmts.push(`SELECT last("seq") AS "seq" FROM "${M_HW}" WHERE "device" = ${q(d)}`);
      }
      const res = await this.run(stmts, 'ns');
      chunk.forEach((d, j) => {
        const state: DeviceState = { maxSeq: -1, heads: new Map(), pending: new Map() };
        for (const s of res[2 * j] ?? []) {
          const [time, value] = s.values[0] as [number, string];
          const metric = s.tags?.metric ?? '';
          state.maxSeq = Math.max(state.maxSeq, time);
          if (isRegister(metric)) state.heads.set(metric, { seq: time, value: Decimal.parse(value) });
        }
        const hwSeries = res[2 * j + 1]?.[0];
        const hwSeq = hwSeries ? Number(hwSeries.values[0][0]) : -1;
        out.set(d, { state, repair: [] });
        if (state.maxSeq > hwSeq) {
          repairs.push({ deviceId: d, from: hwSeq + 1, to: state.maxSeq });
          state.uncertain = { after: hwSeq, upTo: state.maxSeq };
        }
      });
    }
    for (const rep of repairs) {
      this.log.warn(rep, 'readings above the high-water mark (an interrupted write): rewriting them');
      const [series] = await this.run(
        [`SELECT ${BY_SEQ_COLUMNS} FROM "${M_BY_SEQ}" WHERE "device" = ${q(rep.deviceId)} AND time >= ${influxqlInt(rep.from)} AND time <= ${influxqlInt(rep.to)}`],
        'ns',
      );
      (out.get(rep.deviceId) as { repair: Reading[] }).repair = decodeBySeq(series ?? []);
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

  async highWater(deviceIds: string[]): Promise<Map<string, number>> {
    this.ensureOpen();
    const out = new Map<string, number>();
    const ids = [...new Set(deviceIds)];
    for (let i = 0; i < ids.length; i += DEVICES_PER_QUERY) {
      const chunk = ids.slice(i, i + DEVICES_PER_QUERY);
      const where = chunk.map((d) => `"device" = ${q(d)}`).join(' OR ');
      const [series] = await this.run([`SELECT last("seq") AS "seq" FROM "${M_HW}" WHERE ${where} GROUP BY "device"`], 'ns');
      for (const s of series ?? []) {
        const d = s.tags?.device;
        if (d !== undefined && chunk.includes(d)) out.set(d, Number(s.values[0][0]));
      }
    }
    return out;
  }

  async consume(cq: ConsumeQuery): Promise<Reading[]> {
    this.ensureOpen();
    const dev = q(cq.deviceId);
    if (cq.maxSeq < 0) return [];
    if (!cq.prev) {
      // First settlement of the device: everything visible and due (a seq range of reading_seq).
      const [s] = await this.run(
        [`SELECT ${BY_SEQ_COLUMNS} FROM "${M_BY_SEQ}" WHERE "device" = ${dev} AND time >= 0 AND time <= ${influxqlInt(cq.maxSeq)} AND "ts" < ${influxqlInt(cq.before)}`],
        'ns',
      );
      return decodeBySeq(s ?? []).sort((a, b) => a.seq - b.seq);
    }
    const { prev } = cq;
    // Seen by the previous settlement but not yet due then: a ts range of `reading`.
    const lateMax = Math.min(prev.maxSeq, cq.maxSeq);
    let older: Reading[] = [];
    if (prev.before < cq.before && lateMax >= 0) {
      const [s] = await this.run(
        [
          `SELECT ${READING_COLUMNS} FROM "${M_READING}" WHERE "device" = ${dev} AND time >= ${msToNs(prev.before)} AND time < ${msToNs(cq.before)} AND "seq" <= ${influxqlInt(lateMax)}`,
        ],
        'ms',
      );
      older = decodeReadings(s ?? []);
    }
    // Stored after the previous high-water mark (whatever their ts, late ones included): a seq range.
    let newer: Reading[] = [];
    if (cq.maxSeq > prev.maxSeq) {
      const [s] = await this.run(
        [
          `SELECT ${BY_SEQ_COLUMNS} FROM "${M_BY_SEQ}" WHERE "device" = ${dev} AND time > ${influxqlInt(prev.maxSeq)} AND time <= ${influxqlInt(cq.maxSeq)} AND "ts" < ${influxqlInt(cq.before)}`,
        ],
        'ns',
      );
      newer = decodeBySeq(s ?? []);
    }
    return [...older, ...newer].sort((a, b) => a.seq - b.seq);
  }

  async hasReading(deviceId: string, from: number, to: number, maxSeq: number): Promise<boolean> {
    this.ensureOpen();
    // The oracle asks "any reading before the window" as from = MIN_SAFE_INTEGER: not an InfluxDB time.
    const lo = timeBound(from);
    const hi = timeBound(to);
    if (!(lo < hi) || maxSeq < 0) return false;
    const [s] = await this.run(
      [`SELECT "seq" FROM "${M_READING}" WHERE "device" = ${q(deviceId)} AND time >= ${lo} AND time < ${hi} AND "seq" <= ${influxqlInt(maxSeq)} LIMIT 1`],
      'ms',
    );
    return (s ?? []).some((x) => x.values.length > 0);
  }

  async list(filter: ReadingFilter): Promise<Reading[]> {
    this.ensureOpen();
    const where = [`"facility" = ${q(filter.facilityId)}`];
    if (filter.deviceId !== undefined) where.push(`"device" = ${q(filter.deviceId)}`);
    if (filter.metric !== undefined) where.push(`"metric" = ${q(filter.metric)}`);
    if (filter.from !== undefined) where.push(`time >= ${timeBound(Math.ceil(filter.from))}`);
    if (filter.to !== undefined) where.push(`time < ${timeBound(Math.ceil(filter.to))}`);
    const limit = filter.limit === undefined || !Number.isFinite(filter.limit) ? DEFAULT_LIST_LIMIT : Math.min(MAX_LIST_LIMIT, Math.max(1, Math.floor(filter.limit)));
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
