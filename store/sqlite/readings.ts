/**
 * The embedded ReadingStore on the SQLite file (schema: store/sqlite/schema.ts).
 *
 * Readings: a WITHOUT ROWID table clustered on (device_id, seq) plus an index on (device_id, ts) and a
 * partial index on (device_id, arrival) that holds only late arrivals, so every oracle query
 * (consume, hasReading, coverage, marks) is a range search on one device, never a scan of history.
 * There is deliberately no facility index: every reading would pay for it on the ingest path (~6% of
 * the broker's throughput in bench/ingest.ts); the API's facility listing takes the newest `limit`
 * rows of each of the facility's devices (`reading_devices`) and merges them.
 *
 * Commit: one BEGIN IMMEDIATE transaction per batch; each reading is decided by the shared rules
 * (domain/ingest-rules.ts) through a `DeviceReadings` lookup served inside that transaction
 * (store/sqlite/device-readings.ts), so the batch's earlier readings are visible to its later ones.
 * The lookup is primary-key probes on
 * (device_id, seq): in the common case (seq above the device's max) the device's top row, which one
 * probe per batch loads, and the head of the metric (`device_heads`: first and last seq per device and
 * metric, one probe per batch) answer everything. A late arrival (seq below the max) probes its
 * neighbours on both sides; a neighbour of the same metric is found by walking the primary key from
 * the reading: row by row for a few rows, then inside SQLite, at most MAX_METRIC_WALK (100,000) rows
 * (a device whose metrics are interleaved further apart than that gets its late reading refused as
 * `implausible`, with a detail saying so, rather than a scan of its history inside the writer's
 * transaction). Capacity and reporting interval come from
 * the registry (a DeviceLimitsLookup, one probe per device per batch; a change applies to the next
 * batch).
 *
 * Visibility: a reading stored below its device's max seq gets the device's next arrival number
 * (store/types.ts VisibilityMark); in-order readings carry none and pay nothing for it.
 *
 * There is deliberately no in-process cache: without one a second process writing the same file is
 * always seen. The stores never close the Db handle; whoever opened it (openDatabase) closes it.
 */
import { Decimal } from '../../domain/decimal.ts';
import { errors } from '../../domain/errors.ts';
import { CANONICAL_RE, type StoredReading } from '../../domain/ingest-rules.ts';
import { READING_COLS, checkStoredReading, rowToReading as toReading, rowToStored as toStored, type ReadingRow } from '../rows.ts';
import type { Logger } from '../../domain/logger.ts';
import { isIntervalKind, type Reading } from '../../domain/reading.ts';
import type { Db } from './db.ts';
import {
  SqliteDeviceReadings,
  prepareLookup,
  type DeviceState,
  type LookupStmts,
} from './device-readings.ts';
import { migrate } from './schema.ts';
import {
  clampListLimit,
  type CommitOutcome,
  type ConsumeQuery,
  type CoverageQuery,
  type DeviceCoverage,
  type DeviceLimitsLookup,
  type ReadingFilter,
  type ReadingStore,
  type VisibilityMark,
} from '../types.ts';

/** Visible under a mark: (maxSeq, late) bound twice as ?, ?. */
const VISIBLE = '((arrival IS NULL AND +seq <= ?) OR arrival <= ?)';


/**
 * The oracle's per-device queries, each a range search on one device (checked with EXPLAIN QUERY
 * PLAN in test/store/plan.test.ts). `+col` keeps a column out of index selection on purpose.
 */
