/**
 * DATABASE_URL (+ READINGS_STORE=postgres): the configuration refuses what it cannot do (and says so),
 * and openStores puts the registry, keys, records, status, voids and corrections in a real PostgreSQL (a throwaway
 * cluster), and the readings too with READINGS_STORE=postgres, with the registry's device limits
 * applied by the PostgreSQL store's ingest rules.
 */
import t from 'tap';
import { loadConfig } from '../../domain/config.ts';
import { silentLogger } from '../../domain/logger.ts';
import { openStores, readingsBackend } from '../../store/open.ts';
import { postgresForFile } from '../helpers/postgres.ts';
import { reading, T0 } from '../helpers/reading-store-contract.ts';
import { tmpDir } from '../helpers/tmp.ts';

const PG = 'postgres://mrv:secret@127.0.0.1:5432/mrv';

t.test('settings: what the readings store needs; DATABASE_URL alone moves everything but the readings', async (t) => {
  t.throws(() => loadConfig({ READINGS_STORE: 'postgres' }), { code: 'CONFIG_INVALID', message: /READINGS_STORE=postgres needs DATABASE_URL/ });
  t.throws(() => loadConfig({ READINGS_STORE: 'influxdb' }), { code: 'CONFIG_INVALID', message: /needs INFLUX_URL/ });
  t.throws(() => loadConfig({ READINGS_STORE: 'mongodb' }), { code: 'CONFIG_INVALID', message: /READINGS_STORE.*sqlite, influxdb or postgres/ });
  t.throws(() => loadConfig({ READINGS_STORE: 'postgres', DATABASE_URL: 'mysql://x@127.0.0.1/db' }), { code: 'CONFIG_INVALID', message: /postgres:\/\// });
  t.equal(readingsBackend(loadConfig({ DATABASE_URL: PG })), 'sqlite', 'DATABASE_URL alone: readings stay in SQLite');
  const c = loadConfig({ READINGS_STORE: 'postgres', DATABASE_URL: PG });
  t.equal(readingsBackend(c), 'postgres');
  t.equal(readingsBackend(loadConfig({})), 'sqlite');
  t.equal(readingsBackend(loadConfig({ INFLUX_URL: 'http://127.0.0.1:8086', INFLUX_DATABASE: 'mrv' })), 'influxdb');
  t.equal(readingsBackend(loadConfig({ INFLUX_URL: 'http://127.0.0.1:8086', INFLUX_DATABASE: 'mrv', READINGS_STORE: 'sqlite' })), 'sqlite', 'READINGS_STORE wins');
});

t.test('openStores with READINGS_STORE=postgres: everything in PostgreSQL, limits from the registry', async (t) => {
  const cluster = await postgresForFile(t);
  if (!cluster) return;
  const url = await cluster.createDatabase();
  const config = loadConfig({ DATA_DIR: tmpDir(t), READINGS_STORE: 'postgres', DATABASE_URL: url });
  const stores = await openStores(config, silentLogger);
  t.teardown(() => stores.close());
  t.equal(stores.readings.kind, 'postgres');
  t.equal(stores.backend, 'postgres');
  t.ok(await stores.readings.ping());

  await stores.registry.createFacility({ id: 'fac-1', name: 'Plant', owner: '0x' + '1'.repeat(40), baselineKgPerHour: '100', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162' });
  // 10 kW declared: 1.2 x 10 kW x 1 h = 12 kWh is the most one hour may add.
  await stores.registry.createDevice('fac-1', 'm1', 'meter', { capacity: '10' });
  const out = await stores.readings.commit([
    reading('m1', 1, T0, '100'),
    reading('m1', 2, T0 + 3_600_000, '111'),
    reading('m1', 3, T0 + 7_200_000, '200'),
  ]);
  t.same(
    out.map((o) => (o.status === 'rejected' ? o.reason : o.status)),
    ['stored', 'stored', 'implausible'],
    "the registry's capacity bounds the PostgreSQL store's plausibility check",
  );
  const got = await stores.readings.get('m1', 2);
  t.equal(got?.value, '111', 'read back from PostgreSQL');
  t.equal(stores.registry.getDevice('m1')?.capacity, '10');
  t.equal((stores.db.prepare('SELECT count(*) AS n FROM devices').get() as { n: number }).n, 0, 'nothing of the registry in the SQLite file');
});

t.test('openStores with DATABASE_URL alone: registry in PostgreSQL, readings in the SQLite file', async (t) => {
  const cluster = await postgresForFile(t);
  if (!cluster) return;
  const url = await cluster.createDatabase();
  const config = loadConfig({ DATA_DIR: tmpDir(t), DATABASE_URL: url });
  const stores = await openStores(config, silentLogger);
  t.teardown(() => stores.close());
  t.equal(stores.backend, 'postgres');
  t.equal(stores.readings.kind, 'sqlite');
  await stores.registry.createFacility({ id: 'fac-1', name: 'Plant', owner: '0x' + '1'.repeat(40), baselineKgPerHour: '100', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162' });
  await stores.registry.createDevice('fac-1', 'm1', 'meter', { capacity: '10' });
  const out = await stores.readings.commit([reading('m1', 1, T0, '100'), reading('m1', 2, T0 + 3_600_000, '200')]);
  t.same(
    out.map((o) => (o.status === 'rejected' ? o.reason : o.status)),
    ['stored', 'implausible'],
    "the SQLite reading store takes the capacity from the PostgreSQL registry's replica",
  );

  // Voids and corrections are shared too: a void recorded through this process (a gateway) is read by
  // another opened on the same database with its own SQLite file (an oracle on another machine).
  const v = await stores.corrections.addVoid({ facilityId: 'fac-1', deviceId: 'm1', from: T0, to: T0 + 1000, reason: 'meter fault', by: 'k', at: T0 });
  t.equal((stores.db.prepare('SELECT count(*) AS n FROM reading_voids').get() as { n: number }).n, 0, 'nothing of the voids in the SQLite file');
  const other = await openStores(loadConfig({ DATA_DIR: tmpDir(t), DATABASE_URL: url }), silentLogger);
  t.teardown(() => other.close());
  t.same(await other.corrections.voidsOf(['m1']), [v], "the other process reads the void");
  t.same(await other.corrections.voidedFacilities(), [{ facilityId: 'fac-1', voids: 1 }]);
});

t.test('an unreachable DATABASE_URL fails openStores with the reason, and leaves nothing open', async (t) => {
  const config = loadConfig({ DATA_DIR: tmpDir(t), READINGS_STORE: 'postgres', DATABASE_URL: 'postgres://mrv@127.0.0.1:1/mrv' });
  await t.rejects(openStores(config, silentLogger));
});
