/**
 * The embedded store on one SQLite file (better-sqlite3, WAL, synchronous=FULL; see store/db.ts):
 * the ReadingStore and the Registry (facilities + baseline history, devices + secret hashes,
 * online status, rejections log).
 *
 * Readings: a WITHOUT ROWID table clustered on (device_id, seq) plus an index on (device_id, ts), so
 * every oracle query (consume, hasReading, highWater) is a range search on one device, never a scan
 * of history. There is deliberately no facility index: every reading would pay for it on the ingest
 * path (~6% of the broker's throughput in bench/ingest.ts), and the one facility-wide query, the
 * API's listing, takes the newest `limit` rows of each of the facility's devices (`reading_devices`)
 * from the device index and merges them. `device_heads` holds each device's last value per metric
 * (by seq) for the register-backwards check, maintained in the same transaction as the readings.
 *
 * Concurrency: `commit` runs one BEGIN IMMEDIATE transaction per batch and reads all the state it
 * checks against (highest seq, duplicates, register heads) inside it. There is deliberately no
 * in-process cache: the lookups are single B-tree probes (only for devices present in the batch),
 * and without a cache a second process writing the same file is always seen.
 *
 * Closing: the stores never close the Db handle; whoever opened it (openDatabase) closes it.
 */
import type { Statement } from 'better-sqlite3';
import { Decimal } from '../domain/decimal.ts';
import { errors } from '../domain/errors.ts';
import { truncateUtf8 } from '../domain/json.ts';
import { silentLogger, type Logger } from '../domain/logger.ts';
import { ID_RE, METRICS, isMetric, type Metric, type Reading, type RejectReason, type Rejection } from '../domain/reading.ts';
import type { Db } from './db.ts';
import { generateSecret, hashSecretSync, verifyDeviceSecret } from './secrets.ts';
import type {
  CommitOutcome,
  ConsumeQuery,
  Device,
  DeviceCredentials,
  Facility,
  ReadingFilter,
  ReadingStore,
  Registry,
  Status,
} from './types.ts';

export const DEFAULT_LIST_LIMIT = 100;
export const MAX_LIST_LIMIT = 1000;
export const MAX_REJECTION_PAYLOAD_BYTES = 4096;
const MAX_REJECTION_DETAIL_BYTES = 1024;
const ADDRESS_RE = /^0x[0-9a-fA-F]{40}$/;

export interface SqliteStoreOptions {
  logger?: Logger;
  /** Epoch-ms clock (createdAt, default effectiveFrom of a baseline change). */
  clock?: () => number;
}

