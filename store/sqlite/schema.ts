/**
 * Every table of the SQLite file, created and migrated in one place: readings (store/sqlite/readings.ts),
 * registry and rejections (registry.ts), oracle records and lease (records.ts), oracle status and
 * finality watch list (status.ts), API keys (keys.ts), voids and corrections (corrections.ts). Those modules only read and write rows.
 *
 * `PRAGMA user_version` numbers the schema: version 0 is the layout of files made before migrations
 * existed (created here by BASE with IF NOT EXISTS, so a fresh file takes the same path as an old
 * one); each later version is one migration, run once, in order, in one transaction with the
 * version bump. A file newer than this program is refused.
 */
import { errors } from '../../domain/errors.ts';
import type { Db } from './db.ts';

const BASE = `
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

/** Migration n (1-based) takes a file from user_version n-1 to n. */
const MIGRATIONS: ((db: Db) => void)[] = [
  // 1 (issue 10): readings may arrive out of seq order; devices declare capacity and reporting
  // interval and may be decommissioned.
  (db) => {
    db.exec(`
      -- A reading stored below its device's max seq carries the device's next arrival number (NULL
      -- for in-order readings, which the partial index leaves out: in-order ingest pays nothing).
      ALTER TABLE readings ADD COLUMN arrival INTEGER;
      CREATE INDEX readings_device_arrival ON readings (device_id, arrival) WHERE arrival IS NOT NULL;

      -- First and last seq per device and metric (the register checks find neighbours by seq now).
      DROP TABLE device_heads;
      CREATE TABLE device_heads (
        device_id TEXT    NOT NULL,
        metric    TEXT    NOT NULL,
        first_seq INTEGER NOT NULL,
        seq       INTEGER NOT NULL,
        PRIMARY KEY (device_id, metric)
      ) WITHOUT ROWID;
      INSERT INTO device_heads (device_id, metric, first_seq, seq)
        SELECT device_id, metric, MIN(seq), MAX(seq) FROM readings GROUP BY device_id, metric;

      CREATE TABLE devices_v1 (
        device_id           TEXT PRIMARY KEY,
        facility_id         TEXT    NOT NULL REFERENCES facilities (id),
        kind                TEXT    NOT NULL,
        status              TEXT    NOT NULL CHECK (status IN ('active', 'suspended', 'decommissioned')),
        created_at          INTEGER NOT NULL,
        online              INTEGER NOT NULL DEFAULT 0,
        last_seen_at        INTEGER,
        secret_hash         TEXT    NOT NULL,
        capacity            TEXT,
        reporting_interval  INTEGER NOT NULL DEFAULT 60 CHECK (reporting_interval BETWEEN 1 AND 86400),
        decommissioned_at   INTEGER,
        decommission_reason TEXT,
        CHECK ((status = 'decommissioned') = (decommissioned_at IS NOT NULL))
      );
      INSERT INTO devices_v1 (device_id, facility_id, kind, status, created_at, online, last_seen_at, secret_hash)
        SELECT device_id, facility_id, kind, status, created_at, online, last_seen_at, secret_hash FROM devices;
      DROP TABLE devices;
      ALTER TABLE devices_v1 RENAME TO devices;
      CREATE INDEX devices_facility ON devices (facility_id, device_id);
    `);
  },
  // 2 (issue 10 item 13): the rejections log is aggregated: `bucket` (minute of the first rejection),
  // `count` and `last_received_at`, a unique key (facility, device, reason, bucket) for the upsert,
  // and an index on `last_received_at` for pruning; rows of older files keep count 1 and a NULL
  // bucket. Files made between the aggregation and user_version numbering (still at version 0) may
  // have the columns already, so the columns are checked here rather than assumed.
  (db) => {
    const cols = new Set((db.prepare('PRAGMA table_info(rejections)').all() as { name: string }[]).map((c) => c.name));
    if (!cols.has('bucket')) db.exec('ALTER TABLE rejections ADD COLUMN bucket INTEGER');
    if (!cols.has('count')) db.exec('ALTER TABLE rejections ADD COLUMN count INTEGER NOT NULL DEFAULT 1');
    if (!cols.has('last_received_at')) {
      db.exec('ALTER TABLE rejections ADD COLUMN last_received_at INTEGER');
      db.exec('UPDATE rejections SET last_received_at = received_at');
    }
    db.exec(`CREATE UNIQUE INDEX IF NOT EXISTS rejections_agg ON rejections (facility_id, device_id, reason, bucket);
      CREATE INDEX IF NOT EXISTS rejections_last ON rejections (last_received_at);`);
  },
  // 3 (issue 11): the oracle's and the gateway's tables join the numbered schema. Files at version 2
  // or older made them on first use (CREATE TABLE IF NOT EXISTS in the module that used them), so
  // they may exist already, in this layout; a cursor table from before visibility marks lacks `late`.
  (db) => {
    db.exec(`
      CREATE TABLE IF NOT EXISTS oracle_meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS oracle_settlements (
        id            TEXT    NOT NULL,
        evidence_root TEXT    NOT NULL,
        facility_id   TEXT    NOT NULL,
        window_start  INTEGER NOT NULL,
        window_end    INTEGER NOT NULL,
        state         TEXT    NOT NULL CHECK (state IN ('intent', 'sent', 'confirmed', 'discarded')),
        complete      INTEGER NOT NULL,
        net_grams     TEXT    NOT NULL,
        actual_kg     TEXT    NOT NULL,
        minted_grams  TEXT,
        burned_grams  TEXT,
        deficit_grams TEXT,
        tx_hash       TEXT,
        inputs        TEXT    NOT NULL,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL,
        PRIMARY KEY (id, evidence_root)
      ) WITHOUT ROWID;
      CREATE UNIQUE INDEX IF NOT EXISTS oracle_settlements_one_confirmed ON oracle_settlements (id) WHERE state = 'confirmed';
      CREATE INDEX IF NOT EXISTS oracle_settlements_facility ON oracle_settlements (facility_id, window_start);
      CREATE INDEX IF NOT EXISTS oracle_settlements_window ON oracle_settlements (window_start) WHERE state = 'confirmed';
      CREATE TABLE IF NOT EXISTS oracle_cursors (
        device_id     TEXT    PRIMARY KEY,
        facility_id   TEXT    NOT NULL,
        settlement_id TEXT    NOT NULL,
        window_end    INTEGER NOT NULL,
        max_seq       INTEGER NOT NULL,
        cursors       TEXT    NOT NULL,
        late          INTEGER NOT NULL DEFAULT 0
      );
      CREATE TABLE IF NOT EXISTS oracle_late (
        device_id     TEXT    NOT NULL,
        seq           INTEGER NOT NULL,
        facility_id   TEXT    NOT NULL,
        settlement_id TEXT    NOT NULL,
        PRIMARY KEY (device_id, seq)
      ) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS oracle_lease (
        name       TEXT    PRIMARY KEY,
        holder     TEXT    NOT NULL,
        expires_at INTEGER NOT NULL
      );

      CREATE TABLE IF NOT EXISTS oracle_facility_status (
        facility_id TEXT    PRIMARY KEY,
        reason      TEXT    NOT NULL,
        since       INTEGER NOT NULL,
        attempts    INTEGER NOT NULL,
        retry_at    INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
      );
      CREATE TABLE IF NOT EXISTS oracle_unfinal (
        id            TEXT    PRIMARY KEY,
        facility_id   TEXT    NOT NULL,
        window_start  INTEGER NOT NULL,
        evidence_root TEXT    NOT NULL,
        block_number  INTEGER NOT NULL
      );
      CREATE INDEX IF NOT EXISTS oracle_unfinal_facility ON oracle_unfinal (facility_id, window_start);

      CREATE TABLE IF NOT EXISTS api_keys (
        id           TEXT PRIMARY KEY,
        key_hash     TEXT    NOT NULL UNIQUE,
        role         TEXT    NOT NULL CHECK (role IN ('admin','regulator','facility')),
        facility_id  TEXT,
        prefix       TEXT    NOT NULL,
        created_at   INTEGER NOT NULL,
        last_used_at INTEGER,
        revoked_at   INTEGER
      );
    `);
    const cursorCols = new Set((db.prepare('PRAGMA table_info(oracle_cursors)').all() as { name: string }[]).map((c) => c.name));
    // Late-arrival count of the mark a cursor was left at (0: none, as before marks existed).
    if (!cursorCols.has('late')) db.exec('ALTER TABLE oracle_cursors ADD COLUMN late INTEGER NOT NULL DEFAULT 0');
  },
  // 4 (issue 13): device signatures. A device may have an Ed25519 public key (64 lowercase hex); a
  // reading keeps its signature, the `prev` it signed over and the value and unit as sent when they
  // differ from the normalised ones (NULL: unsigned, or sent as stored), so the canonical line can
  // be rebuilt from the store.
  (db) => {
    db.exec(`
      ALTER TABLE devices ADD COLUMN public_key TEXT;
      ALTER TABLE readings ADD COLUMN sig TEXT;
      ALTER TABLE readings ADD COLUMN prev TEXT;
      ALTER TABLE readings ADD COLUMN sent_value TEXT;
      ALTER TABLE readings ADD COLUMN sent_unit TEXT;
    `);
  },
  // 5 (issue 12): corrections. A regulator's void of a device's readings over [from_ms, to_ms) (the
  // readings stay stored; every store's readings are flagged and excluded through this one table),
  // with the chain's void number once recorded there; and the correction settlements it causes
  // (append-only, numbered per settled window from 1, each referencing the original settlement).
  (db) => {
    db.exec(`
      CREATE TABLE reading_voids (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        facility_id     TEXT    NOT NULL,
        device_id       TEXT    NOT NULL,
        from_ms         INTEGER NOT NULL,
        to_ms           INTEGER NOT NULL,
        reason          TEXT    NOT NULL,
        voided_by       TEXT    NOT NULL,
        voided_at       INTEGER NOT NULL,
        chain_void_id   INTEGER,
        settled_before  INTEGER,
        CHECK (from_ms < to_ms)
      );
      CREATE INDEX reading_voids_device ON reading_voids (device_id, from_ms);
      CREATE INDEX reading_voids_facility ON reading_voids (facility_id, id);

      CREATE TABLE oracle_corrections (
        id              TEXT    PRIMARY KEY,
        settlement_id   TEXT    NOT NULL,
        seq             INTEGER NOT NULL,
        facility_id     TEXT    NOT NULL,
        window_start    INTEGER NOT NULL,
        window_end      INTEGER NOT NULL,
        state           TEXT    NOT NULL CHECK (state IN ('intent', 'confirmed')),
        void_ids        TEXT    NOT NULL,
        reason          TEXT    NOT NULL,
        complete        INTEGER NOT NULL,
        prev_net_grams  TEXT    NOT NULL,
        net_grams       TEXT    NOT NULL,
        delta_grams     TEXT    NOT NULL,
        actual_kg       TEXT    NOT NULL,
        evidence_root   TEXT    NOT NULL,
        minted_grams    TEXT,
        burned_grams    TEXT,
        deficit_grams   TEXT,
        tx_hash         TEXT,
        inputs          TEXT    NOT NULL,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL,
        UNIQUE (settlement_id, seq)
      );
      CREATE INDEX oracle_corrections_facility ON oracle_corrections (facility_id, window_start, seq);
    `);
  },
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** Creates the tables of a new file and brings an old one up to SCHEMA_VERSION. */
export function migrate(db: Db): void {
  // Every store module calls this on the handle it gets: once current, one pragma read.
  if ((db.pragma('user_version', { simple: true }) as number) === SCHEMA_VERSION) return;
  const hadReadings = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'readings'").get() !== undefined;
  const hadDeviceList = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'reading_devices'").get() !== undefined;
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > SCHEMA_VERSION) throw errors.CONFIG_INVALID(`database schema version ${version} is newer than this program's (${SCHEMA_VERSION})`);
  if (version === 0) {
    db.exec(BASE);
    // A file from before reading_devices: fill it once from the readings (one scan, at upgrade only).
    if (hadReadings && !hadDeviceList) db.exec('INSERT OR IGNORE INTO reading_devices SELECT DISTINCT facility_id, device_id FROM readings');
  }
  for (let v = version; v < SCHEMA_VERSION; v++) {
    db.transaction(() => {
      // Another process opening the same file may have run it meanwhile.
      if ((db.pragma('user_version', { simple: true }) as number) > v) return;
      MIGRATIONS[v](db);
      db.pragma(`user_version = ${v + 1}`);
    }).immediate();
  }
}
