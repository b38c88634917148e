/**
 * The oracle's records as both SQL stores keep them (store/sqlite/records.ts, store/postgres/records.ts):
 * the decisions (a window length that must not change, which intent a confirmation acts on, what a
 * rollback restores a cursor to, when a facility may be forgotten), the settlement list's filter,
 * order and limit, and the mapping of cursor rows. Each backend keeps its own statements and
 * transactions.
 */
import { errors } from '../domain/errors.ts';
import { readingKeyText } from '../domain/reading.ts';
import type { RegisterCursor } from '../oracle/methodology.ts';
import { SETTLEMENT_COLS, toSettlement, type SettlementDbRow } from './rows.ts';
import {
  isVisible,
  recordedMark,
  recordedPrev,
  settlementId,
  type CountedIn,
  type DeviceCursor,
  type RecordedDevice,
  type RecordedInputs,
  type SettlementQuery,
  type VisibilityMark,
} from './types.ts';

/** Refuses a window length other than the one the store was first settled with (on-chain contiguity is in whole windows). */
export function checkStoredWindow(windowMs: number, stored: number, store: { place: string; fresh: string }): void {
  if (stored !== windowMs) {
    throw errors.CONFIG_INVALID(
      `WINDOW_SECONDS is ${windowMs / 1000} but this ${store.place} was settled with ${stored / 1000}; windows are fixed per ${store.place} (use the original value or ${store.fresh})`,
    );
  }
}

/**
 * What confirming window `id` with `root` acts on, given the window's confirmed row and its row with
 * that root: 'already' when that root is confirmed; EVIDENCE_MISMATCH when another root is; NOT_FOUND
 * when no intent has the root; otherwise the intent to confirm.
 */
export function confirmTarget(id: string, root: string, confirmed: SettlementDbRow | undefined, intent: SettlementDbRow | undefined): SettlementDbRow | 'already' {
  if (confirmed) {
    if (confirmed.evidence_root !== root) throw errors.EVIDENCE_MISMATCH(`settlement ${id} is confirmed with root ${confirmed.evidence_root}, not ${root}`);
    return 'already';
  }
  if (!intent) throw errors.NOT_FOUND(`settlement intent ${id} with root ${root}`);
  return intent;
}

/** Where a confirmed settlement leaves a device's cursor: its recorded mark (or the one it started from). */
export const cursorMark = (d: RecordedDevice): VisibilityMark => recordedMark(d) ?? recordedPrev(d)?.mark ?? { maxSeq: -1, late: 0 };

/** Where a rollback puts one device's cursor (undefined: the cursor goes). */
export interface CursorBack {
  settlementId: string;
  windowEnd: number;
  maxSeq: number;
  late: number;
  cursors: string;
}

/**
 * What rolling back the lost settlements `lost` (oldest first) does to each device's cursor: the first
 * lost settlement that counted the device puts it back where that settlement started it (the mark its
 * predecessor left), or removes it when nothing did. Applies only to a cursor that settlement moved
 * (its windowEnd after `windowStart`): the caller checks that against the stored cursor.
 */
export function rollbackCursors(facilityId: string, lost: SettlementDbRow[]): { deviceId: string; windowStart: number; back: CursorBack | undefined }[] {
  const out: { deviceId: string; windowStart: number; back: CursorBack | undefined }[] = [];
  const seen = new Set<string>();
  for (const r of lost) {
    const inputs = JSON.parse(r.inputs) as RecordedInputs;
    for (const d of inputs.devices) {
      if (seen.has(d.deviceId)) continue;
      seen.add(d.deviceId);
      // The lost settlement's `prev` is the mark (seq and late arrivals) its predecessor left.
      const prev = recordedPrev(d);
      const back = prev && {
        settlementId: settlementId(facilityId, prev.before - (r.window_end - r.window_start)),
        windowEnd: prev.before,
        maxSeq: prev.mark.maxSeq,
        late: prev.mark.late,
        cursors: JSON.stringify(d.startCursors),
      };
      out.push({ deviceId: d.deviceId, windowStart: r.window_start, back });
    }
  }
  return out;
}

/** A facility with confirmed settlements can be suspended, not removed: FACILITY_SETTLED. */
export function checkForgettable(facilityId: string, confirmed: number): void {
  if (confirmed > 0) throw errors.FACILITY_SETTLED(`facility ${facilityId} has ${confirmed} confirmed settlement(s): it can be suspended, not removed`);
}

/**
 * The statement listing the confirmed settlements `q` selects (limit default 1000, at most 10,000);
 * `arg(v)` adds a parameter and returns its placeholder, called in the order they stand in the text.
 */
export function listSettlementsSql(q: SettlementQuery, arg: (v: string | number) => string): string {
  const where = ["state = 'confirmed'"];
  if (q.facilityId !== undefined) where.push(`facility_id = ${arg(q.facilityId)}`);
  if (q.from !== undefined) where.push(`window_start >= ${arg(q.from)}`);
  if (q.to !== undefined) where.push(`window_start < ${arg(q.to)}`);
  if (q.newestFirst && q.before) {
    const ws = q.before.windowStart;
    where.push(`(window_start < ${arg(ws)} OR (window_start = ${arg(ws)} AND facility_id < ${arg(q.before.facilityId)}))`);
  }
  const order = q.newestFirst ? 'window_start DESC, facility_id DESC' : 'window_start, facility_id';
  const limit = Math.min(10_000, Math.max(1, Math.floor(q.limit ?? 1000)));
  return `SELECT ${SETTLEMENT_COLS} FROM oracle_settlements WHERE ${where.join(' AND ')} ORDER BY ${order} LIMIT ${arg(limit)}`;
}

/** The first window a reading stored with `ts` can have been counted in (0 when the window length is unknown). */
export const firstWindowOf = (ts: number, windowMs: number): number => (windowMs > 0 ? Math.floor(ts / windowMs) * windowMs : 0);

/**
 * Of the confirmed settlements whose window ends after the reading's `ts`, oldest first, the one that
 * counted it: the first whose recorded mark of the device made it visible (each settlement consumes
 * what its predecessor did not).
 */
export function countingSettlement(rows: Iterable<SettlementDbRow>, r: { deviceId: string; seq: number; arrival?: number }): CountedIn | undefined {
  for (const row of rows) {
    const inputs = JSON.parse(row.inputs) as RecordedInputs;
    const d = inputs.devices.find((x) => x.deviceId === r.deviceId);
    const mark = d ? recordedMark(d) : undefined;
    if (!mark) continue;
    if (isVisible(r, mark)) return { settlement: toSettlement(row), late: inputs.lateKeys.includes(readingKeyText(r)) };
  }
  return undefined;
}

/** An `oracle_cursors` row (the same in both schemas). */
export interface CursorRow {
  device_id: string;
  facility_id: string;
  settlement_id: string;
  window_end: number;
  max_seq: number;
  late: number;
  cursors: string;
}

export const CURSOR_COLS = 'device_id, facility_id, settlement_id, window_end, max_seq, late, cursors';

export const toCursor = (r: CursorRow): DeviceCursor => ({
  deviceId: r.device_id,
  facilityId: r.facility_id,
  settlementId: r.settlement_id,
  windowEnd: r.window_end,
  mark: { maxSeq: r.max_seq, late: r.late },
  cursors: JSON.parse(r.cursors) as RegisterCursor[],
});
