/**
 * How readings are laid out in InfluxDB (see docs/INFLUXDB.md), and the row decoders.
 *
 * - `reading` (for time-range queries: window coverage, late readings of an old window, the API list):
 *   tags facility, device, metric; fields seq (int), value (string, the exact decimal text), value_f
 *   (float, for charts only, never used in arithmetic), unit (string), reset (bool), received (int, ms),
 *   and for a signed reading sig, prev (absent: ''), sent_value and sent_unit (strings, when they differ);
 *   time = ts (ms) * 10^6 + seq mod 10^6 ns, so readings of one series in the same millisecond do not
 *   overwrite each other.
 * - `reading_seq` (for everything keyed by seq: dedupe, get, the readings after a high-water mark):
 *   the same tags and fields with ts (int, ms) instead of seq; time = seq, in ns since the epoch. A
 *   (device, seq) pair is one point, so a rewrite is idempotent and a seq range is a time range.
 *   Both carry `arrival` (int) on a late arrival (stored below its device's max seq; see
 *   store/types.ts VisibilityMark), none on an in-order reading.
 * - `reading_late` (late arrivals by arrival number): tag device, field seq (int); time = arrival. A
 *   pointer: the reading itself is read from `reading_seq` (and counted only when its own `arrival`
 *   field matches, so a pointer left by an interrupted write counts nothing).
 * - `reading_hw` (the oracle's visibility marks): tag device, fields seq (int) and late (int); time =
 *   seq. Written only after every reading up to that seq and every late arrival up to `late` was
 *   acknowledged in all measurements.
 */
import { Decimal } from '../../domain/decimal.ts';
import { errors, type DomainError } from '../../domain/errors.ts';
import { isMetric, type Metric, type Reading } from '../../domain/reading.ts';
import { encodeLine } from './line.ts';
import type { Series } from './http.ts';

export const M_READING = 'reading';
export const M_BY_SEQ = 'reading_seq';
export const M_HW = 'reading_hw';
export const M_LATE = 'reading_late';

export const NS_PER_MS = 1_000_000n;

/** Nanosecond time of a reading in `reading`. */
export function readingTime(ts: number, seq: number): bigint {
  return BigInt(ts) * NS_PER_MS + BigInt(seq % 1_000_000);
}

/** Nanosecond bound equivalent to the millisecond bound `ms` (ts < ms  <=>  time < msToNs(ms)). */
export function msToNs(ms: number): bigint {
  return BigInt(ms) * NS_PER_MS;
}

/** The lines of one reading (its value already canonical): two points, and a pointer for a late arrival. */
export function readingLines(r: Reading): string[] {
  const tags = { facility: r.facilityId, device: r.deviceId, metric: r.metric };
  const common: Record<string, string | boolean | bigint> = { value: r.value, unit: r.unit, reset: r.reset, received: BigInt(r.receivedAt) };
  if (r.arrival !== undefined) common.arrival = BigInt(r.arrival);
  if (r.sig !== undefined) {
    // A signed reading: its signature, the prev it signed over (absent for ''), the value and unit as sent.
    common.sig = r.sig;
    if (r.prev) common.prev = r.prev;
    if (r.sentValue !== undefined) common.sent_value = r.sentValue;
    if (r.sentUnit !== undefined) common.sent_unit = r.sentUnit;
  }
  const lines = [
    encodeLine(M_READING, tags, { seq: BigInt(r.seq), ...common, value_f: Number(r.value) }, readingTime(r.ts, r.seq)),
    encodeLine(M_BY_SEQ, tags, { ts: BigInt(r.ts), ...common }, BigInt(r.seq)),
  ];
  if (r.arrival !== undefined) lines.push(encodeLine(M_LATE, { device: r.deviceId }, { seq: BigInt(r.seq) }, BigInt(r.arrival)));
  return lines;
}

export function hwLine(deviceId: string, seq: number, late: number): string {
  return encodeLine(M_HW, { device: deviceId }, { seq: BigInt(seq), late: BigInt(late) }, BigInt(seq));
}

/** Explicit column lists (tags selected by name come back as columns). */
export const READING_COLUMNS = '"seq","value","unit","reset","received","arrival","sig","prev","sent_value","sent_unit","facility","device","metric"';
export const BY_SEQ_COLUMNS = '"ts","value","unit","reset","received","arrival","sig","prev","sent_value","sent_unit","facility","device","metric"';

function rows(series: Series[]): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const s of series) {
    for (const v of s.values) {
      const row: Record<string, unknown> = { ...(s.tags ?? {}) };
      s.columns.forEach((c, i) => {
        row[c] = v[i];
      });
      out.push(row);
    }
  }
  return out;
}

