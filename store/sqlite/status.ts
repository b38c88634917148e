/**
 * The oracle's per-facility settlement status and its finality watch list (store/types.ts
 * OracleStatus) in the shared database, so a restart keeps a facility's backoff and a standalone
 * gateway on the same file reports it (tables in store/sqlite/schema.ts):
 * - `oracle_facility_status`: a facility the chain refuses (a revert, a record that disagrees with
 *   the chain) is `blocked` with the reason; it is retried with exponential backoff (capped) while
 *   the other facilities go on settling, and cleared by its next good run.
 * - `oracle_unfinal`: settlements confirmed from a receipt that are not yet CHAIN_CONFIRMATIONS blocks
 *   deep; each run re-checks them against the chain until they are final or found lost.
 */
import type { Statement } from 'better-sqlite3';
import type { Db } from './db.ts';
import { migrate } from './schema.ts';
import { STATUS_COLS, toStatus, toUnfinal, UNFINAL_COLS, type StatusRow, type UnfinalDbRow } from '../rows.ts';
import type { Backoff, FacilitySettlementStatus, OracleStatus, UnfinalRow } from '../types.ts';

export class SqliteOracleStatus implements OracleStatus {
  private readonly stmt: Record<string, Statement<unknown[], unknown>>;

  constructor(db: Db) {
    migrate(db);
    const p = (sql: string) => db.prepare<unknown[], unknown>(sql);
    this.stmt = {
      get: p(`SELECT ${STATUS_COLS} FROM oracle_facility_status WHERE facility_id = ?`),
      list: p(`SELECT ${STATUS_COLS} FROM oracle_facility_status ORDER BY facility_id`),
      upsert: p(
        `INSERT INTO oracle_facility_status (facility_id, reason, since, attempts, retry_at, updated_at) VALUES (?, ?, ?, 1, ?, ?)
         ON CONFLICT (facility_id) DO UPDATE SET reason = excluded.reason, attempts = oracle_facility_status.attempts + 1,
           retry_at = excluded.retry_at, updated_at = excluded.updated_at`,
      ),
      setRetry: p('UPDATE oracle_facility_status SET retry_at = ? WHERE facility_id = ?'),
      clear: p('DELETE FROM oracle_facility_status WHERE facility_id = ?'),
      addUnfinal: p(
        `INSERT INTO oracle_unfinal (id, facility_id, window_start, evidence_root, block_number) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET evidence_root = excluded.evidence_root, block_number = excluded.block_number`,
      ),
      unfinal: p(`SELECT ${UNFINAL_COLS} FROM oracle_unfinal WHERE facility_id = ? ORDER BY window_start`),
      unfinalFacilities: p('SELECT DISTINCT facility_id FROM oracle_unfinal').pluck(),
      dropUnfinal: p('DELETE FROM oracle_unfinal WHERE id = ?'),
      dropUnfinalFrom: p('DELETE FROM oracle_unfinal WHERE facility_id = ? AND window_start >= ?'),
    };
  }

  /** The facility's status (`ok` when nothing is recorded). */
  get(facilityId: string): FacilitySettlementStatus {
    const r = this.stmt.get.get(facilityId) as StatusRow | undefined;
    return r ? toStatus(r) : { facilityId, settlementStatus: 'ok' };
  }

  /** Every blocked facility. */
  listBlocked(): FacilitySettlementStatus[] {
    return (this.stmt.list.all() as StatusRow[]).map(toStatus);
  }

  /** Records a failed attempt: blocked with `reason`, next attempt after an exponential, capped delay. */
  block(facilityId: string, reason: string, now: number, backoff: Backoff): FacilitySettlementStatus {
    const prev = this.stmt.get.get(facilityId) as StatusRow | undefined;
    const attempts = (prev?.attempts ?? 0) + 1;
    const delay = Math.min(backoff.maxMs, backoff.baseMs * 2 ** Math.min(30, attempts - 1));
    this.stmt.upsert.run(facilityId, reason.slice(0, 500), prev?.since ?? now, now + delay, now);
    return this.get(facilityId);
  }

  /** Makes a blocked facility due now (its record changed: a regulator corrected it). */
  retryNow(facilityId: string, now: number): void {
    this.stmt.setRetry.run(now, facilityId);
  }

  /** A facility removed from the registry: nothing of it stays. */
  forget(facilityId: string): void {
    this.stmt.clear.run(facilityId);
    this.stmt.dropUnfinalFrom.run(facilityId, Number.MIN_SAFE_INTEGER);
  }

  /** The facility settled (or has nothing to settle): not blocked. Returns whether it was. */
  clear(facilityId: string): boolean {
    return this.stmt.clear.run(facilityId).changes > 0;
  }

  // Finality watch list ----------------------------------------------------------------------

  addUnfinal(list: UnfinalRow[]): void {
    for (const u of list) this.stmt.addUnfinal.run(u.id, u.facilityId, u.windowStart, u.evidenceRoot, u.blockNumber);
  }

  unfinal(facilityId: string): UnfinalRow[] {
    return (this.stmt.unfinal.all(facilityId) as UnfinalDbRow[]).map(toUnfinal);
  }

  unfinalFacilities(): string[] {
    return this.stmt.unfinalFacilities.all() as string[];
  }

  markFinal(id: string): void {
    this.stmt.dropUnfinal.run(id);
  }

  /** The chain lost the facility's windows from `windowStart` on: nothing there is watched any more. */
  forgetFrom(facilityId: string, windowStart: number): void {
    this.stmt.dropUnfinalFrom.run(facilityId, windowStart);
  }
}
