/**
 * The ReadingStore on PostgreSQL (schema: store/postgres/schema.ts), for any number of writer
 * processes on the same devices at once.
 *
 * Commit (group commit): one transaction per batch, resolved only after its COMMIT returned (the
 * server runs with synchronous_commit on, so COMMIT returns once the WAL is flushed). Inside it:
 * 1. lock the row of every device of the batch in `reading_device_state` (SELECT ... FOR UPDATE,
 *    ORDER BY device_id): the checks of one device are serialised in the database, whatever process
 *    runs them, and two batches sharing devices always lock them in the same order, so they wait for
 *    each other instead of deadlocking. The rows are created beforehand, outside the transaction
 *    (INSERT ... ON CONFLICT DO NOTHING, sorted, autocommit), so the transaction takes its locks in
 *    one ordered step;
 * 2. read, under those locks, each device's per-metric heads (first and last seq, and the last row),
 *    the highest stored seq and the late-arrival count, and, for the readings whose seq is not above
 *    the device's stored max (late arrivals and repeats), their stored neighbours in one query;
 * 3. decide each reading with the shared rules (domain/ingest-rules.ts `checkReading`) over a lookup
 *    of the stored state plus the batch's earlier stored readings, exactly as store/sqlite-readings.ts
 *    serves them (same heads, the same 100,000-row bound on the walk to a late reading's neighbour of
 *    the same metric);
 * 4. write the stored readings, heads, state rows and facility device list in one statement.
 * Because every writer holds the device's lock from its first read to its COMMIT, a later writer's
 * reads see everything an earlier one stored (READ COMMITTED takes a snapshot per statement, after
 * the lock was granted): duplicates, conflicts and neighbours are decided against the committed
 * state, never against one process's memory.
 *
 * Visibility: a reading stored below the device's max seq gets the next arrival number from the
 * locked state row; marks() reads max_seq and late of the state rows in one statement (one snapshot).
 *
 * Values are the canonical decimal text, exactly as received; seq, ts, received_at, arrival are bigint
 * (read back as JavaScript numbers: every one of them is a safe integer).
 */
import pg from 'pg';
import { Decimal } from '../../domain/decimal.ts';
import { errors } from '../../domain/errors.ts';
import { CANONICAL_RE, checkReading, type DeviceReadings, type StoredReading } from '../../domain/ingest-rules.ts';
import { silentLogger, type Logger } from '../../domain/logger.ts';
import { isIntervalKind, type Metric, type Reading } from '../../domain/reading.ts';
import type {
  CommitOutcome,
  ConsumeQuery,
  CoverageQuery,
  DeviceCoverage,
  DeviceLimits,
  ReadingFilter,
  ReadingStore,
  VisibilityMark,
} from '../types.ts';
import { migrate } from './schema.ts';

import { clampListLimit, MAX_METRIC_WALK } from '../types.ts';

/** Capacity, reporting interval and kind of a device; sync or async (a registry in the same database). */
export type AsyncDeviceLimitsLookup = (deviceId: string) => DeviceLimits | undefined | Promise<DeviceLimits | undefined>;

export interface PostgresReadingStoreOptions {
  logger?: Logger;
  /**
   * Where capacity, reporting interval and kind come from. Default: the registry's `devices` table
   * in the same database (columns device_id, kind, capacity, reporting_interval), read inside the
   * commit transaction, when that table exists when the store opens; otherwise the defaults apply.
   */
  limits?: AsyncDeviceLimitsLookup;
  /** close() ends the pool (the store created it). */
  ownsPool?: boolean;
}

/** How long a commit may sit idle inside its transaction before the server ends the session. */
export const IDLE_IN_TRANSACTION_MS = 30_000;
const INT8_OID = 20;
/** bigint columns as JavaScript numbers (seq, epoch ms, counts: all safe integers here). */
export const PG_TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: string) => {
    if (oid === INT8_OID && format !== 'binary') {
      return (text: string) => {
        const n = Number(text);
        if (!Number.isSafeInteger(n)) throw new Error(`bigint ${text} is not a safe integer`);
        return n;
      };
    }
    return pg.types.getTypeParser(oid, format as 'text');
  }) as pg.CustomTypesConfig['getTypeParser'],
};

