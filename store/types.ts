/**
 * Storage interfaces. Readings go to a ReadingStore (embedded SQLite by default, InfluxDB at scale);
 * the registry, rejections log and oracle/gateway records always live in the embedded SQLite file.
 */
import type { Reading, RejectReason, Rejection } from '../domain/reading.ts';

export type CommitOutcome =
  | { status: 'stored' }
  | { status: 'duplicate' }
  | { status: 'rejected'; reason: RejectReason; detail: string };

/**
 * What a settlement saw of a device: exactly the readings stored when the mark was taken.
 *
 * A reading stored when its seq was above every stored seq of its device is "in order" (no arrival
 * number); one stored below the device's max seq gets the next per-device arrival number (1, 2, ...).
 * visible(r, mark) = r.arrival === undefined ? r.seq <= mark.maxSeq : r.arrival <= mark.late
 */
export interface VisibilityMark {
  /** Highest seq stored (in-order arrivals with seq <= maxSeq are visible). */
  maxSeq: number;
  /** Count of the device's late arrivals (stored with seq below the device's max at that time); those with arrival number <= late are visible. */
  late: number;
}

/** Whether a stored reading is visible under a mark (see VisibilityMark). */
export function isVisible(r: { seq: number; arrival?: number }, mark: VisibilityMark): boolean {
  return r.arrival === undefined ? r.seq <= mark.maxSeq : r.arrival <= mark.late;
}

/** Per-device select for the oracle's cursor rule. Readings are returned ordered by seq. */
export interface ConsumeQuery {
  deviceId: string;
  /** What this settlement sees. */
  mark: VisibilityMark;
  /** The window end: only readings with ts < before. */
  before: number;
  /**
   * What the device's previous settlement consumed (absent for a device never settled): readings
   * visible under prev.mark with ts < prev.before are excluded.
   */
  prev?: { mark: VisibilityMark; before: number };
}

/** What a device's visible readings say about one window [start, end), for the coverage rule. */
export interface CoverageQuery {
  deviceId: string;
  start: number;
  end: number;
  mark: VisibilityMark;
}

export interface DeviceCoverage {
  /** Greatest-seq visible reading with ts < start. */
  before?: { seq: number; ts: number };
  /** Greatest-seq visible reading with start <= ts < end. */
  lastIn?: { seq: number; ts: number };
  /** A visible reading with ts >= end exists. */
  after: boolean;
  /** Visible readings with before.seq < seq <= lastIn.seq (both present), for the gap check of interval devices. */
  between: number;
  /** A visible co2_direct reading with seq in (before.seq, lastIn.seq] exists, or the device's kind declares it an interval device. */
  interval: boolean;
}

/** The per-device limits the ingest rules need (plausibility), read from the registry per batch. */
export interface DeviceLimits {
  /** Declared capacity (decimal text; kW, m3/h or kg/h by metric); absent: the metric's default. */
  capacity?: string;
  reportingIntervalSeconds: number;
  /** The device's registered kind (a `cems` / `co2_direct` kind declares an interval device, for coverage). */
  kind?: string;
}

/** Limits of a device by id; undefined for an unknown device (defaults apply). Cheap: called once per device per batch. */
export type DeviceLimitsLookup = (deviceId: string) => DeviceLimits | undefined;

export interface ReadingFilter {
  facilityId: string;
  deviceId?: string;
  metric?: string;
  from?: number;
  to?: number;
  limit?: number;
}

/** A batch handed to the store, in order behind every earlier one, on its way to disk. */
export interface StagedCommit {
  /** Settles like `commit`: outcomes in input order once every stored reading is durable. */
  done: Promise<CommitOutcome[]>;
}

