/**
 * The oracle's status on PostgreSQL (store/types.ts OracleStatus; tables oracle_facility_status and
 * oracle_unfinal, store/postgres/schema.ts): per-facility blocked state with backoff and the finality
 * watch list, shared by every oracle process on the database. Every method is asynchronous.
 */
import type pg from 'pg';
import { STATUS_COLS, toStatus, toUnfinal, UNFINAL_COLS, type StatusRow, type UnfinalDbRow } from '../rows.ts';
import type { Backoff, FacilitySettlementStatus, OracleStatus, UnfinalRow } from '../types.ts';

export class PgOracleStatus implements OracleStatus {
  private readonly pool: pg.Pool;

  constructor(pool: pg.Pool) {
    this.pool = pool;
  }

  async get(facilityId: string): Promise<FacilitySettlementStatus> {
    const r = (await this.pool.query<StatusRow>(`SELECT ${STATUS_COLS} FROM oracle_facility_status WHERE facility_id = $1`, [facilityId])).rows[0];
    return r ? toStatus(r) : { facilityId, settlementStatus: 'ok' };
  }

  async listBlocked(): Promise<FacilitySettlementStatus[]> {
    return (await this.pool.query<StatusRow>(`SELECT ${STATUS_COLS} FROM oracle_facility_status ORDER BY facility_id`)).rows.map(toStatus);
  }

  /** Records a failed attempt (one statement: concurrent attempts each count): blocked with `reason`, next attempt after an exponential, capped delay. */
  async block(facilityId: string, reason: string, now: number, backoff: Backoff): Promise<FacilitySettlementStatus> {
    const res = await this.pool.query<StatusRow>(
      `INSERT INTO oracle_facility_status AS s (facility_id, reason, since, attempts, retry_at, updated_at)
       VALUES ($1, $2, $3, 1, $3 + LEAST($4::bigint, $5::bigint), $3)
       ON CONFLICT (facility_id) DO UPDATE SET reason = excluded.reason, attempts = s.attempts + 1,
         retry_at = $3 + LEAST($4::bigint, $5::bigint * power(2, LEAST(30, s.attempts))::bigint), updated_at = $3
       RETURNING ${STATUS_COLS}`,
      [facilityId, reason.slice(0, 500), now, backoff.maxMs, backoff.baseMs],
    );
    return toStatus(res.rows[0]);
  }

  async retryNow(facilityId: string, now: number): Promise<void> {
    await this.pool.query('UPDATE oracle_facility_status SET retry_at = $1 WHERE facility_id = $2', [now, facilityId]);
  }

  async forget(facilityId: string): Promise<void> {
    await this.pool.query('DELETE FROM oracle_facility_status WHERE facility_id = $1', [facilityId]);
    await this.pool.query('DELETE FROM oracle_unfinal WHERE facility_id = $1', [facilityId]);
  }

  async clear(facilityId: string): Promise<boolean> {
    return ((await this.pool.query('DELETE FROM oracle_facility_status WHERE facility_id = $1', [facilityId])).rowCount ?? 0) > 0;
  }

  async addUnfinal(list: UnfinalRow[]): Promise<void> {
    if (list.length === 0) return;
    await this.pool.query(
      `INSERT INTO oracle_unfinal (id, facility_id, window_start, evidence_root, block_number)
       SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bigint[])
       ON CONFLICT (id) DO UPDATE SET evidence_root = excluded.evidence_root, block_number = excluded.block_number`,
      [list.map((u) => u.id), list.map((u) => u.facilityId), list.map((u) => u.windowStart), list.map((u) => u.evidenceRoot), list.map((u) => u.blockNumber)],
    );
  }

  async unfinal(facilityId: string): Promise<UnfinalRow[]> {
    const res = await this.pool.query<UnfinalDbRow>(`SELECT ${UNFINAL_COLS} FROM oracle_unfinal WHERE facility_id = $1 ORDER BY window_start`, [facilityId]);
    return res.rows.map(toUnfinal);
  }

  async unfinalFacilities(): Promise<string[]> {
    return (await this.pool.query<{ facility_id: string }>('SELECT DISTINCT facility_id FROM oracle_unfinal')).rows.map((r) => r.facility_id);
  }

  async markFinal(id: string): Promise<void> {
    await this.pool.query('DELETE FROM oracle_unfinal WHERE id = $1', [id]);
  }

  async forgetFrom(facilityId: string, windowStart: number): Promise<void> {
    await this.pool.query('DELETE FROM oracle_unfinal WHERE facility_id = $1 AND window_start >= $2', [facilityId, windowStart]);
  }
}
