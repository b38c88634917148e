/**
 * What the SQL registries (store/sqlite/registry.ts, store/postgres/registry.ts) share: the checks of
 * every input (facility, device, their patches), the rule that a decommissioned device stays so, and
 * the mapping of their facility and device rows. Each backend keeps its own SQL and transactions.
 */
import { Decimal } from '../domain/decimal.ts';
import { errors } from '../domain/errors.ts';
import { ID_RE } from '../domain/reading.ts';
import { normalisePublicKey } from '../domain/signature.ts';
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
  type Status,
} from './types.ts';

export const MAX_DECOMMISSION_REASON = 500;
export const ADDRESS_RE = /^0x[0-9a-fA-F]{40}$/;

export interface BaselineChange {
  baselineKgPerHour: string;
  effectiveFrom: number;
  setAt: number;
}

// Checks -------------------------------------------------------------------------------------

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

/** A new facility's fields, checked; its decimals in canonical text. */
export function checkNewFacility(f: Omit<Facility, 'status' | 'createdAt'>): { baseline: string; grid: string; gas: string } {
  if (typeof f.id !== 'string' || !ID_RE.test(f.id)) throw errors.VALIDATION('facility id must match [A-Za-z0-9_-]{1,64}');
  if (typeof f.name !== 'string' || f.name.length === 0 || f.name.length > 200) throw errors.VALIDATION('name must be 1..200 characters');
  if (typeof f.owner !== 'string' || !ADDRESS_RE.test(f.owner)) throw errors.VALIDATION('owner must be a 0x address');
  return {
    baseline: nonNegativeDecimal('baselineKgPerHour', f.baselineKgPerHour),
    grid: nonNegativeDecimal('gridFactorKgPerKwh', f.gridFactorKgPerKwh),
    gas: nonNegativeDecimal('gasFactorKgPerM3', f.gasFactorKgPerM3),
  };
}

export interface FacilityPatch {
  status?: Status;
  baselineKgPerHour?: string;
  effectiveFrom?: number;
  owner?: string;
}

/** A facility patch's fields, checked; a baseline change is in force from `effectiveFrom`, default `now`. */
export function checkFacilityPatch(patch: FacilityPatch, now: number): { status?: Status; baseline?: string; from: number } {
  if (patch.owner !== undefined && (typeof patch.owner !== 'string' || !ADDRESS_RE.test(patch.owner))) throw errors.VALIDATION('owner must be a 0x address');
  const status = patch.status === undefined ? undefined : checkStatus(patch.status);
  const baseline = patch.baselineKgPerHour === undefined ? undefined : nonNegativeDecimal('baselineKgPerHour', patch.baselineKgPerHour);
  const from = patch.effectiveFrom ?? now;
  if (!Number.isSafeInteger(from)) throw errors.VALIDATION('effectiveFrom must be epoch milliseconds');
  return { status, baseline, from };
}

/** A new device's fields, checked; absent options are null (capacity, key) or the default interval. */
export function checkNewDevice(deviceId: string, kind: string, opts: DeviceOptions): { capacity: string | null; interval: number; publicKey: string | null } {
  if (typeof deviceId !== 'string' || !ID_RE.test(deviceId)) throw errors.VALIDATION('deviceId must match [A-Za-z0-9_-]{1,64}');
  if (typeof kind !== 'string' || kind.length > 64) throw errors.VALIDATION('kind must be at most 64 characters');
  return {
    capacity: opts.capacity === undefined ? null : checkCapacity(opts.capacity),
    interval: opts.reportingIntervalSeconds === undefined ? DEFAULT_REPORTING_INTERVAL_SECONDS : checkInterval(opts.reportingIntervalSeconds),
    publicKey: opts.publicKey === undefined ? null : checkPublicKey(opts.publicKey),
  };
}

/** A device patch's fields, each checked; a decommissioning needs a bounded reason, and only it takes one. */
export function checkDevicePatch(patch: DevicePatch): { status?: DeviceStatus; capacity?: string; publicKey?: string; reason?: string } {
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

/**
 * What a checked status patch writes on a device whose stored status is `before`: nothing, its
 * decommissioning (once: it records when), or the new status. Decommissioning is final: DEVICE_DECOMMISSIONED.
 */
export function statusWrite(deviceId: string, before: DeviceStatus, status: DeviceStatus | undefined): 'decommission' | 'status' | undefined {
  if (status === undefined) return undefined;
  if (before === 'decommissioned') {
    if (status !== 'decommissioned') throw errors.DEVICE_DECOMMISSIONED(deviceId);
    return undefined;
  }
  return status === 'decommissioned' ? 'decommission' : 'status';
}

// Rows ---------------------------------------------------------------------------------------

/** The facility columns both schemas share (the baseline lives in facility_baselines). */
export interface FacilityDbRow {
  id: string;
  name: string;
  owner: string;
  grid_factor: string;
  gas_factor: string;
  status: Status;
  created_at: number;
}

/** A `devices` row as both registries read it (`online` is 0/1 in SQLite, a boolean in PostgreSQL). */
export interface DeviceDbRow {
  device_id: string;
  facility_id: string;
  kind: string;
  status: DeviceStatus;
  created_at: number;
  online: number | boolean;
  last_seen_at: number | null;
  capacity: string | null;
  reporting_interval: number;
  decommissioned_at: number | null;
  decommission_reason: string | null;
  public_key: string | null;
}

/** A facility from its row and its latest configured baseline. */
export function toFacility(r: FacilityDbRow, baselineKgPerHour: string): Facility {
  return {
    id: r.id,
    name: r.name,
    owner: r.owner,
    baselineKgPerHour,
    gridFactorKgPerKwh: r.grid_factor,
    gasFactorKgPerM3: r.gas_factor,
    status: r.status,
    createdAt: r.created_at,
  };
}

export function toDevice(r: DeviceDbRow): Device {
  const d: Device = {
    deviceId: r.device_id,
    facilityId: r.facility_id,
    kind: r.kind,
    status: r.status,
    reportingIntervalSeconds: r.reporting_interval,
    createdAt: r.created_at,
    online: r.online === true || r.online === 1,
  };
  if (r.capacity !== null) d.capacity = r.capacity;
  if (r.decommissioned_at !== null) d.decommissionedAt = r.decommissioned_at;
  if (r.decommission_reason !== null) d.decommissionReason = r.decommission_reason;
  if (r.last_seen_at !== null) d.lastSeenAt = r.last_seen_at;
  if (r.public_key !== null) d.publicKey = r.public_key;
  return d;
}

/** Capacity, reporting interval and kind of a device row, for the ingest rules. */
export function toLimits(r: { kind: string; capacity: string | null; reporting_interval: number }): DeviceLimits {
  const out: DeviceLimits = { reportingIntervalSeconds: r.reporting_interval, kind: r.kind };
  if (r.capacity !== null) out.capacity = r.capacity;
  return out;
}

export const toBaselineChange = (r: { baseline: string; effective_from: number; set_at: number }): BaselineChange => ({
  baselineKgPerHour: r.baseline,
  effectiveFrom: r.effective_from,
  setAt: r.set_at,
});

export const toCredentials = (d: { device_id: string; facility_id: string; status: DeviceStatus; secret_hash: string }, facilityStatus: Status): DeviceCredentials => ({
  deviceId: d.device_id,
  facilityId: d.facility_id,
  status: d.status,
  facilityStatus,
  secretHash: d.secret_hash,
});