export interface ReadingStore {
  readonly kind: 'sqlite' | 'influxdb' | 'postgres';
  /**
   * `commit` in two steps, so a caller can hand over the next batch while this one is being written:
   * resolves once the batch is ordered after every earlier staged batch (it is checked against
   * them, whatever their timing); `done` then settles like `commit`. If a staged batch fails, every
   * batch staged after it that has not landed yet fails too, so a device's later seq is never stored
   * ahead of an earlier one that was not. Optional: a store without it is driven through `commit`,
   * one batch at a time.
   */
  stage?(readings: Reading[]): Promise<StagedCommit>;
  /**
   * Durably stores a batch (group commit). Resolves only once every stored reading is durable; the
   * outcome array is in input order. Checks that need stored state happen here, against stored state
   * plus earlier readings of the same batch: duplicate (deviceId, seq) with same content -> duplicate,
   * with different content -> rejected 'duplicate_conflict'; otherwise the rules of
   * domain/ingest-rules.ts against the stored neighbours by seq ('ts_out_of_order',
   * 'register_backwards', 'implausible'), in any arrival order. A reading stored below the device's
   * highest stored seq gets the device's next arrival number (see VisibilityMark). Rejects (throws) if storage fails: then nothing may be acknowledged.
   */
  commit(readings: Reading[]): Promise<CommitOutcome[]>;
  /** The current visibility mark per device (devices with no readings are absent). */
  marks(deviceIds: string[]): Promise<Map<string, VisibilityMark>>;
  /**
   * The readings a settlement consumes for one device: visible under mark with ts < before, minus
   * those visible under prev.mark with ts < prev.before; ordered by seq.
   */
  consume(q: ConsumeQuery): Promise<Reading[]>;
  /** Whether the device has a reading visible under mark with from <= ts < to. */
  hasReading(deviceId: string, from: number, to: number, mark: VisibilityMark): Promise<boolean>;
  /** What the device's visible readings say about the window [start, end) (see DeviceCoverage). */
  coverage(q: CoverageQuery): Promise<DeviceCoverage>;
  /** Readings for the API, newest first. */
  list(filter: ReadingFilter): Promise<Reading[]>;
  /** One reading by its dedupe key. */
  get(deviceId: string, seq: number): Promise<Reading | undefined>;
  /** Round-trip to the backend, for /health. */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

export type Status = 'active' | 'suspended';
/** A decommissioned device is out of coverage from decommissionedAt on; final (never active again). */
export type DeviceStatus = 'active' | 'suspended' | 'decommissioned';
export const DEFAULT_REPORTING_INTERVAL_SECONDS = 60;
export const MAX_REPORTING_INTERVAL_SECONDS = 86_400;

export interface Facility {
  id: string;
  name: string;
  owner: string;
  /** Current baseline (decimal text); history in baselineAt(). */
  baselineKgPerHour: string;
  gridFactorKgPerKwh: string;
  gasFactorKgPerM3: string;
  status: Status;
  createdAt: number;
}

export interface Device {
  deviceId: string;
  facilityId: string;
  kind: string;
  status: DeviceStatus;
  /** Declared capacity (decimal text): kW for electricity, m3/h for gas, kg/h for co2_direct; absent: defaults. */
  capacity?: string;
  /** Declared reporting interval, 1..86400 (default 60). */
  reportingIntervalSeconds: number;
  createdAt: number;
  /** Epoch ms of the decommissioning (status 'decommissioned'). */
  decommissionedAt?: number;
  decommissionReason?: string;
  online: boolean;
  lastSeenAt?: number;
}

export interface DeviceOptions {
  capacity?: string;
  reportingIntervalSeconds?: number;
}

export interface DevicePatch {
  status?: DeviceStatus;
  /** Required with status 'decommissioned'. */
  reason?: string;
  /** New declared capacity (decimal text), effective for readings committed after the change. */
  capacity?: string;
}

export interface DeviceCredentials {
  deviceId: string;
  facilityId: string;
  status: DeviceStatus;
  facilityStatus: Status;
  /** Keyed hash record `hs256$salt$mac` (legacy: `scrypt$N$r$p$salt$hash`); see store/secrets.ts. */
  secretHash: string;
}

export interface Registry {
  createFacility(f: Omit<Facility, 'status' | 'createdAt'> & { createdAt?: number }): Facility;
  getFacility(id: string): Facility | undefined;
  listFacilities(): Facility[];
  updateFacility(id: string, patch: { status?: Status; baselineKgPerHour?: string; effectiveFrom?: number; owner?: string }): Facility;
  /** Removes a facility registered by mistake, with its baselines and devices (the caller checks it never settled). */
  deleteFacility(id: string): void;
  /** Baseline in force at `at` (epoch ms): a change applies from the window after it was made. */
  baselineAt(facilityId: string, at: number): string;
  /** Creates a device and returns its one-time secret. */
  createDevice(facilityId: string, deviceId: string, kind: string, opts?: DeviceOptions): { device: Device; password: string };
  getDevice(deviceId: string): Device | undefined;
  listDevices(facilityId: string): Device[];
  /** Status (decommissioning needs a reason, is final) and/or capacity. */
  updateDevice(deviceId: string, patch: DevicePatch): Device;
  /** The limits the ingest rules apply to a device (capacity, reporting interval). */
  deviceLimits(deviceId: string): DeviceLimits | undefined;
  /** New secret; the old one stops working at once. */
  rotateSecret(deviceId: string): string;
  credentials(deviceId: string): DeviceCredentials | undefined;
  /** Replaces the secret record only if it is still `expected` (legacy record upgrade); true if replaced. */
  replaceSecretHash(deviceId: string, expected: string, record: string): boolean;
  setOnline(deviceId: string, online: boolean, at: number): void;
  /**
   * Appends rejections, aggregated: rows of one device with the same reason in the same minute are one
   * stored row with a `count` (the first one's detail and payload kept as the sample).
   */
  addRejections(rows: Rejection[]): void;
  listRejections(facilityId: string, limit?: number): Rejection[];
  /** Newest first with row ids, for paging: rows with id < beforeId when given; limit default 100, at most 1000. */
  pageRejections(facilityId: string, limit?: number, beforeId?: number): { id: number; rejection: Rejection }[];
  /** Deletes rejection rows last seen before `before` (epoch ms); returns how many. */
  pruneRejections(before: number): number;
  /** Changes when another connection committed to the store (SQLite `PRAGMA data_version`); for cheap polling. */
  dataVersion?(): number;
}