export const READING_QUERIES = {
  /** First settlement of a device: everything visible and due (primary key range on seq; every visible seq is <= maxSeq). */
  consumeAll: `SELECT ${READING_COLS} FROM readings WHERE device_id = ? AND seq <= ? AND +ts < ? AND (arrival IS NULL OR arrival <= ?) ORDER BY seq`,
  /** In-order readings above the previous settlement's mark (primary key range on seq). */
  consumeNew: `SELECT ${READING_COLS} FROM readings WHERE device_id = ? AND seq > ? AND seq <= ? AND +ts < ? AND arrival IS NULL ORDER BY seq`,
  /** Late arrivals since the previous settlement's mark (partial arrival index). */
  consumeArrived: `SELECT ${READING_COLS} FROM readings INDEXED BY readings_device_arrival
    WHERE device_id = ? AND arrival > ? AND arrival <= ? AND +ts < ?`,
  /** Readings the previous settlement saw but that were not due yet (range on the ts index). */
  consumeLate: `SELECT ${READING_COLS} FROM readings INDEXED BY readings_device_ts WHERE device_id = ? AND ts >= ? AND ts < ? AND ${VISIBLE}`,
  /** Coverage: any visible reading in [from, to). */
  has: `SELECT 1 FROM readings INDEXED BY readings_device_ts WHERE device_id = ? AND ts >= ? AND ts < ? AND ${VISIBLE} LIMIT 1`,
  /** The visible reading with the greatest (ts, seq) in [from, to): ts never decreases along seq, so the greatest seq. */
  lastIn: `SELECT seq, ts FROM readings INDEXED BY readings_device_ts WHERE device_id = ? AND ts >= ? AND ts < ? AND ${VISIBLE}
    ORDER BY ts DESC, seq DESC LIMIT 1`,
  /** Visible readings, and whether one is co2_direct, in a seq range (primary key range). */
  between: `SELECT COUNT(*) AS n, MAX(metric = 'co2_direct') AS co2 FROM readings WHERE device_id = ? AND seq > ? AND seq <= ? AND ${VISIBLE}`,
  /** The device's highest stored seq (the last entry of the primary key for the device). */
  maxSeq: 'SELECT MAX(seq) FROM readings WHERE device_id = ?',
  /** The device's late-arrival count (the last entry of the partial index). */
  maxArrival: 'SELECT MAX(arrival) FROM readings WHERE device_id = ? AND arrival IS NOT NULL',
} as const;

type Stmts = ReturnType<typeof prepareStatements>;

