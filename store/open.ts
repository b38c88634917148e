/**
 * Opens the stores the configuration asks for: the SQLite file under DATA_DIR always (registry,
 * rejections, oracle records and status, API keys), and readings by READINGS_STORE: SQLite (the
 * default), InfluxDB (INFLUX_URL; the default when it is set) or PostgreSQL (DATABASE_URL).
 * `close()` closes what it opened, readings first.
 */
import type { Config } from '../domain/config.ts';
import type { Logger } from '../domain/logger.ts';
import { openDatabase, type Db } from './sqlite/db.ts';
import type { SqliteRegistry } from './sqlite/registry.ts';
import { openSqliteStores } from './sqlite/stores.ts';
import type { ApiKeyTable, CorrectionRecords, OracleRecords, OracleStatus, ReadingStore } from './types.ts';

export interface Stores {
  /** The SQLite handle (for the modules that still take one: gateway/keys.ts createKeyStore). */
  db: Db;
  readings: ReadingStore;
  registry: SqliteRegistry;
  records: OracleRecords;
  status: OracleStatus;
  apiKeys: ApiKeyTable;
  /** Voids and corrections (store/sqlite/corrections.ts). */
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
  let readings: ReadingStore = sqlite.readings;
  const backend = readingsBackend(config);
  if (backend === 'postgres' && config.databaseUrl) {
    const { openPostgresReadingStore } = await import('./postgres/readings.ts');
    try {
      // Capacity and reporting interval of each device, read per batch from the registry's file.
      readings = await openPostgresReadingStore(config.databaseUrl, { limits: (deviceId) => sqlite.registry.deviceLimits(deviceId), logger });
    } catch (err) {
      db.close();
      throw err;
    }
  } else if (backend === 'influxdb' && config.influxUrl) {
    const { openInfluxStore } = await import('./influx/store.ts');
    readings = openInfluxStore({
      url: config.influxUrl,
      token: config.influxToken,
      org: config.influxOrg,
      bucket: config.influxBucket,
      database: config.influxDatabase,
      retentionPolicy: config.influxRetentionPolicy,
      // Capacity and reporting interval of each device, read per batch from the registry's file.
      limits: (deviceId) => sqlite.registry.deviceLimits(deviceId),
      logger,
    });
  }
  return {
    db,
    readings,
    registry: sqlite.registry,
    records: sqlite.records,
    status: sqlite.status,
    apiKeys: sqlite.apiKeys,
    corrections: sqlite.corrections,
    async close() {
      await readings.close();
      if (readings !== sqlite.readings) await sqlite.readings.close();
      db.close();
    },
  };
}
