/**
 * Voids and corrections on PostgreSQL (store/types.ts CorrectionRecords; tables in
 * store/postgres/schema.ts migration 4), shared by every gateway and oracle process on the database:
 * the same rows and rules as store/sqlite/corrections.ts, every method asynchronous. A void posted
 * through one gateway is seen by the oracle on any other machine at its next run.
 *
 * Two processes correcting the same settlement at once: the unique (settlement_id, seq) lets one
 * commit its correction; the other's insert fails and its whole transaction (corrections and cursor
 * moves) rolls back with CORRECTION_RACED, as the SQLite store refuses a seq that is not the next.
 */
import type pg from 'pg';
import { errors } from '../../domain/errors.ts';
import type { RegisterCursor } from '../../oracle/methodology.ts';
import type { ChainAmounts, Correction, CorrectionRecords, CorrectionState, NewCorrection, ReadingVoid } from '../types.ts';
import { inTransaction } from './pool.ts';
import { checkNextCorrection, correctionValues, listCorrectionsSql, NEW_CORRECTION_COLS } from '../corrections.ts';
import { CORRECTION_COLS, toCorrection, toVoid, VOID_COLS, type CorrectionRow, type VoidRow } from '../rows.ts';

/** PostgreSQL's unique_violation. */
const UNIQUE_VIOLATION = '23505';

export class PgCorrections implements CorrectionRecords {
  private readonly pool: pg.Pool;
  private readonly clock: () => number;

  /** The schema is the caller's (store/postgres/stores.ts migrates before it builds this). */
  constructor(pool: pg.Pool, clock: () => number = Date.now) {
    this.pool = pool;
    this.clock = clock;
  }

  async addVoid(v: Omit<ReadingVoid, 'id'>): Promise<ReadingVoid> {
    const res = await this.pool.query<{ id: number }>(
      `INSERT INTO reading_voids (facility_id, device_id, from_ms, to_ms, reason, voided_by, voided_at, chain_void_id, settled_before)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id`,
      [v.facilityId, v.deviceId, v.from, v.to, v.reason, v.by, v.at, v.chainVoidId ?? null, v.settledBefore ?? null],
    );
    return { ...v, id: res.rows[0].id };
  }

  async voidsOf(deviceIds: string[]): Promise<ReadingVoid[]> {
    if (deviceIds.length === 0) return [];
    const res = await this.pool.query<VoidRow>(`SELECT ${VOID_COLS} FROM reading_voids WHERE device_id = ANY($1::text[]) ORDER BY id`, [deviceIds]);
    return res.rows.map(toVoid);
  }

  async voidsOfFacility(facilityId: string): Promise<ReadingVoid[]> {
    const res = await this.pool.query<VoidRow>(`SELECT ${VOID_COLS} FROM reading_voids WHERE facility_id = $1 ORDER BY id`, [facilityId]);
    return res.rows.map(toVoid);
  }

  async voidedFacilities(): Promise<{ facilityId: string; voids: number }[]> {
    const res = await this.pool.query<{ facilityId: string; voids: number }>(
      'SELECT facility_id AS "facilityId", count(*) AS voids FROM reading_voids GROUP BY facility_id ORDER BY facility_id',
    );
    return res.rows;
  }

  async latest(settlementId: string): Promise<Correction | undefined> {
    const res = await this.pool.query<CorrectionRow>(`SELECT ${CORRECTION_COLS} FROM oracle_corrections WHERE settlement_id = $1 ORDER BY seq DESC LIMIT 1`, [settlementId]);
    return res.rows[0] ? toCorrection(res.rows[0]) : undefined;
  }

  async getCorrection(id: string): Promise<Correction | undefined> {
    const res = await this.pool.query<CorrectionRow>(`SELECT ${CORRECTION_COLS} FROM oracle_corrections WHERE id = $1`, [id]);
    return res.rows[0] ? toCorrection(res.rows[0]) : undefined;
  }

  async correctionsOf(settlementIds: string[]): Promise<Correction[]> {
    if (settlementIds.length === 0) return [];
    const res = await this.pool.query<CorrectionRow>(
      `SELECT ${CORRECTION_COLS} FROM oracle_corrections WHERE settlement_id = ANY($1::text[]) ORDER BY array_position($1::text[], settlement_id::text), seq`,
      [settlementIds],
    );
    return res.rows.map(toCorrection);
  }

  async listCorrections(q: { facilityId?: string; state?: CorrectionState; limit?: number } = {}): Promise<Correction[]> {
    const args: (string | number)[] = [];
    const sql = listCorrectionsSql(q, (v) => {
      args.push(v);
      return `$${args.length}`;
    });
    return (await this.pool.query<CorrectionRow>(sql, args)).rows.map(toCorrection);
  }

  async insertCorrections(list: NewCorrection[], cursors: { deviceId: string; windowEnd: number; cursors: RegisterCursor[] }[]): Promise<void> {
    if (list.length === 0 && cursors.length === 0) return;
    const now = this.clock();
    try {
      await inTransaction(this.pool, async (client) => {
        for (const c of list) {
          const have = (await client.query<{ n: number | null }>('SELECT max(seq) AS n FROM oracle_corrections WHERE settlement_id = $1', [c.settlementId])).rows[0]?.n ?? 0;
          checkNextCorrection(c, have);
          await client.query(
            `INSERT INTO oracle_corrections (${NEW_CORRECTION_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17)`,
            [...correctionValues(c, (b) => b), now],
          );
        }
        for (const c of cursors) {
          await client.query('UPDATE oracle_cursors SET cursors = $1 WHERE device_id = $2 AND window_end = $3', [JSON.stringify(c.cursors), c.deviceId, c.windowEnd]);
        }
      });
    } catch (err) {
      // Another process committed this seq between our read and our insert.
      if ((err as { code?: string }).code === UNIQUE_VIOLATION) throw errors.CORRECTION_RACED(`another process recorded one of these corrections first (${(err as Error).message})`);
      throw err;
    }
  }

  async confirmCorrection(id: string, amounts: ChainAmounts): Promise<void> {
    const res = await this.pool.query(
      `UPDATE oracle_corrections SET state = 'confirmed', minted_grams = $1, burned_grams = $2, deficit_grams = $3, tx_hash = COALESCE($4, tx_hash), updated_at = $5
       WHERE id = $6 AND state = 'intent'`,
      [amounts.mintedGrams.toString(), amounts.burnedGrams.toString(), amounts.deficitGrams.toString(), amounts.txHash ?? null, this.clock(), id],
    );
    if (res.rowCount === 0 && !(await this.getCorrection(id))) throw errors.NOT_FOUND(`correction ${id}`);
  }
}