/**
 * A point that does not decode as a reading (a field missing, so InfluxDB returns null; a value that is
 * no decimal; an unknown metric): written by another program, or by two writers that were not
 * coordinated. The store cannot vouch for it, so the read fails as an outage of the store
 * (STORE_UNAVAILABLE: the ingest refuses the batch, the oracle retries) instead of returning it.
 */
export function undecodable(measurement: string, device: unknown, seq: unknown, why: string): DomainError {
  const d = typeof device === 'string' ? JSON.stringify(device).slice(0, 80) : 'unknown';
  const at = typeof seq === 'number' || typeof seq === 'string' ? String(seq).slice(0, 24) : 'unknown';
  return errors.STORE_UNAVAILABLE(`a point of device ${d} seq ${at} in ${measurement} does not decode (${why}); was it written by another program, or by writers not coordinated?`);
}

/** Why a row cannot be a reading, or undefined when it can. */
function defect(row: Record<string, unknown>, seq: unknown, ts: unknown): string | undefined {
  if (typeof row.facility !== 'string' || row.facility === '') return 'no facility tag';
  if (typeof row.device !== 'string' || row.device === '') return 'no device tag';
  if (typeof row.metric !== 'string' || !isMetric(row.metric)) return `metric ${JSON.stringify(row.metric ?? null).slice(0, 40)} is not a known metric`;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) return `seq ${JSON.stringify(seq ?? null).slice(0, 24)} is not a non-negative integer`;
  if (typeof ts !== 'number' || !Number.isSafeInteger(ts)) return `ts ${JSON.stringify(ts ?? null).slice(0, 24)} is not an integer`;
  if (typeof row.value !== 'string') return `value is ${JSON.stringify(row.value ?? null).slice(0, 24)}, not decimal text`;
  try {
    Decimal.parse(row.value);
  } catch {
    return `value ${JSON.stringify(row.value).slice(0, 40)} is not a decimal number`;
  }
  if (typeof row.unit !== 'string') return `unit is ${JSON.stringify(row.unit ?? null).slice(0, 24)}`;
  if (row.reset != null && typeof row.reset !== 'boolean') return 'reset is not a boolean';
  if (typeof row.received !== 'number' || !Number.isSafeInteger(row.received)) return `received ${JSON.stringify(row.received ?? null).slice(0, 24)} is not an integer`;
  if (row.arrival != null && (typeof row.arrival !== 'number' || !Number.isSafeInteger(row.arrival) || row.arrival < 1)) return 'arrival is not a positive integer';
  for (const f of ['sig', 'prev', 'sent_value', 'sent_unit']) if (row[f] != null && typeof row[f] !== 'string') return `${f} is not a string`;
  return undefined;
}

function toReading(measurement: string, row: Record<string, unknown>, seq: unknown, ts: unknown): Reading {
  const why = defect(row, seq, ts);
  if (why !== undefined) throw undecodable(measurement, row.device, seq, why);
  const r: Reading = {
    facilityId: row.facility as string,
    deviceId: row.device as string,
    seq: seq as number,
    ts: ts as number,
    metric: row.metric as Metric,
    value: row.value as string,
    unit: row.unit as string,
    reset: row.reset === true,
    receivedAt: row.received as number,
  };
  if (typeof row.arrival === 'number') r.arrival = row.arrival;
  if (typeof row.sig === 'string') {
    r.sig = row.sig;
    r.prev = typeof row.prev === 'string' ? row.prev : '';
    if (typeof row.sent_value === 'string') r.sentValue = row.sent_value;
    if (typeof row.sent_unit === 'string') r.sentUnit = row.sent_unit;
  }
  return r;
}

/**
 * An integer field of a bookkeeping point (reading_hw, reading_late) that must be there; a missing or
 * non-integer one fails like an undecodable reading.
 */
export function intField(measurement: string, device: unknown, at: unknown, name: string, v: unknown): number {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  throw undecodable(measurement, device, at, `${name} is ${JSON.stringify(v ?? null).slice(0, 24)}, not a non-negative integer`);
}

/** Rows of `reading` queried with epoch=ms (time = ts); a row that is no reading throws STORE_UNAVAILABLE. */
export function decodeReadings(series: Series[]): Reading[] {
  return rows(series).map((row) => toReading(M_READING, row, row.seq, row.time));
}

/** Rows of `reading_seq` queried with epoch=ns (time = seq); a row that is no reading throws STORE_UNAVAILABLE. */
export function decodeBySeq(series: Series[]): Reading[] {
  return rows(series).map((row) => toReading(M_BY_SEQ, row, row.time, row.ts));
}
