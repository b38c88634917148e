/**
 * Several writers for the InfluxDB reading store: with DATABASE_URL, each commit's devices are
 * serialised across processes through PostgreSQL, so the ingest rules (dedupe, seq/ts neighbours,
 * registers, plausibility) and the arrival numbers hold whatever process writes a device.
 *
 * A commit (store/influx/store.ts) runs inside one PostgreSQL transaction that holds a
 * transaction-scoped advisory lock per device (keys taken in ascending order, so two commits never
 * deadlock), from before its checks until after InfluxDB acknowledged its lines and the device's mark
 * point. The device's row in `influx_device_state` (store/postgres/schema.ts) says whether the
 * process's cached state of the device is still current:
 *
 * - before writing, the holder bumps `epoch` in its own committed statement (so it is visible even if
 *   the holder dies before its transaction ends);
 * - after the write and its mark point were acknowledged, it sets `clean = epoch` in the lock's
 *   transaction, which then commits (releasing the locks).
 *
 * A process keeps the epoch it last wrote for each device. Its cached state is used only when the row
 * says `clean = epoch - 1 = that epoch` at the bump (no other writer since, and no write cut short);
 * otherwise the state is reloaded from InfluxDB (the reading points and mark points), which also
 * rewrites what a writer that died mid-write left above the mark (as a restart does).
 *
 * The lock's session must outlive the longest InfluxDB write (retries included): the pool's
 * idle-in-transaction bound is set above it. A killed process's connection drops, which releases its
 * locks at once; its row stays dirty (epoch > clean), so the next writer reloads.
 */
import pg from 'pg';
import { silentLogger, type Logger } from '../../domain/logger.ts';
import { PG_TYPES } from '../postgres/pool.ts';
import { migrate } from '../postgres/schema.ts';

/** First key of the two-key advisory locks of this store ("infl"); the second is the device's hash. */
export const INFLUX_LOCK_NAMESPACE = 0x696e666c;

/** FNV-1a (32 bits, signed) of the device id's UTF-8 bytes: the device's advisory lock key. */
export function deviceLockKey(deviceId: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(deviceId, 'utf8')) {
    h ^= b;
    h = Math.imul(h, 0x01000193);
  }
  return h | 0;
}

const BUMP = `INSERT INTO influx_device_state AS s (device_id, epoch) SELECT d, 1 FROM unnest($1::text[]) AS d
  ON CONFLICT (device_id) DO UPDATE SET epoch = s.epoch + 1 RETURNING device_id, epoch, clean`;
const CLEAN = `UPDATE influx_device_state AS s SET clean = u.epoch FROM unnest($1::text[], $2::bigint[]) AS u(device_id, epoch)
  WHERE s.device_id = u.device_id AND s.epoch = u.epoch`;

export interface DeviceLease {
  /**
   * Per device, the epoch that the caller's cache must have been written at for it to be current
   * (`undefined`: reload whatever the cache holds).
   */
  current: Map<string, number | undefined>;
  /** The epoch of this commit per device (what to remember after a clean release). */
  epochs: Map<string, number>;
  /** ok: the write was acknowledged; marks the devices clean and commits. Otherwise rolls back. */
  release(ok: boolean): Promise<void>;
}

export interface CoordinatorOptions {
  logger?: Logger;
  /** Longest time a lock may be held idle in its transaction (default 120 s; above the writer's retry bound). */
  holdMs?: number;
  poolSize?: number;
}

export class InfluxCoordinator {
  private constructor(
    private readonly pool: pg.Pool,
    private readonly log: Logger,
  ) {}

  static async open(connectionString: string, opts: CoordinatorOptions = {}): Promise<InfluxCoordinator> {
    const log = opts.logger ?? silentLogger;
    const pool = new pg.Pool({
      connectionString,
      types: PG_TYPES,
      max: opts.poolSize ?? 4,
      application_name: 'mrv-influx',
      idle_in_transaction_session_timeout: opts.holdMs ?? 120_000,
    });
    pool.on('error', (err) => log.warn({ err }, 'idle PostgreSQL connection failed'));
    try {
      await migrate(pool);
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw err;
    }
    return new InfluxCoordinator(pool, log);
  }

  /** Waits for every device's lock (ascending keys), then bumps their epochs. */
  async acquire(deviceIds: string[]): Promise<DeviceLease> {
    const client = await this.pool.connect();
    let done = false;
    const end = async (sql: 'COMMIT' | 'ROLLBACK', clean?: { ids: string[]; epochs: number[] }) => {
      if (done) return;
      done = true;
      try {
        if (clean && clean.ids.length > 0) await client.query(CLEAN, [clean.ids, clean.epochs]);
        await client.query(sql);
        client.release();
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        client.release(err as Error);
        throw err;
      }
    };
    try {
      await client.query('BEGIN');
      const keys = [...new Set(deviceIds.map(deviceLockKey))].sort((a, b) => a - b);
      // One statement per key, in order, on this connection: the order the locks are taken in.
      for (const k of keys) await client.query('SELECT pg_advisory_xact_lock($1, $2)', [INFLUX_LOCK_NAMESPACE, k]);
      const current = new Map<string, number | undefined>();
      const epochs = new Map<string, number>();
      if (deviceIds.length > 0) {
        // Committed at once (another connection): a writer that dies after this leaves the row dirty.
        const res = await this.pool.query<{ device_id: string; epoch: number; clean: number }>(BUMP, [deviceIds]);
        for (const row of res.rows) {
          epochs.set(row.device_id, row.epoch);
          current.set(row.device_id, row.clean === row.epoch - 1 && row.clean > 0 ? row.clean : undefined);
        }
      }
      return {
        current,
        epochs,
        release: async (ok) => {
          if (ok) await end('COMMIT', { ids: [...epochs.keys()], epochs: [...epochs.values()] });
          else await end('ROLLBACK');
        },
      };
    } catch (err) {
      await end('ROLLBACK').catch((e) => this.log.warn({ err: e }, 'releasing influx device locks failed'));
      throw err;
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

export function openInfluxCoordinator(connectionString: string, opts: CoordinatorOptions = {}): Promise<InfluxCoordinator> {
  return InfluxCoordinator.open(connectionString, opts);
}
