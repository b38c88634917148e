/**
 * The rejections log on PostgreSQL (table `rejections`, store/postgres/schema.ts), aggregated like the
 * SQLite log (store/sqlite/rejections.ts): one row per facility, device, reason and minute, with a
 * count, the first rejection kept as the sample. Not replicated: listing it is a query.
 */
import type pg from 'pg';
import { truncateUtf8 } from '../../domain/json.ts';
import { MAX_REJECTION_DETAIL_BYTES, MAX_REJECTION_PAYLOAD_BYTES } from '../../domain/limits.ts';
import type { Logger } from '../../domain/logger.ts';
import type { RejectReason, Rejection } from '../../domain/reading.ts';
import { REJECTION_BUCKET_MS } from '../sqlite/rejections.ts';
import { clampListLimit } from '../types.ts';

interface Row {
  id: number;
  facility_id: string;
  device_id: string;
  received_at: number;
  reason: string;
  detail: string | null;
  payload: string;
  count: number;
  last_received_at: number;
}

export class PgRejections {
  private readonly pool: pg.Pool;
  private readonly logger: Logger;

  constructor(pool: pg.Pool, logger: Logger) {
    this.pool = pool;
    this.logger = logger;
  }

  /** Appends rows in one statement, aggregated (rows of one device, reason and minute are one row whose count grows). */
  async add(rows: Rejection[]): Promise<void> {
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
    // Sorted by the unique key, so two writers touching the same rows lock them in the same order.
    const list = [...groups.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, g]) => g);
    await this.pool.query(
      `INSERT INTO rejections (facility_id, device_id, received_at, reason, detail, payload, bucket, count, last_received_at)
       SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[], $9::bigint[])
       ON CONFLICT (facility_id, device_id, reason, bucket) DO UPDATE SET
         count = rejections.count + excluded.count, last_received_at = GREATEST(rejections.last_received_at, excluded.last_received_at)`,
      [
        list.map((g) => g.r.facilityId),
        list.map((g) => g.r.deviceId),
        list.map((g) => g.r.receivedAt),
        list.map((g) => g.r.reason),
        list.map((g) => (g.r.detail === undefined ? null : truncateUtf8(g.r.detail, MAX_REJECTION_DETAIL_BYTES))),
        list.map((g) => truncateUtf8(g.r.payload ?? '', MAX_REJECTION_PAYLOAD_BYTES)),
        list.map((g) => g.bucket),
        list.map((g) => g.count),
        list.map((g) => g.last),
      ],
    );
  }

  /** Deletes rows whose last rejection is older than `before`; returns how many. */
  async prune(before: number): Promise<number> {
    const res = await this.pool.query('DELETE FROM rejections WHERE last_received_at < $1', [before]);
    const n = res.rowCount ?? 0;
    if (n > 0) this.logger.info({ rows: n, before }, 'old rejections pruned');
    return n;
  }

  /** A facility's rows newest first with their ids (paging cursor): id < beforeId when given; limit default 100, at most 1000. */
  async page(facilityId: string, limit?: number, beforeId?: number): Promise<{ id: number; rejection: Rejection }[]> {
    const res = await this.pool.query<Row>(
      `SELECT id, facility_id, device_id, received_at, reason, detail, payload, count, last_received_at FROM rejections
       WHERE facility_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3`,
      [facilityId, beforeId ?? Number.MAX_SAFE_INTEGER, clampListLimit(limit)],
    );
    return res.rows.map((r) => {
      const out: Rejection = { facilityId: r.facility_id, deviceId: r.device_id, receivedAt: r.received_at, reason: r.reason as RejectReason, payload: r.payload };
      if (r.detail !== null) out.detail = r.detail;
      if (r.count > 1) {
        out.count = r.count;
        out.lastReceivedAt = r.last_received_at;
      }
      return { id: r.id, rejection: out };
    });
  }
}
