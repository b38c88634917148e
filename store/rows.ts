/**
 * What the SQL reading stores (store/sqlite/, store/postgres/) share: the readings table's row shape
 * (one column list, the same in both schemas), its mapping to a Reading and to the ingest rules'
 * StoredReading, and the rules as every store applies them: `checkReading` over the store's
 * per-device lookup, where a late reading whose neighbour of the same metric is more than
 * MAX_METRIC_WALK rows away is refused `implausible` rather than walked to.
 */
import { checkReading, type DeviceReadings, type StoredReading } from '../domain/ingest-rules.ts';
import type { Metric, Reading } from '../domain/reading.ts';
import { MAX_METRIC_WALK, type CommitOutcome, type DeviceLimits } from './types.ts';

/** A row of the readings table; `reset` is 0/1 in SQLite, a boolean in PostgreSQL. */
export interface ReadingRow {
  device_id: string;
  seq: number;
  facility_id: string;
  ts: number;
  metric: string;
  value: string;
  unit: string;
  reset: number | boolean;
  received_at: number;
  arrival: number | null;
  sig: string | null;
  prev: string | null;
  sent_value: string | null;
  sent_unit: string | null;
}

/** The readings table's columns, in ReadingRow's order. */
export const READING_COLS = 'device_id, seq, facility_id, ts, metric, value, unit, reset, received_at, arrival, sig, prev, sent_value, sent_unit';

export function rowToReading(r: ReadingRow): Reading {
  const out: Reading = {
    facilityId: r.facility_id,
    deviceId: r.device_id,
    seq: r.seq,
    ts: r.ts,
    metric: r.metric as Metric,
    value: r.value,
    unit: r.unit,
    reset: r.reset === true || r.reset === 1,
    receivedAt: r.received_at,
  };
  if (r.arrival !== null) out.arrival = r.arrival;
  if (r.sig !== null) {
    out.sig = r.sig;
    out.prev = r.prev ?? '';
    if (r.sent_value !== null) out.sentValue = r.sent_value;
    if (r.sent_unit !== null) out.sentUnit = r.sent_unit;
  }
  return out;
}

/** The part of a row the ingest rules compare (neighbours, duplicates). */
export function rowToStored(r: { seq: number; ts: number; metric: string; value: string; unit: string; reset: number | boolean; sig: string | null }): StoredReading {
  const s: StoredReading = { seq: r.seq, ts: r.ts, metric: r.metric, value: r.value, unit: r.unit, reset: r.reset === true || r.reset === 1 };
  if (r.sig !== null) s.sig = r.sig;
  return s;
}

/** Thrown by a store's lookup that would have to walk more than MAX_METRIC_WALK rows. */
export class WalkTooLong extends Error {}

/** `checkReading`, with a walk beyond MAX_METRIC_WALK refused `implausible` (the detail says why). */
export function checkStoredReading(candidate: StoredReading, view: DeviceReadings, limits: DeviceLimits | undefined, metric: string): CommitOutcome {
  try {
    return checkReading(candidate, view, limits);
  } catch (err) {
    if (!(err instanceof WalkTooLong)) throw err;
    return {
      status: 'rejected',
      reason: 'implausible',
      detail: `late seq ${candidate.seq}: its neighbour of metric ${metric} is more than ${MAX_METRIC_WALK} readings away; not checked`,
    };
  }
}
