/**
 * Voids and corrections (store/types.ts CorrectionRecords) in the shared SQLite file: the regulator's
 * voids of a device's readings (`reading_voids`, whatever backend holds the readings: they are
 * flagged and excluded through this table) and the correction settlements of settled windows
 * (`oracle_corrections`, append-only, numbered per window). Tables: store/sqlite/schema.ts (5).
 */
import { errors } from '../../domain/errors.ts';
import type { Db } from './db.ts';
import { migrate } from './schema.ts';
import type { RegisterCursor } from '../../oracle/methodology.ts';
import type { ChainAmounts, Correction, CorrectionRecords, CorrectionState, NewCorrection, ReadingVoid } from '../types.ts';
import { checkNextCorrection, correctionValues, listCorrectionsSql, NEW_CORRECTION_COLS } from '../corrections.ts';
import { toCorrection, toVoid, VOID_COLS, type CorrectionRow, type VoidRow } from '../rows.ts';

export class SqliteCorrections implements CorrectionRecords {
  private readonly db: Db;
  private readonly clock: () => number;

  constructor(db: Db, clock: () => number = Date.now) {
    this.db = db;
    this.clock = clock;
    migrate(db);
  }

  addVoid(v: Omit<ReadingVoid, 'id'>): ReadingVoid {
    const info = this.db
      .prepare(
        `INSERT INTO reading_voids (facility_id, device_id, from_ms, to_ms, reason, voided_by, voided_at, chain_void_id, settled_before) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(v.facilityId, v.deviceId, v.from, v.to, v.reason, v.by, v.at, v.chainVoidId ?? null, v.settledBefore ?? null);
    return { ...v, id: Number(info.lastInsertRowid) };
  }

  voidsOf(deviceIds: string[]): ReadingVoid[] {
    if (deviceIds.length === 0) return [];
    const q = this.db.prepare(`SELECT ${VOID_COLS} FROM reading_voids WHERE device_id = ? ORDER BY id`);
    return deviceIds.flatMap((d) => (q.all(d) as VoidRow[]).map(toVoid)).sort((a, b) => a.id - b.id);
  }

  voidsOfFacility(facilityId: string): ReadingVoid[] {
    return (this.db.prepare(`SELECT ${VOID_COLS} FROM reading_voids WHERE facility_id = ? ORDER BY id`).all(facilityId) as VoidRow[]).map(toVoid);
  }

  voidedFacilities(): { facilityId: string; voids: number }[] {
    return this.db.prepare('SELECT facility_id AS facilityId, COUNT(*) AS voids FROM reading_voids GROUP BY facility_id ORDER BY facility_id').all() as { facilityId: string; voids: number }[];
  }

  latest(settlementId: string): Correction | undefined {
    const r = this.db.prepare('SELECT * FROM oracle_corrections WHERE settlement_id = ? ORDER BY seq DESC LIMIT 1').get(settlementId) as CorrectionRow | undefined;
    return r ? toCorrection(r) : undefined;
  }

  getCorrection(id: string): Correction | undefined {
    const r = this.db.prepare('SELECT * FROM oracle_corrections WHERE id = ?').get(id) as CorrectionRow | undefined;
    return r ? toCorrection(r) : undefined;
  }

  correctionsOf(settlementIds: string[]): Correction[] {
    const q = this.db.prepare('SELECT * FROM oracle_corrections WHERE settlement_id = ? ORDER BY seq');
    return settlementIds.flatMap((id) => (q.all(id) as CorrectionRow[]).map(toCorrection));
  }

  listCorrections(q: { facilityId?: string; state?: CorrectionState; limit?: number } = {}): Correction[] {
    const args: (string | number)[] = [];
    const sql = listCorrectionsSql(q, (v) => {
      args.push(v);
      return '?';
    });
    return (this.db.prepare(sql).all(...args) as CorrectionRow[]).map(toCorrection);
  }

  insertCorrections(list: NewCorrection[], cursors: { deviceId: string; windowEnd: number; cursors: RegisterCursor[] }[]): void {
    const now = this.clock();
    const last = this.db.prepare('SELECT MAX(seq) FROM oracle_corrections WHERE settlement_id = ?').pluck();
    const insert = this.db.prepare(`INSERT INTO oracle_corrections (${NEW_CORRECTION_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    const moveCursor = this.db.prepare('UPDATE oracle_cursors SET cursors = ? WHERE device_id = ? AND window_end = ?');
    this.db
      .transaction(() => {
        for (const c of list) {
          const have = (last.get(c.settlementId) as number | null) ?? 0;
          checkNextCorrection(c, have);
          insert.run(...correctionValues(c, (b) => (b ? 1 : 0)), now, now);
        }
        for (const c of cursors) moveCursor.run(JSON.stringify(c.cursors), c.deviceId, c.windowEnd);
      })
      .immediate();
  }

  confirmCorrection(id: string, amounts: ChainAmounts): void {
    const info = this.db
      .prepare(
        `UPDATE oracle_corrections SET state = 'confirmed', minted_grams = ?, burned_grams = ?, deficit_grams = ?, tx_hash = COALESCE(?, tx_hash), updated_at = ?
         WHERE id = ? AND state = 'intent'`,
      )
      .run(amounts.mintedGrams.toString(), amounts.burnedGrams.toString(), amounts.deficitGrams.toString(), amounts.txHash ?? null, this.clock(), id);
    if (info.changes === 0 && !this.getCorrection(id)) throw errors.NOT_FOUND(`correction ${id}`);
  }
}
