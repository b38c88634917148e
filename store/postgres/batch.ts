/**
 * One commit's decisions, inside its transaction (steps 1 to 3 of store/postgres/readings.ts's
 * header): lock the batch's device state rows, read their heads and the stored neighbours of late
 * readings, decide each reading with the shared rules (domain/ingest-rules.ts `checkReading`) over
 * the stored state plus the batch's earlier stored readings, and build the one statement that writes
 * what was stored (step 4).
 */
import type pg from 'pg';
import type { DeviceReadings, StoredReading } from '../../domain/ingest-rules.ts';
import type { Reading } from '../../domain/reading.ts';
import type { CommitOutcome, DeviceLimits } from '../types.ts';
import { MAX_METRIC_WALK } from '../types.ts';
import { SQL } from './sql.ts';
import { WalkTooLong, checkStoredReading, rowToStored as toStored } from '../rows.ts';

/** What the store lends one commit's decisions. */
export interface BatchContext {
  /** Limits of the batch's devices (the configured lookup, or the registry's table in this database). */
  loadLimits(client: pg.PoolClient, ids: string[]): Promise<Map<string, DeviceLimits | undefined>>;
  /** Some state rows were missing: forget which devices the store believes have one. */
  forgetDevices(): void;
  /** (facility NUL device) pairs known to be in reading_devices already. */
  knownPairs: ReadonlySet<string>;
}

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

/**
 * Locks and reads the batch's devices and decides every reading (outcomes into `out`); returns the
 * statement that writes what was stored. `begin`: BEGIN already sent, not yet awaited (pipelining).
 */
export async function decideBatch(
  client: pg.PoolClient,
  ctx: BatchContext,
  readings: Reading[],
  values: (string | undefined)[],
  ids: string[],
  out: CommitOutcome[],
  begin?: Promise<unknown>,
): Promise<{ pairs: string[]; write?: pg.QueryConfig }> {
  type HeadRow = {
    device_id: string; metric: string; first_seq: number; last_seq: number;
    row_seq: number | null; ts: number | null; value: string | null; unit: string | null; reset: boolean | null; sig: string | null;
  };
  const lockP = client.query<{ device_id: string; max_seq: number | null; late: number }>({ name: 'mrv_lock', text: SQL.lock, values: [ids] });
  let locked: pg.QueryResult<{ device_id: string; max_seq: number | null; late: number }>;
  let heads: pg.QueryResult<HeadRow>;
  let limits: Map<string, DeviceLimits | undefined>;
  if (begin) {
    const headsP = client.query<HeadRow>({ name: 'mrv_heads', text: SQL.heads, values: [ids] });
    const limitsP = ctx.loadLimits(client, ids);
    [, locked, heads, limits] = await Promise.all([begin, lockP, headsP, limitsP]);
  } else {
    locked = await lockP;
    heads = await client.query<HeadRow>({ name: 'mrv_heads', text: SQL.heads, values: [ids] });
    limits = await ctx.loadLimits(client, ids);
  }
  if (locked.rowCount !== ids.length) {
    ctx.forgetDevices();
    throw new Error(`device state rows missing (${locked.rowCount} of ${ids.length}); retry`);
  }

  const devices = new Map<string, DeviceState>();
  for (const row of locked.rows) {
    devices.set(row.device_id, { late: row.late, lateChanged: false, heads: new Map(), dbHeads: new Map(), batch: new Map(), limits: limits.get(row.device_id) });
  }
  // A head whose last row fields are not of its last seq (moved by a writer of an older schema
  // version, store/postgres/schema.ts migration 6): that row is read from readings, under the lock.
  const stale = heads.rows.filter((h) => h.row_seq !== h.last_seq);
  const readBack = new Map<string, StoredReading>();
  if (stale.length > 0) {
    type Row = { device_id: string; seq: number; ts: number; metric: string; value: string; unit: string; reset: boolean; sig: string | null };
    const res = await client.query<Row>({ text: SQL.rowsAt, values: [stale.map((h) => h.device_id), stale.map((h) => h.last_seq)] });
    for (const r of res.rows) readBack.set(`${r.device_id}\u0000${r.seq}`, toStored(r));
  }
  for (const h of heads.rows) {
    const st = devices.get(h.device_id);
    if (!st) continue;
    const row =
      h.row_seq === h.last_seq
        ? toStored({ seq: h.last_seq, ts: h.ts as number, metric: h.metric, value: h.value as string, unit: h.unit as string, reset: h.reset as boolean, sig: h.sig })
        : readBack.get(`${h.device_id}\u0000${h.last_seq}`);
    if (!row) throw new Error(`head ${h.device_id}/${h.metric}: no reading at its last seq ${h.last_seq}`);
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
    const outcome = checkStoredReading(candidate, new BatchView(st, r.seq, r.metric, arounds.get(i)), st.limits, r.metric);
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
    if (!ctx.knownPairs.has(pair)) pairs.add(pair);
  }
  if (w.dev.length === 0) return { pairs: [] };

  const h = {
    dev: [] as string[], metric: [] as string[], first: [] as number[], last: [] as number[],
    ts: [] as number[], value: [] as string[], unit: [] as string[], reset: [] as boolean[], sig: [] as (string | null)[],
  };
  const s = { dev: [] as string[], max: [] as number[], late: [] as number[] };
  for (const [deviceId, st] of devices) {
    for (const [metric, head] of st.heads) {
      if (!head.dirty) continue;
      h.dev.push(deviceId);
      h.metric.push(metric);
      h.first.push(head.first);
      h.last.push(head.last);
      h.ts.push(head.row.ts);
      h.value.push(head.row.value);
      h.unit.push(head.row.unit);
      h.reset.push(head.row.reset);
      h.sig.push(head.row.sig ?? null);
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
      values: [w.dev, w.seq, w.fac, w.ts, w.metric, w.value, w.unit, w.reset, w.recv, w.arrival, w.sig, w.prev, w.sentValue, w.sentUnit, h.dev, h.metric, h.first, h.last, s.dev, s.max, s.late, pf, pd, h.ts, h.value, h.unit, h.reset, h.sig],
    },
  };
}
