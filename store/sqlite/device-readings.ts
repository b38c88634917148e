/**
 * The per-device lookup of domain/ingest-rules.ts (`DeviceReadings`) on the readings table, served
 * inside the SQLite store's commit transaction (store/sqlite/readings.ts), so a batch's earlier
 * readings are visible to its later ones. Primary-key probes on (device_id, seq): the device's top
 * row and the head of each metric (`device_heads`: first and last seq) answer the common case; a late
 * arrival's neighbour of the same metric is found by walking the primary key, row by row for a few
 * rows, then inside SQLite, at most MAX_METRIC_WALK rows (beyond that WalkTooLong: the store refuses
 * the reading rather than scan a device's history inside the writer's transaction).
 */
import type { DeviceReadings, StoredReading } from '../../domain/ingest-rules.ts';
import type { DeviceLimits } from '../types.ts';
import type { Db } from './db.ts';

import { MAX_METRIC_WALK } from '../types.ts';
import { READING_COLS, WalkTooLong, rowToStored as toStored, type ReadingRow } from '../rows.ts';
/** Rows walked row by row first (the common case: metrics interleaved a few rows apart). */
const SHORT_WALK = 32;





export interface Head {
  first: number;
  last: number;
  /** The reading at `last`, once loaded. */
  row?: StoredReading;
  dirty: boolean;
}

/** One device while a batch is checked: loaded from the file inside the transaction. */
export interface DeviceState {
  /** The reading with the highest seq (undefined: the device has no readings). */
  top?: StoredReading;
  /** Late-arrival count, loaded when the first late reading of the batch is stored. */
  late?: number;
  heads: Map<string, Head | null>;
  limits: DeviceLimits | undefined;
  facilities: Set<string>;
}

export type LookupStmts = ReturnType<typeof prepareLookup>;

export function prepareLookup(db: Db) {
  return {
    top: db.prepare<[string], ReadingRow>(`SELECT ${READING_COLS} FROM readings WHERE device_id = ? ORDER BY seq DESC LIMIT 1`),
    getOne: db.prepare<[string, number], ReadingRow>(`SELECT ${READING_COLS} FROM readings WHERE device_id = ? AND seq = ?`),
    below: db.prepare<[string, number], ReadingRow>(`SELECT ${READING_COLS} FROM readings WHERE device_id = ? AND seq < ? ORDER BY seq DESC LIMIT 1`),
    above: db.prepare<[string, number], ReadingRow>(`SELECT ${READING_COLS} FROM readings WHERE device_id = ? AND seq > ? ORDER BY seq LIMIT 1`),
    walkDown: db.prepare<[string, number, number], ReadingRow>(
      `SELECT ${READING_COLS} FROM readings WHERE device_id = ? AND seq < ? AND seq >= ? ORDER BY seq DESC`,
    ),
    walkUp: db.prepare<[string, number, number], ReadingRow>(`SELECT ${READING_COLS} FROM readings WHERE device_id = ? AND seq > ? AND seq <= ? ORDER BY seq`),
    // The longer walks run inside SQLite (about ten times faster than row by row here), capped.
    farDown: db.prepare<[string, string, number, number, number], { s: number | null; n: number }>(
      `SELECT MAX(CASE WHEN metric = ? THEN seq END) AS s, COUNT(*) AS n
       FROM (SELECT seq, metric FROM readings WHERE device_id = ? AND seq < ? AND seq >= ? ORDER BY seq DESC LIMIT ?)`,
    ),
    farUp: db.prepare<[string, string, number, number, number], { s: number | null; n: number }>(
      `SELECT MIN(CASE WHEN metric = ? THEN seq END) AS s, COUNT(*) AS n
       FROM (SELECT seq, metric FROM readings WHERE device_id = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?)`,
    ),
    head: db.prepare<[string, string], { first_seq: number; seq: number }>('SELECT first_seq, seq FROM device_heads WHERE device_id = ? AND metric = ?'),
  };
}

/** Serves domain/ingest-rules.ts's lookup for one device, inside the commit transaction. */
export class SqliteDeviceReadings implements DeviceReadings {
  constructor(
    private readonly stmt: LookupStmts,
    private readonly deviceId: string,
    private readonly st: DeviceState,
  ) {}

  at(seq: number): StoredReading | undefined {
    const { top } = this.st;
    if (!top || seq > top.seq) return undefined;
    if (seq === top.seq) return top;
    const row = this.stmt.getOne.get(this.deviceId, seq);
    return row ? toStored(row) : undefined;
  }

  below(seq: number, metric?: string): StoredReading | undefined {
    const { top } = this.st;
    if (!top) return undefined;
    if (metric === undefined) {
      if (seq > top.seq) return top;
      const row = this.stmt.below.get(this.deviceId, seq);
      return row ? toStored(row) : undefined;
    }
    const head = this.head(metric);
    if (!head || seq <= head.first) return undefined;
    if (seq > head.last) return this.headRow(metric, head);
    return this.walk('down', seq, head.first, metric);
  }

  above(seq: number, metric?: string): StoredReading | undefined {
    const { top } = this.st;
    if (!top || seq >= top.seq) return undefined;
    if (metric === undefined) {
      const row = this.stmt.above.get(this.deviceId, seq);
      return row ? toStored(row) : undefined;
    }
    const head = this.head(metric);
    if (!head || seq >= head.last) return undefined;
    if (seq < head.first) {
      const row = this.stmt.getOne.get(this.deviceId, head.first);
      return row ? toStored(row) : undefined;
    }
    return this.walk('up', seq, head.last, metric);
  }

  head(metric: string): Head | undefined {
    let h = this.st.heads.get(metric);
    if (h === undefined) {
      const row = this.stmt.head.get(this.deviceId, metric);
      h = row ? { first: row.first_seq, last: row.seq, dirty: false } : null;
      this.st.heads.set(metric, h);
    }
    return h ?? undefined;
  }

  private headRow(metric: string, head: Head): StoredReading | undefined {
    if (this.st.top && this.st.top.seq === head.last) return this.st.top;
    if (!head.row) {
      const row = this.stmt.getOne.get(this.deviceId, head.last);
      if (row && row.metric === metric) head.row = toStored(row);
    }
    return head.row;
  }

  /** The nearest reading of `metric` from `from` (exclusive) towards `bound` (inclusive). */
  private walk(dir: 'down' | 'up', from: number, bound: number, metric: string): StoredReading | undefined {
    let n = 0;
    for (const row of (dir === 'down' ? this.stmt.walkDown : this.stmt.walkUp).iterate(this.deviceId, from, bound)) {
      // Returning or breaking out of the loop ends the iterator (and frees the statement).
      if (row.metric === metric) return toStored(row);
      if (++n >= SHORT_WALK) break;
    }
    if (n < SHORT_WALK) return undefined;
    const far = (dir === 'down' ? this.stmt.farDown : this.stmt.farUp).get(metric, this.deviceId, from, bound, MAX_METRIC_WALK);
    if (far?.s === null || far?.s === undefined) {
      if ((far?.n ?? 0) >= MAX_METRIC_WALK) throw new WalkTooLong();
      return undefined;
    }
    const row = this.stmt.getOne.get(this.deviceId, far.s);
    return row ? toStored(row) : undefined;
  }
}

