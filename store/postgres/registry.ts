/**
 * The FacilityRegistry on PostgreSQL (tables: store/postgres/schema.ts, migration 3), for any number
 * of processes on one database.
 *
 * Reads are synchronous, served by an in-process replica of facilities (with their baseline history)
 * and devices (with secret hashes): the broker's CONNECT check and the ingest's per-batch lookups
 * never wait for the network. The replica is loaded at open and kept current by the `mrv_registry`
 * channel (store/postgres/listen.ts): every committed change is announced by a trigger, and the
 * replica re-reads the row it names; after a lost LISTEN connection it reloads everything.
 *
 * Writes are asynchronous: they go to PostgreSQL in one transaction each, the database's constraints
 * decide races between processes (two gateways creating the same device: one gets DEVICE_EXISTS), and
 * the replica takes the rows the database returned before the write resolves (read-your-writes in the
 * writing process). Replica updates, notices and write results are applied through one serial queue,
 * so an older re-read never lands after a newer state.
 *
 * What another process sees: a change once its notice arrived and its row was re-read (normally
 * milliseconds after the commit). While its LISTEN connection is down it serves the last state it had;
 * it reconnects every second and then reloads everything.
 *
 * Online status (setOnline) is coalesced: the latest status per device is written in one statement
 * per round trip, in order; other replicas re-read the devices of the notices that arrived together in
 * one query. The rejections log is not replicated: listing it is a query.
 */
import type pg from 'pg';
import { errors } from '../../domain/errors.ts';
import { silentLogger, type Logger } from '../../domain/logger.ts';
import type { Rejection } from '../../domain/reading.ts';
import { checkDevicePatch, checkFacilityPatch, checkNewDevice, checkNewFacility, statusWrite, toBaselineChange, toCredentials, toDevice, toFacility as facilityOfRow, toLimits, type BaselineChange, type DeviceDbRow, type FacilityDbRow, type FacilityPatch } from '../registry-rules.ts';
import { generateSecret, hashSecretSync } from '../secrets.ts';
import type { Device, DeviceCredentials, DeviceLimits, DeviceOptions, DevicePatch, DeviceStatus, Facility, FacilityRegistry, RegistryChange } from '../types.ts';
import type { NoticeSubscriber, RegistryListener, RegistryNotice } from './listen.ts';
import { inTransaction } from './pool.ts';
import { serialQueue } from './serial.ts';
import { PgRejections } from './rejections.ts';

type FacilityRow = FacilityDbRow;

interface BaselineRow {
  facility_id: string;
  effective_from: number;
  baseline: string;
  set_at: number;
}

interface DeviceRow extends DeviceDbRow {
  online: boolean;
  secret_hash: string;
}

interface ReplicaFacility {
  row: FacilityRow;
  /** Oldest first. */
  baselines: BaselineRow[];
}

const FOREVER = 0;
const UNIQUE_VIOLATION = '23505';
const FK_VIOLATION = '23503';

const DEVICE_COLS =
  'device_id, facility_id, kind, status, created_at, online, last_seen_at, secret_hash, capacity, reporting_interval, decommissioned_at, decommission_reason, public_key';
const FACILITY_COLS = 'id, name, owner, grid_factor, gas_factor, status, created_at';
const BASELINE_COLS = 'facility_id, effective_from, baseline, set_at';

/** The latest configured baseline is the last of the history. */
const toFacility = (f: ReplicaFacility): Facility => facilityOfRow(f.row, f.baselines[f.baselines.length - 1]?.baseline ?? '0');

function pgCode(err: unknown): string | undefined {
  return (err as { code?: string } | undefined)?.code;
}

export class PgRegistry implements FacilityRegistry, NoticeSubscriber {
  private readonly pool: pg.Pool;
  private readonly logger: Logger;
  private readonly clock: () => number;
  private readonly facilities = new Map<string, ReplicaFacility>();
  private readonly devices = new Map<string, DeviceRow>();
  private readonly byFacility = new Map<string, Set<string>>();
  private readonly listeners = new Set<(c: RegistryChange) => void>();
  private readonly rejections: PgRejections;
  /** Replica updates, one after the other. */
  private readonly serial = serialQueue();
  /** Devices whose online notice arrived, re-read together. */
  private readonly onlineReads = new Set<string>();
  /** setOnline coalescing: the latest status per device, written by one statement at a time. */
  private pendingOnline = new Map<string, { online: boolean; at: number }>();
  private onlineFlush: Promise<void> | undefined;