/**
 * A pool for the stores: bigint read back as numbers, pipelining connections (a commit sends the
 * queries that do not wait for each other's answers together), a bound on idling inside a
 * transaction, errors of idle connections logged.
 */
export function createPool(connectionString: string, logger: Logger = silentLogger, max = 10): pg.Pool {
  const pool = new pg.Pool({
    connectionString,
    types: PG_TYPES,
    max,
    application_name: 'mrv',
    pipeline: true,
    // A writer that stops between the statements of a commit (a frozen process) must not hold its
    // devices' locks for ever: the server ends its session, rolling the batch back (nothing of it was
    // acknowledged). A killed process's connection drops, which rolls back at once.
    idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_MS,
  });
  pool.on('error', (err) => logger.warn({ err }, 'idle PostgreSQL connection failed'));
  return pool;
}

/** Opens a pool on `connectionString`, migrates the schema and returns the store (which owns the pool). */
export async function openPostgresReadingStore(
  connectionString: string,
  opts: Omit<PostgresReadingStoreOptions, 'ownsPool'> & { poolSize?: number } = {},
): Promise<PostgresReadingStore> {
  const logger = opts.logger ?? silentLogger;
  const pool = createPool(connectionString, logger, opts.poolSize);
  try {
    await migrate(pool);
    return await PostgresReadingStore.open(pool, { ...opts, ownsPool: true });
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw err;
  }
}

interface ReadingRow {
  device_id: string;
  seq: number;
  facility_id: string;
  ts: number;
  metric: string;
  value: string;
  unit: string;
  reset: boolean;
  received_at: number;
  arrival: number | null;
  sig: string | null;
  prev: string | null;
  sent_value: string | null;
  sent_unit: string | null;
}

const COLS = 'device_id, seq, facility_id, ts, metric, value, unit, reset, received_at, arrival, sig, prev, sent_value, sent_unit';
const NEIGHBOUR_COLS = 'seq, ts, metric, value, unit, reset, sig';

function toReading(r: ReadingRow): Reading {
  const out: Reading = {
    facilityId: r.facility_id,
    deviceId: r.device_id,
    seq: r.seq,
    ts: r.ts,
    metric: r.metric as Metric,
    value: r.value,
    unit: r.unit,
    reset: r.reset,
    receivedAt: r.received_at,
  };
  if (r.arrival !== null) out.arrival = r.arrival;
  if (r.sig !== null) {
    out.sig = r.sig;
    out.prev = r.prev ?? '';
    if (r.sent_value !== null) out.sentValue = r.sent_value;
    if (r.sent_unit !== null) out.sentUnit = r.sent_unit;
  }
  return out;
}

function toStored(r: { seq: number; ts: number; metric: string; value: string; unit: string; reset: boolean; sig: string | null }): StoredReading {
  const s: StoredReading = { seq: r.seq, ts: r.ts, metric: r.metric, value: r.value, unit: r.unit, reset: r.reset };
  if (r.sig !== null) s.sig = r.sig;
  return s;
}

/** Visible under a mark whose (maxSeq, late) are parameters $a and $b. */
const visible = (a: number, b: number) => `((arrival IS NULL AND seq <= $${a}) OR arrival <= $${b})`;

