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
import { correctionId, type ChainAmounts, type Correction, type CorrectionRecords, type CorrectionState, type NewCorrection, type ReadingVoid } from '../types.ts';
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
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (q.facilityId !== undefined) {
      where.push('facility_id = ?');
      args.push(q.facilityId);
    }
    if (q.state !== undefined) {
      where.push('state = ?');
      args.push(q.state);
    }
    args.push(Math.min(10_000, Math.max(1, Math.floor(q.limit ?? 1000))));
    const sql = `SELECT * FROM oracle_corrections ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY window_start, facility_id, seq LIMIT ?`;
    return (this.db.prepare(sql).all(...args) as CorrectionRow[]).map(toCorrection);
  }

  insertCorrections(list: NewCorrection[], cursors: { deviceId: string; windowEnd: number; cursors: RegisterCursor[] }[]): void {
    const now = this.clock();
    const last = this.db.prepare('SELECT MAX(seq) FROM oracle_corrections WHERE settlement_id = ?').pluck();
    const insert = this.db.prepare(
      `INSERT INTO oracle_corrections (id, settlement_id, seq, facility_id, window_start, window_end, state, void_ids, reason, complete, prev_net_grams,
         net_grams, delta_grams, actual_kg, evidence_root, inputs, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'intent', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    const moveCursor = this.db.prepare('UPDATE oracle_cursors SET cursors = ? WHERE device_id = ? AND window_end = ?');
    this.db
      .transaction(() => {
        for (const c of list) {
          const have = (last.get(c.settlementId) as number | null) ?? 0;
          if (c.seq !== have + 1) throw errors.CORRECTION_RACED(`settlement ${c.settlementId} has ${have} correction(s); correction ${c.seq} is not the next`);
          insert.run(
            correctionId(c.settlementId, c.seq),
            c.settlementId,
            c.seq,
            c.facilityId,
            c.windowStart,
            c.windowEnd,
            JSON.stringify(c.voidIds),
            c.reason,
            c.complete ? 1 : 0,
            c.prevNetGrams,
            c.netGrams,
            c.deltaGrams,
            c.actualKg,
            c.evidenceRoot,
            JSON.stringify(c.inputs),
            now,
            now,
          );
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