export interface SqliteStores {
  readings: SqliteReadingStore;
  registry: SqliteRegistry;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS readings (
  device_id   TEXT    NOT NULL,
  seq         INTEGER NOT NULL,
  facility_id TEXT    NOT NULL,
  ts          INTEGER NOT NULL,
  metric      TEXT    NOT NULL,
  value       TEXT    NOT NULL,
  unit        TEXT    NOT NULL,
  reset       INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS readings_device_ts ON readings (device_id, ts);
-- Files made before 2026-12-01 have a facility index; listing no longer uses it, ingest paid for it.
DROP INDEX IF EXISTS readings_facility_ts;

-- The devices that have readings, per facility (for the facility-wide listing); kept by commit.
CREATE TABLE IF NOT EXISTS reading_devices (
  facility_id TEXT NOT NULL,
  device_id   TEXT NOT NULL,
  PRIMARY KEY (facility_id, device_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS device_heads (
  device_id TEXT    NOT NULL,
  metric    TEXT    NOT NULL,
  seq       INTEGER NOT NULL,
  value     TEXT    NOT NULL,
  PRIMARY KEY (device_id, metric)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS facilities (
  id            TEXT PRIMARY KEY,
  name          TEXT    NOT NULL,
  owner         TEXT    NOT NULL,
  grid_factor   TEXT    NOT NULL,
  gas_factor    TEXT    NOT NULL,
  status        TEXT    NOT NULL CHECK (status IN ('active', 'suspended')),
  created_at    INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS facility_baselines (
  facility_id    TEXT    NOT NULL REFERENCES facilities (id),
  effective_from INTEGER NOT NULL,
  baseline       TEXT    NOT NULL,
  set_at         INTEGER NOT NULL,
  PRIMARY KEY (facility_id, effective_from)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS devices (
  device_id    TEXT PRIMARY KEY,
  facility_id  TEXT    NOT NULL REFERENCES facilities (id),
  kind         TEXT    NOT NULL,
  status       TEXT    NOT NULL CHECK (status IN ('active', 'suspended')),
  created_at   INTEGER NOT NULL,
  online       INTEGER NOT NULL DEFAULT 0,
  last_seen_at INTEGER,
  secret_hash  TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS devices_facility ON devices (facility_id, device_id);

CREATE TABLE IF NOT EXISTS rejections (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  facility_id TEXT    NOT NULL,
  device_id   TEXT    NOT NULL,
  received_at INTEGER NOT NULL,
  reason      TEXT    NOT NULL,
  detail      TEXT,
  payload     TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS rejections_facility ON rejections (facility_id, id);
`;

/** Creates the tables (idempotent) and returns the reading store and the registry on `db`. */
export function openSqliteStores(db: Db, opts: SqliteStoreOptions = {}): SqliteStores {
  const hadReadings = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'readings'").get() !== undefined;
  const hadDeviceList = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'reading_devices'").get() !== undefined;
  db.exec(SCHEMA);
  migrateRejections(db);
  // A file from before reading_devices: fill it once from the readings (one scan, at upgrade only).
  if (hadReadings && !hadDeviceList) db.exec('INSERT OR IGNORE INTO reading_devices SELECT DISTINCT facility_id, device_id FROM readings');
  const logger = (opts.logger ?? silentLogger).child({ component: 'store' });
  const clock = opts.clock ?? Date.now;
  return { readings: new SqliteReadingStore(db, logger), registry: new SqliteRegistry(db, logger, clock) };
}

/** Rejections of one device with one reason are aggregated per this span (one row, with a count). */
export const REJECTION_BUCKET_MS = 60_000;

/**
 * Rejections log aggregation (issue 10 item 13): `bucket` (minute of the first rejection), `count` and
 * `last_received_at`, a unique key (facility, device, reason, bucket) for the upsert, and an index on
 * `last_received_at` for pruning. Idempotent; rows of older files keep count 1 and a NULL bucket.
 */
function migrateRejections(db: Db): void {
  // Columns read inside the IMMEDIATE transaction: two processes opening an old file at once migrate it once.
  db.transaction(() => {
    const cols = new Set((db.prepare('PRAGMA table_info(rejections)').all() as { name: string }[]).map((c) => c.name));
    if (!cols.has('bucket')) db.exec('ALTER TABLE rejections ADD COLUMN bucket INTEGER');
    if (!cols.has('count')) db.exec('ALTER TABLE rejections ADD COLUMN count INTEGER NOT NULL DEFAULT 1');
    if (!cols.has('last_received_at')) {
      db.exec('ALTER TABLE rejections ADD COLUMN last_received_at INTEGER');
      db.exec('UPDATE rejections SET last_received_at = received_at');
    }
    db.exec(`CREATE UNIQUE INDEX IF NOT EXISTS rejections_agg ON rejections (facility_id, device_id, reason, bucket);
      CREATE INDEX IF NOT EXISTS rejections_last ON rejections (last_received_at);`);
  }).immediate();
}

// ---------------------------------------------------------------------------------------------
// Readings

interface ReadingRow {
  device_id: string;
  seq: number;
  facility_id: string;
  ts: number;
  metric: string;
  value: string;
  unit: string;
  reset: number;
  received_at: number;
}

const READING_COLS = 'device_id, seq, facility_id, ts, metric, value, unit, reset, received_at';

function toReading(r: ReadingRow): Reading {
  return {
    facilityId: r.facility_id,
    deviceId: r.device_id,
    seq: r.seq,
    ts: r.ts,
    metric: r.metric as Metric,
    value: r.value,
    unit: r.unit,
    reset: r.reset === 1,
    receivedAt: r.received_at,
  };
}

/**
 * The oracle's per-device queries, each a range search on one device (checked with EXPLAIN QUERY
 * PLAN in test/store/plan.test.ts). `+col` keeps a column out of index selection on purpose.
 */
export const READING_QUERIES = {
  /** First settlement of a device: everything visible and due (primary key range on seq). */
  consumeAll: `SELECT ${READING_COLS} FROM readings WHERE device_id = ? AND seq <= ? AND +ts < ? ORDER BY seq`,
  /** Readings above the previous settlement's high-water mark (primary key range on seq). */
  consumeNew: `SELECT ${READING_COLS} FROM readings WHERE device_id = ? AND seq > ? AND seq <= ? AND +ts < ? ORDER BY seq`,
  /** Readings the previous settlement saw but that were not due yet (range on the ts index). */
  consumeLate: `SELECT ${READING_COLS} FROM readings INDEXED BY readings_device_ts
    WHERE device_id = ? AND ts >= ? AND ts < ? AND +seq <= ? ORDER BY seq`,
  /** Coverage: any visible reading in [from, to). */
  has: `SELECT 1 FROM readings INDEXED BY readings_device_ts WHERE device_id = ? AND ts >= ? AND ts < ? AND +seq <= ? LIMIT 1`,
  /** Highest stored seq (the last entry of the primary key for the device). */
  maxSeq: 'SELECT MAX(seq) FROM readings WHERE device_id = ?',
} as const;

/** Per-device state while a batch is checked: loaded from the file inside the transaction. */
interface DeviceState {
  maxSeq: number; // -1 when the device has no readings
  /** Register heads by metric; values as canonical decimal text. */
  heads: Map<string, { seq: number; value: string; dirty: boolean }>;
  /** Facilities this batch stored readings of the device under (for reading_devices). */
  facilities: Set<string>;
}

const STORED: CommitOutcome = Object.freeze({ status: 'stored' });
const DUPLICATE: CommitOutcome = Object.freeze({ status: 'duplicate' });
/** Canonical text of a non-negative decimal, as Decimal.toString() prints it (no exponent, no trailing zeros). */
const CANONICAL_RE = /^(?:0|[1-9]\d*)(?:\.\d*[1-9])?$/;

/** Compares two decimal texts exactly: by digits when both are canonical and non-negative, else through Decimal. */
export function compareDecimalText(a: string, b: string): -1 | 0 | 1 {
  if (!CANONICAL_RE.test(a) || !CANONICAL_RE.test(b)) return Decimal.parse(a).cmp(Decimal.parse(b));
  const ia = a.indexOf('.');
  const ib = b.indexOf('.');
  const intA = ia < 0 ? a : a.slice(0, ia);
  const intB = ib < 0 ? b : b.slice(0, ib);
  if (intA.length !== intB.length) return intA.length < intB.length ? -1 : 1;
  if (intA !== intB) return intA < intB ? -1 : 1;
  // No trailing zeros, so fractions compare as strings ("45" < "5": 0.45 < 0.5; "" < "1").
  const fa = ia < 0 ? '' : a.slice(ia + 1);
  const fb = ib < 0 ? '' : b.slice(ib + 1);
  return fa === fb ? 0 : fa < fb ? -1 : 1;
}

function clampLimit(limit: number | undefined): number {
  if (limit === undefined || !Number.isFinite(limit)) return DEFAULT_LIST_LIMIT;
  return Math.min(MAX_LIST_LIMIT, Math.max(1, Math.floor(limit)));
}

export class SqliteReadingStore implements ReadingStore {
  readonly kind = 'sqlite' as const;
  private closed = false;
  private readonly db: Db;
  private readonly logger: Logger;
  private readonly stmt: {
    maxSeq: Statement<[string], number | null>;
    head: Statement<[string, string], { seq: number; value: string }>;
    getOne: Statement<[string, number], ReadingRow>;
    insert: Statement<unknown[]>;
    upsertHead: Statement<[string, string, number, string]>;
    consumeAll: Statement<[string, number, number], ReadingRow>;
    consumeNew: Statement<[string, number, number, number], ReadingRow>;
    consumeLate: Statement<[string, number, number, number], ReadingRow>;
    has: Statement<[string, number, number, number], number>;
    facilityDevices: Statement<[string], string>;
    addDevice: Statement<[string, string]>;
  };
  private readonly commitTx: (readings: Reading[]) => CommitOutcome[];

  constructor(db: Db, logger: Logger) {
    this.db = db;
    this.logger = logger;
    this.stmt = {
      maxSeq: db.prepare<[string], number | null>(READING_QUERIES.maxSeq).pluck(),
      head: db.prepare('SELECT seq, value FROM device_heads WHERE device_id = ? AND metric = ?'),
      getOne: db.prepare(`SELECT ${READING_COLS} FROM readings WHERE device_id = ? AND seq = ?`),
      insert: db.prepare(`INSERT INTO readings (${READING_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      upsertHead: db.prepare(
        `INSERT INTO device_heads (device_id, metric, seq, value) VALUES (?, ?, ?, ?)
         ON CONFLICT (device_id, metric) DO UPDATE SET seq = excluded.seq, value = excluded.value`,
      ),
      consumeAll: db.prepare(READING_QUERIES.consumeAll),
      consumeNew: db.prepare(READING_QUERIES.consumeNew),
      consumeLate: db.prepare(READING_QUERIES.consumeLate),
      has: db.prepare<[string, number, number, number], number>(READING_QUERIES.has).pluck(),
      facilityDevices: db.prepare<[string], string>('SELECT device_id FROM reading_devices WHERE facility_id = ?').pluck(),
      addDevice: db.prepare('INSERT OR IGNORE INTO reading_devices (facility_id, device_id) VALUES (?, ?)'),
    };
    const tx = db.transaction((readings: Reading[]) => this.check(readings));
    this.commitTx = (readings) => tx.immediate(readings);
  }

  private ensureOpen(): void {
    if (this.closed || !this.db.open) throw errors.STORE_UNAVAILABLE('sqlite store closed');
  }

  async commit(readings: Reading[]): Promise<CommitOutcome[]> {
    this.ensureOpen();
    if (readings.length === 0) return [];
    try {
      return this.commitTx(readings);
    } catch (err) {
      this.logger.error({ err, count: readings.length }, 'reading batch commit failed');
      throw errors.STORE_UNAVAILABLE((err as Error).message);
    }
  }

  /** Runs inside the IMMEDIATE transaction: stateful checks against the file plus this batch. */
  private check(readings: Reading[]): CommitOutcome[] {
    const { stmt } = this;
    const devices = new Map<string, DeviceState>();
    const out: CommitOutcome[] = new Array(readings.length);
    for (let i = 0; i < readings.length; i++) {
      const r = readings[i];
      // Validation hands over canonical text; anything else is parsed (and refused if not a decimal).
      let canonical = r.value;
      if (!CANONICAL_RE.test(canonical)) {
        try {
          canonical = Decimal.parse(r.value).toString();
        } catch {
          out[i] = { status: 'rejected', reason: 'invalid_value', detail: 'value is not a decimal' };
          continue;
        }
      }
      let st = devices.get(r.deviceId);
      if (!st) {
        st = { maxSeq: stmt.maxSeq.get(r.deviceId) ?? -1, heads: new Map(), facilities: new Set() };
        devices.set(r.deviceId, st);
      }
      if (r.seq <= st.maxSeq) {
        const existing = stmt.getOne.get(r.deviceId, r.seq);
        if (!existing) {
          out[i] = reject('seq_not_increasing', `seq ${r.seq} is not above the highest stored seq ${st.maxSeq}`);
        } else if (
          existing.ts === r.ts &&
          existing.metric === r.metric &&
          existing.value === canonical &&
          existing.unit === r.unit &&
          existing.reset === (r.reset ? 1 : 0)
        ) {
          out[i] = DUPLICATE;
        } else {
          out[i] = reject('duplicate_conflict', `seq ${r.seq} already stored with different content`);
        }
        continue;
      }
      const isRegister = isMetric(r.metric) && METRICS[r.metric].kind === 'register';
      let head = st.heads.get(r.metric);
      if (isRegister && head === undefined) {
        const row = stmt.head.get(r.deviceId, r.metric);
        if (row) {
          head = { seq: row.seq, value: row.value, dirty: false };
          st.heads.set(r.metric, head);
        }
      }
      if (isRegister && !r.reset && head && compareDecimalText(canonical, head.value) < 0) {
        out[i] = reject('register_backwards', `${r.metric} ${canonical} is below the previous ${head.value} (seq ${head.seq}) without reset`);
        continue;
      }
      stmt.insert.run(r.deviceId, r.seq, r.facilityId, r.ts, r.metric, canonical, r.unit, r.reset ? 1 : 0, r.receivedAt);
      st.maxSeq = r.seq;
      st.facilities.add(r.facilityId);
      if (isRegister) st.heads.set(r.metric, { seq: r.seq, value: canonical, dirty: true });
      out[i] = STORED;
    }
    for (const [deviceId, st] of devices) {
      for (const [metric, h] of st.heads) {
        if (h.dirty) stmt.upsertHead.run(deviceId, metric, h.seq, h.value);
      }
      for (const facilityId of st.facilities) stmt.addDevice.run(facilityId, deviceId);
    }
    return out;
  }

  async highWater(deviceIds: string[]): Promise<Map<string, number>> {
    this.ensureOpen();
    const out = new Map<string, number>();
    for (const id of deviceIds) {
      const m = this.stmt.maxSeq.get(id);
      if (m !== null && m !== undefined) out.set(id, m);
    }
    return out;
  }

  async consume(q: ConsumeQuery): Promise<Reading[]> {
    this.ensureOpen();
    const { stmt } = this;
    if (!q.prev) return stmt.consumeAll.all(q.deviceId, q.maxSeq, q.before).map(toReading);
    // Visible and due, minus what the previous settlement consumed, in two disjoint range searches:
    // seq above the previous high-water mark, and older seqs whose ts became due since.
    const late = q.prev.before < q.before ? stmt.consumeLate.all(q.deviceId, q.prev.before, q.before, Math.min(q.prev.maxSeq, q.maxSeq)) : [];
    const fresh = q.maxSeq > q.prev.maxSeq ? stmt.consumeNew.all(q.deviceId, q.prev.maxSeq, q.maxSeq, q.before) : [];
    return [...late, ...fresh].map(toReading);
  }

  async hasReading(deviceId: string, from: number, to: number, maxSeq: number): Promise<boolean> {
    this.ensureOpen();
    return this.stmt.has.get(deviceId, from, to, maxSeq) !== undefined;
  }

  async list(filter: ReadingFilter): Promise<Reading[]> {
    this.ensureOpen();
    if (filter.deviceId !== undefined) {
      const { sql, args } = listQuery({ ...filter, deviceId: filter.deviceId });
      return (this.db.prepare(sql).all(...args) as ReadingRow[]).map(toReading);
    }
    // The facility's devices, each read newest first through its own index, merged.
    const devices = this.stmt.facilityDevices.all(filter.facilityId);
    if (devices.length === 0) return [];
    const { sql } = listQuery({ ...filter, deviceId: '' });
    const stmt = this.db.prepare<unknown[], ReadingRow>(sql);
    const rows: ReadingRow[] = [];
    for (const deviceId of devices) rows.push(...stmt.all(...listQuery({ ...filter, deviceId }).args));
    rows.sort((a, b) => b.ts - a.ts || (a.device_id < b.device_id ? 1 : a.device_id > b.device_id ? -1 : 0) || b.seq - a.seq);
    return rows.slice(0, clampLimit(filter.limit)).map(toReading);
  }

  async get(deviceId: string, seq: number): Promise<Reading | undefined> {
    this.ensureOpen();
    const row = this.stmt.getOne.get(deviceId, seq);
    return row ? toReading(row) : undefined;
  }

  async ping(): Promise<boolean> {
    if (this.closed || !this.db.open) return false;
    try {
      return this.db.prepare('SELECT 1').pluck().get() === 1;
    } catch {
      return false;
    }
  }

  /** Stops this store (later calls fail with STORE_UNAVAILABLE); the Db handle stays open. */
  async close(): Promise<void> {
    this.closed = true;
  }
}

/**
 * The SQL of list() for one device (a facility's listing runs it for each of its devices and merges):
 * newest first (ts, then seq), from <= ts < to, limit default 100, at most 1000, on the
 * (device_id, ts) index.
 */
export function listQuery(filter: ReadingFilter & { deviceId: string }): { sql: string; args: (string | number)[] } {
  const where: string[] = ['device_id = ?', 'facility_id = ?'];
  const args: (string | number)[] = [filter.deviceId, filter.facilityId];
  const index = 'readings_device_ts';
  const order = 'ts DESC, seq DESC';
  if (filter.metric !== undefined) {
    where.push('metric = ?');
    args.push(filter.metric);
  }
  if (filter.from !== undefined) {
    where.push('ts >= ?');
    args.push(filter.from);
  }
  if (filter.to !== undefined) {
    where.push('ts < ?');
    args.push(filter.to);
  }
  args.push(clampLimit(filter.limit));
  return { sql: `SELECT ${READING_COLS} FROM readings INDEXED BY ${index} WHERE ${where.join(' AND ')} ORDER BY ${order} LIMIT ?`, args };
}

function reject(reason: RejectReason, detail: string): CommitOutcome {
  return { status: 'rejected', reason, detail };
}

// ---------------------------------------------------------------------------------------------
// Registry

interface FacilityRow {
  id: string;
  name: string;
  owner: string;
  grid_factor: string;
  gas_factor: string;
  status: Status;
  created_at: number;
  baseline: string;
}

interface DeviceRow {
  device_id: string;
  facility_id: string;
  kind: string;
  status: Status;
  created_at: number;
  online: number;
  last_seen_at: number | null;
}

export interface BaselineChange {
  baselineKgPerHour: string;
  effectiveFrom: number;
  setAt: number;
}

/** Baseline of a facility's first entry: in force from the start of time. */
const FOREVER = 0;

function toDevice(r: DeviceRow): Device {
  const d: Device = {
    deviceId: r.device_id,
    facilityId: r.facility_id,
    kind: r.kind,
    status: r.status,
    createdAt: r.created_at,
    online: r.online === 1,
  };
  if (r.last_seen_at !== null) d.lastSeenAt = r.last_seen_at;
  return d;
}

function toFacility(r: FacilityRow): Facility {
  return {
    id: r.id,
    name: r.name,
    owner: r.owner,
    baselineKgPerHour: r.baseline,
    gridFactorKgPerKwh: r.grid_factor,
    gasFactorKgPerM3: r.gas_factor,
    status: r.status,
    createdAt: r.created_at,
  };
}

/** Canonical text of a non-negative decimal setting, or a VALIDATION error naming it. */
function nonNegativeDecimal(name: string, v: unknown): string {
  let d: Decimal;
  try {
    if (typeof v !== 'string' && typeof v !== 'number') throw new Error();
    d = Decimal.from(v);
  } catch {
    throw errors.VALIDATION(`${name} must be a decimal number`);
  }
  if (d.isNegative()) throw errors.VALIDATION(`${name} must not be negative`);
  return d.toString();
}

function checkStatus(s: unknown): Status {
  if (s !== 'active' && s !== 'suspended') throw errors.VALIDATION('status must be active or suspended');
  return s;
}

// The latest configured baseline of a facility (not necessarily in force yet).
const FACILITY_SELECT = `SELECT f.id, f.name, f.owner, f.grid_factor, f.gas_factor, f.status, f.created_at,
  (SELECT b.baseline FROM facility_baselines b WHERE b.facility_id = f.id ORDER BY b.effective_from DESC LIMIT 1) AS baseline
  FROM facilities f`;
const DEVICE_COLS = 'device_id, facility_id, kind, status, created_at, online, last_seen_at';

export class SqliteRegistry implements Registry {
  private readonly db: Db;
  private readonly logger: Logger;
  private readonly clock: () => number;
  private readonly stmt;

  constructor(db: Db, logger: Logger, clock: () => number) {
    this.db = db;
    this.logger = logger;
    this.clock = clock;
    this.stmt = {
      facility: db.prepare<[string], FacilityRow>(`${FACILITY_SELECT} WHERE f.id = ?`),
      facilities: db.prepare<[], FacilityRow>(`${FACILITY_SELECT} ORDER BY f.id`),
      insertFacility: db.prepare(
        'INSERT INTO facilities (id, name, owner, grid_factor, gas_factor, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      setFacilityStatus: db.prepare('UPDATE facilities SET status = ? WHERE id = ?'),
      setBaseline: db.prepare(
        `INSERT INTO facility_baselines (facility_id, effective_from, baseline, set_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (facility_id, effective_from) DO UPDATE SET baseline = excluded.baseline, set_at = excluded.set_at`,
      ),
      baselineAt: db
        .prepare<[string, number], string>(
          'SELECT baseline FROM facility_baselines WHERE facility_id = ? AND effective_from <= ? ORDER BY effective_from DESC LIMIT 1',
        )
        .pluck(),
      baselineFirst: db
        .prepare<[string], string>('SELECT baseline FROM facility_baselines WHERE facility_id = ? ORDER BY effective_from LIMIT 1')
        .pluck(),
      baselines: db.prepare<[string], { baseline: string; effective_from: number; set_at: number }>(
        'SELECT baseline, effective_from, set_at FROM facility_baselines WHERE facility_id = ? ORDER BY effective_from',
      ),
      device: db.prepare<[string], DeviceRow>(`SELECT ${DEVICE_COLS} FROM devices WHERE device_id = ?`),
      devices: db.prepare<[string], DeviceRow>(`SELECT ${DEVICE_COLS} FROM devices WHERE facility_id = ? ORDER BY device_id`),
      insertDevice: db.prepare(
        'INSERT INTO devices (device_id, facility_id, kind, status, created_at, online, secret_hash) VALUES (?, ?, ?, ?, ?, 0, ?)',
      ),
      setDeviceStatus: db.prepare('UPDATE devices SET status = ? WHERE device_id = ?'),
      setSecret: db.prepare('UPDATE devices SET secret_hash = ? WHERE device_id = ?'),
      replaceSecret: db.prepare('UPDATE devices SET secret_hash = ? WHERE device_id = ? AND secret_hash = ?'),
      setOnline: db.prepare('UPDATE devices SET online = ?, last_seen_at = MAX(COALESCE(last_seen_at, 0), ?) WHERE device_id = ?'),
      credentials: db.prepare<[string], { device_id: string; facility_id: string; status: Status; facility_status: Status; secret_hash: string }>(
        `SELECT d.device_id, d.facility_id, d.status, f.status AS facility_status, d.secret_hash
         FROM devices d JOIN facilities f ON f.id = d.facility_id WHERE d.device_id = ?`,
      ),
      insertRejection: db.prepare(
        `INSERT INTO rejections (facility_id, device_id, received_at, reason, detail, payload, bucket, count, last_received_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (facility_id, device_id, reason, bucket) DO UPDATE SET
           count = count + excluded.count, last_received_at = MAX(last_received_at, excluded.last_received_at)`,
      ),
      rejections: db.prepare<
        [string, number],
        { facility_id: string; device_id: string; received_at: number; reason: string; detail: string | null; payload: string; count: number; last_received_at: number | null }
      >(
        'SELECT facility_id, device_id, received_at, reason, detail, payload, count, last_received_at FROM rejections WHERE facility_id = ? ORDER BY id DESC LIMIT ?',
      ),
      pruneRejections: db.prepare('DELETE FROM rejections WHERE last_received_at < ?'),
      dataVersion: db.prepare<[], number>('PRAGMA data_version').pluck(),
    };
  }

  // Facilities -------------------------------------------------------------------------------

  createFacility(f: Omit<Facility, 'status' | 'createdAt'> & { createdAt?: number }): Facility {
    if (typeof f.id !== 'string' || !ID_RE.test(f.id)) throw errors.VALIDATION('facility id must match [A-Za-z0-9_-]{1,64}');
    if (typeof f.name !== 'string' || f.name.length === 0 || f.name.length > 200) throw errors.VALIDATION('name must be 1..200 characters');
    if (typeof f.owner !== 'string' || !ADDRESS_RE.test(f.owner)) throw errors.VALIDATION('owner must be a 0x address');
    const baseline = nonNegativeDecimal('baselineKgPerHour', f.baselineKgPerHour);
    const grid = nonNegativeDecimal('gridFactorKgPerKwh', f.gridFactorKgPerKwh);
    const gas = nonNegativeDecimal('gasFactorKgPerM3', f.gasFactorKgPerM3);
    const createdAt = f.createdAt ?? this.clock();
    this.db.transaction(() => {
      if (this.stmt.facility.get(f.id)) throw errors.CONFLICT(`facility ${f.id} already exists`);
      this.stmt.insertFacility.run(f.id, f.name, f.owner, grid, gas, 'active', createdAt);
      this.stmt.setBaseline.run(f.id, FOREVER, baseline, createdAt);
    }).immediate();
    this.logger.info({ facilityId: f.id }, 'facility created');
    return this.mustFacility(f.id);
  }

  getFacility(id: string): Facility | undefined {
    const row = this.stmt.facility.get(id);
    return row ? toFacility(row) : undefined;
  }

  listFacilities(): Facility[] {
    return this.stmt.facilities.all().map(toFacility);
  }

  private mustFacility(id: string): Facility {
    const f = this.getFacility(id);
    if (!f) throw errors.FACILITY_NOT_FOUND(id);
    return f;
  }

  /**
   * Status and/or baseline. A baseline change is recorded in the history, in force from
   * `effectiveFrom` (default: now; the oracle takes the baseline in force at a window's start, so a
   * change made now applies from the next window). The facility's `baselineKgPerHour` is the latest
   * configured value.
   */
  updateFacility(id: string, patch: { status?: Status; baselineKgPerHour?: string; effectiveFrom?: number; owner?: string }): Facility {
    if (patch.owner !== undefined && (typeof patch.owner !== 'string' || !ADDRESS_RE.test(patch.owner))) throw errors.VALIDATION('owner must be a 0x address');
    const status = patch.status === undefined ? undefined : checkStatus(patch.status);
    const baseline = patch.baselineKgPerHour === undefined ? undefined : nonNegativeDecimal('baselineKgPerHour', patch.baselineKgPerHour);
    const now = this.clock();
    const from = patch.effectiveFrom ?? now;
    if (!Number.isSafeInteger(from)) throw errors.VALIDATION('effectiveFrom must be epoch milliseconds');
    this.db.transaction(() => {
      if (!this.stmt.facility.get(id)) throw errors.FACILITY_NOT_FOUND(id);
      if (status !== undefined) this.stmt.setFacilityStatus.run(status, id);
      if (baseline !== undefined) this.stmt.setBaseline.run(id, from, baseline, now);
      if (patch.owner !== undefined) this.db.prepare('UPDATE facilities SET owner = ? WHERE id = ?').run(patch.owner, id);
    }).immediate();
    this.logger.info({ facilityId: id, status, baseline, effectiveFrom: baseline === undefined ? undefined : from }, 'facility updated');
    return this.mustFacility(id);
  }

  deleteFacility(id: string): void {
    this.db.transaction(() => {
      if (!this.stmt.facility.get(id)) throw errors.FACILITY_NOT_FOUND(id);
      this.db.prepare('DELETE FROM devices WHERE facility_id = ?').run(id);
      this.db.prepare('DELETE FROM facility_baselines WHERE facility_id = ?').run(id);
      this.db.prepare('DELETE FROM facilities WHERE id = ?').run(id);
    }).immediate();
    this.logger.info({ facilityId: id }, 'facility deleted');
  }

  baselineAt(facilityId: string, at: number): string {
    const b = this.stmt.baselineAt.get(facilityId, at) ?? this.stmt.baselineFirst.get(facilityId);
    if (b === undefined) throw errors.FACILITY_NOT_FOUND(facilityId);
    return b;
  }

  /** The facility's baseline history, oldest first (the first entry is in force from 0). */
  baselineHistory(facilityId: string): BaselineChange[] {
    this.mustFacility(facilityId);
    return this.stmt.baselines.all(facilityId).map((r) => ({ baselineKgPerHour: r.baseline, effectiveFrom: r.effective_from, setAt: r.set_at }));
  }

  // Devices ----------------------------------------------------------------------------------

  createDevice(facilityId: string, deviceId: string, kind: string): { device: Device; password: string } {
    if (typeof deviceId !== 'string' || !ID_RE.test(deviceId)) throw errors.VALIDATION('deviceId must match [A-Za-z0-9_-]{1,64}');
    if (typeof kind !== 'string' || kind.length > 64) throw errors.VALIDATION('kind must be at most 64 characters');
    const password = generateSecret();
    const hash = hashSecretSync(password);
    const createdAt = this.clock();
    this.db.transaction(() => {
      if (!this.stmt.facility.get(facilityId)) throw errors.FACILITY_NOT_FOUND(facilityId);
      if (this.stmt.device.get(deviceId)) throw errors.CONFLICT(`device ${deviceId} already exists`);
      this.stmt.insertDevice.run(deviceId, facilityId, kind || 'meter', 'active', createdAt, hash);
    }).immediate();
    this.logger.info({ facilityId, deviceId }, 'device created');
    return { device: this.mustDevice(deviceId), password };
  }

  getDevice(deviceId: string): Device | undefined {
    const row = this.stmt.device.get(deviceId);
    return row ? toDevice(row) : undefined;
  }

  private mustDevice(deviceId: string): Device {
    const d = this.getDevice(deviceId);
    if (!d) throw errors.DEVICE_NOT_FOUND(deviceId);
    return d;
  }

  listDevices(facilityId: string): Device[] {
    this.mustFacility(facilityId);
    return this.stmt.devices.all(facilityId).map(toDevice);
  }

  updateDevice(deviceId: string, patch: { status?: Status }): Device {
    const status = patch.status === undefined ? undefined : checkStatus(patch.status);
    this.mustDevice(deviceId);
    if (status !== undefined) this.stmt.setDeviceStatus.run(status, deviceId);
    this.logger.info({ deviceId, status }, 'device updated');
    return this.mustDevice(deviceId);
  }

  rotateSecret(deviceId: string): string {
    this.mustDevice(deviceId);
    const password = generateSecret();
    const info = this.stmt.setSecret.run(hashSecretSync(password), deviceId);
    if (info.changes !== 1) throw errors.DEVICE_NOT_FOUND(deviceId);
    this.logger.info({ deviceId }, 'device secret rotated');
    return password;
  }

  /** Compare-and-set of the secret record (a legacy scrypt record upgraded after a login): a rotation meanwhile wins. */
  replaceSecretHash(deviceId: string, expected: string, record: string): boolean {
    const changed = this.stmt.replaceSecret.run(record, deviceId, expected).changes === 1;
    if (changed) this.logger.info({ deviceId }, 'device secret record upgraded to hs256');
    return changed;
  }

  credentials(deviceId: string): DeviceCredentials | undefined {
    const r = this.stmt.credentials.get(deviceId);
    if (!r) return undefined;
    return { deviceId: r.device_id, facilityId: r.facility_id, status: r.status, facilityStatus: r.facility_status, secretHash: r.secret_hash };
  }

  /** The broker's CONNECT check (see store/secrets.ts verifyDeviceSecret). */
  verifyDeviceSecret(deviceId: string, password: string | Buffer | undefined): Promise<DeviceCredentials | undefined> {
    return verifyDeviceSecret(this, deviceId, password);
  }

  /** Online/offline from CONNECT and the last will; lastSeenAt never moves backwards. Unknown ids are ignored. */
  setOnline(deviceId: string, online: boolean, at: number): void {
    const info = this.stmt.setOnline.run(online ? 1 : 0, at, deviceId);
    if (info.changes === 0) this.logger.debug({ deviceId }, 'status for unknown device ignored');
  }

  // Rejections -------------------------------------------------------------------------------

  /**
   * Appends rows in one transaction, aggregated: rows of one device with one reason within the same
   * minute (REJECTION_BUCKET_MS) are one stored row whose `count` grows; the first row's detail and
   * payload are kept as the sample. So a device can add at most one row per reason per minute,
   * whatever it sends. Payloads are cut to 4 KiB, details to 1 KiB.
   */
  addRejections(rows: Rejection[]): void {
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
        this.stmt.insertRejection.run(
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

  /** Deletes rejection rows whose last rejection is older than `before` (retention); returns how many. */
  pruneRejections(before: number): number {
    const n = this.stmt.pruneRejections.run(before).changes;
    if (n > 0) this.logger.info({ rows: n, before }, 'old rejections pruned');
    return n;
  }

  /** SQLite's data_version on this handle: changes when another connection committed (broker session poll). */
  dataVersion(): number {
    return this.stmt.dataVersion.get() as number;
  }

  /** Newest first; limit default 100, at most 1000. */
  listRejections(facilityId: string, limit?: number): Rejection[] {
    this.mustFacility(facilityId);
    return this.stmt.rejections.all(facilityId, clampLimit(limit)).map((r) => {
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
      return out;
    });
  }
}
