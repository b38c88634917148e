/**
 * The oracle's records (store/types.ts OracleRecords) in the shared SQLite file: settlement intents
 * and confirmed settlements (with every input needed to recompute them), the per-device cursors,
 * late-reading flags, the window length of this data dir and a run lease. Its read side
 * (SettlementReader) serves the gateway without the oracle. Tables: store/sqlite/schema.ts.
 *
 * A settlement row is keyed (id, evidenceRoot): several intents may exist for one window (a retry
 * with more readings visible, a second oracle), at most one is `confirmed` (unique partial index) —
 * the one whose root the chain recorded; the others become `discarded`. Confirming a row moves its
 * devices' cursors forward in the same transaction, so cursors always match the chain.
 */
import type { Statement } from 'better-sqlite3';
import { parseReadingKey, readingKeyText } from '../../domain/reading.ts';
import type { Db } from './db.ts';
import { migrate } from './schema.ts';
import type { ChainAmounts, ConfirmOutcome, CountedIn, DeviceCursor, NewIntent, OracleRecords, RecordedInputs, Settlement, SettlementQuery, SettlementRow } from '../types.ts';
import { SETTLEMENT_COLS, toSettlement, toSettlementRow, type SettlementDbRow } from '../rows.ts';
import { checkForgettable, checkStoredWindow, confirmTarget, countingSettlement, CURSOR_COLS, rollbackCursors, cursorMark, firstWindowOf, listSettlementsSql, toCursor, type CursorRow } from '../records.ts';

const COLS = SETTLEMENT_COLS;

export class SqliteOracleRecords implements OracleRecords {
  private readonly db: Db;
  private readonly clock: () => number;
  private readonly stmt: Record<string, Statement<unknown[], unknown>>;
  private readonly confirmTx: (id: string, root: string, amounts: ChainAmounts) => ConfirmOutcome;

  constructor(db: Db, clock: () => number = Date.now) {
    this.db = db;
    this.clock = clock;
    migrate(db);
    const p = (sql: string) => db.prepare<unknown[], unknown>(sql);
    this.stmt = {
      meta: p('SELECT value FROM oracle_meta WHERE key = ?').pluck(),
      setMeta: p('INSERT INTO oracle_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING'),
      insert: p(
        `INSERT INTO oracle_settlements (${COLS}) VALUES (?, ?, ?, ?, ?, 'intent', ?, ?, ?, NULL, NULL, NULL, NULL, ?, ?, ?)
         ON CONFLICT (id, evidence_root) DO NOTHING`,
      ),
      one: p(`SELECT ${COLS} FROM oracle_settlements WHERE id = ? AND evidence_root = ?`),
      confirmedOf: p(`SELECT ${COLS} FROM oracle_settlements WHERE id = ? AND state = 'confirmed'`),
      markSent: p(`UPDATE oracle_settlements SET state = 'sent', tx_hash = COALESCE(?, tx_hash), updated_at = ? WHERE id = ? AND evidence_root = ? AND state = 'intent'`),
      confirm: p(
        `UPDATE oracle_settlements SET state = 'confirmed', minted_grams = ?, burned_grams = ?, deficit_grams = ?, tx_hash = COALESCE(?, tx_hash), updated_at = ?
         WHERE id = ? AND evidence_root = ?`,
      ),
      discardOthers: p(`UPDATE oracle_settlements SET state = 'discarded', updated_at = ? WHERE id = ? AND evidence_root <> ? AND state <> 'discarded'`),
      lastConfirmed: p(`SELECT MAX(window_start) FROM oracle_settlements WHERE facility_id = ? AND state = 'confirmed'`).pluck(),
      firstOpen: p(`SELECT MIN(window_start) FROM oracle_settlements WHERE facility_id = ? AND state IN ('intent', 'sent')`).pluck(),
      cursor: p(`SELECT ${CURSOR_COLS} FROM oracle_cursors WHERE device_id = ?`),
      upsertCursor: p(
        `INSERT INTO oracle_cursors (device_id, facility_id, settlement_id, window_end, max_seq, late, cursors) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (device_id) DO UPDATE SET facility_id = excluded.facility_id, settlement_id = excluded.settlement_id,
           window_end = excluded.window_end, max_seq = excluded.max_seq, late = excluded.late, cursors = excluded.cursors
         WHERE oracle_cursors.window_end < excluded.window_end`,
      ),
      insertLate: p('INSERT INTO oracle_late (device_id, seq, facility_id, settlement_id) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING'),
      isLate: p('SELECT 1 FROM oracle_late WHERE device_id = ? AND seq = ?').pluck(),
      acquire: p(
        `INSERT INTO oracle_lease (name, holder, expires_at) VALUES (?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
         WHERE oracle_lease.holder = excluded.holder OR oracle_lease.expires_at <= ?`,
      ),
      release: p('DELETE FROM oracle_lease WHERE name = ? AND holder = ?'),
    };
    const tx = db.transaction((id: string, root: string, amounts: ChainAmounts) => this.confirmInTx(id, root, amounts));
    this.confirmTx = (id, root, amounts) => tx.immediate(id, root, amounts);
  }

