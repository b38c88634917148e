/**
 * The FacilityRegistry on the SQLite file: facilities + baseline history, devices + secret hashes,
 * online status, and the rejections log (rows kept by store/sqlite/rejections.ts). Tables and their
 * migrations: store/sqlite/schema.ts.
 *
 * Closing: the stores never close the Db handle; whoever opened it (openDatabase) closes it.
 */
import { Decimal } from '../../domain/decimal.ts';
import { errors } from '../../domain/errors.ts';
import type { Logger } from '../../domain/logger.ts';
import { ID_RE, type Rejection } from '../../domain/reading.ts';
import { normalisePublicKey } from '../../domain/signature.ts';
import type { Db } from './db.ts';
import { generateSecret, hashSecretSync } from '../secrets.ts';
import { SqliteRejections } from './rejections.ts';
import { migrate } from './schema.ts';
import {
  DEFAULT_REPORTING_INTERVAL_SECONDS,
  MAX_REPORTING_INTERVAL_SECONDS,
  type Device,
  type DeviceCredentials,
  type DeviceLimits,
  type DeviceOptions,
  type DevicePatch,
  type DeviceStatus,
  type Facility,
  type FacilityRegistry,
  type Status,
} from '../types.ts';

export const MAX_DECOMMISSION_REASON = 500;
export const ADDRESS_RE = /^0x[0-9a-fA-F]{40}$/;

// ---------------------------------------------------------------------------------------------
// FacilityRegistry

interface FacilityRow {
  id: string;
  name: string;
  owner: string;
  grid_factor: string;
  gas_factor: string;
  status: Status;
  created_at: number;
  baseline: string;
}

interface DeviceRow {
  device_id: string;
  facility_id: string;
  kind: string;
  status: DeviceStatus;
  created_at: number;
  online: number;
  last_seen_at: number | null;
  capacity: string | null;
  reporting_interval: number;
  decommissioned_at: number | null;
  decommission_reason: string | null;
  public_key: string | null;
}

export interface BaselineChange {
  baselineKgPerHour: string;
  effectiveFrom: number;
  setAt: number;
}

/** Baseline of a facility's first entry: in force from the start of time. */
const FOREVER = 0;

function toDevice(r: DeviceRow): Device {
  const d: Device = {
    deviceId: r.device_id,
    facilityId: r.facility_id,
    kind: r.kind,
    status: r.status,
    reportingIntervalSeconds: r.reporting_interval,
    createdAt: r.created_at,
    online: r.online === 1,
  };
  if (r.capacity !== null) d.capacity = r.capacity;
  if (r.decommissioned_at !== null) d.decommissionedAt = r.decommissioned_at;
  if (r.decommission_reason !== null) d.decommissionReason = r.decommission_reason;
  if (r.last_seen_at !== null) d.lastSeenAt = r.last_seen_at;
  if (r.public_key !== null) d.publicKey = r.public_key;
  return d;
}

function toFacility(r: FacilityRow): Facility {
  return {
    id: r.id,
    name: r.name,
    owner: r.owner,
    baselineKgPerHour: r.baseline,
    gridFactorKgPerKwh: r.grid_factor,
    gasFactorKgPerM3: r.gas_factor,
    status: r.status,
    createdAt: r.created_at,
  };
}

/** Canonical text of a non-negative decimal setting, or a VALIDATION error naming it. */
export function nonNegativeDecimal(name: string, v: unknown): string {
  let d: Decimal;
  try {
    if (typeof v !== 'string' && typeof v !== 'number') throw new Error();
    d = Decimal.from(v);
  } catch {
    throw errors.VALIDATION(`${name} must be a decimal number`);
  }
  if (d.isNegative()) throw errors.VALIDATION(`${name} must not be negative`);
  return d.toString();
}

/** Declared capacity: a positive decimal (kW, m3/h or kg/h by metric), canonical text. */
export function checkCapacity(v: unknown): string {
  const text = nonNegativeDecimal('capacity', v);
  if (Decimal.parse(text).isZero()) throw errors.VALIDATION('capacity must be above 0');
  return text;
}

export function checkInterval(v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_REPORTING_INTERVAL_SECONDS) {
    throw errors.VALIDATION(`reportingIntervalSeconds must be an integer from 1 to ${MAX_REPORTING_INTERVAL_SECONDS}`);
  }
  return v;
}

/** An Ed25519 public key (32 bytes, hex or base64) in its canonical form (64 lowercase hex), or a VALIDATION error. */
export function checkPublicKey(v: unknown): string {
  const key = typeof v === 'string' ? normalisePublicKey(v) : undefined;
  if (key === undefined) throw errors.VALIDATION('publicKey must be an Ed25519 public key: 32 bytes as 64 hex digits or base64');
  return key;
}

export function checkDeviceStatus(s: unknown): DeviceStatus {
  if (s !== 'active' && s !== 'suspended' && s !== 'decommissioned') throw errors.VALIDATION('status must be active, suspended or decommissioned');
  return s;
}

export function checkStatus(s: unknown): Status {
  if (s !== 'active' && s !== 'suspended') throw errors.VALIDATION('status must be active or suspended');
  return s;
}

// The latest configured baseline of a facility (not necessarily in force yet).
const FACILITY_SELECT = `SELECT f.id, f.name, f.owner, f.grid_factor, f.gas_factor, f.status, f.created_at,
  (SELECT b.baseline FROM facility_baselines b WHERE b.facility_id = f.id ORDER BY b.effective_from DESC LIMIT 1) AS baseline
  FROM facilities f`;
