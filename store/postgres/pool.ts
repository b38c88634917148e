/**
 * The PostgreSQL connection pool the stores use: bigint columns read back as JavaScript numbers,
 * pipelining connections, a bound on idling inside a transaction.
 */
import pg from 'pg';
import { silentLogger, type Logger } from '../../domain/logger.ts';

/** How long a commit may sit idle inside its transaction before the server ends the session. */
export const IDLE_IN_TRANSACTION_MS = 30_000;
const INT8_OID = 20;
/** bigint columns as JavaScript numbers (seq, epoch ms, counts: all safe integers here). */
export const PG_TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: string) => {
    if (oid === INT8_OID && format !== 'binary') {
      return (text: string) => {
        const n = Number(text);
        if (!Number.isSafeInteger(n)) throw new Error(`bigint ${text} is not a safe integer`);
        return n;
      };
    }
    return pg.types.getTypeParser(oid, format as 'text');
  }) as pg.CustomTypesConfig['getTypeParser'],
};

/**
 * A pool for the stores: bigint read back as numbers, pipelining connections (a commit sends the
 * queries that do not wait for each other's answers together), a bound on idling inside a
 * transaction, errors of idle connections logged.
 */
export function createPool(connectionString: string, logger: Logger = silentLogger, max = 10): pg.Pool {
  const pool = new pg.Pool({
    connectionString,
    types: PG_TYPES,
    max,
    application_name: 'mrv',
    pipeline: true,
    // A writer that stops between the statements of a commit (a frozen process) must not hold its
    // devices' locks for ever: the server ends its session, rolling the batch back (nothing of it was
    // acknowledged). A killed process's connection drops, which rolls back at once.
    idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_MS,
  });
  pool.on('error', (err) => logger.warn({ err }, 'idle PostgreSQL connection failed'));
  return pool;
}

/** Runs `fn` on one pooled connection inside a transaction (`begin`: its BEGIN statement): committed when it resolves, rolled back when it throws. */
export async function inTransaction<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>, begin = 'BEGIN'): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query(begin);
    const out = await fn(client);
    await client.query('COMMIT');
    return out;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}