  /**
   * Records the window length of this data dir on first use; afterwards refuses a different one
   * (on-chain contiguity is in whole windows: changing W would misalign every facility).
   */
  checkWindow(windowMs: number): void {
    this.stmt.setMeta.run('window_ms', String(windowMs));
    checkStoredWindow(windowMs, Number(this.stmt.meta.get('window_ms')), { place: 'data dir', fresh: 'a new DATA_DIR' });
  }

  // Writes -----------------------------------------------------------------------------------

  /** Inserts an intent (idempotent: the same id and root again is a no-op). Returns whether it was new. */
  insertIntent(i: NewIntent): boolean {
    const now = this.clock();
    const info = this.stmt.insert.run(
      i.id,
      i.evidenceRoot,
      i.facilityId,
      i.windowStart,
      i.windowEnd,
      i.complete ? 1 : 0,
      i.netGrams.toString(),
      i.actualKg,
      JSON.stringify(i.inputs),
      now,
      now,
    );
    return info.changes === 1;
  }

  /** Inserts many intents in one transaction (one fsync), before any of them is sent. */
  insertIntents(list: NewIntent[]): void {
    this.insertMany(list);
  }

  private readonly insertMany = (list: NewIntent[]) => {
    this.db.transaction(() => {
      for (const i of list) this.insertIntent(i);
    }).immediate();
  };

  /** Confirms many (id, root) pairs in one transaction; see confirm(). */
  confirmMany(list: { id: string; root: string; amounts: ChainAmounts }[]): ConfirmOutcome[] {
    return this.db.transaction(() => list.map((c) => this.confirmInTx(c.id, c.root, c.amounts))).immediate();
  }

  /** The intent was sent in `txHash` (it may or may not be the one the chain kept). */
  markSent(id: string, root: string, txHash: string | null): void {
    this.stmt.markSent.run(txHash, this.clock(), id, root);
  }

  /**
   * The chain settled window `id` with `root`: confirm that row, discard the others of the window, move
   * its devices' cursors forward and record its late readings, in one transaction. Idempotent.
   * Throws when the row is unknown or another root is already confirmed (the caller blocks the facility).
   */
  confirm(id: string, root: string, amounts: ChainAmounts): ConfirmOutcome {
    return this.confirmTx(id, root, amounts);
  }

  private confirmInTx(id: string, root: string, amounts: ChainAmounts): ConfirmOutcome {
    const r = confirmTarget(id, root, this.stmt.confirmedOf.get(id) as SettlementDbRow | undefined, this.stmt.one.get(id, root) as SettlementDbRow | undefined);
    if (r === 'already') return 'already';
    const now = this.clock();
    this.stmt.discardOthers.run(now, id, root);
    this.stmt.confirm.run(amounts.mintedGrams.toString(), amounts.burnedGrams.toString(), amounts.deficitGrams.toString(), amounts.txHash ?? null, now, id, root);
    const inputs = JSON.parse(r.inputs) as RecordedInputs;
    for (const d of inputs.devices) {
      const mark = cursorMark(d);
      this.stmt.upsertCursor.run(d.deviceId, r.facility_id, id, r.window_end, mark.maxSeq, mark.late, JSON.stringify(d.endCursors));
    }
    for (const key of inputs.lateKeys) {
      const late = parseReadingKey(key);
      this.stmt.insertLate.run(late.deviceId, late.seq, r.facility_id, id);
    }
    return 'confirmed';
  }

  // Reads for the oracle ---------------------------------------------------------------------

  lastConfirmedWindow(facilityId: string): number | undefined {
    const v = this.stmt.lastConfirmed.get(facilityId) as number | null;
    return v ?? undefined;
  }

  firstOpenWindow(facilityId: string): number | undefined {
    const v = this.stmt.firstOpen.get(facilityId) as number | null;
    return v ?? undefined;
  }

  row(id: string, root: string): SettlementRow | undefined {
    const r = this.stmt.one.get(id, root) as SettlementDbRow | undefined;
    return r ? toSettlementRow(r) : undefined;
  }

  cursor(deviceId: string): DeviceCursor | undefined {
    const r = this.stmt.cursor.get(deviceId) as CursorRow | undefined;
    return r ? toCursor(r) : undefined;
  }

  // Read API for the gateway -----------------------------------------------------------------

  listSettlements(q: SettlementQuery = {}): Settlement[] {
    const args: (string | number)[] = [];
    const sql = listSettlementsSql(q, (v) => {
      args.push(v);
      return '?';
    });
    return (this.db.prepare(sql).all(...args) as SettlementDbRow[]).map(toSettlement);
  }

  /** The confirmed settlement `${facilityId}-${windowStartMs}`, or undefined. */
  getSettlement(id: string): Settlement | undefined {
    const r = this.stmt.confirmedOf.get(id) as SettlementDbRow | undefined;
    return r ? toSettlement(r) : undefined;
  }

