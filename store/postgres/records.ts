/**
 * The oracle's records on PostgreSQL (store/types.ts OracleRecords; tables in store/postgres/schema.ts),
 * shared by every oracle and gateway process on the database: the same rows and rules as
 * store/sqlite/records.ts, every method asynchronous.
 *
 * Races between oracle processes are decided by the database: intents are keyed (id, evidence_root)
 * and inserted with ON CONFLICT DO NOTHING; confirm() locks the window's rows (SELECT ... FOR UPDATE)
 * before it checks for a confirmed root, and the unique partial index allows one confirmed row per
 * window whatever happens; cursors only move forward (the upsert's WHERE). The lease is one row whose
 * holder changes only when it is the same holder or the lease has expired (one statement, so two
 * takers cannot both win).
 */
import pg from 'pg';
import { parseReadingKey, readingKeyText } from '../../domain/reading.ts';
import type { ChainAmounts, ConfirmOutcome, CountedIn, DeviceCursor, NewIntent, OracleRecords, RecordedInputs, Settlement, SettlementQuery, SettlementRow } from '../types.ts';
import { inTransaction } from './pool.ts';
import { SETTLEMENT_COLS, toSettlement, toSettlementRow, type SettlementDbRow } from '../rows.ts';
import { checkForgettable, checkStoredWindow, confirmTarget, countingSettlement, CURSOR_COLS, rollbackCursors, cursorMark, firstWindowOf, listSettlementsSql, toCursor, type CursorRow } from '../records.ts';

type Q = Pick<pg.PoolClient, 'query'>;

const COLS = SETTLEMENT_COLS;

export class PgOracleRecords implements OracleRecords {
  private readonly pool: pg.Pool;
  private readonly clock: () => number;
  private leaseClient: pg.Client | undefined;
  private leaseOpening: Promise<pg.Client> | undefined;

  constructor(pool: pg.Pool, clock: () => number = Date.now) {
    this.pool = pool;
    this.clock = clock;
  }

