/**
 * The InfluxDB store's queries (store/influx/store.ts keeps the write side and the per-device state):
 * loading a device's state, looking readings up by seq and their neighbours per metric for the
 * ingest rules, and the ReadingStore reads (marks, consume, hasReading, coverage, list, get). Every
 * query is InfluxQL over the v1-compatible /query endpoint; measurements: store/influx/schema.ts.
 */
import type { Logger } from '../../domain/logger.ts';
import type { Reading } from '../../domain/reading.ts';
import { isVisible, clampListLimit, type ConsumeQuery, type CoverageQuery, type DeviceCoverage, type ReadingFilter, type VisibilityMark } from '../types.ts';
import type { Series } from './http.ts';
import { influxqlInt, influxqlString } from './line.ts';
import { BY_SEQ_COLUMNS, M_BY_SEQ, M_HW, M_LATE, M_READING, READING_COLUMNS, decodeBySeq, decodeReadings, intField, msToNs } from './schema.ts';

/** Runs InfluxQL statements in one request; one result (a list of series) per statement. */
export type RunQuery = (statements: string[], epoch: 'ns' | 'ms') => Promise<Series[][]>;

/** Devices (or statements) per query request when loading state, marks or neighbours. */
const DEVICES_PER_QUERY = 50;
/** Seqs closer than this are looked up with one range query. */
const LOOKUP_GAP = 1000;
/** Rows per page when a visibility filter runs on this side (InfluxQL cannot test a missing field). */
const PAGE = 200;

export interface MetricHead {
  /** Lowest seq of the metric stored. */
  first: number;
  /** The metric's reading with the highest seq. */
  last: Reading;
}

export interface DeviceState {
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

const q = influxqlString;

export class InfluxQueries {
  constructor(
    private readonly run: RunQuery,
    private readonly log: Logger,
  ) {}

  /**
   * Loads devices' state: the last reading per metric and the first seq per metric from reading_seq,
   * the mark from reading_hw, the highest arrival number from reading_late.
   */
  async loadStates(deviceIds: string[]): Promise<Map<string, { state: DeviceState; repair: Reading[] }>> {
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
        const hwSeq = hw ? intField(M_HW, d, hw[0], 'seq', hw[1]) : -1;
        const hwLate = hw && hw[2] != null ? intField(M_HW, d, hwSeq, 'late', hw[2]) : 0;
        const lastPointer = res[PER * j + 3]?.[0]?.values[0];
        const maxArrival = lastPointer ? intField(M_LATE, d, lastPointer[0], 'arrival', lastPointer[0]) : 0;
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
  async lookup(wanted: Map<string, number[]>): Promise<Map<string, Reading>> {
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
  async neighbours(at: { deviceId: string; seq: number }[]): Promise<Map<string, Reading[]>> {
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
  async pointers(deviceId: string, after: number, upTo: number): Promise<number[]> {
    const [series] = await this.run(
      [`SELECT "seq" FROM "${M_LATE}" WHERE "device" = ${q(deviceId)} AND time > ${influxqlInt(after)} AND time <= ${influxqlInt(upTo)}`],
      'ns',
    );
    return [...new Set((series ?? []).flatMap((s) => s.values.map((v) => intField(M_LATE, deviceId, v[1], 'seq', v[1]))))];
  }

  /** The stored readings with these seqs (one exact-time statement each: InfluxQL has no OR of times). */
  async fetchSeqs(deviceId: string, seqs: number[]): Promise<Reading[]> {
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
    const out = new Map<string, VisibilityMark>();
    const ids = [...new Set(deviceIds)];
    for (let i = 0; i < ids.length; i += DEVICES_PER_QUERY) {
      const chunk = ids.slice(i, i + DEVICES_PER_QUERY);
      const where = chunk.map((d) => `"device" = ${q(d)}`).join(' OR ');
      const [series] = await this.run([`SELECT "seq", "late" FROM "${M_HW}" WHERE ${where} GROUP BY "device" ORDER BY time DESC LIMIT 1`], 'ns');
      for (const s of series ?? []) {
        const d = s.tags?.device;
        const row = s.values[0];
        if (d !== undefined && chunk.includes(d) && row) {
          const maxSeq = intField(M_HW, d, row[0], 'seq', row[1]);
          out.set(d, { maxSeq, late: row[2] != null ? intField(M_HW, d, maxSeq, 'late', row[2]) : 0 });
        }
      }
    }
    return out;
  }

  /** reading_seq rows of a device with seq in [from, to] and ts < before. */
  async bySeqRange(deviceId: string, from: number, to: number, before: number): Promise<Reading[]> {
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
  async scanVisible(deviceId: string, from: number, to: number, mark: VisibilityMark, desc: boolean, enough: (r: Reading) => boolean): Promise<void> {
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
    if (mark.maxSeq < 0) return false;
    let any = false;
    await this.scanVisible(deviceId, from, to, mark, false, () => (any = true));
    return any;
  }

  async coverage(cq: CoverageQuery): Promise<DeviceCoverage> {
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
    return out;
  }

  async list(filter: ReadingFilter): Promise<Reading[]> {
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
    if (!Number.isSafeInteger(seq) || seq < 0) return undefined;
    const [s] = await this.run([`SELECT ${BY_SEQ_COLUMNS} FROM "${M_BY_SEQ}" WHERE "device" = ${q(deviceId)} AND time = ${influxqlInt(seq)}`], 'ns');
    return decodeBySeq(s ?? [])[0];
  }
}
