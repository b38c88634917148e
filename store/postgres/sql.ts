/**
 * The statements of the PostgreSQL reading store (tables: store/postgres/schema.ts; rows mapped to
 * readings by store/rows.ts, shared with SQLite). Every statement is prepared by name on first use
 * (pg `name`).
 */
import { READING_COLS as COLS } from '../rows.ts';

export { COLS };
const NEIGHBOUR_COLS = 'seq, ts, metric, value, unit, reset, sig';

/** Visible under a mark whose (maxSeq, late) are parameters $a and $b. */
export const visible = (a: number, b: number) => `((arrival IS NULL AND seq <= $${a}) OR arrival <= $${b})`;

export const SQL = {
  ensureDevices: `INSERT INTO reading_device_state (device_id) SELECT d FROM unnest($1::text[]) AS d ORDER BY d ON CONFLICT DO NOTHING`,
  lock: `SELECT device_id, max_seq, late FROM reading_device_state WHERE device_id = ANY($1::text[]) ORDER BY device_id FOR UPDATE`,
  /** The heads with their last row (row_seq <> last_seq: moved by a writer of an older version: batch.ts reads that row). */
  heads: `SELECT device_id, metric, first_seq, last_seq, row_seq, ts, value, unit, reset, sig FROM reading_heads WHERE device_id = ANY($1::text[])`,
  /** The rows at (device, seq) pairs: last rows of heads an older writer moved. */
  rowsAt: `SELECT r.device_id, ${NEIGHBOUR_COLS.split(', ').map((c) => `r.${c}`).join(', ')} FROM unnest($1::text[], $2::bigint[]) AS q(device_id, seq)
    JOIN readings r ON r.device_id = q.device_id AND r.seq = q.seq`,
  limits: `SELECT device_id, kind, capacity, reporting_interval FROM devices WHERE device_id = ANY($1::text[])`,
  /**
   * The stored neighbours of readings at or below their device's stored max, all in one query:
   * k 0 the row at seq, 1 the nearest below, 2 the nearest above (any metric); 3 / 4 the nearest
   * below / above of the same metric, walking the primary key down to `lo` / up to `hi` for at most
   * MAX_METRIC_WALK rows (NULL bound: not needed); 5 the row at `probe` (the metric's first row).
   */
  neighbours: `SELECT q.i, n.k, n.seq, n.ts, n.metric, n.value, n.unit, n.reset, n.sig
    FROM unnest($1::text[], $2::bigint[], $3::text[], $4::int[], $5::bigint[], $6::bigint[], $7::bigint[]) AS q(device_id, seq, metric, i, lo, hi, probe)
    CROSS JOIN LATERAL (
      (SELECT 0 AS k, ${NEIGHBOUR_COLS} FROM readings r WHERE r.device_id = q.device_id AND r.seq = q.seq)
      UNION ALL
      (SELECT 1, ${NEIGHBOUR_COLS} FROM readings r WHERE r.device_id = q.device_id AND r.seq < q.seq ORDER BY r.seq DESC LIMIT 1)
      UNION ALL
      (SELECT 2, ${NEIGHBOUR_COLS} FROM readings r WHERE r.device_id = q.device_id AND r.seq > q.seq ORDER BY r.seq LIMIT 1)
      UNION ALL
      (SELECT 3, w.* FROM (SELECT ${NEIGHBOUR_COLS} FROM readings r WHERE r.device_id = q.device_id AND r.seq < q.seq AND r.seq >= q.lo
        ORDER BY r.seq DESC LIMIT $8) w WHERE w.metric = q.metric ORDER BY w.seq DESC LIMIT 1)
      UNION ALL
      (SELECT 4, w.* FROM (SELECT ${NEIGHBOUR_COLS} FROM readings r WHERE r.device_id = q.device_id AND r.seq > q.seq AND r.seq <= q.hi
        ORDER BY r.seq LIMIT $8) w WHERE w.metric = q.metric ORDER BY w.seq LIMIT 1)
      UNION ALL
      (SELECT 5, ${NEIGHBOUR_COLS} FROM readings r WHERE r.device_id = q.device_id AND r.seq = q.probe)
    ) n`,
  write: `WITH ins AS (
      INSERT INTO readings (${COLS})
      SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::boolean[], $9::bigint[], $10::bigint[],
        $11::text[], $12::text[], $13::text[], $14::text[])
    ), heads AS (
      INSERT INTO reading_heads (device_id, metric, first_seq, last_seq, row_seq, ts, value, unit, reset, sig)
      SELECT d, m, f, l, l, ts, v, u, r, s FROM unnest($15::text[], $16::text[], $17::bigint[], $18::bigint[],
        $24::bigint[], $25::text[], $26::text[], $27::boolean[], $28::text[]) AS h(d, m, f, l, ts, v, u, r, s)
      -- Under the device's lock the batch's head started from the stored one: it is the whole head.
      ON CONFLICT (device_id, metric) DO UPDATE
        SET first_seq = excluded.first_seq, last_seq = excluded.last_seq, row_seq = excluded.row_seq,
          ts = excluded.ts, value = excluded.value, unit = excluded.unit, reset = excluded.reset, sig = excluded.sig
    ), st AS (
      UPDATE reading_device_state s SET max_seq = u.max_seq, late = u.late
      FROM unnest($19::text[], $20::bigint[], $21::bigint[]) AS u(device_id, max_seq, late) WHERE s.device_id = u.device_id
    ), fac AS (
      INSERT INTO reading_devices (facility_id, device_id) SELECT * FROM unnest($22::text[], $23::text[]) ON CONFLICT DO NOTHING
    )
    SELECT 1`,
  marks: `SELECT device_id, max_seq, late FROM reading_device_state WHERE device_id = ANY($1::text[]) AND max_seq IS NOT NULL`,
  get: `SELECT ${COLS} FROM readings WHERE device_id = $1 AND seq = $2`,
  consumeAll: `SELECT ${COLS} FROM readings WHERE device_id = $1 AND seq <= $2 AND ts < $3 AND (arrival IS NULL OR arrival <= $4) ORDER BY seq`,
  has: `SELECT 1 FROM readings WHERE device_id = $1 AND ts >= $2 AND ts < $3 AND ${visible(4, 5)} LIMIT 1`,
  /** Coverage in one statement: before, lastIn, after, and the count / co2 flag of (before, lastIn]. */
  coverage: `WITH b AS (
      SELECT seq, ts FROM readings WHERE device_id = $1 AND ts < $2 AND ${visible(4, 5)} ORDER BY ts DESC, seq DESC LIMIT 1
    ), l AS (
      SELECT seq, ts FROM readings WHERE device_id = $1 AND ts >= $2 AND ts < $3 AND ${visible(4, 5)} ORDER BY ts DESC, seq DESC LIMIT 1
    ), c AS (
      SELECT count(*) AS n, coalesce(bool_or(metric = 'co2_direct'), false) AS co2 FROM readings
      WHERE device_id = $1 AND seq > coalesce((SELECT seq FROM b), -1) AND seq <= (SELECT seq FROM l) AND ${visible(4, 5)}
    )
    SELECT (SELECT seq FROM b) AS bseq, (SELECT ts FROM b) AS bts, (SELECT seq FROM l) AS lseq, (SELECT ts FROM l) AS lts,
      EXISTS (SELECT 1 FROM readings WHERE device_id = $1 AND ts >= $3 AND ${visible(4, 5)}) AS after, c.n, c.co2 FROM c`,
} as const;
