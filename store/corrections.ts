/**
 * The correction settlements as both SQL stores keep them (store/sqlite/corrections.ts,
 * store/postgres/corrections.ts): a new correction's row, the rule that corrections of a settlement are
 * numbered without a gap, and the list's filter, order and limit. Each backend keeps its own statements.
 */
import { errors } from '../domain/errors.ts';
import { CORRECTION_COLS } from './rows.ts';
import { correctionId, type CorrectionState, type NewCorrection } from './types.ts';

/** The columns a new correction is inserted with, its values from `correctionValues` then created_at, updated_at. */
export const NEW_CORRECTION_COLS =
  'id, settlement_id, seq, facility_id, window_start, window_end, state, void_ids, reason, complete, prev_net_grams, net_grams, delta_grams, actual_kg, evidence_root, inputs, created_at, updated_at';

/** A new correction's values for NEW_CORRECTION_COLS up to evidence_root and inputs (state is 'intent'; `bool` stores `complete`). */
export function correctionValues(c: NewCorrection, bool: (v: boolean) => boolean | number): unknown[] {
  return [
    correctionId(c.settlementId, c.seq),
    c.settlementId,
    c.seq,
    c.facilityId,
    c.windowStart,
    c.windowEnd,
    'intent',
    JSON.stringify(c.voidIds),
    c.reason,
    bool(c.complete),
    c.prevNetGrams,
    c.netGrams,
    c.deltaGrams,
    c.actualKg,
    c.evidenceRoot,
    JSON.stringify(c.inputs),
  ];
}

/** A settlement's corrections are numbered 1, 2, ...: `c` must be the next after the `have` recorded (CORRECTION_RACED). */
export function checkNextCorrection(c: NewCorrection, have: number): void {
  if (c.seq !== have + 1) throw errors.CORRECTION_RACED(`settlement ${c.settlementId} has ${have} correction(s); correction ${c.seq} is not the next`);
}

/**
 * The statement listing corrections (by window, facility, seq; limit default 1000, at most 10,000);
 * `arg(v)` adds a parameter and returns its placeholder, called in the order they stand in the text.
 */
export function listCorrectionsSql(q: { facilityId?: string; state?: CorrectionState; limit?: number }, arg: (v: string | number) => string): string {
  const where: string[] = [];
  if (q.facilityId !== undefined) where.push(`facility_id = ${arg(q.facilityId)}`);
  if (q.state !== undefined) where.push(`state = ${arg(q.state)}`);
  const limit = Math.min(10_000, Math.max(1, Math.floor(q.limit ?? 1000)));
  return `SELECT ${CORRECTION_COLS} FROM oracle_corrections ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY window_start, facility_id, seq LIMIT ${arg(limit)}`;
}