const SQL = {
  ensureDevices: `INSERT INTO reading_device_state (device_id) SELECT d FROM unnest($1::text[]) AS d ORDER BY d ON CONFLICT DO NOTHING`,
  lock: `SELECT device_id, max_seq, late FROM reading_device_state WHERE device_id = ANY($1::text[]) ORDER BY device_id FOR UPDATE`,
  heads: `SELECT h.device_id, h.metric, h.first_seq, h.last_seq, r.ts, r.value, r.unit, r.reset, r.sig
    FROM reading_heads h JOIN readings r ON r.device_id = h.device_id AND r.seq = h.last_seq
    WHERE h.device_id = ANY($1::text[])`,
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
      INSERT INTO reading_heads (device_id, metric, first_seq, last_seq)
      SELECT * FROM unnest($15::text[], $16::text[], $17::bigint[], $18::bigint[])
      ON CONFLICT (device_id, metric) DO UPDATE
        SET first_seq = LEAST(reading_heads.first_seq, excluded.first_seq), last_seq = GREATEST(reading_heads.last_seq, excluded.last_seq)
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

/** Thrown by a lookup whose neighbour of the same metric is more than MAX_METRIC_WALK rows away. */
class WalkTooLong extends Error {}
const TOO_FAR = Symbol('too far');
type Found = StoredReading | undefined | typeof TOO_FAR;

interface Head {
  first: number;
  last: number;
  /** The reading at `last`. */
  row: StoredReading;
  dirty: boolean;
}

/** One device while a batch is checked. */
interface DeviceState {
  /** Highest stored seq before this batch (undefined: none). */
  dbTop?: StoredReading;
  /** Highest stored seq including this batch's stored readings. */
  top?: StoredReading;
  late: number;
  lateChanged: boolean;
  heads: Map<string, Head>;
  /** The last row of each metric before this batch. */
  dbHeads: Map<string, StoredReading>;
  /** Stored by this batch, by seq. */
  batch: Map<number, StoredReading>;
  limits: DeviceLimits | undefined;
}

/** What the database held around one reading before this batch (for seq <= the device's stored max). */
interface Around {
  at?: StoredReading;
  below?: StoredReading;
  above?: StoredReading;
  belowSame: Found;
  aboveSame: Found;
}

/**
 * domain/ingest-rules.ts's lookup for one reading: the database's state before the batch (`Around`,
 * fetched under the device's lock) merged with the batch's stored readings. checkReading only asks
 * about the reading's own seq and metric.
 */
class BatchView implements DeviceReadings {
  constructor(
    private readonly st: DeviceState,
    private readonly seq: number,
    private readonly metric: string,
    private readonly around: Around | undefined,
  ) {}

  private check(seq: number, metric?: string): void {
    if (seq !== this.seq || (metric !== undefined && metric !== this.metric)) throw new Error('BatchView serves only its own reading');
  }

  at(seq: number): StoredReading | undefined {
    this.check(seq);
    return this.st.batch.get(seq) ?? this.around?.at;
  }

  below(seq: number, metric?: string): StoredReading | undefined {
    this.check(seq, metric);
    const { st } = this;
    // In order (the common case): the top, or the head of the metric.
    if (!st.top || seq > st.top.seq) return metric === undefined ? st.top : st.heads.get(metric)?.row;
    let db: Found;
    if (this.around) db = metric === undefined ? this.around.below : this.around.belowSame;
    else db = metric === undefined ? st.dbTop : st.dbHeads.get(metric);
    let best: StoredReading | undefined;
    for (const r of st.batch.values()) if (r.seq < seq && (metric === undefined || r.metric === metric) && (!best || r.seq > best.seq)) best = r;
    if (db === TOO_FAR) throw new WalkTooLong();
    return !db ? best : !best || db.seq > best.seq ? db : best;
  }

  above(seq: number, metric?: string): StoredReading | undefined {
    this.check(seq, metric);
    const { st } = this;
    if (!st.top || seq >= st.top.seq) return undefined;
    const db: Found = this.around ? (metric === undefined ? this.around.above : this.around.aboveSame) : undefined;
    let best: StoredReading | undefined;
    for (const r of st.batch.values()) if (r.seq > seq && (metric === undefined || r.metric === metric) && (!best || r.seq < best.seq)) best = r;
    if (db === TOO_FAR) throw new WalkTooLong();
    return !db ? best : !best || db.seq < best.seq ? db : best;
  }
}

export class PostgresReadingStore implements ReadingStore {
  readonly kind = 'postgres' as const;
  private closed = false;
  private readonly logger: Logger;
  private readonly limitsOf: AsyncDeviceLimitsLookup | undefined;
  private readonly ownsPool: boolean;
  /** Devices whose state row exists (rows are never deleted, so this only grows). */
  private readonly knownDevices = new Set<string>();
  /** (facility, device) pairs known to be in reading_devices. */
  private readonly knownPairs = new Set<string>();

  private constructor(
    readonly pool: pg.Pool,
    opts: PostgresReadingStoreOptions,
    private readonly registryInDb: boolean,
  ) {
    this.logger = opts.logger ?? silentLogger;
    this.limitsOf = opts.limits;
    this.ownsPool = opts.ownsPool ?? false;
  }

  /** A store on an existing pool whose database is migrated (store/postgres/schema.ts migrate). */
  static async open(pool: pg.Pool, opts: PostgresReadingStoreOptions = {}): Promise<PostgresReadingStore> {
    let registryInDb = false;
    if (!opts.limits) {
      const res = await pool.query<{ t: string | null }>("SELECT to_regclass('devices')::text AS t");
      registryInDb = Boolean(res.rows[0]?.t);
    }
    return new PostgresReadingStore(pool, opts, registryInDb);
  }

  private ensureOpen(): void {
    if (this.closed) throw errors.STORE_UNAVAILABLE('postgres store closed');
  }

  async commit(readings: Reading[]): Promise<CommitOutcome[]> {
    this.ensureOpen();
    if (readings.length === 0) return [];
    try {
      return await this.commitBatch(readings);
    } catch (err) {
      this.logger.error({ err, count: readings.length }, 'reading batch commit failed');
      throw errors.STORE_UNAVAILABLE((err as Error).message);
    }
  }

  private async commitBatch(readings: Reading[]): Promise<CommitOutcome[]> {
    const out: CommitOutcome[] = new Array(readings.length);
    // Validation hands over canonical text; anything else is parsed (and refused if not a decimal).
    const values: (string | undefined)[] = readings.map((r, i) => {
      if (CANONICAL_RE.test(r.value)) return r.value;
      try {
        return Decimal.parse(r.value).toString();
      } catch {
        out[i] = { status: 'rejected', reason: 'invalid_value', detail: 'value is not a decimal' };
        return undefined;
      }
    });
    const ids = [...new Set(readings.filter((_, i) => values[i] !== undefined).map((r) => r.deviceId))].sort();
    if (ids.length === 0) return out;

    // The lock rows, created outside the transaction (autocommit, sorted), so that the transaction
    // takes every lock it needs in one ordered step.
    const missing = ids.filter((id) => !this.knownDevices.has(id));
    if (missing.length > 0) {
      await this.pool.query({ name: 'mrv_ensure_devices', text: SQL.ensureDevices, values: [missing] });
      for (const id of missing) this.knownDevices.add(id);
    }

    const client = await this.pool.connect();
    // On a pipelining connection (createPool) the queries that do not need each other's answers go
    // out together: BEGIN, the locks, the heads (and the registry's limits); later the write and
    // COMMIT. The server still runs them one after the other, in order, so the heads are read after
    // the locks were granted, and COMMIT after the write (a failed write makes it a rollback).
    const pipelined = (client as unknown as { pipeline?: boolean }).pipeline === true;
    let broken: Error | undefined;
    try {
      try {
        const begin = client.query('BEGIN');
        if (!pipelined) await begin;
        const result = await this.check(client, readings, values, ids, out, pipelined ? begin : undefined);
        if (result.write) {
          const write = client.query(result.write);
          if (pipelined) await Promise.all([write, client.query('COMMIT')]);
          else {
            await write;
            await client.query('COMMIT');
          }
        } else await client.query('COMMIT');
        for (const p of result.pairs) this.knownPairs.add(p);
        return out;
      } catch (err) {
        await client.query('ROLLBACK').catch((e: Error) => {
          broken = e;
        });
        throw err;
      }
    } finally {
      client.release(broken);
    }
  }

  /**
   * Locks and reads the batch's devices and decides every reading (outcomes into `out`); returns the
   * statement that writes what was stored. `begin`: BEGIN already sent, not yet awaited (pipelining).
   */
  private async check(
    client: pg.PoolClient,
    readings: Reading[],
    values: (string | undefined)[],
    ids: string[],
    out: CommitOutcome[],
    begin?: Promise<unknown>,
  ): Promise<{ pairs: string[]; write?: pg.QueryConfig }> {
    type HeadRow = { device_id: string; metric: string; first_seq: number; last_seq: number; ts: number; value: string; unit: string; reset: boolean; sig: string | null };
    const lockP = client.query<{ device_id: string; max_seq: number | null; late: number }>({ name: 'mrv_lock', text: SQL.lock, values: [ids] });
    let locked: pg.QueryResult<{ device_id: string; max_seq: number | null; late: number }>;
    let heads: pg.QueryResult<HeadRow>;
    let limits: Map<string, DeviceLimits | undefined>;
    if (begin) {
      const headsP = client.query<HeadRow>({ name: 'mrv_heads', text: SQL.heads, values: [ids] });
      const limitsP = this.loadLimits(client, ids);
      [, locked, heads, limits] = await Promise.all([begin, lockP, headsP, limitsP]);
    } else {
      locked = await lockP;
      heads = await client.query<HeadRow>({ name: 'mrv_heads', text: SQL.heads, values: [ids] });
      limits = await this.loadLimits(client, ids);
    }
    if (locked.rowCount !== ids.length) {
      this.knownDevices.clear();
      throw new Error(`device state rows missing (${locked.rowCount} of ${ids.length}); retry`);
    }

    const devices = new Map<string, DeviceState>();
    for (const row of locked.rows) {
      devices.set(row.device_id, { late: row.late, lateChanged: false, heads: new Map(), dbHeads: new Map(), batch: new Map(), limits: limits.get(row.device_id) });
    }
    for (const h of heads.rows) {
      const st = devices.get(h.device_id);
      if (!st) continue;
      const row: StoredReading = toStored({ seq: h.last_seq, ts: h.ts, metric: h.metric, value: h.value, unit: h.unit, reset: h.reset, sig: h.sig });
      st.heads.set(h.metric, { first: h.first_seq, last: h.last_seq, row, dirty: false });
      st.dbHeads.set(h.metric, row);
      if (!st.dbTop || row.seq > st.dbTop.seq) st.dbTop = row;
    }
    for (const st of devices.values()) st.top = st.dbTop;

    // The stored neighbours of every reading at or below its device's stored max, in one query.
    const arounds = new Map<number, Around>();
    const q = { dev: [] as string[], seq: [] as number[], metric: [] as string[], i: [] as number[], lo: [] as (number | null)[], hi: [] as (number | null)[], probe: [] as (number | null)[] };
    for (let i = 0; i < readings.length; i++) {
      if (values[i] === undefined) continue;
      const r = readings[i];
      const st = devices.get(r.deviceId);
      if (!st?.dbTop || r.seq > st.dbTop.seq) continue;
      const head = st.heads.get(r.metric);
      q.dev.push(r.deviceId);
      q.seq.push(r.seq);
      q.metric.push(r.metric);
      q.i.push(i);
      q.lo.push(head && r.seq > head.first && r.seq <= head.last ? head.first : null);
      q.hi.push(head && r.seq >= head.first && r.seq < head.last ? head.last : null);
      q.probe.push(head && r.seq < head.first ? head.first : null);
    }
    if (q.i.length > 0) {
      for (let j = 0; j < q.i.length; j++) {
        const st = devices.get(q.dev[j]) as DeviceState;
        const head = st.heads.get(q.metric[j]);
        const seq = q.seq[j];
        arounds.set(q.i[j], {
          // Beyond the head on either side: the head row itself, or nothing of that metric.
          belowSame: head && seq > head.last ? head.row : q.lo[j] !== null ? TOO_FAR : undefined,
          aboveSame: q.hi[j] !== null || q.probe[j] !== null ? TOO_FAR : undefined,
        });
      }
      const res = await client.query<{ i: number; k: number; seq: number; ts: number; metric: string; value: string; unit: string; reset: boolean; sig: string | null }>({
        name: 'mrv_neighbours',
        text: SQL.neighbours,
        values: [q.dev, q.seq, q.metric, q.i, q.lo, q.hi, q.probe, MAX_METRIC_WALK],
      });
      for (const row of res.rows) {
        const a = arounds.get(row.i) as Around;
        const s = toStored(row);
        if (row.k === 0) a.at = s;
        else if (row.k === 1) a.below = s;
        else if (row.k === 2) a.above = s;
        else if (row.k === 3) a.belowSame = s;
        else a.aboveSame = s; // 4 (walk) or 5 (the metric's first row)
      }
    }

    // Decide each reading in input order, against the stored state plus the batch so far.
    const w = {
      dev: [] as string[], seq: [] as number[], fac: [] as string[], ts: [] as number[], metric: [] as string[], value: [] as string[],
      unit: [] as string[], reset: [] as boolean[], recv: [] as number[], arrival: [] as (number | null)[],
      sig: [] as (string | null)[], prev: [] as (string | null)[], sentValue: [] as (string | null)[], sentUnit: [] as (string | null)[],
    };
    const pairs = new Set<string>();
    for (let i = 0; i < readings.length; i++) {
      const value = values[i];
      if (value === undefined) continue;
      const r = readings[i];
      const st = devices.get(r.deviceId) as DeviceState;
      const candidate: StoredReading = { seq: r.seq, ts: r.ts, metric: r.metric, value, unit: r.unit, reset: r.reset === true };
      if (r.sig !== undefined) candidate.sig = r.sig;
      let outcome: CommitOutcome;
      try {
        outcome = checkReading(candidate, new BatchView(st, r.seq, r.metric, arounds.get(i)), st.limits);
      } catch (err) {
        if (!(err instanceof WalkTooLong)) throw err;
        outcome = {
          status: 'rejected',
          reason: 'implausible',
          detail: `late seq ${r.seq}: its neighbour of metric ${r.metric} is more than ${MAX_METRIC_WALK} readings away; not checked`,
        };
      }
      out[i] = outcome;
      if (outcome.status !== 'stored') continue;
      let arrival: number | null = null;
      if (st.top && r.seq < st.top.seq) {
        st.late += 1;
        st.lateChanged = true;
        arrival = st.late;
      } else st.top = candidate;
      st.batch.set(r.seq, candidate);
      const head = st.heads.get(r.metric);
      if (!head) st.heads.set(r.metric, { first: r.seq, last: r.seq, row: candidate, dirty: true });
      else {
        if (r.seq < head.first) head.first = r.seq;
        if (r.seq > head.last) {
          head.last = r.seq;
          head.row = candidate;
        }
        head.dirty = true;
      }
      w.dev.push(r.deviceId);
      w.seq.push(r.seq);
      w.fac.push(r.facilityId);
      w.ts.push(r.ts);
      w.metric.push(r.metric);
      w.value.push(value);
      w.unit.push(r.unit);
      w.reset.push(candidate.reset);
      w.recv.push(r.receivedAt);
      w.arrival.push(arrival);
      const signed = r.sig !== undefined;
      w.sig.push(signed ? (r.sig as string) : null);
      w.prev.push(signed ? (r.prev ?? '') : null);
      w.sentValue.push((signed && r.sentValue) || null);
      w.sentUnit.push((signed && r.sentUnit) || null);
      const pair = `${r.facilityId}\u0000${r.deviceId}`;
      if (!this.knownPairs.has(pair)) pairs.add(pair);
    }
    if (w.dev.length === 0) return { pairs: [] };

    const h = { dev: [] as string[], metric: [] as string[], first: [] as number[], last: [] as number[] };
    const s = { dev: [] as string[], max: [] as number[], late: [] as number[] };
    for (const [deviceId, st] of devices) {
      for (const [metric, head] of st.heads) {
        if (!head.dirty) continue;
        h.dev.push(deviceId);
        h.metric.push(metric);
        h.first.push(head.first);
        h.last.push(head.last);
      }
      if (st.top && (st.top !== st.dbTop || st.lateChanged)) {
        s.dev.push(deviceId);
        s.max.push(st.top.seq);
        s.late.push(st.late);
      }
    }
    const pairList = [...pairs];
    const pf = pairList.map((p) => p.slice(0, p.indexOf('\u0000')));
    const pd = pairList.map((p) => p.slice(p.indexOf('\u0000') + 1));
    return {
      pairs: pairList,
      write: {
        name: 'mrv_write',
        text: SQL.write,
        values: [w.dev, w.seq, w.fac, w.ts, w.metric, w.value, w.unit, w.reset, w.recv, w.arrival, w.sig, w.prev, w.sentValue, w.sentUnit, h.dev, h.metric, h.first, h.last, s.dev, s.max, s.late, pf, pd],
      },
    };
  }

  /** Limits of the batch's devices: the given lookup, or the registry's devices table in this database. */
  private async loadLimits(client: pg.PoolClient, ids: string[]): Promise<Map<string, DeviceLimits | undefined>> {
    const out = new Map<string, DeviceLimits | undefined>();
    if (this.limitsOf) {
      for (const id of ids) out.set(id, await this.limitsOf(id));
      return out;
    }
    if (!this.registryInDb) return out;
    const res = await client.query<{ device_id: string; kind: string; capacity: string | null; reporting_interval: number }>({ name: 'mrv_limits', text: SQL.limits, values: [ids] });
    for (const row of res.rows) {
      const l: DeviceLimits = { reportingIntervalSeconds: row.reporting_interval, kind: row.kind };
      if (row.capacity !== null) l.capacity = row.capacity;
      out.set(row.device_id, l);
    }
    return out;
  }

  private async limitsFor(deviceId: string): Promise<DeviceLimits | undefined> {
    if (this.limitsOf) return this.limitsOf(deviceId);
    if (!this.registryInDb) return undefined;
    const client = await this.pool.connect();
    try {
      return (await this.loadLimits(client, [deviceId])).get(deviceId);
    } finally {
      client.release();
    }
  }

  private async query<R extends pg.QueryResultRow>(name: string, text: string, values: unknown[]): Promise<R[]> {
    this.ensureOpen();
    try {
      return (await this.pool.query<R>({ name, text, values })).rows;
    } catch (err) {
      throw errors.STORE_UNAVAILABLE((err as Error).message);
    }
  }

  async marks(deviceIds: string[]): Promise<Map<string, VisibilityMark>> {
    this.ensureOpen();
    const out = new Map<string, VisibilityMark>();
    if (deviceIds.length === 0) return out;
    // One statement: every mark is of the same committed state.
    const rows = await this.query<{ device_id: string; max_seq: number; late: number }>('mrv_marks', SQL.marks, [[...new Set(deviceIds)]]);
    for (const r of rows) out.set(r.device_id, { maxSeq: r.max_seq, late: r.late });
    return out;
  }

  async consume(q: ConsumeQuery): Promise<Reading[]> {
    this.ensureOpen();
    const { mark, before } = q;
    if (!q.prev) return (await this.query<ReadingRow>('mrv_consume_all', SQL.consumeAll, [q.deviceId, mark.maxSeq, before, mark.late])).map(toReading);
    // Visible and due, minus what the previous settlement consumed, in disjoint range searches (one
    // statement): in-order seqs above the previous mark, late arrivals since it, and readings both
    // marks see whose ts became due since.
    const prev = q.prev;
    const parts: string[] = [];
    const args: unknown[] = [q.deviceId, before];
    if (mark.maxSeq > prev.mark.maxSeq) {
      args.push(prev.mark.maxSeq, mark.maxSeq);
      parts.push(`SELECT ${COLS} FROM readings WHERE device_id = $1 AND seq > $${args.length - 1} AND seq <= $${args.length} AND ts < $2 AND arrival IS NULL`);
    }
    if (mark.late > prev.mark.late) {
      args.push(prev.mark.late, mark.late);
      parts.push(`SELECT ${COLS} FROM readings WHERE device_id = $1 AND arrival > $${args.length - 1} AND arrival <= $${args.length} AND ts < $2`);
    }
    if (prev.before < before) {
      args.push(prev.before, Math.min(mark.maxSeq, prev.mark.maxSeq), Math.min(mark.late, prev.mark.late));
      const n = args.length;
      parts.push(`SELECT ${COLS} FROM readings WHERE device_id = $1 AND ts >= $${n - 2} AND ts < $2 AND ${visible(n - 1, n)}`);
    }
    if (parts.length === 0) return [];
    const sql = `${parts.map((p) => `(${p})`).join(' UNION ALL ')} ORDER BY seq`;
    return (await this.query<ReadingRow>(`mrv_consume_${parts.length}_${mark.maxSeq > prev.mark.maxSeq ? 1 : 0}${mark.late > prev.mark.late ? 1 : 0}`, sql, args)).map(toReading);
  }

  async hasReading(deviceId: string, from: number, to: number, mark: VisibilityMark): Promise<boolean> {
    return (await this.query('mrv_has', SQL.has, [deviceId, from, to, mark.maxSeq, mark.late])).length > 0;
  }

  async coverage(q: CoverageQuery): Promise<DeviceCoverage> {
    const rows = await this.query<{ bseq: number | null; bts: number | null; lseq: number | null; lts: number | null; after: boolean; n: number; co2: boolean }>(
      'mrv_coverage',
      SQL.coverage,
      [q.deviceId, q.start, q.end, q.mark.maxSeq, q.mark.late],
    );
    const row = rows[0];
    const out: DeviceCoverage = { after: row.after, between: 0, interval: false };
    if (row.bseq !== null && row.bts !== null) out.before = { seq: row.bseq, ts: row.bts };
    if (row.lseq !== null && row.lts !== null) {
      out.lastIn = { seq: row.lseq, ts: row.lts };
      if (out.before) out.between = row.n;
      out.interval = row.co2;
    }
    if (!out.interval) {
      let kind: string | undefined;
      try {
        kind = (await this.limitsFor(q.deviceId))?.kind;
      } catch (err) {
        throw errors.STORE_UNAVAILABLE((err as Error).message);
      }
      if (kind !== undefined && isIntervalKind(kind)) out.interval = true;
    }
    return out;
  }

  async list(filter: ReadingFilter): Promise<Reading[]> {
    const where: string[] = [];
    const args: unknown[] = [filter.facilityId];
    if (filter.metric !== undefined) {
      args.push(filter.metric);
      where.push(`metric = $${args.length}`);
    }
    if (filter.from !== undefined) {
      args.push(filter.from);
      where.push(`ts >= $${args.length}`);
    }
    if (filter.to !== undefined) {
      args.push(filter.to);
      where.push(`ts < $${args.length}`);
    }
    args.push(clampListLimit(filter.limit));
    const limit = `$${args.length}`;
    const extra = where.map((w) => ` AND ${w}`).join('');
    if (filter.deviceId !== undefined) {
      args.push(filter.deviceId);
      const sql = `SELECT ${COLS} FROM readings WHERE device_id = $${args.length} AND facility_id = $1${extra} ORDER BY ts DESC, seq DESC LIMIT ${limit}`;
      return (await this.query<ReadingRow>(`mrv_list_d_${where.length}_${filter.metric !== undefined ? 1 : 0}${filter.from !== undefined ? 1 : 0}`, sql, args)).map(toReading);
    }
    // The facility's devices, each read newest first through its own (device_id, ts) index, merged.
    const sql = `SELECT r.* FROM reading_devices d CROSS JOIN LATERAL (
        SELECT ${COLS} FROM readings WHERE device_id = d.device_id AND facility_id = $1${extra} ORDER BY ts DESC, seq DESC LIMIT ${limit}
      ) r WHERE d.facility_id = $1 ORDER BY r.ts DESC, r.device_id DESC, r.seq DESC LIMIT ${limit}`;
    return (await this.query<ReadingRow>(`mrv_list_f_${where.length}_${filter.metric !== undefined ? 1 : 0}${filter.from !== undefined ? 1 : 0}`, sql, args)).map(toReading);
  }

  async get(deviceId: string, seq: number): Promise<Reading | undefined> {
    const rows = await this.query<ReadingRow>('mrv_get', SQL.get, [deviceId, seq]);
    return rows[0] ? toReading(rows[0]) : undefined;
  }

  async ping(): Promise<boolean> {
    if (this.closed) return false;
    try {
      const res = await this.pool.query<{ one: number }>('SELECT 1 AS one');
      return res.rows[0]?.one === 1;
    } catch {
      return false;
    }
  }

  /** Stops this store (later calls fail with STORE_UNAVAILABLE); ends the pool when the store owns it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.ownsPool) await this.pool.end();
  }
}
