/**
 * Every store but the readings on one PostgreSQL database (DATABASE_URL): the registry with the
 * rejections log, the API keys, the oracle's records, status and lease, the voids and corrections,
 * after migrating the schema
 * (store/postgres/schema.ts; any number of processes may open it at once). The registry and the keys
 * are replicated in this process and kept current by one LISTEN connection (store/postgres/listen.ts);
 * opening resolves once they are loaded. `close()` ends the LISTEN connection and the pool.
 */
import type pg from 'pg';
import { silentLogger, type Logger } from '../../domain/logger.ts';
import { PgCorrections } from './corrections.ts';
import { PgApiKeys } from './keys.ts';
import { createRegistryListener, type RegistryListener } from './listen.ts';
import { createPool } from './pool.ts';
import { PgOracleRecords } from './records.ts';
import { PgRegistry } from './registry.ts';
import { migrate } from './schema.ts';
import { PgOracleStatus } from './status.ts';

export interface PostgresStores {
  pool: pg.Pool;
  listener: RegistryListener;
  registry: PgRegistry;
  apiKeys: PgApiKeys;
  records: PgOracleRecords;
  status: PgOracleStatus;
  /** Voids and corrections (store/postgres/corrections.ts). */
  corrections: PgCorrections;
  close(): Promise<void>;
}

export interface PostgresStoreOptions {
  logger?: Logger;
  /** Epoch-ms clock (createdAt, record times). */
  clock?: () => number;
  /** How long to wait before reopening a lost LISTEN connection (default 1000 ms). */
  reconnectMs?: number;
  poolSize?: number;
}

export async function openPostgresStores(connectionString: string, opts: PostgresStoreOptions = {}): Promise<PostgresStores> {
  const logger = opts.logger ?? silentLogger;
  // Registry and key writes are rare; the oracle's records take most: 5 connections, plus LISTEN and the lease session.
  const pool = createPool(connectionString, logger, opts.poolSize ?? 5);
  const listener = createRegistryListener(connectionString, { logger, reconnectMs: opts.reconnectMs });
  try {
    await migrate(pool);
    const registry = new PgRegistry(pool, { logger, clock: opts.clock });
    const apiKeys = new PgApiKeys(pool, { logger });
    registry.attach(listener);
    apiKeys.attach(listener);
    // LISTEN first, then the first load: no change falls between the two.
    await listener.start();
    const records = new PgOracleRecords(pool, opts.clock);
    return {
      pool,
      listener,
      registry,
      apiKeys,
      records,
      status: new PgOracleStatus(pool),
      corrections: new PgCorrections(pool, opts.clock),
      async close() {
        await listener.close();
        await records.close();
        await pool.end();
      },
    };
  } catch (err) {
    await listener.close();
    await pool.end().catch(() => undefined);
    throw err;
  }
}