  constructor(pool: pg.Pool, opts: { logger?: Logger; clock?: () => number } = {}) {
    this.pool = pool;
    this.logger = opts.logger ?? silentLogger;
    this.clock = opts.clock ?? Date.now;
    this.rejections = new PgRejections(pool, this.logger);
  }

  /** Subscribes to the listener (which runs resync, the first load, when it connects). */
  attach(listener: RegistryListener): void {
    listener.add(this);
  }

  // Replica ----------------------------------------------------------------------------------

  private emit(c: RegistryChange): void {
    for (const fn of this.listeners) {
      try {
        fn(c);
      } catch (err) {
        this.logger.warn({ err }, 'registry change listener failed');
      }
    }
  }

  onChange(fn: (c: RegistryChange) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  notice(n: RegistryNotice): void {
    if (n.t === 'o') {
      // Re-read (batched): the payload may describe an older state than one this process applied since.
      this.onlineReads.add(n.id);
      if (this.onlineReads.size === 1) {
        this.serial(async () => {
          const ids = [...this.onlineReads];
          this.onlineReads.clear();
          const res = await this.pool.query<{ device_id: string; online: boolean; last_seen_at: number | null }>(
            'SELECT device_id, online, last_seen_at FROM devices WHERE device_id = ANY($1::text[])',
            [ids],
          );
          this.applyOnline(res.rows);
        }).catch((err: unknown) => this.logger.warn({ err }, 'online status re-read failed'));
      }
      return;
    }
    if (n.t === 'k') return;
    this.serial(async () => {
      if (n.t === 'f') await this.reloadFacility(n.id);
      else await this.reloadDevice(n.id);
    })
      .then(() => this.emit(n.t === 'f' ? { kind: 'facility', id: n.id } : { kind: 'device', id: n.id }))
      .catch((err: unknown) => {
        // The row could not be re-read: reload everything rather than keep a stale row.
        this.logger.warn({ err, notice: n }, 'registry re-read failed; full reload');
        this.resync().catch((e: unknown) => this.logger.error({ err: e }, 'registry reload failed'));
      });
  }

  /** Reloads facilities, baselines and devices in one snapshot. */
  resync(): Promise<void> {
    return this.serial(async () => {
      const { f, b, d } = await inTransaction(
        this.pool,
        async (client) => ({
          f: await client.query<FacilityRow>(`SELECT ${FACILITY_COLS} FROM facilities`),
          b: await client.query<BaselineRow>(`SELECT ${BASELINE_COLS} FROM facility_baselines ORDER BY facility_id, effective_from`),
          d: await client.query<DeviceRow>(`SELECT ${DEVICE_COLS} FROM devices`),
        }),
        'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
      );
      this.facilities.clear();
      this.devices.clear();
      this.byFacility.clear();
      for (const row of f.rows) this.facilities.set(row.id, { row, baselines: [] });
      for (const row of b.rows) this.facilities.get(row.facility_id)?.baselines.push(row);
      for (const row of d.rows) this.putDevice(row);
    }).then(() => this.emit({ kind: 'all' }));
  }

  private putDevice(row: DeviceRow): void {
    const old = this.devices.get(row.device_id);
    if (old && old.facility_id !== row.facility_id) this.byFacility.get(old.facility_id)?.delete(row.device_id);
    this.devices.set(row.device_id, row);
    let set = this.byFacility.get(row.facility_id);
    if (!set) this.byFacility.set(row.facility_id, (set = new Set()));
    set.add(row.device_id);
  }

  private dropDevice(id: string): void {
    const old = this.devices.get(id);
    if (!old) return;
    this.devices.delete(id);
    this.byFacility.get(old.facility_id)?.delete(id);
  }

  private putFacility(row: FacilityRow | undefined, baselines: BaselineRow[], id: string): void {
    if (!row) {
      this.facilities.delete(id);
      for (const d of this.byFacility.get(id) ?? []) this.devices.delete(d);
      this.byFacility.delete(id);
      return;
    }
    this.facilities.set(id, { row, baselines });
  }

  private async readFacility(q: Pick<pg.PoolClient, 'query'>, id: string): Promise<{ row?: FacilityRow; baselines: BaselineRow[] }> {
    const f = await q.query<FacilityRow>(`SELECT ${FACILITY_COLS} FROM facilities WHERE id = $1`, [id]);
    const b = await q.query<BaselineRow>(`SELECT ${BASELINE_COLS} FROM facility_baselines WHERE facility_id = $1 ORDER BY effective_from`, [id]);
    return { row: f.rows[0], baselines: b.rows };
  }

  private async reloadFacility(id: string): Promise<void> {
    const { row, baselines } = await this.readFacility(this.pool, id);
    this.putFacility(row, baselines, id);
  }

  private async reloadDevice(id: string): Promise<void> {
    const res = await this.pool.query<DeviceRow>(`SELECT ${DEVICE_COLS} FROM devices WHERE device_id = $1`, [id]);
    if (res.rows[0]) this.putDevice(res.rows[0]);
    else this.dropDevice(id);
  }

  /** Runs `fn` in a transaction; the result's rows are applied to the replica (in the serial queue) before it resolves. */
  private async tx<T>(fn: (c: pg.PoolClient) => Promise<T>, apply: (out: T) => void): Promise<T> {
    const out = await inTransaction(this.pool, fn);
    await this.serial(() => apply(out));
    return out;
  }

  // Facilities -------------------------------------------------------------------------------

  async createFacility(f: Omit<Facility, 'status' | 'createdAt'> & { createdAt?: number }): Promise<Facility> {
    const { baseline, grid, gas } = checkNewFacility(f);
    const createdAt = f.createdAt ?? this.clock();
    try {
      await this.tx(
        async (c) => {
          await c.query(`INSERT INTO facilities (${FACILITY_COLS}) VALUES ($1, $2, $3, $4, $5, 'active', $6)`, [f.id, f.name, f.owner, grid, gas, createdAt]);
          await c.query(`INSERT INTO facility_baselines (${BASELINE_COLS}) VALUES ($1, $2, $3, $4)`, [f.id, FOREVER, baseline, createdAt]);
          return this.readFacility(c, f.id);
        },
        (r) => this.putFacility(r.row, r.baselines, f.id),
      );
    } catch (err) {
      if (pgCode(err) === UNIQUE_VIOLATION) throw errors.FACILITY_EXISTS(f.id);
      throw err;
    }
    this.logger.info({ facilityId: f.id }, 'facility created');
    return this.mustFacility(f.id);
  }

  getFacility(id: string): Facility | undefined {
    const f = this.facilities.get(id);
    return f ? toFacility(f) : undefined;
  }

  listFacilities(): Facility[] {
    return [...this.facilities.keys()].sort().map((id) => toFacility(this.facilities.get(id)!));
  }

  private mustFacility(id: string): Facility {
    const f = this.getFacility(id);
    if (!f) throw errors.FACILITY_NOT_FOUND(id);
    return f;
  }

  async updateFacility(id: string, patch: FacilityPatch): Promise<Facility> {
    const now = this.clock();
    const { status, baseline, from } = checkFacilityPatch(patch, now);
    await this.tx(
      async (c) => {
        const found = await c.query('SELECT 1 FROM facilities WHERE id = $1 FOR UPDATE', [id]);
        if (found.rowCount === 0) throw errors.FACILITY_NOT_FOUND(id);
        if (status !== undefined) await c.query('UPDATE facilities SET status = $1 WHERE id = $2', [status, id]);
        if (baseline !== undefined) {
          await c.query(
            `INSERT INTO facility_baselines (${BASELINE_COLS}) VALUES ($1, $2, $3, $4)
             ON CONFLICT (facility_id, effective_from) DO UPDATE SET baseline = excluded.baseline, set_at = excluded.set_at`,
            [id, from, baseline, now],
          );
        }
        if (patch.owner !== undefined) await c.query('UPDATE facilities SET owner = $1 WHERE id = $2', [patch.owner, id]);
        return this.readFacility(c, id);
      },
      (r) => this.putFacility(r.row, r.baselines, id),
    );
    this.logger.info({ facilityId: id, status, baseline, effectiveFrom: baseline === undefined ? undefined : from }, 'facility updated');
    return this.mustFacility(id);
  }

  async deleteFacility(id: string): Promise<void> {
    await this.tx(
      async (c) => {
        // Devices and baselines go with it (ON DELETE CASCADE).
        const res = await c.query('DELETE FROM facilities WHERE id = $1', [id]);
        if (res.rowCount === 0) throw errors.FACILITY_NOT_FOUND(id);
      },
      () => this.putFacility(undefined, [], id),
    );
    this.logger.info({ facilityId: id }, 'facility deleted');
  }

  baselineAt(facilityId: string, at: number): string {
    const f = this.facilities.get(facilityId);
    if (!f || f.baselines.length === 0) throw errors.FACILITY_NOT_FOUND(facilityId);
    let out = f.baselines[0].baseline;
    for (const b of f.baselines) {
      if (b.effective_from <= at) out = b.baseline;
      else break;
    }
    return out;
  }

  /** The facility's baseline history, oldest first (the first entry is in force from 0). */
  baselineHistory(facilityId: string): BaselineChange[] {
    const f = this.facilities.get(facilityId);
    if (!f) throw errors.FACILITY_NOT_FOUND(facilityId);
    return f.baselines.map(toBaselineChange);
  }

  // Devices ----------------------------------------------------------------------------------

  async createDevice(facilityId: string, deviceId: string, kind: string, opts: DeviceOptions = {}): Promise<{ device: Device; password: string }> {
    const { capacity, interval, publicKey } = checkNewDevice(deviceId, kind, opts);
    const password = generateSecret();
    const hash = hashSecretSync(password);
    const createdAt = this.clock();
    let row: DeviceRow;
    try {
      row = await this.tx(
        async (c) => {
          const res = await c.query<DeviceRow>(
            `INSERT INTO devices (device_id, facility_id, kind, status, created_at, online, secret_hash, capacity, reporting_interval, public_key)
             VALUES ($1, $2, $3, 'active', $4, false, $5, $6, $7, $8) RETURNING ${DEVICE_COLS}`,
            [deviceId, facilityId, kind || 'meter', createdAt, hash, capacity, interval, publicKey],
          );
          return res.rows[0];
        },
        (r) => this.putDevice(r),
      );
    } catch (err) {
      if (pgCode(err) === FK_VIOLATION) throw errors.FACILITY_NOT_FOUND(facilityId);
      if (pgCode(err) === UNIQUE_VIOLATION) throw errors.DEVICE_EXISTS(deviceId);
      throw err;
    }
    this.logger.info({ facilityId, deviceId }, 'device created');
    return { device: toDevice(row), password };
  }

  getDevice(deviceId: string): Device | undefined {
    const r = this.devices.get(deviceId);
    return r ? toDevice(r) : undefined;
  }

  listDevices(facilityId: string): Device[] {
    this.mustFacility(facilityId);
    return [...(this.byFacility.get(facilityId) ?? [])].sort().map((id) => toDevice(this.devices.get(id)!));
  }

  async updateDevice(deviceId: string, patch: DevicePatch): Promise<Device> {
    const { status, capacity, publicKey, reason } = checkDevicePatch(patch);
    const now = this.clock();
    const row = await this.tx(
      async (c) => {
        const before = (await c.query<{ status: DeviceStatus }>('SELECT status FROM devices WHERE device_id = $1 FOR UPDATE', [deviceId])).rows[0];
        if (!before) throw errors.DEVICE_NOT_FOUND(deviceId);
        const write = statusWrite(deviceId, before.status, status);
        if (write === 'decommission') {
          await c.query("UPDATE devices SET status = 'decommissioned', decommissioned_at = $1, decommission_reason = $2 WHERE device_id = $3", [now, reason, deviceId]);
        } else if (write === 'status') await c.query('UPDATE devices SET status = $1 WHERE device_id = $2', [status, deviceId]);
        if (capacity !== undefined) await c.query('UPDATE devices SET capacity = $1 WHERE device_id = $2', [capacity, deviceId]);
        if (publicKey !== undefined) await c.query('UPDATE devices SET public_key = $1 WHERE device_id = $2', [publicKey, deviceId]);
        return (await c.query<DeviceRow>(`SELECT ${DEVICE_COLS} FROM devices WHERE device_id = $1`, [deviceId])).rows[0];
      },
      (r) => this.putDevice(r),
    );
    this.logger.info({ deviceId, status, capacity, reason, publicKey }, 'device updated');
    return toDevice(row);
  }

  devicePublicKey(deviceId: string): string | undefined {
    return this.devices.get(deviceId)?.public_key ?? undefined;
  }

  deviceLimits(deviceId: string): DeviceLimits | undefined {
    const r = this.devices.get(deviceId);
    return r ? toLimits(r) : undefined;
  }

  async rotateSecret(deviceId: string): Promise<string> {
    const password = generateSecret();
    const hash = hashSecretSync(password);
    await this.tx(
      async (c) => {
        const res = await c.query<DeviceRow>(`UPDATE devices SET secret_hash = $1 WHERE device_id = $2 RETURNING ${DEVICE_COLS}`, [hash, deviceId]);
        if (res.rowCount === 0) throw errors.DEVICE_NOT_FOUND(deviceId);
        return res.rows[0];
      },
      (r) => this.putDevice(r),
    );
    this.logger.info({ deviceId }, 'device secret rotated');
    return password;
  }

  /** Compare-and-set of the secret record (a legacy record upgraded after a login): a rotation meanwhile wins. */
  async replaceSecretHash(deviceId: string, expected: string, record: string): Promise<boolean> {
    const row = await this.tx(
      async (c) => {
        const res = await c.query<DeviceRow>(`UPDATE devices SET secret_hash = $1 WHERE device_id = $2 AND secret_hash = $3 RETURNING ${DEVICE_COLS}`, [
          record,
          deviceId,
          expected,
        ]);
        return res.rows[0];
      },
      (r) => r && this.putDevice(r),
    );
    if (row) this.logger.info({ deviceId }, 'device secret record upgraded to hs256');
    return row !== undefined;
  }

  credentials(deviceId: string): DeviceCredentials | undefined {
    const d = this.devices.get(deviceId);
    if (!d) return undefined;
    const f = this.facilities.get(d.facility_id);
    if (!f) return undefined;
    return toCredentials(d, f.row.status);
  }

  /**
   * Online/offline from CONNECT and the last will; lastSeenAt never moves backwards. Unknown ids are
   * ignored. Coalesced: resolves once the status (or a later one of the device) is written.
   */
  setOnline(deviceId: string, online: boolean, at: number): Promise<void> {
    this.pendingOnline.set(deviceId, { online, at });
    return this.flushOnline();
  }

  private applyOnline(rows: { device_id: string; online: boolean; last_seen_at: number | null }[]): void {
    for (const r of rows) {
      const d = this.devices.get(r.device_id);
      if (!d) continue;
      d.online = r.online;
      d.last_seen_at = r.last_seen_at;
    }
  }

  private flushOnline(): Promise<void> {
    if (this.onlineFlush) return this.onlineFlush.then(() => (this.pendingOnline.size > 0 ? this.flushOnline() : undefined));
    const batch = this.pendingOnline;
    this.pendingOnline = new Map();
    const ids = [...batch.keys()];
    this.onlineFlush = this.pool
      .query<{ device_id: string; online: boolean; last_seen_at: number | null }>(
        `UPDATE devices d SET online = v.online, last_seen_at = GREATEST(COALESCE(d.last_seen_at, 0), v.at)
         FROM unnest($1::text[], $2::boolean[], $3::bigint[]) AS v(id, online, at) WHERE d.device_id = v.id
         RETURNING d.device_id, d.online, d.last_seen_at`,
        [ids, ids.map((id) => batch.get(id)!.online), ids.map((id) => batch.get(id)!.at)],
      )
      .then((res) => this.serial(() => this.applyOnline(res.rows)))
      .finally(() => {
        this.onlineFlush = undefined;
      });
    return this.onlineFlush;
  }

  // Rejections (store/postgres/rejections.ts) ------------------------------------------------

  addRejections(rows: Rejection[]): Promise<void> {
    return this.rejections.add(rows);
  }

  pruneRejections(before: number): Promise<number> {
    return this.rejections.prune(before);
  }

  async listRejections(facilityId: string, limit?: number): Promise<Rejection[]> {
    return (await this.pageRejections(facilityId, limit)).map((r) => r.rejection);
  }

  async pageRejections(facilityId: string, limit?: number, beforeId?: number): Promise<{ id: number; rejection: Rejection }[]> {
    this.mustFacility(facilityId);
    return this.rejections.page(facilityId, limit, beforeId);
  }
}