const DEVICE_COLS =
  'device_id, facility_id, kind, status, created_at, online, last_seen_at, capacity, reporting_interval, decommissioned_at, decommission_reason, public_key';

/** A device patch's fields, each checked; a decommissioning needs a bounded reason, and only it takes one. */
export function checkDevicePatch(patch: DevicePatch): { status?: DeviceStatus; capacity?: ReturnType<typeof checkCapacity>; publicKey?: ReturnType<typeof checkPublicKey>; reason?: string } {
  const status = patch.status === undefined ? undefined : checkDeviceStatus(patch.status);
  const capacity = patch.capacity === undefined ? undefined : checkCapacity(patch.capacity);
  const publicKey = patch.publicKey === undefined ? undefined : checkPublicKey(patch.publicKey);
  let reason: string | undefined;
  if (status === 'decommissioned') {
    if (typeof patch.reason !== 'string' || patch.reason.trim() === '') throw errors.VALIDATION('reason is required to decommission a device');
    if (patch.reason.length > MAX_DECOMMISSION_REASON) throw errors.VALIDATION(`reason must be at most ${MAX_DECOMMISSION_REASON} characters`);
    reason = patch.reason;
  } else if (patch.reason !== undefined) {
    throw errors.VALIDATION('reason is only accepted with status decommissioned');
  }
  return { status, capacity, publicKey, reason };
}

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
      device: db.prepare<[string], DeviceRow>(`SELECT ${DEVICE_COLS} FROM devices WHERE device_id = ?`),
      devices: db.prepare<[string], DeviceRow>(`SELECT ${DEVICE_COLS} FROM devices WHERE facility_id = ? ORDER BY device_id`),
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
    if (typeof f.id !== 'string' || !ID_RE.test(f.id)) throw errors.VALIDATION('facility id must match [A-Za-z0-9_-]{1,64}');
    if (typeof f.name !== 'string' || f.name.length === 0 || f.name.length > 200) throw errors.VALIDATION('name must be 1..200 characters');
    if (typeof f.owner !== 'string' || !ADDRESS_RE.test(f.owner)) throw errors.VALIDATION('owner must be a 0x address');
    const baseline = nonNegativeDecimal('baselineKgPerHour', f.baselineKgPerHour);
    const grid = nonNegativeDecimal('gridFactorKgPerKwh', f.gridFactorKgPerKwh);
    const gas = nonNegativeDecimal('gasFactorKgPerM3', f.gasFactorKgPerM3);
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
    return row ? toFacility(row) : undefined;
  }

  listFacilities(): Facility[] {
    return this.stmt.facilities.all().map(toFacility);
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
  updateFacility(id: string, patch: { status?: Status; baselineKgPerHour?: string; effectiveFrom?: number; owner?: string }): Facility {
    if (patch.owner !== undefined && (typeof patch.owner !== 'string' || !ADDRESS_RE.test(patch.owner))) throw errors.VALIDATION('owner must be a 0x address');
    const status = patch.status === undefined ? undefined : checkStatus(patch.status);
    const baseline = patch.baselineKgPerHour === undefined ? undefined : nonNegativeDecimal('baselineKgPerHour', patch.baselineKgPerHour);
    const now = this.clock();
    const from = patch.effectiveFrom ?? now;
    if (!Number.isSafeInteger(from)) throw errors.VALIDATION('effectiveFrom must be epoch milliseconds');
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
    return this.stmt.baselines.all(facilityId).map((r) => ({ baselineKgPerHour: r.baseline, effectiveFrom: r.effective_from, setAt: r.set_at }));
  }

  // Devices ----------------------------------------------------------------------------------

  /** `opts.capacity` (positive decimal; absent: per-metric defaults) and `opts.reportingIntervalSeconds` (1..86400, default 60). */
  createDevice(facilityId: string, deviceId: string, kind: string, opts: DeviceOptions = {}): { device: Device; password: string } {
    if (typeof deviceId !== 'string' || !ID_RE.test(deviceId)) throw errors.VALIDATION('deviceId must match [A-Za-z0-9_-]{1,64}');
    if (typeof kind !== 'string' || kind.length > 64) throw errors.VALIDATION('kind must be at most 64 characters');
    const capacity = opts.capacity === undefined ? null : checkCapacity(opts.capacity);
    const interval = opts.reportingIntervalSeconds === undefined ? DEFAULT_REPORTING_INTERVAL_SECONDS : checkInterval(opts.reportingIntervalSeconds);
    const publicKey = opts.publicKey === undefined ? null : checkPublicKey(opts.publicKey);
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
      if (status !== undefined && before.status === 'decommissioned' && status !== 'decommissioned') {
        throw errors.DEVICE_DECOMMISSIONED(deviceId);
      }
      if (status === 'decommissioned') {
        if (before.status !== 'decommissioned') this.stmt.decommission.run(now, reason, deviceId);
      } else if (status !== undefined) this.stmt.setDeviceStatus.run(status, deviceId);
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
    if (!row) return undefined;
    const out: DeviceLimits = { reportingIntervalSeconds: row.reporting_interval, kind: row.kind };
    if (row.capacity !== null) out.capacity = row.capacity;
    return out;
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
    if (!r) return undefined;
    return { deviceId: r.device_id, facilityId: r.facility_id, status: r.status, facilityStatus: r.facility_status, secretHash: r.secret_hash };
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
