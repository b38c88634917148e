/**
 * Every store on one SQLite file (better-sqlite3, WAL, synchronous=FULL; see store/sqlite/db.ts): the
 * ReadingStore, the FacilityRegistry, the oracle's records and status, and the API key table, after
 * creating or migrating the file's tables (store/sqlite/schema.ts). The reading store takes device
 * limits from the registry. The stores never close the Db handle; whoever opened it closes it.
 */
import { silentLogger, type Logger } from '../../domain/logger.ts';
import type { Db } from './db.ts';
import { SqliteApiKeys } from './keys.ts';
import { SqliteCorrections } from './corrections.ts';
import { SqliteReadingStore } from './readings.ts';
import { SqliteOracleRecords } from './records.ts';
import { SqliteRegistry } from './registry.ts';
import { migrate } from './schema.ts';
import { SqliteOracleStatus } from './status.ts';

export interface SqliteStoreOptions {
  /** Bound to the store's component by the caller (store/open.ts). */
  logger?: Logger;
  /** Epoch-ms clock (createdAt, default effectiveFrom of a baseline change, record times). */
  clock?: () => number;
}

export interface SqliteStores {
  readings: SqliteReadingStore;
  registry: SqliteRegistry;
  records: SqliteOracleRecords;
  status: SqliteOracleStatus;
  apiKeys: SqliteApiKeys;
  corrections: SqliteCorrections;
}

/** Creates or migrates the tables and returns the stores on `db`. */
export function openSqliteStores(db: Db, opts: SqliteStoreOptions = {}): SqliteStores {
  migrate(db);
  const logger = opts.logger ?? silentLogger;
  const clock = opts.clock ?? Date.now;
  const registry = new SqliteRegistry(db, logger, clock);
  return {
    readings: new SqliteReadingStore(db, logger, (deviceId) => registry.deviceLimits(deviceId)),
    registry,
    records: new SqliteOracleRecords(db, clock),
    status: new SqliteOracleStatus(db),
    apiKeys: new SqliteApiKeys(db),
    corrections: new SqliteCorrections(db, clock),
  };
}
