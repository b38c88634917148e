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
import type { Metric, Reading } from '../../domain/reading.ts';
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

function toReading(row: Record<string, unknown>, seq: number, ts: number): Reading {
  const r: Reading = {
    facilityId: String(row.facility),
    deviceId: String(row.device),
    seq,
    ts,
    metric: String(row.metric) as Metric,
    value: String(row.value),
    unit: String(row.unit),
    reset: row.reset === true,
    receivedAt: Number(row.received),
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

/** Rows of `reading` queried with epoch=ms (time = ts). */
export function decodeReadings(series: Series[]): Reading[] {
  return rows(series).map((row) => toReading(row, Number(row.seq), Number(row.time)));
}

/** Rows of `reading_seq` queried with epoch=ns (time = seq). */
export function decodeBySeq(series: Series[]): Reading[] {
  return rows(series).map((row) => toReading(row, Number(row.time), Number(row.ts)));
}
