/**
 * Opens the stores the configuration asks for: the registry (with the rejections log), oracle records
 * and status, API keys, voids and corrections in PostgreSQL with DATABASE_URL (store/postgres/stores.ts), else in the
 * SQLite file under DATA_DIR; readings by READINGS_STORE: SQLite (the default), InfluxDB (INFLUX_URL;
 * the default when it is set) or PostgreSQL (DATABASE_URL). The SQLite file is opened in every case
 * (the gateway's `db` dependency; with DATABASE_URL it holds nothing the other processes need).
 * `close()` closes what it opened, readings first.
 */
import type { Config } from '../domain/config.ts';
import type { Logger } from '../domain/logger.ts';
import { openDatabase, type Db } from './sqlite/db.ts';
import { SqliteReadingStore } from './sqlite/readings.ts';
import { openSqliteStores } from './sqlite/stores.ts';
import type { ApiKeyTable, CorrectionRecords, FacilityRegistry, OracleRecords, OracleStatus, ReadingStore } from './types.ts';

export interface Stores {
  /** The SQLite handle (for the modules that still take one). */
  db: Db;
  /** Where registry, records, status and keys live. */
  backend: 'sqlite' | 'postgres';
  readings: ReadingStore;
  registry: FacilityRegistry;
  records: OracleRecords;
  status: OracleStatus;
  apiKeys: ApiKeyTable;
  /** Voids and corrections (store/sqlite/corrections.ts, or store/postgres/corrections.ts with DATABASE_URL). */
  corrections: CorrectionRecords;
  close(): Promise<void>;
}

type StoreConfig = Pick<
  Config,
  'dataDir' | 'influxUrl' | 'influxToken' | 'influxOrg' | 'influxBucket' | 'influxDatabase' | 'influxRetentionPolicy' | 'readingsStore' | 'databaseUrl'
>;

/** Which store keeps the readings: READINGS_STORE, else InfluxDB when INFLUX_URL is set, else SQLite. */
export function readingsBackend(config: Pick<StoreConfig, 'readingsStore' | 'influxUrl'>): 'sqlite' | 'influxdb' | 'postgres' {
  if (config.readingsStore === 'postgres' || config.readingsStore === 'sqlite' || config.readingsStore === 'influxdb') return config.readingsStore;
  return config.influxUrl ? 'influxdb' : 'sqlite';
}

export async function openStores(config: StoreConfig, logger: Logger): Promise<Stores> {
  const db = openDatabase(config.dataDir);
  const sqlite = openSqliteStores(db, { logger });
  let pgStores: import('./postgres/stores.ts').PostgresStores | undefined;
  let readings: ReadingStore = sqlite.readings;
  const backend = readingsBackend(config);
  try {
    if (config.databaseUrl) {
      const { openPostgresStores } = await import('./postgres/stores.ts');
      pgStores = await openPostgresStores(config.databaseUrl, { logger });
    }
    const registry: FacilityRegistry = pgStores?.registry ?? sqlite.registry;
    if (backend === 'postgres' && config.databaseUrl) {
      const { openPostgresReadingStore } = await import('./postgres/readings.ts');
      // With the registry in the same database the store reads capacity, interval and kind inside its
      // commit (its default); otherwise from the registry's file, per batch.
      readings = await openPostgresReadingStore(config.databaseUrl, pgStores ? { logger } : { limits: (deviceId) => registry.deviceLimits(deviceId), logger });
    } else if (backend === 'sqlite' && pgStores) {
      // Readings in the file, the registry in PostgreSQL: limits from its replica.
      readings = new SqliteReadingStore(db, logger, (deviceId) => registry.deviceLimits(deviceId));
    } else if (backend === 'influxdb' && config.influxUrl) {
      const { openInfluxStore } = await import('./influx/store.ts');
      // With DATABASE_URL several ingest processes may write the same devices: commits are
      // serialised per device through PostgreSQL (store/influx/coordinator.ts).
      const coordinator = config.databaseUrl ? await (await import('./influx/coordinator.ts')).openInfluxCoordinator(config.databaseUrl, { logger }) : undefined;
      readings = openInfluxStore({
        url: config.influxUrl,
        token: config.influxToken,
        org: config.influxOrg,
        bucket: config.influxBucket,
        database: config.influxDatabase,
        retentionPolicy: config.influxRetentionPolicy,
        // Capacity and reporting interval of each device, read per batch from the registry (or its replica).
        limits: (deviceId) => registry.deviceLimits(deviceId),
        logger,
        coordinator,
      });
    }
  } catch (err) {
    await pgStores?.close().catch(() => undefined);
    db.close();
    throw err;
  }
  return {
    db,
    backend: pgStores ? 'postgres' : 'sqlite',
    readings,
    registry: pgStores?.registry ?? sqlite.registry,
    records: pgStores?.records ?? sqlite.records,
    status: pgStores?.status ?? sqlite.status,
    apiKeys: pgStores?.apiKeys ?? sqlite.apiKeys,
    corrections: pgStores?.corrections ?? sqlite.corrections,
    async close() {
      try {
        await readings.close();
        if (readings !== sqlite.readings) await sqlite.readings.close();
      } finally {
        await pgStores?.close();
        db.close();
      }
    },
  };
}
