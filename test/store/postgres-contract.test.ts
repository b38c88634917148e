/**
 * The ReadingStore contract (test/helpers/reading-store-contract.ts) against the PostgreSQL store, on
 * a real PostgreSQL 15 cluster started for this file (a fresh database per test); plus the schema's
 * migrations (versioned, idempotent on re-open, safe when several processes open at once).
 */
import pg from 'pg';
import t from 'tap';
import { silentLogger } from '../../domain/logger.ts';
import { createPool, openPostgresReadingStore, PG_TYPES, PostgresReadingStore } from '../../store/postgres/readings.ts';
import { migrate, MIGRATIONS, SCHEMA_VERSION, schemaVersion } from '../../store/postgres/schema.ts';
import { postgresForFile } from '../helpers/postgres.ts';
import { reading, readingStoreContract, T0 } from '../helpers/reading-store-contract.ts';

const cluster = await postgresForFile(t);
if (cluster) {
  readingStoreContract(t, async (t, opts) => {
    const url = await cluster.createDatabase();
    const store = await openPostgresReadingStore(url, { logger: silentLogger, limits: opts?.limits ?? (() => undefined) });
    t.teardown(() => store.close());
    return store;
  });

  t.test('schema: versioned migrations, idempotent on re-open, one runner when many open at once', async (t) => {
    const url = await cluster.createDatabase();
    const pools = Array.from({ length: 4 }, () => createPool(url));
    t.teardown(() => Promise.all(pools.map((p) => p.end())));
    t.equal(await schemaVersion(pools[0]), 0, 'a new database is at version 0');
    const versions = await Promise.all(pools.map((p) => migrate(p)));
    t.same(versions, pools.map(() => SCHEMA_VERSION), 'four processes migrating at once all end at the current version');
    const rows = (await pools[0].query<{ version: number; description: string }>('SELECT version, description FROM schema_version ORDER BY version')).rows;
    t.same(rows.map((r) => r.version), MIGRATIONS.map((_, i) => i + 1), 'each migration applied exactly once, in order');
    t.equal(await migrate(pools[1]), SCHEMA_VERSION, 're-open: nothing to do');
    t.equal((await pools[0].query('SELECT 1 FROM schema_version')).rowCount, SCHEMA_VERSION, 'no version row added on re-open');
    await t.rejects(migrate(pools[2], MIGRATIONS.slice(0, 0)), /newer than this program/, 'an older program refuses a newer database');
    // A failing migration rolls back entirely, with its version row.
    const bad = [...MIGRATIONS, { description: 'broken', sql: 'CREATE TABLE half_done (x int); SELECT no_such_column FROM half_done' }];
    await t.rejects(migrate(pools[3], bad), /no_such_column/);
    t.equal(await schemaVersion(pools[3]), SCHEMA_VERSION, 'version unchanged');
    t.equal((await pools[3].query("SELECT to_regclass('half_done')::text AS t")).rows[0].t, null, 'nothing of the failed migration is left');
  });

  t.test('migration 6: heads of a version-5 database get their last row; a head moved by an older writer is read through', async (t) => {
    const url = await cluster.createDatabase();
    const pool = createPool(url);
    t.teardown(() => pool.end());
    // A database as version 5 left it, with readings written by that version's statements.
    await migrate(pool, MIGRATIONS.slice(0, 5));
    await pool.query(`INSERT INTO reading_device_state VALUES ('dev-a', 3, 0)`);
    await pool.query(`INSERT INTO readings (device_id, seq, facility_id, ts, metric, value, unit, reset, received_at)
      VALUES ('dev-a', 1, 'F', ${T0}, 'electricity_import', '10', 'kWh', false, 0), ('dev-a', 3, 'F', ${T0 + 3000}, 'electricity_import', '30', 'kWh', false, 0)`);
    await pool.query(`INSERT INTO reading_heads VALUES ('dev-a', 'electricity_import', 1, 3)`);
    t.equal(await migrate(pool), SCHEMA_VERSION);
    const head = (await pool.query('SELECT row_seq, ts, value, unit, reset FROM reading_heads')).rows[0];
    t.same(head, { row_seq: 3, ts: T0 + 3000, value: '30', unit: 'kWh', reset: false }, 'the head carries its last row');
    const store = await PostgresReadingStore.open(pool, { limits: () => undefined });
    const at = (seq: number, value: string) => reading('dev-a', seq, T0 + seq * 1000, value);
    t.match(await store.commit([at(4, '29')]), [{ status: 'rejected', reason: 'register_backwards' }], 'checked against the migrated head row (30)');
    t.match(await store.commit([at(4, '31')]), [{ status: 'stored' }]);

    // A writer still on version 5's statements stores seq 5 = 50 and moves last_seq, not the row.
    await pool.query(`INSERT INTO readings (device_id, seq, facility_id, ts, metric, value, unit, reset, received_at)
      VALUES ('dev-a', 5, 'F', ${T0 + 5000}, 'electricity_import', '50', 'kWh', false, 0)`);
    await pool.query(`UPDATE reading_heads SET last_seq = 5`);
    await pool.query(`UPDATE reading_device_state SET max_seq = 5`);
    t.match(await store.commit([at(6, '40')]), [{ status: 'rejected', reason: 'register_backwards' }], 'checked against seq 5 (50), not the stale row of seq 4 (31)');
    t.match(await store.commit([at(6, '55')]), [{ status: 'stored' }]);
    t.same((await pool.query('SELECT last_seq, row_seq, value FROM reading_heads')).rows[0], { last_seq: 6, row_seq: 6, value: '55' }, 'the next write repairs the head');
    // A head inserted by the older writer (no row at all) is read through too.
    await pool.query(`INSERT INTO readings (device_id, seq, facility_id, ts, metric, value, unit, reset, received_at)
      VALUES ('dev-a', 7, 'F', ${T0 + 7000}, 'natural_gas', '70', 'm3', false, 0)`);
    await pool.query(`INSERT INTO reading_heads (device_id, metric, first_seq, last_seq) VALUES ('dev-a', 'natural_gas', 7, 7)`);
    await pool.query(`UPDATE reading_device_state SET max_seq = 7`);
    t.match(await store.commit([{ ...at(8, '60'), metric: 'natural_gas', unit: 'm3' }]), [{ status: 'rejected', reason: 'register_backwards' }]);
  });

  t.test('reads are planned for the table as it is: a lookup by primary key after the table grew uses the primary key', async (t) => {
    const url = await cluster.createDatabase();
    // One connection: the reads below and the statistics flush run in the same session.
    const store = await openPostgresReadingStore(url, { limits: () => undefined, poolSize: 1 });
    t.teardown(() => store.close());
    // Used while the table is nearly empty, as on a new database: a prepared statement would keep
    // the plan made now (the generic plan after five executions) until the next ANALYZE.
    await store.commit([reading('dev-a', 1, T0, '1'), reading('dev-a', 2, T0 + 1000, '2')]);
    for (let i = 0; i < 10; i++) t.ok(await store.get('dev-a', 2));
    await store.pool.query(`INSERT INTO readings (device_id, seq, facility_id, ts, metric, value, unit, reset, received_at)
      SELECT 'dev-' || (i % 20), i, 'F', ${T0} + i * 1000, 'electricity_import', i::text, 'kWh', false, 0 FROM generate_series(3, 200000) i`);
    const scans = async () => {
      const res = await store.pool.query<{ indexrelname: string; idx_scan: number }>(
        "SELECT indexrelname, idx_scan FROM pg_stat_user_indexes WHERE relname = 'readings'",
      );
      return Object.fromEntries(res.rows.map((r) => [r.indexrelname, Number(r.idx_scan)]));
    };
    await store.pool.query('SELECT pg_stat_force_next_flush()');
    const before = await scans();
    t.equal((await store.get('dev-5', 100_005))?.value, '100005');
    await store.pool.query('SELECT pg_stat_force_next_flush()');
    const after = await scans();
    t.equal(after.readings_pkey - before.readings_pkey, 1, 'one scan of the primary key');
    t.equal(after.readings_device_ts - before.readings_device_ts, 0, 'none of the (device_id, ts) index (a plan made for the small table)');
  });

  t.test('values are stored as exact text; bigint columns read back as numbers', async (t) => {
    const url = await cluster.createDatabase();
    const store = await openPostgresReadingStore(url, { limits: () => undefined });
    t.teardown(() => store.close());
    const big = reading('dev-a', Number.MAX_SAFE_INTEGER, T0, '123456789012345678901234567890.000000000000000000000001');
    t.same(await store.commit([big]), [{ status: 'stored' }]);
    t.strictSame(await store.get('dev-a', Number.MAX_SAFE_INTEGER), big, 'the largest safe seq and a 55-digit value read back exactly');
    const types = await store.pool.query<{ t: string }>("SELECT data_type AS t FROM information_schema.columns WHERE table_name = 'readings' AND column_name = 'value'");
    t.equal(types.rows[0].t, 'text');
    t.same(await store.commit([reading('dev-b', 1, T0, '1e3')]), [{ status: 'stored' }], 'a non-canonical decimal is stored canonical');
    t.equal((await store.get('dev-b', 1))?.value, '1000');
    t.match(await store.commit([reading('dev-b', 2, T0, 'NaN')]), [{ status: 'rejected', reason: 'invalid_value' }]);
  });

  t.test('limits come from the devices table of the same database when no lookup is given', async (t) => {
    const url = await cluster.createDatabase();
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    t.teardown(() => admin.end());
    // The registry's tables (schema migration 3), written as a registry in another process would.
    const store = await openPostgresReadingStore(url);
    t.teardown(() => store.close());
    await admin.query(`INSERT INTO facilities VALUES ('F', 'F', '0x${'1'.repeat(40)}', '0.5', '2', 'active', 0)`);
    await admin.query(
      `INSERT INTO devices (device_id, facility_id, kind, status, created_at, secret_hash, capacity, reporting_interval)
       VALUES ('small', 'F', 'electricity', 'active', 0, 'x', '10', 60), ('cems-1', 'F', 'cems', 'active', 0, 'x', NULL, 60)`,
    );
    const H = 3_600_000;
    t.match(await store.commit([reading('small', 1, T0, '0'), reading('small', 2, T0 + H, '12'), reading('small', 3, T0 + 2 * H, '24.001')]), [
      { status: 'stored' },
      { status: 'stored' },
      { status: 'rejected', reason: 'implausible' },
    ], 'the declared 10 kW applies');
    await admin.query(`UPDATE devices SET capacity = '100' WHERE device_id = 'small'`);
    t.match(await store.commit([reading('small', 3, T0 + 2 * H, '24.001')]), [{ status: 'stored' }], 'a change applies to the next batch');
    const cov = await store.coverage({ deviceId: 'cems-1', start: T0, end: T0 + 1000, mark: { maxSeq: 0, late: 0 } });
    t.equal(cov.interval, true, "the registered kind 'cems' declares an interval device");
  });

  t.test('closed store: STORE_UNAVAILABLE; ping false', async (t) => {
    const url = await cluster.createDatabase();
    const pool = createPool(url);
    await migrate(pool);
    const store = await PostgresReadingStore.open(pool, { limits: () => undefined });
    t.equal(await store.ping(), true);
    await store.close();
    t.equal(await store.ping(), false);
    await t.rejects(store.commit([reading('dev-a', 1, T0, '1')]), { code: 'STORE_UNAVAILABLE' });
    await t.rejects(store.get('dev-a', 1), { code: 'STORE_UNAVAILABLE' });
    t.equal((await pool.query('SELECT 1 AS x')).rows[0].x, 1, 'a pool the store did not create stays open');
    await pool.end();
  });

  t.test('a store on a pool of its caller, without pipelining, commits the same way', async (t) => {
    const url = await cluster.createDatabase();
    const pool = new pg.Pool({ connectionString: url, types: PG_TYPES });
    t.teardown(() => pool.end());
    await migrate(pool);
    const store = await PostgresReadingStore.open(pool, { limits: () => undefined });
    const at = (seq: number, value: string) => reading('dev-a', seq, T0 + seq * 1000, value);
    t.match(await store.commit([at(10, '100'), at(5, '50'), at(10, '100'), at(7, '120')]), [
      { status: 'stored' },
      { status: 'stored' },
      { status: 'duplicate' },
      { status: 'rejected', reason: 'register_backwards' },
    ]);
    t.same((await store.marks(['dev-a'])).get('dev-a'), { maxSeq: 10, late: 1 });
    t.equal((await store.get('dev-a', 5))?.arrival, 1);
  });
}
