/**
 * The rejections log on the SQLite file (the FacilityRegistry's addRejections / pageRejections /
 * pruneRejections; store/sqlite/registry.ts checks the facility and delegates here). Rows are
 * aggregated per device, reason and minute (store/rejections.ts); table and migration 2: store/sqlite/schema.ts.
 */
import type { Logger } from '../../domain/logger.ts';
import type { Rejection } from '../../domain/reading.ts';
import { groupRejections, REJECTION_COLS, toRejectionEntry, type RejectionDbRow } from '../rejections.ts';
import { clampListLimit } from '../types.ts';
import type { Db } from './db.ts';

export class SqliteRejections {
  private readonly db: Db;
  private readonly logger: Logger;
  private readonly stmt;

  constructor(db: Db, logger: Logger) {
    this.db = db;
    this.logger = logger;
    this.stmt = {
      insert: db.prepare(
        `INSERT INTO rejections (facility_id, device_id, received_at, reason, detail, payload, bucket, count, last_received_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (facility_id, device_id, reason, bucket) DO UPDATE SET
           count = count + excluded.count, last_received_at = MAX(last_received_at, excluded.last_received_at)`,
      ),
      page: db.prepare<[string, number, number], RejectionDbRow>(
        `SELECT ${REJECTION_COLS} FROM rejections WHERE facility_id = ? AND id < ? ORDER BY id DESC LIMIT ?`,
      ),
      prune: db.prepare('DELETE FROM rejections WHERE last_received_at < ?'),
    };
  }

  /**
   * Appends rows in one transaction, aggregated: rows of one device with one reason within the same
   * minute (REJECTION_BUCKET_MS) are one stored row whose `count` grows; the first row's detail and
   * payload are kept as the sample. So a device can add at most one row per reason per minute,
   * whatever it sends. Payloads are cut to 4 KiB, details to 1 KiB.
   */
  add(rows: Rejection[]): void {
    if (rows.length === 0) return;
    const groups = groupRejections(rows);
    this.db.transaction(() => {
      for (const g of groups) {
        this.stmt.insert.run(g.facilityId, g.deviceId, g.receivedAt, g.reason, g.detail, g.payload, g.bucket, g.count, g.last);
      }
    })();
  }

  /** Deletes rows whose last rejection is older than `before` (retention); returns how many. */
  prune(before: number): number {
    const n = this.stmt.prune.run(before).changes;
    if (n > 0) this.logger.info({ rows: n, before }, 'old rejections pruned');
    return n;
  }

  /** A facility's rows newest first, each with its row id (a paging cursor): those with id < beforeId when given; limit default 100, at most 1000. */
  page(facilityId: string, limit?: number, beforeId?: number): { id: number; rejection: Rejection }[] {
    return this.stmt.page.all(facilityId, beforeId ?? Number.MAX_SAFE_INTEGER, clampListLimit(limit)).map(toRejectionEntry);
  }
}
