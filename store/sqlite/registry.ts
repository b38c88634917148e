/**
 * The FacilityRegistry on the SQLite file: facilities + baseline history, devices + secret hashes,
 * online status, and the rejections log (rows kept by store/sqlite/rejections.ts). Tables and their
 * migrations: store/sqlite/schema.ts.
 *
 * Closing: the stores never close the Db handle; whoever opened it (openDatabase) closes it.
 */
import type { Logger } from '../../domain/logger.ts';
import type { Rejection } from '../../domain/reading.ts';
import type { Db } from './db.ts';
import { generateSecret, hashSecretSync } from '../secrets.ts';
import { SqliteRejections } from './rejections.ts';
import { migrate } from './schema.ts';
import { errors } from '../../domain/errors.ts';
import { checkDevicePatch, checkFacilityPatch, checkNewDevice, checkNewFacility, statusWrite, toBaselineChange, toCredentials, toDevice, toFacility, toLimits, type BaselineChange, type DeviceDbRow, type FacilityDbRow, type FacilityPatch } from '../registry-rules.ts';
import type { Device, DeviceCredentials, DeviceLimits, DeviceOptions, DevicePatch, DeviceStatus, Facility, FacilityRegistry, Status } from '../types.ts';

// ---------------------------------------------------------------------------------------------
// FacilityRegistry

/** With its latest configured baseline (FACILITY_SELECT). */
interface FacilityRow extends FacilityDbRow {
  baseline: string;
}

/** Baseline of a facility's first entry: in force from the start of time. */
const FOREVER = 0;

// The latest configured baseline of a facility (not necessarily in force yet).
const FACILITY_SELECT = `SELECT f.id, f.name, f.owner, f.grid_factor, f.gas_factor, f.status, f.created_at,
  (SELECT b.baseline FROM facility_baselines b WHERE b.facility_id = f.id ORDER BY b.effective_from DESC LIMIT 1) AS baseline
  FROM facilities f`;
const DEVICE_COLS =
  'device_id, facility_id, kind, status, created_at, online, last_seen_at, capacity, reporting_interval, decommissioned_at, decommission_reason, public_key';

const facilityOf = (r: FacilityRow): Facility => toFacility(r, r.baseline);

export class SqliteRegistry implements FacilityRegistry {
  private readonly db: Db;
  private readonly logger: Logger;
  private readonly clock: () => number;
  private readonly stmt;
  private readonly rejections: SqliteRejections;

