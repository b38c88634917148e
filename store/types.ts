/**
 * Storage interfaces. Readings go to a ReadingStore (embedded SQLite by default, InfluxDB at scale);
 * the registry, rejections log and oracle/gateway records always live in the embedded SQLite file.
 */
import type { Reading, RejectReason, Rejection } from '../domain/reading.ts';

export type CommitOutcome =
  | { status: 'stored' }
  | { status: 'duplicate' }
  | { status: 'rejected'; reason: RejectReason; detail: string };

/** Per-device select for the oracle's cursor rule. Readings are returned ordered by seq. */
export interface ConsumeQuery {
  deviceId: string;
  /** High-water mark of this settlement: only readings with seq <= maxSeq are visible. */
  maxSeq: number;
  /** The window end: only readings with ts < before. */
  before: number;
  /**
   * What the device's previous settlement consumed (absent for a device never settled): readings with
   * seq <= prevMaxSeq and ts < prevBefore are excluded.
   */
  prev?: { maxSeq: number; before: number };
}

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
  readonly kind: 'sqlite' | 'influxdb';
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
   * with different content -> rejected 'duplicate_conflict'; seq not above the device's highest stored
   * seq -> 'seq_not_increasing'; a register below the device's previous value of that metric without
   * reset -> 'register_backwards'. Rejects (throws) if storage fails: then nothing may be acknowledged.
   */
  commit(readings: Reading[]): Promise<CommitOutcome[]>;
  /** Highest stored seq per device (devices with no readings are absent). */
  highWater(deviceIds: string[]): Promise<Map<string, number>>;
  /** The readings a settlement consumes for one device (see ConsumeQuery), ordered by seq. */
  consume(q: ConsumeQuery): Promise<Reading[]>;
  /** Whether the device has a reading with seq <= maxSeq and from <= ts < to. */
  hasReading(deviceId: string, from: number, to: number, maxSeq: number): Promise<boolean>;
  /** Readings for the API, newest first. */
  list(filter: ReadingFilter): Promise<Reading[]>;
  /** One reading by its dedupe key. */
  get(deviceId: string, seq: number): Promise<Reading | undefined>;
  /** Round-trip to the backend, for /health. */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

export type Status = 'active' | 'suspended';

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
  status: Status;
  createdAt: number;
  online: boolean;
  lastSeenAt?: number;
}

export interface DeviceCredentials {
  deviceId: string;
  facilityId: string;
  status: Status;
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
  createDevice(facilityId: string, deviceId: string, kind: string): { device: Device; password: string };
  getDevice(deviceId: string): Device | undefined;
  listDevices(facilityId: string): Device[];
  updateDevice(deviceId: string, patch: { status?: Status }): Device;
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
  /** Deletes rejection rows last seen before `before` (epoch ms); returns how many. */
  pruneRejections(before: number): number;
  /** Changes when another connection committed to the store (SQLite `PRAGMA data_version`); for cheap polling. */
  dataVersion?(): number;
}
