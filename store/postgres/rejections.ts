/**
 * The rejections log on PostgreSQL (table `rejections`, store/postgres/schema.ts), aggregated like the
 * SQLite log (store/rejections.ts): one row per facility, device, reason and minute, with a
 * count, the first rejection kept as the sample. Not replicated: listing it is a query.
 */
import type pg from 'pg';
import type { Logger } from '../../domain/logger.ts';
import type { Rejection } from '../../domain/reading.ts';
import { groupRejections, REJECTION_COLS, toRejectionEntry, type RejectionDbRow } from '../rejections.ts';
import { clampListLimit } from '../types.ts';

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
    // Sorted by the unique key, so two writers touching the same rows lock them in the same order.
    const list = groupRejections(rows).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    await this.pool.query(
      `INSERT INTO rejections (facility_id, device_id, received_at, reason, detail, payload, bucket, count, last_received_at)
       SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[], $9::bigint[])
       ON CONFLICT (facility_id, device_id, reason, bucket) DO UPDATE SET
         count = rejections.count + excluded.count, last_received_at = GREATEST(rejections.last_received_at, excluded.last_received_at)`,
      [
        list.map((g) => g.facilityId),
        list.map((g) => g.deviceId),
        list.map((g) => g.receivedAt),
        list.map((g) => g.reason),
        list.map((g) => g.detail),
        list.map((g) => g.payload),
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
    const res = await this.pool.query<RejectionDbRow>(`SELECT ${REJECTION_COLS} FROM rejections WHERE facility_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3`, [
      facilityId,
      beforeId ?? Number.MAX_SAFE_INTEGER,
      clampListLimit(limit),
    ]);
    return res.rows.map(toRejectionEntry);
  }
}