  /**
   * The confirmed settlement of `facilityId` that counted the reading (deviceId, seq) stored with
   * `ts` (and `arrival` when it arrived out of order), or undefined while none has. A late reading is
   * found through the late index; any other through the settlements whose window ends after `ts`,
   * oldest first (on the facility's window index): the first whose recorded mark of the device made
   * the reading visible consumed it (each settlement consumes what its predecessor did not).
   * At most `scan` settlements are read.
   */
  settlementOfReading(facilityId: string, r: { deviceId: string; seq: number; ts: number; arrival?: number }, scan = 500): CountedIn | undefined {
    const lateIn = this.db.prepare('SELECT settlement_id FROM oracle_late WHERE device_id = ? AND seq = ? AND facility_id = ?').pluck().get(r.deviceId, r.seq, facilityId) as
      | string
      | undefined;
    if (lateIn !== undefined) {
      const s = this.getSettlement(lateIn);
      if (s) return { settlement: s, late: true };
    }
    const from = firstWindowOf(r.ts, Number(this.stmt.meta.get('window_ms') ?? 0));
    const rows = this.db
      .prepare(`SELECT ${COLS} FROM oracle_settlements WHERE facility_id = ? AND window_start >= ? AND state = 'confirmed' AND window_end > ? ORDER BY window_start LIMIT ?`)
      .iterate(facilityId, from, r.ts, scan) as IterableIterator<SettlementDbRow>;
    return countingSettlement(rows, r);
  }

  isLate(deviceId: string, seq: number): boolean {
    return this.stmt.isLate.get(deviceId, seq) !== undefined;
  }

  /** Keys `${deviceId}:${seq}` among `keys` that a confirmed settlement of the facility flagged late. */
  lateReadings(facilityId: string, keys: { deviceId: string; seq: number }[]): Set<string> {
    const out = new Set<string>();
    const check = this.db.prepare('SELECT 1 FROM oracle_late WHERE device_id = ? AND seq = ? AND facility_id = ?').pluck();
    for (const k of keys) if (check.get(k.deviceId, k.seq, facilityId) !== undefined) out.add(readingKeyText(k));
    return out;
  }

  /**
   * The chain lost the facility's settlements from `windowStart` on (a reorganisation, a restored
   * chain state): those confirmed rows become intents again (the chain may still settle one of them
   * by root, or the oracle settles the window anew), their late flags go, and every device cursor
   * they moved goes back to where the first lost settlement started it. One transaction. Returns
   * the ids rolled back, oldest first.
   */
  rollbackFrom(facilityId: string, windowStart: number): string[] {
    return this.db
      .transaction(() => {
        const lost = this.db
          .prepare(`SELECT ${COLS} FROM oracle_settlements WHERE facility_id = ? AND window_start >= ? AND state = 'confirmed' ORDER BY window_start`)
          .all(facilityId, windowStart) as SettlementDbRow[];
        for (const { deviceId, windowStart: from, back } of rollbackCursors(facilityId, lost)) {
          const c = this.cursor(deviceId);
          if (!c || c.windowEnd <= from) continue;
          if (!back) {
            this.db.prepare('DELETE FROM oracle_cursors WHERE device_id = ?').run(deviceId);
          } else {
            this.db
              .prepare('UPDATE oracle_cursors SET settlement_id = ?, window_end = ?, max_seq = ?, late = ?, cursors = ? WHERE device_id = ?')
              .run(back.settlementId, back.windowEnd, back.maxSeq, back.late, back.cursors, deviceId);
          }
        }
        const now = this.clock();
        for (const r of lost) {
          this.db.prepare('DELETE FROM oracle_late WHERE settlement_id = ?').run(r.id);
          this.db
            .prepare(`UPDATE oracle_settlements SET state = 'intent', minted_grams = NULL, burned_grams = NULL, deficit_grams = NULL, updated_at = ? WHERE id = ? AND evidence_root = ?`)
            .run(now, r.id, r.evidence_root);
        }
        return lost.map((r) => r.id);
      })
      .immediate();
  }

  /**
   * A facility removed from the registry before it ever settled: its intents and its devices'
   * cursors go (so an id registered again starts clean). Refuses when a settlement is confirmed.
   */
  forgetFacility(facilityId: string, deviceIds: string[]): void {
    this.db
      .transaction(() => {
        const confirmed = this.db.prepare(`SELECT COUNT(*) FROM oracle_settlements WHERE facility_id = ? AND state = 'confirmed'`).pluck().get(facilityId) as number;
        checkForgettable(facilityId, confirmed);
        this.db.prepare('DELETE FROM oracle_settlements WHERE facility_id = ?').run(facilityId);
        this.db.prepare('DELETE FROM oracle_late WHERE facility_id = ?').run(facilityId);
        const del = this.db.prepare('DELETE FROM oracle_cursors WHERE device_id = ?');
        for (const d of deviceIds) del.run(d);
      })
      .immediate();
  }

  // Lease ------------------------------------------------------------------------------------

  /** Takes or renews the named lease until `now + ttlMs`; false when another holder has it. */
  acquireLease(name: string, holder: string, now: number, ttlMs: number): boolean {
    return this.stmt.acquire.run(name, holder, now + ttlMs, now).changes === 1;
  }

  releaseLease(name: string, holder: string): void {
    this.stmt.release.run(name, holder);
  }
}