  private tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    return inTransaction(this.pool, fn);
  }

  private async meta(q: Q, key: string): Promise<string | undefined> {
    return (await q.query<{ value: string }>('SELECT value FROM oracle_meta WHERE key = $1', [key])).rows[0]?.value;
  }

  /** Records the window length on first use; afterwards refuses a different one (see store/sqlite/records.ts). */
  async checkWindow(windowMs: number): Promise<void> {
    await this.pool.query('INSERT INTO oracle_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING', ['window_ms', String(windowMs)]);
    checkStoredWindow(windowMs, Number(await this.meta(this.pool, 'window_ms')), { place: 'database', fresh: 'a new database' });
  }

  // Writes -----------------------------------------------------------------------------------

  private async insertOne(q: Q, i: NewIntent): Promise<boolean> {
    const now = this.clock();
    const res = await q.query(
      `INSERT INTO oracle_settlements (${COLS}) VALUES ($1, $2, $3, $4, $5, 'intent', $6, $7, $8, NULL, NULL, NULL, NULL, $9, $10, $10)
       ON CONFLICT (id, evidence_root) DO NOTHING`,
      [i.id, i.evidenceRoot, i.facilityId, i.windowStart, i.windowEnd, i.complete, i.netGrams.toString(), i.actualKg, JSON.stringify(i.inputs), now],
    );
    return res.rowCount === 1;
  }

  insertIntent(i: NewIntent): Promise<boolean> {
    return this.insertOne(this.pool, i);
  }

  /** Many intents in one transaction (one commit), before any of them is sent. */
  async insertIntents(list: NewIntent[]): Promise<void> {
    if (list.length === 0) return;
    await this.tx(async (c) => {
      for (const i of list) await this.insertOne(c, i);
    });
  }

  async markSent(id: string, root: string, txHash: string | null): Promise<void> {
    await this.pool.query(
      `UPDATE oracle_settlements SET state = 'sent', tx_hash = COALESCE($1, tx_hash), updated_at = $2 WHERE id = $3 AND evidence_root = $4 AND state = 'intent'`,
      [txHash, this.clock(), id, root],
    );
  }

  confirm(id: string, root: string, amounts: ChainAmounts): Promise<ConfirmOutcome> {
    return this.tx((c) => this.confirmInTx(c, id, root, amounts));
  }

  async confirmMany(list: { id: string; root: string; amounts: ChainAmounts }[]): Promise<ConfirmOutcome[]> {
    if (list.length === 0) return [];
    return this.tx(async (c) => {
      const out: ConfirmOutcome[] = [];
      for (const x of list) out.push(await this.confirmInTx(c, x.id, x.root, x.amounts));
      return out;
    });
  }

  private async confirmInTx(c: Q, id: string, root: string, amounts: ChainAmounts): Promise<ConfirmOutcome> {
    // The window's rows, locked: a second oracle confirming the same window waits here, then sees ours.
    const rows = (await c.query<SettlementDbRow>(`SELECT ${COLS} FROM oracle_settlements WHERE id = $1 ORDER BY evidence_root FOR UPDATE`, [id])).rows;
    const r = confirmTarget(
      id,
      root,
      rows.find((x) => x.state === 'confirmed'),
      rows.find((x) => x.evidence_root === root),
    );
    if (r === 'already') return 'already';
    const now = this.clock();
    await c.query(`UPDATE oracle_settlements SET state = 'discarded', updated_at = $1 WHERE id = $2 AND evidence_root <> $3 AND state <> 'discarded'`, [now, id, root]);
    await c.query(
      `UPDATE oracle_settlements SET state = 'confirmed', minted_grams = $1, burned_grams = $2, deficit_grams = $3, tx_hash = COALESCE($4, tx_hash), updated_at = $5
       WHERE id = $6 AND evidence_root = $7`,
      [amounts.mintedGrams.toString(), amounts.burnedGrams.toString(), amounts.deficitGrams.toString(), amounts.txHash ?? null, now, id, root],
    );
    const inputs = JSON.parse(r.inputs) as RecordedInputs;
    const devices = [...inputs.devices].sort((a, b) => (a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : 0));
    for (const d of devices) {
      const mark = cursorMark(d);
      await c.query(
        `INSERT INTO oracle_cursors (device_id, facility_id, settlement_id, window_end, max_seq, late, cursors) VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (device_id) DO UPDATE SET facility_id = excluded.facility_id, settlement_id = excluded.settlement_id,
           window_end = excluded.window_end, max_seq = excluded.max_seq, late = excluded.late, cursors = excluded.cursors
         WHERE oracle_cursors.window_end < excluded.window_end`,
        [d.deviceId, r.facility_id, id, r.window_end, mark.maxSeq, mark.late, JSON.stringify(d.endCursors)],
      );
    }
    if (inputs.lateKeys.length > 0) {
      const late = inputs.lateKeys.map(parseReadingKey);
      await c.query(
        `INSERT INTO oracle_late (device_id, seq, facility_id, settlement_id)
         SELECT d, s, $3, $4 FROM unnest($1::text[], $2::bigint[]) AS v(d, s) ON CONFLICT DO NOTHING`,
        [late.map((l) => l.deviceId), late.map((l) => l.seq), r.facility_id, id],
      );
    }
    return 'confirmed';
  }

  // Reads for the oracle ---------------------------------------------------------------------

  async lastConfirmedWindow(facilityId: string): Promise<number | undefined> {
    const r = await this.pool.query<{ v: number | null }>(`SELECT MAX(window_start) AS v FROM oracle_settlements WHERE facility_id = $1 AND state = 'confirmed'`, [facilityId]);
    return r.rows[0]?.v ?? undefined;
  }

  async firstOpenWindow(facilityId: string): Promise<number | undefined> {
    const r = await this.pool.query<{ v: number | null }>(`SELECT MIN(window_start) AS v FROM oracle_settlements WHERE facility_id = $1 AND state IN ('intent', 'sent')`, [
      facilityId,
    ]);
    return r.rows[0]?.v ?? undefined;
  }

  async row(id: string, root: string): Promise<SettlementRow | undefined> {
    const r = (await this.pool.query<SettlementDbRow>(`SELECT ${COLS} FROM oracle_settlements WHERE id = $1 AND evidence_root = $2`, [id, root])).rows[0];
    return r ? toSettlementRow(r) : undefined;
  }

  private async cursorOf(q: Q, deviceId: string): Promise<DeviceCursor | undefined> {
    const r = (await q.query<CursorRow>(`SELECT ${CURSOR_COLS} FROM oracle_cursors WHERE device_id = $1`, [deviceId])).rows[0];
    return r ? toCursor(r) : undefined;
  }

  cursor(deviceId: string): Promise<DeviceCursor | undefined> {
    return this.cursorOf(this.pool, deviceId);
  }

  // Read API for the gateway -----------------------------------------------------------------

  async listSettlements(q: SettlementQuery = {}): Promise<Settlement[]> {
    const args: (string | number)[] = [];
    const sql = listSettlementsSql(q, (v) => {
      args.push(v);
      return `$${args.length}`;
    });
    return (await this.pool.query<SettlementDbRow>(sql, args)).rows.map(toSettlement);
  }

  async getSettlement(id: string): Promise<Settlement | undefined> {
    const r = (await this.pool.query<SettlementDbRow>(`SELECT ${COLS} FROM oracle_settlements WHERE id = $1 AND state = 'confirmed'`, [id])).rows[0];
    return r ? toSettlement(r) : undefined;
  }

  /** See store/sqlite/records.ts settlementOfReading: the late index first, then the windows ending after `ts`, oldest first. */
  async settlementOfReading(facilityId: string, r: { deviceId: string; seq: number; ts: number; arrival?: number }, scan = 500): Promise<CountedIn | undefined> {
    const lateIn = (
      await this.pool.query<{ settlement_id: string }>('SELECT settlement_id FROM oracle_late WHERE device_id = $1 AND seq = $2 AND facility_id = $3', [
        r.deviceId,
        r.seq,
        facilityId,
      ])
    ).rows[0]?.settlement_id;
    if (lateIn !== undefined) {
      const s = await this.getSettlement(lateIn);
      if (s) return { settlement: s, late: true };
    }
    const from = firstWindowOf(r.ts, Number((await this.meta(this.pool, 'window_ms')) ?? 0));
    const rows = (
      await this.pool.query<SettlementDbRow>(
        `SELECT ${COLS} FROM oracle_settlements WHERE facility_id = $1 AND window_start >= $2 AND state = 'confirmed' AND window_end > $3 ORDER BY window_start LIMIT $4`,
        [facilityId, from, r.ts, scan],
      )
    ).rows;
    return countingSettlement(rows, r);
  }

  async isLate(deviceId: string, seq: number): Promise<boolean> {
    return ((await this.pool.query('SELECT 1 FROM oracle_late WHERE device_id = $1 AND seq = $2', [deviceId, seq])).rowCount ?? 0) > 0;
  }

  async lateReadings(facilityId: string, keys: { deviceId: string; seq: number }[]): Promise<Set<string>> {
    const out = new Set<string>();
    if (keys.length === 0) return out;
    const res = await this.pool.query<{ device_id: string; seq: number }>(
      `SELECT l.device_id, l.seq FROM unnest($1::text[], $2::bigint[]) AS k(d, s)
       JOIN oracle_late l ON l.device_id = k.d AND l.seq = k.s AND l.facility_id = $3`,
      [keys.map((k) => k.deviceId), keys.map((k) => k.seq), facilityId],
    );
    for (const r of res.rows) out.add(readingKeyText({ deviceId: r.device_id, seq: r.seq }));
    return out;
  }

  /** See store/sqlite/records.ts rollbackFrom; one transaction. */
  async rollbackFrom(facilityId: string, windowStart: number): Promise<string[]> {
    return this.tx(async (c) => {
      const lost = (
        await c.query<SettlementDbRow>(`SELECT ${COLS} FROM oracle_settlements WHERE facility_id = $1 AND window_start >= $2 AND state = 'confirmed' ORDER BY window_start FOR UPDATE`, [
          facilityId,
          windowStart,
        ])
      ).rows;
      for (const { deviceId, windowStart: from, back } of rollbackCursors(facilityId, lost)) {
        const cur = await this.cursorOf(c, deviceId);
        if (!cur || cur.windowEnd <= from) continue;
        if (!back) {
          await c.query('DELETE FROM oracle_cursors WHERE device_id = $1', [deviceId]);
        } else {
          await c.query('UPDATE oracle_cursors SET settlement_id = $1, window_end = $2, max_seq = $3, late = $4, cursors = $5 WHERE device_id = $6', [
            back.settlementId,
            back.windowEnd,
            back.maxSeq,
            back.late,
            back.cursors,
            deviceId,
          ]);
        }
      }
      const now = this.clock();
      for (const r of lost) {
        await c.query('DELETE FROM oracle_late WHERE settlement_id = $1', [r.id]);
        await c.query(
          `UPDATE oracle_settlements SET state = 'intent', minted_grams = NULL, burned_grams = NULL, deficit_grams = NULL, updated_at = $1 WHERE id = $2 AND evidence_root = $3`,
          [now, r.id, r.evidence_root],
        );
      }
      return lost.map((r) => r.id);
    });
  }

  async forgetFacility(facilityId: string, deviceIds: string[]): Promise<void> {
    await this.tx(async (c) => {
      const confirmed = (await c.query<{ n: number }>(`SELECT COUNT(*)::int AS n FROM oracle_settlements WHERE facility_id = $1 AND state = 'confirmed'`, [facilityId])).rows[0].n;
      checkForgettable(facilityId, confirmed);
      await c.query('DELETE FROM oracle_settlements WHERE facility_id = $1', [facilityId]);
      await c.query('DELETE FROM oracle_late WHERE facility_id = $1', [facilityId]);
      await c.query('DELETE FROM oracle_cursors WHERE device_id = ANY($1::text[])', [deviceIds]);
    });
  }

  // Lease ------------------------------------------------------------------------------------

  /** The lease's own session (not pooled: a pool closes idle connections, which would free the lease). */
  private async leaseSession(): Promise<pg.Client> {
    if (this.leaseClient) return this.leaseClient;
    this.leaseOpening ??= (async () => {
      const c = new pg.Client({ ...this.pool.options, application_name: 'mrv-lease' } as pg.ClientConfig);
      c.on('error', () => {
        if (this.leaseClient === c) this.leaseClient = undefined;
      });
      c.on('end', () => {
        if (this.leaseClient === c) this.leaseClient = undefined;
      });
      await c.connect();
      this.leaseClient = c;
      return c;
    })().finally(() => {
      this.leaseOpening = undefined;
    });
    return this.leaseOpening;
  }

  /**
   * Takes or renews the named lease until `now + ttlMs`; false when another holder has it. One
   * statement: of two processes taking a free lease at once, the row lock makes the second re-check
   * the condition against the first's row, so only one wins. The lease is free when it expired or when
   * its holder's lease session is gone (a killed holder's connection closes): a killed oracle is
   * replaced at the next run of another, not after the ttl.
   */
  async acquireLease(name: string, holder: string, now: number, ttlMs: number): Promise<boolean> {
    const c = await this.leaseSession();
    const res = await c.query(
      `INSERT INTO oracle_lease (name, holder, expires_at, backend_pid) VALUES ($1, $2, $3, pg_backend_pid())
       ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at, backend_pid = excluded.backend_pid
       WHERE oracle_lease.holder = excluded.holder OR oracle_lease.expires_at <= $4
          OR (oracle_lease.backend_pid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = oracle_lease.backend_pid))`,
      [name, holder, now + ttlMs, now],
    );
    return res.rowCount === 1;
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    await this.pool.query('DELETE FROM oracle_lease WHERE name = $1 AND holder = $2', [name, holder]);
  }

  /** Ends the lease session (the pool is the caller's). */
  async close(): Promise<void> {
    const c = this.leaseClient ?? (await this.leaseOpening?.catch(() => undefined));
    this.leaseClient = undefined;
    await c?.end().catch(() => undefined);
  }
}