function prepareStatements(db: Db) {
  return {
    maxSeq: db.prepare<[string], number | null>(READING_QUERIES.maxSeq).pluck(),
    maxArrival: db.prepare<[string], number | null>(READING_QUERIES.maxArrival).pluck(),
    upsertHead: db.prepare<[string, string, number, number]>(
      `INSERT INTO device_heads (device_id, metric, first_seq, seq) VALUES (?, ?, ?, ?)
       ON CONFLICT (device_id, metric) DO UPDATE SET first_seq = MIN(first_seq, excluded.first_seq), seq = MAX(seq, excluded.seq)`,
    ),
    insert: db.prepare(`INSERT INTO readings (${READING_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    consumeAll: db.prepare<[string, number, number, number], ReadingRow>(READING_QUERIES.consumeAll),
    consumeNew: db.prepare<[string, number, number, number], ReadingRow>(READING_QUERIES.consumeNew),
    consumeArrived: db.prepare<[string, number, number, number], ReadingRow>(READING_QUERIES.consumeArrived),
    consumeLate: db.prepare<[string, number, number, number, number], ReadingRow>(READING_QUERIES.consumeLate),
    has: db.prepare<[string, number, number, number, number], number>(READING_QUERIES.has).pluck(),
    lastIn: db.prepare<[string, number, number, number, number], { seq: number; ts: number }>(READING_QUERIES.lastIn),
    between: db.prepare<[string, number, number, number, number], { n: number; co2: number | null }>(READING_QUERIES.between),
    facilityDevices: db.prepare<[string], string>('SELECT device_id FROM reading_devices WHERE facility_id = ?').pluck(),
    addDevice: db.prepare('INSERT OR IGNORE INTO reading_devices (facility_id, device_id) VALUES (?, ?)'),
  };
}

export class SqliteReadingStore implements ReadingStore {
  readonly kind = 'sqlite' as const;
  private closed = false;
  private readonly db: Db;
  private readonly logger: Logger;
  private readonly stmt: Stmts;
  private readonly lookup: LookupStmts;
  private readonly limitsOf: DeviceLimitsLookup;
  private readonly commitTx: (readings: Reading[]) => CommitOutcome[];
  private readonly marksTx: (deviceIds: string[]) => Map<string, VisibilityMark>;

  /** `limits`: capacity, reporting interval and kind of a device (the registry's deviceLimits). */
  constructor(db: Db, logger: Logger, limits: DeviceLimitsLookup) {
    migrate(db);
    this.db = db;
    this.logger = logger;
    this.stmt = prepareStatements(db);
    this.lookup = prepareLookup(db);
    this.limitsOf = limits;
    const tx = db.transaction((readings: Reading[]) => this.check(readings));
    this.commitTx = (readings) => tx.immediate(readings);
    // One read transaction: every mark is of the same committed state.
    this.marksTx = db.transaction((ids: string[]) => {
      const out = new Map<string, VisibilityMark>();
      for (const id of new Set(ids)) {
        const maxSeq = this.stmt.maxSeq.get(id);
        if (maxSeq === null || maxSeq === undefined) continue;
        out.set(id, { maxSeq, late: this.stmt.maxArrival.get(id) ?? 0 });
      }
      return out;
    });
  }

  private ensureOpen(): void {
    if (this.closed || !this.db.open) throw errors.STORE_UNAVAILABLE('sqlite store closed');
  }

  async commit(readings: Reading[]): Promise<CommitOutcome[]> {
    this.ensureOpen();
    if (readings.length === 0) return [];
    try {
      return this.commitTx(readings);
    } catch (err) {
      this.logger.error({ err, count: readings.length }, 'reading batch commit failed');
      throw errors.STORE_UNAVAILABLE((err as Error).message);
    }
  }

  /** Runs inside the IMMEDIATE transaction: the shared rules against the file plus this batch. */
  private check(readings: Reading[]): CommitOutcome[] {
    const { stmt } = this;
    const devices = new Map<string, { st: DeviceState; view: SqliteDeviceReadings }>();
    const out: CommitOutcome[] = new Array(readings.length);
    for (let i = 0; i < readings.length; i++) {
      const r = readings[i];
      // Validation hands over canonical text; anything else is parsed (and refused if not a decimal).
      let value = r.value;
      if (!CANONICAL_RE.test(value)) {
        try {
          value = Decimal.parse(r.value).toString();
        } catch {
          out[i] = { status: 'rejected', reason: 'invalid_value', detail: 'value is not a decimal' };
          continue;
        }
      }
      let dev = devices.get(r.deviceId);
      if (!dev) {
        const topRow = this.lookup.top.get(r.deviceId);
        const st: DeviceState = { top: topRow ? toStored(topRow) : undefined, heads: new Map(), limits: this.limitsOf(r.deviceId), facilities: new Set() };
        dev = { st, view: new SqliteDeviceReadings(this.lookup, r.deviceId, st) };
        devices.set(r.deviceId, dev);
      }
      const { st, view } = dev;
      const reset = r.reset === true;
      const candidate: StoredReading = { seq: r.seq, ts: r.ts, metric: r.metric, value, unit: r.unit, reset };
      if (r.sig !== undefined) candidate.sig = r.sig;
      const outcome = checkStoredReading(candidate, view, st.limits, r.metric);
      out[i] = outcome;
      if (outcome.status !== 'stored') continue;
      // Stored: below the device's max it is a late arrival with the next arrival number.
      let arrival: number | null = null;
      if (st.top && r.seq < st.top.seq) {
        st.late = (st.late ?? stmt.maxArrival.get(r.deviceId) ?? 0) + 1;
        arrival = st.late;
      }
      const signed = r.sig !== undefined;
      stmt.insert.run(
        r.deviceId, r.seq, r.facilityId, r.ts, r.metric, value, r.unit, reset ? 1 : 0, r.receivedAt, arrival,
        signed ? r.sig : null, signed ? (r.prev ?? '') : null, (signed && r.sentValue) || null, (signed && r.sentUnit) || null,
      );
      if (arrival === null) st.top = candidate;
      st.facilities.add(r.facilityId);
      const head = view.head(r.metric);
      if (!head) st.heads.set(r.metric, { first: r.seq, last: r.seq, row: candidate, dirty: true });
      else {
        if (r.seq < head.first) head.first = r.seq;
        if (r.seq > head.last) {
          head.last = r.seq;
          head.row = candidate;
        }
        head.dirty = true;
      }
    }
    for (const [deviceId, { st }] of devices) {
      for (const [metric, h] of st.heads) if (h?.dirty) stmt.upsertHead.run(deviceId, metric, h.first, h.last);
      for (const facilityId of st.facilities) stmt.addDevice.run(facilityId, deviceId);
    }
    return out;
  }

  async marks(deviceIds: string[]): Promise<Map<string, VisibilityMark>> {
    this.ensureOpen();
    if (deviceIds.length === 0) return new Map();
    return this.marksTx(deviceIds);
  }

  async consume(q: ConsumeQuery): Promise<Reading[]> {
    this.ensureOpen();
    const { stmt } = this;
    const { mark, before } = q;
    if (!q.prev) return stmt.consumeAll.all(q.deviceId, mark.maxSeq, before, mark.late).map(toReading);
    // Visible and due, minus what the previous settlement consumed, in three disjoint range searches:
    // in-order seqs above the previous mark, late arrivals since it, and readings both marks see whose
    // ts became due since.
    const prev = q.prev;
    const rows: ReadingRow[] = [];
    if (mark.maxSeq > prev.mark.maxSeq) rows.push(...stmt.consumeNew.all(q.deviceId, prev.mark.maxSeq, mark.maxSeq, before));
    if (mark.late > prev.mark.late) rows.push(...stmt.consumeArrived.all(q.deviceId, prev.mark.late, mark.late, before));
    if (prev.before < before) {
      rows.push(
        ...stmt.consumeLate.all(q.deviceId, prev.before, before, Math.min(mark.maxSeq, prev.mark.maxSeq), Math.min(mark.late, prev.mark.late)),
      );
    }
    return rows.sort((a, b) => a.seq - b.seq).map(toReading);
  }

  async hasReading(deviceId: string, from: number, to: number, mark: VisibilityMark): Promise<boolean> {
    this.ensureOpen();
    return this.stmt.has.get(deviceId, from, to, mark.maxSeq, mark.late) !== undefined;
  }

  async coverage(q: CoverageQuery): Promise<DeviceCoverage> {
    this.ensureOpen();
    const { stmt } = this;
    const { deviceId, mark } = q;
    const before = stmt.lastIn.get(deviceId, Number.MIN_SAFE_INTEGER, q.start, mark.maxSeq, mark.late);
    const lastIn = stmt.lastIn.get(deviceId, q.start, q.end, mark.maxSeq, mark.late);
    const after = stmt.has.get(deviceId, q.end, Number.MAX_SAFE_INTEGER, mark.maxSeq, mark.late) !== undefined;
    const out: DeviceCoverage = { after, between: 0, interval: false };
    if (before) out.before = { seq: before.seq, ts: before.ts };
    if (lastIn) {
      out.lastIn = { seq: lastIn.seq, ts: lastIn.ts };
      const b = stmt.between.get(deviceId, before?.seq ?? -1, lastIn.seq, mark.maxSeq, mark.late);
      if (before) out.between = b?.n ?? 0;
      out.interval = (b?.co2 ?? 0) === 1;
    }
    if (!out.interval) {
      const kind = this.limitsOf(deviceId)?.kind;
      if (kind !== undefined && isIntervalKind(kind)) out.interval = true;
    }
    return out;
  }

  async list(filter: ReadingFilter): Promise<Reading[]> {
    this.ensureOpen();
    if (filter.deviceId !== undefined) {
      const { sql, args } = listQuery({ ...filter, deviceId: filter.deviceId });
      return (this.db.prepare(sql).all(...args) as ReadingRow[]).map(toReading);
    }
    // The facility's devices, each read newest first through its own index, merged.
    const devices = this.stmt.facilityDevices.all(filter.facilityId);
    if (devices.length === 0) return [];
    const { sql } = listQuery({ ...filter, deviceId: '' });
    const stmt = this.db.prepare<unknown[], ReadingRow>(sql);
    const rows: ReadingRow[] = [];
    for (const deviceId of devices) rows.push(...stmt.all(...listQuery({ ...filter, deviceId }).args));
    rows.sort((a, b) => b.ts - a.ts || (a.device_id < b.device_id ? 1 : a.device_id > b.device_id ? -1 : 0) || b.seq - a.seq);
    return rows.slice(0, clampListLimit(filter.limit)).map(toReading);
  }

  async get(deviceId: string, seq: number): Promise<Reading | undefined> {
    this.ensureOpen();
    const row = this.lookup.getOne.get(deviceId, seq);
    return row ? toReading(row) : undefined;
  }

  async ping(): Promise<boolean> {
    if (this.closed || !this.db.open) return false;
    try {
      return this.db.prepare('SELECT 1').pluck().get() === 1;
    } catch {
      return false;
    }
  }

  /** Stops this store (later calls fail with STORE_UNAVAILABLE); the Db handle stays open. */
  async close(): Promise<void> {
    this.closed = true;
  }
}

/**
 * The SQL of list() for one device (a facility's listing runs it for each of its devices and merges):
 * newest first (ts, then seq), from <= ts < to, limit default 100, at most 1000, on the
 * (device_id, ts) index.
 */
export function listQuery(filter: ReadingFilter & { deviceId: string }): { sql: string; args: (string | number)[] } {
  const where: string[] = ['device_id = ?', 'facility_id = ?'];
  const args: (string | number)[] = [filter.deviceId, filter.facilityId];
  if (filter.metric !== undefined) {
    where.push('metric = ?');
    args.push(filter.metric);
  }
  if (filter.from !== undefined) {
    where.push('ts >= ?');
    args.push(filter.from);
  }
  if (filter.to !== undefined) {
    where.push('ts < ?');
    args.push(filter.to);
  }
  args.push(clampListLimit(filter.limit));
  return { sql: `SELECT ${READING_COLS} FROM readings INDEXED BY readings_device_ts WHERE ${where.join(' AND ')} ORDER BY ts DESC, seq DESC LIMIT ?`, args };
}
