/**
 * The PostgreSQL schema, versioned like store/sqlite-schema.ts: `schema_version` holds one row per
 * applied migration; migration n takes the database from version n-1 to n, in one transaction with
 * its version row. Every migrating transaction first takes a transaction-scoped advisory lock, so any
 * number of processes may open the same database at once: the first runs each pending migration, the
 * others wait, then see the version row and skip it. Re-opening an up-to-date database changes
 * nothing. Migrations are append-only: a new table or column is a new entry at the end.
 *
 * Text keys are `COLLATE "C"` (byte order: the same order as JavaScript's string comparison for ids,
 * and cheaper to index). Decimal values are stored as their canonical text, exactly as received;
 * integers (seq, epoch ms, arrival) are bigint.
 */
import type pg from 'pg';

/** The advisory lock key of migrations (any constant, the same in every process). */
const MIGRATION_LOCK = 0x6d72765f; // "mrv_"

export interface Migration {
  description: string;
  sql: string;
}

export const MIGRATIONS: Migration[] = [
  {
    description: 'readings: table, per-device state (lock row, max seq, arrival count), per-metric heads, facility device list',
    sql: `
      CREATE TABLE readings (
        device_id   text COLLATE "C" NOT NULL,
        seq         bigint  NOT NULL,
        facility_id text COLLATE "C" NOT NULL,
        ts          bigint  NOT NULL,
        metric      text COLLATE "C" NOT NULL,
        value       text    NOT NULL,
        unit        text    NOT NULL,
        reset       boolean NOT NULL,
        received_at bigint  NOT NULL,
        -- The device's arrival number of a reading stored below its highest stored seq; NULL for
        -- in-order readings, which the partial index leaves out.
        arrival     bigint,
        PRIMARY KEY (device_id, seq)
      );
      CREATE INDEX readings_device_ts ON readings (device_id, ts);
      CREATE INDEX readings_device_arrival ON readings (device_id, arrival) WHERE arrival IS NOT NULL;

      -- One row per device that ever reached a commit: the row every writer locks (SELECT ... FOR
      -- UPDATE, in device_id order) before it checks or stores the device's readings, so the checks of
      -- one device are serialised in the database whatever process runs them. max_seq is NULL until a
      -- reading is stored; late counts the late arrivals (the last arrival number given).
      CREATE TABLE reading_device_state (
        device_id text COLLATE "C" PRIMARY KEY,
        max_seq   bigint,
        late      bigint NOT NULL DEFAULT 0
      );

      -- First and last seq per device and metric: the neighbour of the same metric of an in-order
      -- reading is the head's last row.
      CREATE TABLE reading_heads (
        device_id text COLLATE "C" NOT NULL,
        metric    text COLLATE "C" NOT NULL,
        first_seq bigint NOT NULL,
        last_seq  bigint NOT NULL,
        PRIMARY KEY (device_id, metric)
      );

      -- The devices that have readings, per facility (the facility-wide listing).
      CREATE TABLE reading_devices (
        facility_id text COLLATE "C" NOT NULL,
        device_id   text COLLATE "C" NOT NULL,
        PRIMARY KEY (facility_id, device_id)
      );
    `,
  },
  {
    description: 'readings: device signature fields (issue 13): sig, the prev it signed over, value and unit as sent',
    sql: `
      -- NULL for an unsigned reading; prev '' is the start of a device's chain; sent_value / sent_unit
      -- only where they differ from the normalised value and unit.
      ALTER TABLE readings ADD COLUMN sig text, ADD COLUMN prev text, ADD COLUMN sent_value text, ADD COLUMN sent_unit text;
    `,
  },
  {
    description: 'registry (facilities, baselines, devices), rejections log, API keys, oracle records, status and lease; NOTIFY mrv_registry on every registry change',
    sql: `
      CREATE TABLE facilities (
        id          text COLLATE "C" PRIMARY KEY,
        name        text   NOT NULL,
        owner       text   NOT NULL,
        grid_factor text   NOT NULL,
        gas_factor  text   NOT NULL,
        status      text   NOT NULL CHECK (status IN ('active', 'suspended')),
        created_at  bigint NOT NULL
      );
      CREATE TABLE facility_baselines (
        facility_id    text COLLATE "C" NOT NULL REFERENCES facilities (id) ON DELETE CASCADE,
        effective_from bigint NOT NULL,
        baseline       text   NOT NULL,
        set_at         bigint NOT NULL,
        PRIMARY KEY (facility_id, effective_from)
      );
      -- The reading store reads device_id, kind, capacity and reporting_interval inside its commit
      -- (store/postgres/readings.ts, default limits).
      CREATE TABLE devices (
        device_id           text COLLATE "C" PRIMARY KEY,
        facility_id         text COLLATE "C" NOT NULL REFERENCES facilities (id) ON DELETE CASCADE,
        kind                text    NOT NULL,
        status              text    NOT NULL CHECK (status IN ('active', 'suspended', 'decommissioned')),
        created_at          bigint  NOT NULL,
        online              boolean NOT NULL DEFAULT false,
        last_seen_at        bigint,
        secret_hash         text    NOT NULL,
        capacity            text,
        reporting_interval  integer NOT NULL DEFAULT 60 CHECK (reporting_interval BETWEEN 1 AND 86400),
        decommissioned_at   bigint,
        decommission_reason text,
        public_key          text,
        CHECK ((status = 'decommissioned') = (decommissioned_at IS NOT NULL))
      );
      CREATE INDEX devices_facility ON devices (facility_id, device_id);

      -- Aggregated like the SQLite log: one row per (facility, device, reason, minute bucket).
      CREATE TABLE rejections (
        id               bigserial PRIMARY KEY,
        facility_id      text COLLATE "C" NOT NULL,
        device_id        text COLLATE "C" NOT NULL,
        received_at      bigint NOT NULL,
        reason           text   NOT NULL,
        detail           text,
        payload          text   NOT NULL,
        bucket           bigint NOT NULL,
        count            bigint NOT NULL DEFAULT 1,
        last_received_at bigint NOT NULL
      );
      CREATE UNIQUE INDEX rejections_agg ON rejections (facility_id, device_id, reason, bucket);
      CREATE INDEX rejections_facility ON rejections (facility_id, id);
      CREATE INDEX rejections_last ON rejections (last_received_at);

      CREATE TABLE api_keys (
        id           text COLLATE "C" PRIMARY KEY,
        key_hash     text   NOT NULL UNIQUE,
        role         text   NOT NULL CHECK (role IN ('admin', 'regulator', 'facility')),
        facility_id  text COLLATE "C",
        prefix       text   NOT NULL,
        created_at   bigint NOT NULL,
        last_used_at bigint,
        revoked_at   bigint
      );

      -- Oracle run lease: expires_at is the holder's own clock (epoch ms), compared with the taker's;
      -- backend_pid is the server process of the holder's lease session: once that session is gone (the
      -- holder was killed, its connection closed) the lease is free before it expires.
      CREATE TABLE oracle_lease (
        name        text COLLATE "C" PRIMARY KEY,
        holder      text    NOT NULL,
        expires_at  bigint  NOT NULL,
        backend_pid integer
      );

      -- The oracle's records and status, as in the SQLite file (store/sqlite/schema.ts migration 3).
      CREATE TABLE oracle_meta (
        key   text COLLATE "C" PRIMARY KEY,
        value text NOT NULL
      );
      CREATE TABLE oracle_settlements (
        id            text COLLATE "C" NOT NULL,
        evidence_root text COLLATE "C" NOT NULL,
        facility_id   text COLLATE "C" NOT NULL,
        window_start  bigint  NOT NULL,
        window_end    bigint  NOT NULL,
        state         text    NOT NULL CHECK (state IN ('intent', 'sent', 'confirmed', 'discarded')),
        complete      boolean NOT NULL,
        net_grams     text    NOT NULL,
        actual_kg     text    NOT NULL,
        minted_grams  text,
        burned_grams  text,
        deficit_grams text,
        tx_hash       text,
        inputs        text    NOT NULL,
        created_at    bigint  NOT NULL,
        updated_at    bigint  NOT NULL,
        PRIMARY KEY (id, evidence_root)
      );
      CREATE UNIQUE INDEX oracle_settlements_one_confirmed ON oracle_settlements (id) WHERE state = 'confirmed';
      CREATE INDEX oracle_settlements_facility ON oracle_settlements (facility_id, window_start);
      CREATE INDEX oracle_settlements_window ON oracle_settlements (window_start) WHERE state = 'confirmed';
      CREATE TABLE oracle_cursors (
        device_id     text COLLATE "C" PRIMARY KEY,
        facility_id   text COLLATE "C" NOT NULL,
        settlement_id text   NOT NULL,
        window_end    bigint NOT NULL,
        max_seq       bigint NOT NULL,
        cursors       text   NOT NULL,
        late          bigint NOT NULL DEFAULT 0
      );
      CREATE TABLE oracle_late (
        device_id     text COLLATE "C" NOT NULL,
        seq           bigint NOT NULL,
        facility_id   text COLLATE "C" NOT NULL,
        settlement_id text   NOT NULL,
        PRIMARY KEY (device_id, seq)
      );
      CREATE INDEX oracle_late_settlement ON oracle_late (settlement_id);
      CREATE TABLE oracle_facility_status (
        facility_id text COLLATE "C" PRIMARY KEY,
        reason      text   NOT NULL,
        since       bigint NOT NULL,
        attempts    integer NOT NULL,
        retry_at    bigint NOT NULL,
        updated_at  bigint NOT NULL
      );
      CREATE TABLE oracle_unfinal (
        id            text COLLATE "C" PRIMARY KEY,
        facility_id   text COLLATE "C" NOT NULL,
        window_start  bigint NOT NULL,
        evidence_root text   NOT NULL,
        block_number  bigint NOT NULL
      );
      CREATE INDEX oracle_unfinal_facility ON oracle_unfinal (facility_id, window_start);

      -- Every registry change is announced on channel mrv_registry at commit (whoever wrote it), so
      -- each process's replica (store/postgres/registry.ts) re-reads the row it names. Payload:
      -- {"t":"f","id":...} for a facility or its baselines, {"t":"d","id":...} for a device,
      -- {"t":"o","id":...,"on":bool,"at":ms} for a device whose online status alone changed,
      -- {"t":"k","id":...} for an API key whose hash, role or revocation changed.
      CREATE FUNCTION mrv_registry_notify() RETURNS trigger LANGUAGE plpgsql AS $$
      DECLARE
        r record;
      BEGIN
        IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
        IF TG_TABLE_NAME = 'facilities' THEN
          PERFORM pg_notify('mrv_registry', json_build_object('t', 'f', 'id', r.id)::text);
        ELSIF TG_TABLE_NAME = 'facility_baselines' THEN
          PERFORM pg_notify('mrv_registry', json_build_object('t', 'f', 'id', r.facility_id)::text);
        ELSIF TG_TABLE_NAME = 'devices' THEN
          IF TG_OP = 'UPDATE' AND (to_jsonb(OLD) - 'online' - 'last_seen_at') = (to_jsonb(NEW) - 'online' - 'last_seen_at') THEN
            IF OLD.online IS DISTINCT FROM NEW.online OR OLD.last_seen_at IS DISTINCT FROM NEW.last_seen_at THEN
              PERFORM pg_notify('mrv_registry', json_build_object('t', 'o', 'id', NEW.device_id, 'on', NEW.online, 'at', NEW.last_seen_at)::text);
            END IF;
          ELSE
            PERFORM pg_notify('mrv_registry', json_build_object('t', 'd', 'id', r.device_id)::text);
          END IF;
        ELSIF TG_TABLE_NAME = 'api_keys' THEN
          IF TG_OP <> 'UPDATE' OR (to_jsonb(OLD) - 'last_used_at') <> (to_jsonb(NEW) - 'last_used_at') THEN
            PERFORM pg_notify('mrv_registry', json_build_object('t', 'k', 'id', r.id)::text);
          END IF;
        END IF;
        RETURN NULL;
      END $$;
      CREATE TRIGGER facilities_notify AFTER INSERT OR UPDATE OR DELETE ON facilities FOR EACH ROW EXECUTE FUNCTION mrv_registry_notify();
      CREATE TRIGGER facility_baselines_notify AFTER INSERT OR UPDATE OR DELETE ON facility_baselines FOR EACH ROW EXECUTE FUNCTION mrv_registry_notify();
      CREATE TRIGGER devices_notify AFTER INSERT OR UPDATE OR DELETE ON devices FOR EACH ROW EXECUTE FUNCTION mrv_registry_notify();
      CREATE TRIGGER api_keys_notify AFTER INSERT OR UPDATE OR DELETE ON api_keys FOR EACH ROW EXECUTE FUNCTION mrv_registry_notify();
    `,
  },
  {
    description: 'voids of readings and correction settlements (issue 12), as in the SQLite file (store/sqlite/schema.ts migration 5)',
    sql: `
      -- A regulator's void of a device's readings over [from_ms, to_ms): the readings stay stored,
      -- every reading store's readings are flagged and excluded through this one table.
      CREATE TABLE reading_voids (
        id             bigserial PRIMARY KEY,
        facility_id    text COLLATE "C" NOT NULL,
        device_id      text COLLATE "C" NOT NULL,
        from_ms        bigint NOT NULL,
        to_ms          bigint NOT NULL,
        reason         text   NOT NULL,
        voided_by      text   NOT NULL,
        voided_at      bigint NOT NULL,
        chain_void_id  bigint,
        settled_before bigint,
        CHECK (from_ms < to_ms)
      );
      CREATE INDEX reading_voids_device ON reading_voids (device_id, from_ms);
      CREATE INDEX reading_voids_facility ON reading_voids (facility_id, id);

      -- Correction settlements: append-only, numbered per settled window from 1; the unique
      -- (settlement_id, seq) decides between two processes correcting the same window.
      CREATE TABLE oracle_corrections (
        id             text COLLATE "C" PRIMARY KEY,
        settlement_id  text COLLATE "C" NOT NULL,
        seq            integer NOT NULL,
        facility_id    text COLLATE "C" NOT NULL,
        window_start   bigint  NOT NULL,
        window_end     bigint  NOT NULL,
        state          text    NOT NULL CHECK (state IN ('intent', 'confirmed')),
        void_ids       text    NOT NULL,
        reason         text    NOT NULL,
        complete       boolean NOT NULL,
        prev_net_grams text    NOT NULL,
        net_grams      text    NOT NULL,
        delta_grams    text    NOT NULL,
        actual_kg      text    NOT NULL,
        evidence_root  text    NOT NULL,
        minted_grams   text,
        burned_grams   text,
        deficit_grams  text,
        tx_hash        text,
        inputs         text    NOT NULL,
        created_at     bigint  NOT NULL,
        updated_at     bigint  NOT NULL,
        UNIQUE (settlement_id, seq)
      );
      CREATE INDEX oracle_corrections_facility ON oracle_corrections (facility_id, window_start, seq);
      CREATE INDEX oracle_corrections_intent ON oracle_corrections (window_start) WHERE state = 'intent';
    `,
  },
  {
    description: 'influx_device_state: the epoch of each device written through the InfluxDB store by several processes',
    sql: `
      -- One row per device written through the InfluxDB reading store with DATABASE_URL
      -- (store/influx/coordinator.ts). A writer holds the device's advisory lock for the whole commit;
      -- it bumps epoch before writing to InfluxDB and sets clean = epoch after the write (and its mark
      -- point) was acknowledged. A process's cached state of the device is current only while
      -- epoch = clean = the epoch it wrote last; epoch > clean is a write cut short (reloaded and
      -- repaired from InfluxDB).
      CREATE TABLE influx_device_state (
        device_id text COLLATE "C" PRIMARY KEY,
        epoch     bigint NOT NULL,
        clean     bigint NOT NULL DEFAULT 0
      );
    `,
  },
  {
    description: 'reading_heads: the last row of each head kept in the head (no join to readings on every commit)',
    sql: `
      -- Every commit reads its devices' heads. Joining them to readings made that read depend on
      -- the plan: a prepared statement planned while readings was small kept a sequential scan of it
      -- (measured: 0.3 ms per batch growing to 14 ms at 100,000 readings). The head now carries the
      -- fields of its last row; row_seq is the seq they are of. A writer of an older version moves
      -- last_seq without them: row_seq <> last_seq tells the store to read that row from readings.
      ALTER TABLE reading_heads ADD COLUMN row_seq bigint, ADD COLUMN ts bigint, ADD COLUMN value text,
        ADD COLUMN unit text, ADD COLUMN reset boolean, ADD COLUMN sig text;
      UPDATE reading_heads h SET row_seq = r.seq, ts = r.ts, value = r.value, unit = r.unit, reset = r.reset, sig = r.sig
        FROM readings r WHERE r.device_id = h.device_id AND r.seq = h.last_seq;
    `,
  },
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** Anything that runs queries: a pg.Pool or a pg.Client. */
type Queryable = Pick<pg.Pool, 'connect'>;

/** The database's schema version (0: nothing applied yet). */
export async function schemaVersion(pool: Pick<pg.Pool, 'query'>): Promise<number> {
  const exists = await pool.query<{ t: string | null }>("SELECT to_regclass('schema_version')::text AS t");
  if (!exists.rows[0]?.t) return 0;
  const res = await pool.query<{ v: number | null }>('SELECT max(version)::int AS v FROM schema_version');
  return res.rows[0]?.v ?? 0;
}

/**
 * Creates the tables of a new database and brings an old one up to SCHEMA_VERSION (each migration in
 * its own transaction, under the advisory lock). Throws if the database is newer than this program.
 */
export async function migrate(pool: Queryable, migrations: Migration[] = MIGRATIONS): Promise<number> {
  const client = await pool.connect();
  try {
    const inTx = async <T>(fn: () => Promise<T>): Promise<T> => {
      await client.query('BEGIN');
      try {
        await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
        const out = await fn();
        await client.query('COMMIT');
        return out;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    };
    await inTx(async () => {
      await client.query(`CREATE TABLE IF NOT EXISTS schema_version (
        version     integer PRIMARY KEY,
        description text    NOT NULL,
        applied_at  timestamptz NOT NULL DEFAULT now()
      )`);
    });
    const current = async () => (await client.query<{ v: number | null }>('SELECT max(version)::int AS v FROM schema_version')).rows[0]?.v ?? 0;
    const start = await current();
    if (start > migrations.length) throw new Error(`database schema version ${start} is newer than this program's (${migrations.length})`);
    for (let v = start; v < migrations.length; v++) {
      await inTx(async () => {
        // Another process may have run it while we waited for the lock.
        if ((await current()) > v) return;
        await client.query(migrations[v].sql);
        await client.query('INSERT INTO schema_version (version, description) VALUES ($1, $2)', [v + 1, migrations[v].description]);
      });
    }
    return current();
  } finally {
    client.release();
  }
}
