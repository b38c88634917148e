/**
 * The rejections log on the SQLite file (the FacilityRegistry's addRejections / pageRejections /
 * pruneRejections; store/sqlite/registry.ts checks the facility and delegates here). Rows are
 * aggregated per device, reason and minute; table and migration 2: store/sqlite/schema.ts.
 */
import { truncateUtf8 } from '../../domain/json.ts';
import type { Logger } from '../../domain/logger.ts';
import type { RejectReason, Rejection } from '../../domain/reading.ts';
import { clampListLimit } from '../types.ts';
import type { Db } from './db.ts';

import { MAX_REJECTION_DETAIL_BYTES, MAX_REJECTION_PAYLOAD_BYTES } from '../../domain/limits.ts';


/** Rejections of one device with one reason are aggregated per this span (one row, with a count). */
export const REJECTION_BUCKET_MS = 60_000;

interface Row {
  id: number;
  facility_id: string;
  device_id: string;
  received_at: number;
  reason: string;
  detail: string | null;
  payload: string;
  count: number;
  last_received_at: number | null;
}

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
      page: db.prepare<[string, number, number], Row>(
        'SELECT id, facility_id, device_id, received_at, reason, detail, payload, count, last_received_at FROM rejections WHERE facility_id = ? AND id < ? ORDER BY id DESC LIMIT ?',
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
    const groups = new Map<string, { r: Rejection; count: number; last: number; bucket: number }>();
    for (const r of rows) {
      const bucket = Math.floor(r.receivedAt / REJECTION_BUCKET_MS);
      const key = `${r.facilityId}\u0000${r.deviceId}\u0000${r.reason}\u0000${bucket}`;
      const n = r.count ?? 1;
      const last = r.lastReceivedAt ?? r.receivedAt;
      const g = groups.get(key);
      if (g) {
        g.count += n;
        if (last > g.last) g.last = last;
      } else groups.set(key, { r, count: n, last, bucket });
    }
    this.db.transaction(() => {
      for (const { r, count, last, bucket } of groups.values()) {
        this.stmt.insert.run(
          r.facilityId,
          r.deviceId,
          r.receivedAt,
          r.reason,
          r.detail === undefined ? null : truncateUtf8(r.detail, MAX_REJECTION_DETAIL_BYTES),
          truncateUtf8(r.payload ?? '', MAX_REJECTION_PAYLOAD_BYTES),
          bucket,
          count,
          last,
        );
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
    return this.stmt.page.all(facilityId, beforeId ?? Number.MAX_SAFE_INTEGER, clampListLimit(limit)).map((r) => {
      const out: Rejection = {
        facilityId: r.facility_id,
        deviceId: r.device_id,
        receivedAt: r.received_at,
        reason: r.reason as RejectReason,
        payload: r.payload,
      };
      if (r.detail !== null) out.detail = r.detail;
      if (r.count > 1) {
        out.count = r.count;
        out.lastReceivedAt = r.last_received_at ?? r.received_at;
      }
      return { id: r.id, rejection: out };
    });
  }
}