  /** `clock`: epoch ms (createdAt, the default effectiveFrom of a baseline change). */
  constructor(db: Db, logger: Logger, clock: () => number = Date.now) {
    migrate(db);
    this.db = db;
    this.logger = logger;
    this.clock = clock;
    this.rejections = new SqliteRejections(db, logger);
    this.stmt = {
      facility: db.prepare<[string], FacilityRow>(`${FACILITY_SELECT} WHERE f.id = ?`),
      facilities: db.prepare<[], FacilityRow>(`${FACILITY_SELECT} ORDER BY f.id`),
      insertFacility: db.prepare(
        'INSERT INTO facilities (id, name, owner, grid_factor, gas_factor, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      setFacilityStatus: db.prepare('UPDATE facilities SET status = ? WHERE id = ?'),
      setBaseline: db.prepare(
        `INSERT INTO facility_baselines (facility_id, effective_from, baseline, set_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (facility_id, effective_from) DO UPDATE SET baseline = excluded.baseline, set_at = excluded.set_at`,
      ),
      baselineAt: db
        .prepare<[string, number], string>(
          'SELECT baseline FROM facility_baselines WHERE facility_id = ? AND effective_from <= ? ORDER BY effective_from DESC LIMIT 1',
        )
        .pluck(),
      baselineFirst: db
        .prepare<[string], string>('SELECT baseline FROM facility_baselines WHERE facility_id = ? ORDER BY effective_from LIMIT 1')
        .pluck(),
      baselines: db.prepare<[string], { baseline: string; effective_from: number; set_at: number }>(
        'SELECT baseline, effective_from, set_at FROM facility_baselines WHERE facility_id = ? ORDER BY effective_from',
      ),
      device: db.prepare<[string], DeviceDbRow>(`SELECT ${DEVICE_COLS} FROM devices WHERE device_id = ?`),
      devices: db.prepare<[string], DeviceDbRow>(`SELECT ${DEVICE_COLS} FROM devices WHERE facility_id = ? ORDER BY device_id`),
      insertDevice: db.prepare(
        `INSERT INTO devices (device_id, facility_id, kind, status, created_at, online, secret_hash, capacity, reporting_interval, public_key)
         VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?)`,
      ),
      setDeviceStatus: db.prepare('UPDATE devices SET status = ? WHERE device_id = ?'),
      decommission: db.prepare("UPDATE devices SET status = 'decommissioned', decommissioned_at = ?, decommission_reason = ? WHERE device_id = ?"),
      setCapacity: db.prepare('UPDATE devices SET capacity = ? WHERE device_id = ?'),
      setPublicKey: db.prepare('UPDATE devices SET public_key = ? WHERE device_id = ?'),
      publicKey: db.prepare<[string], string | null>('SELECT public_key FROM devices WHERE device_id = ?').pluck(),
      limits: db.prepare<[string], { kind: string; capacity: string | null; reporting_interval: number }>(
        'SELECT kind, capacity, reporting_interval FROM devices WHERE device_id = ?',
      ),
      setSecret: db.prepare('UPDATE devices SET secret_hash = ? WHERE device_id = ?'),
      replaceSecret: db.prepare('UPDATE devices SET secret_hash = ? WHERE device_id = ? AND secret_hash = ?'),
      setOnline: db.prepare('UPDATE devices SET online = ?, last_seen_at = MAX(COALESCE(last_seen_at, 0), ?) WHERE device_id = ?'),
      credentials: db.prepare<[string], { device_id: string; facility_id: string; status: DeviceStatus; facility_status: Status; secret_hash: string }>(
        `SELECT d.device_id, d.facility_id, d.status, f.status AS facility_status, d.secret_hash
         FROM devices d JOIN facilities f ON f.id = d.facility_id WHERE d.device_id = ?`,
      ),
      dataVersion: db.prepare<[], number>('PRAGMA data_version').pluck(),
    };
  }

  // Facilities -------------------------------------------------------------------------------

  createFacility(f: Omit<Facility, 'status' | 'createdAt'> & { createdAt?: number }): Facility {
    const { baseline, grid, gas } = checkNewFacility(f);
    const createdAt = f.createdAt ?? this.clock();
    this.db.transaction(() => {
      if (this.stmt.facility.get(f.id)) throw errors.FACILITY_EXISTS(f.id);
      this.stmt.insertFacility.run(f.id, f.name, f.owner, grid, gas, 'active', createdAt);
      this.stmt.setBaseline.run(f.id, FOREVER, baseline, createdAt);
    }).immediate();
    this.logger.info({ facilityId: f.id }, 'facility created');
    return this.mustFacility(f.id);
  }

  getFacility(id: string): Facility | undefined {
    const row = this.stmt.facility.get(id);
    return row ? facilityOf(row) : undefined;
  }

  listFacilities(): Facility[] {
    return this.stmt.facilities.all().map(facilityOf);
  }

  private mustFacility(id: string): Facility {
    const f = this.getFacility(id);
    if (!f) throw errors.FACILITY_NOT_FOUND(id);
    return f;
  }

  /**
   * Status and/or baseline. A baseline change is recorded in the history, in force from
   * `effectiveFrom` (default: now; the oracle takes the baseline in force at a window's start, so a
   * change made now applies from the next window). The facility's `baselineKgPerHour` is the latest
   * configured value.
   */
  updateFacility(id: string, patch: FacilityPatch): Facility {
    const now = this.clock();
    const { status, baseline, from } = checkFacilityPatch(patch, now);
    this.db.transaction(() => {
      if (!this.stmt.facility.get(id)) throw errors.FACILITY_NOT_FOUND(id);
      if (status !== undefined) this.stmt.setFacilityStatus.run(status, id);
      if (baseline !== undefined) this.stmt.setBaseline.run(id, from, baseline, now);
      if (patch.owner !== undefined) this.db.prepare('UPDATE facilities SET owner = ? WHERE id = ?').run(patch.owner, id);
    }).immediate();
    this.logger.info({ facilityId: id, status, baseline, effectiveFrom: baseline === undefined ? undefined : from }, 'facility updated');
    return this.mustFacility(id);
  }

  deleteFacility(id: string): void {
    this.db.transaction(() => {
      if (!this.stmt.facility.get(id)) throw errors.FACILITY_NOT_FOUND(id);
      this.db.prepare('DELETE FROM devices WHERE facility_id = ?').run(id);
      this.db.prepare('DELETE FROM facility_baselines WHERE facility_id = ?').run(id);
      this.db.prepare('DELETE FROM facilities WHERE id = ?').run(id);
    }).immediate();
    this.logger.info({ facilityId: id }, 'facility deleted');
  }

  baselineAt(facilityId: string, at: number): string {
    const b = this.stmt.baselineAt.get(facilityId, at) ?? this.stmt.baselineFirst.get(facilityId);
    if (b === undefined) throw errors.FACILITY_NOT_FOUND(facilityId);
    return b;
  }

  /** The facility's baseline history, oldest first (the first entry is in force from 0). */
  baselineHistory(facilityId: string): BaselineChange[] {
    this.mustFacility(facilityId);
    return this.stmt.baselines.all(facilityId).map(toBaselineChange);
  }

  // Devices ----------------------------------------------------------------------------------

  /** `opts.capacity` (positive decimal; absent: per-metric defaults) and `opts.reportingIntervalSeconds` (1..86400, default 60). */
  createDevice(facilityId: string, deviceId: string, kind: string, opts: DeviceOptions = {}): { device: Device; password: string } {
    const { capacity, interval, publicKey } = checkNewDevice(deviceId, kind, opts);
    const password = generateSecret();
    const hash = hashSecretSync(password);
    const createdAt = this.clock();
    this.db.transaction(() => {
      if (!this.stmt.facility.get(facilityId)) throw errors.FACILITY_NOT_FOUND(facilityId);
      if (this.stmt.device.get(deviceId)) throw errors.DEVICE_EXISTS(deviceId);
      this.stmt.insertDevice.run(deviceId, facilityId, kind || 'meter', 'active', createdAt, hash, capacity, interval, publicKey);
    }).immediate();
    this.logger.info({ facilityId, deviceId }, 'device created');
    return { device: this.mustDevice(deviceId), password };
  }

  getDevice(deviceId: string): Device | undefined {
    const row = this.stmt.device.get(deviceId);
    return row ? toDevice(row) : undefined;
  }

  private mustDevice(deviceId: string): Device {
    const d = this.getDevice(deviceId);
    if (!d) throw errors.DEVICE_NOT_FOUND(deviceId);
    return d;
  }

  listDevices(facilityId: string): Device[] {
    this.mustFacility(facilityId);
    return this.stmt.devices.all(facilityId).map(toDevice);
  }

  /**
   * Status and/or capacity. Decommissioning needs a reason, records when it happened and is final:
   * a decommissioned device never becomes active or suspended again. A capacity change applies to the
   * readings committed after it.
   */
  updateDevice(deviceId: string, patch: DevicePatch): Device {
    const { status, capacity, publicKey, reason } = checkDevicePatch(patch);
    const now = this.clock();
    this.db.transaction(() => {
      const before = this.stmt.device.get(deviceId);
      if (!before) throw errors.DEVICE_NOT_FOUND(deviceId);
      const write = statusWrite(deviceId, before.status, status);
      if (write === 'decommission') this.stmt.decommission.run(now, reason, deviceId);
      else if (write === 'status') this.stmt.setDeviceStatus.run(status, deviceId);
      if (capacity !== undefined) this.stmt.setCapacity.run(capacity, deviceId);
      if (publicKey !== undefined) this.stmt.setPublicKey.run(publicKey, deviceId);
    }).immediate();
    this.logger.info({ deviceId, status, capacity, reason, publicKey }, 'device updated');
    return this.mustDevice(deviceId);
  }

  /** The device's Ed25519 public key (64 lowercase hex), undefined when it has none or is unknown (one primary-key probe). */
  devicePublicKey(deviceId: string): string | undefined {
    return this.stmt.publicKey.get(deviceId) ?? undefined;
  }

  /** Capacity, reporting interval and kind for the ingest rules (one primary-key probe). */
  deviceLimits(deviceId: string): DeviceLimits | undefined {
    const row = this.stmt.limits.get(deviceId);
    return row ? toLimits(row) : undefined;
  }

  rotateSecret(deviceId: string): string {
    this.mustDevice(deviceId);
    const password = generateSecret();
    const info = this.stmt.setSecret.run(hashSecretSync(password), deviceId);
    if (info.changes !== 1) throw errors.DEVICE_NOT_FOUND(deviceId);
    this.logger.info({ deviceId }, 'device secret rotated');
    return password;
  }

  /** Compare-and-set of the secret record (a legacy scrypt record upgraded after a login): a rotation meanwhile wins. */
  replaceSecretHash(deviceId: string, expected: string, record: string): boolean {
    const changed = this.stmt.replaceSecret.run(record, deviceId, expected).changes === 1;
    if (changed) this.logger.info({ deviceId }, 'device secret record upgraded to hs256');
    return changed;
  }

  credentials(deviceId: string): DeviceCredentials | undefined {
    const r = this.stmt.credentials.get(deviceId);
    return r ? toCredentials(r, r.facility_status) : undefined;
  }

  /** Online/offline from CONNECT and the last will; lastSeenAt never moves backwards. Unknown ids are ignored. */
  setOnline(deviceId: string, online: boolean, at: number): void {
    const info = this.stmt.setOnline.run(online ? 1 : 0, at, deviceId);
    if (info.changes === 0) this.logger.debug({ deviceId }, 'status for unknown device ignored');
  }

  // Rejections (store/sqlite/rejections.ts) ---------------------------------------------------

  addRejections(rows: Rejection[]): void {
    this.rejections.add(rows);
  }

  pruneRejections(before: number): number {
    return this.rejections.prune(before);
  }

  /** Newest first; limit default 100, at most 1000. */
  listRejections(facilityId: string, limit?: number): Rejection[] {
    return this.pageRejections(facilityId, limit).map((r) => r.rejection);
  }

  pageRejections(facilityId: string, limit?: number, beforeId?: number): { id: number; rejection: Rejection }[] {
    this.mustFacility(facilityId);
    return this.rejections.page(facilityId, limit, beforeId);
  }

  /** SQLite's data_version on this handle: changes when another connection committed (broker session poll). */
  dataVersion(): number {
    return this.stmt.dataVersion.get() as number;
  }
}
