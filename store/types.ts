/**
 * The storage contract, in one place: every interface a backend implements and every record type
 * that crosses the store boundary (one cohesive unit, hence its length). Readings go to a
 * ReadingStore (embedded SQLite by default, InfluxDB or PostgreSQL at scale); the facility registry,
 * rejections log, oracle records and status, and API keys live in the embedded SQLite file
 * (store/sqlite/, schema and migrations in store/sqlite/schema.ts) or, with DATABASE_URL, in
 * PostgreSQL (store/postgres/stores.ts). Their reads on hot paths are synchronous; writes and the
 * records are Awaitable (see Awaitable).
 */
import type { AppliedFactors } from '../oracle/factors.ts';
import type { CoverageStatus, Decommissioning, DeviceChain, MetricTotals, PrevConsumed, RegisterCursor } from '../oracle/methodology.ts';
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

/** Rows a late arrival's neighbour of the same metric may be away before a store refuses to walk further (every store). */
export const MAX_METRIC_WALK = 100_000;

/** Readings and rejections listed per call: `limit` defaults to this, */
export const DEFAULT_LIST_LIMIT = 100;
/** and is capped at this. */
export const MAX_LIST_LIMIT = 1000;

/** A listing's `limit` as the stores apply it (default 100, 1..1000). */
export function clampListLimit(limit: number | undefined): number {
  if (limit === undefined || !Number.isFinite(limit)) return DEFAULT_LIST_LIMIT;
  return Math.min(MAX_LIST_LIMIT, Math.max(1, Math.floor(limit)));
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
  /** Ed25519 public key (64 lowercase hex): the device signs every reading (SPEC "Device signatures"). */
  publicKey?: string;
}

export interface DeviceOptions {
  capacity?: string;
  reportingIntervalSeconds?: number;
  /** Ed25519 public key, 32 bytes as hex or base64 (stored normalised to 64 lowercase hex). */
  publicKey?: string;
}

export interface DevicePatch {
  status?: DeviceStatus;
  /** Required with status 'decommissioned'. */
  reason?: string;
  /** New declared capacity (decimal text), effective for readings committed after the change. */
  capacity?: string;
  /** Sets or rotates the device's Ed25519 public key (hex or base64 of 32 bytes); readings verified after it need the new key. */
  publicKey?: string;
}

export interface DeviceCredentials {
  deviceId: string;
  facilityId: string;
  status: DeviceStatus;
  facilityStatus: Status;
  /** Keyed hash record `hs256$salt$mac` (legacy: `scrypt$N$r$p$salt$hash`); see store/secrets.ts. */
  secretHash: string;
}

/** A value, or a promise of it: a write of the SQLite stores returns it, one of the PostgreSQL stores a promise. Callers await. */
export type Awaitable<T> = T | Promise<T>;

/** What changed in a registry replica (see FacilityRegistry.onChange); `all` after a full reload. */
export type RegistryChange = { kind: 'facility'; id: string } | { kind: 'device'; id: string } | { kind: 'all' };

/**
 * Facilities (with baseline history), devices (with secret hashes and online status) and the rejections log.
 * Reads are synchronous (the hot paths: broker auth, ingest checks); writes and the rejections log are
 * Awaitable (SQLite answers at once, PostgreSQL through the network: store/postgres/registry.ts).
 */
export interface FacilityRegistry {
  createFacility(f: Omit<Facility, 'status' | 'createdAt'> & { createdAt?: number }): Awaitable<Facility>;
  getFacility(id: string): Facility | undefined;
  listFacilities(): Facility[];
  updateFacility(id: string, patch: { status?: Status; baselineKgPerHour?: string; effectiveFrom?: number; owner?: string }): Awaitable<Facility>;
  /** Removes a facility registered by mistake, with its baselines and devices (the caller checks it never settled). */
  deleteFacility(id: string): Awaitable<void>;
  /** Baseline in force at `at` (epoch ms): a change applies from the window after it was made. */
  baselineAt(facilityId: string, at: number): string;
  /** Creates a device and returns its one-time secret. */
  createDevice(facilityId: string, deviceId: string, kind: string, opts?: DeviceOptions): Awaitable<{ device: Device; password: string }>;
  getDevice(deviceId: string): Device | undefined;
  listDevices(facilityId: string): Device[];
  /** Status (decommissioning needs a reason, is final) and/or capacity. */
  updateDevice(deviceId: string, patch: DevicePatch): Awaitable<Device>;
  /** The device's Ed25519 public key (64 lowercase hex), undefined when it has none (ingest's per-batch lookup). */
  devicePublicKey(deviceId: string): string | undefined;
  /** The limits the ingest rules apply to a device (capacity, reporting interval). */
  deviceLimits(deviceId: string): DeviceLimits | undefined;
  /** New secret; the old one stops working at once. */
  rotateSecret(deviceId: string): Awaitable<string>;
  credentials(deviceId: string): DeviceCredentials | undefined;
  /** Replaces the secret record only if it is still `expected` (legacy record upgrade); true if replaced. */
  replaceSecretHash(deviceId: string, expected: string, record: string): Awaitable<boolean>;
  setOnline(deviceId: string, online: boolean, at: number): Awaitable<void>;
  /**
   * Appends rejections, aggregated: rows of one device with the same reason in the same minute are one
   * stored row with a `count` (the first one's detail and payload kept as the sample).
   */
  addRejections(rows: Rejection[]): Awaitable<void>;
  listRejections(facilityId: string, limit?: number): Awaitable<Rejection[]>;
  /** Newest first with row ids, for paging: rows with id < beforeId when given; limit default 100, at most 1000. */
  pageRejections(facilityId: string, limit?: number, beforeId?: number): Awaitable<{ id: number; rejection: Rejection }[]>;
  /** Deletes rejection rows last seen before `before` (epoch ms); returns how many. */
  pruneRejections(before: number): Awaitable<number>;
  /** Changes when another connection committed to the store (SQLite `PRAGMA data_version`); for cheap polling. */
  dataVersion?(): number;
  /**
   * Calls `fn` after a change made by any process reached this registry (PostgreSQL: LISTEN/NOTIFY);
   * returns the unsubscribe. Absent: poll (SQLite: dataVersion).
   */
  onChange?(fn: (c: RegistryChange) => void): () => void;
}

// ---------------------------------------------------------------------------------------------
// Oracle records: settlement intents and confirmed settlements (with every input needed to recompute
// them), per-device cursors, late-reading flags, the data dir's window length and a run lease.

export type SettlementState = 'intent' | 'sent' | 'confirmed' | 'discarded';

/** Per-device inputs and outputs of a settlement, enough to recompute it from the store. */
export interface RecordedDevice {
  deviceId: string;
  /** What the settlement saw of the device (absent: no reading stored yet). */
  mark?: VisibilityMark;
  /** What its previous settlement saw, and that settlement's window end (absent: never settled). */
  prev?: PrevConsumed;
  startCursors: RegisterCursor[];
  endCursors: RegisterCursor[];
  /** Declared reporting interval applied by the coverage rule. */
  reportingIntervalSeconds: number;
  /** Declared an interval (co2_direct) device by its registration (kind 'cems'). */
  intervalDeclared: boolean;
  /** Set for a decommissioned device (out of coverage for windows starting at or after `at`). */
  decommissioned?: Decommissioning;
  /** Outputs, for display: the coverage facts, verdict and consumed count. */
  coverage: DeviceCoverage;
  inCoverage: boolean;
  status: CoverageStatus;
  consumedCount: number;
  /** From mrv-signed-3, a device with signed readings used: its hash chain over them (display; the evidence commits to it). */
  chain?: DeviceChain;
  /** Before mrv-cursor-2: the high-water mark (seq) in place of `mark`. */
  highWater?: number;
}

export interface RecordedInputs {
  methodologyVersion: string;
  baselineKgPerHour: string;
  factors: AppliedFactors;
  devices: RecordedDevice[];
  lateKeys: string[];
  /** Devices out of coverage in this window because they were decommissioned before it. */
  decommissioned?: ({ deviceId: string } & Decommissioning)[];
  totals: MetricTotals;
  baselineKg: string;
  rawNetGrams: string;
  /** Voids that excluded readings from this computation (absent: none did). */
  voids?: RecordedVoid[];
  /** Set on a correction: what it corrects (its evidence carries a `correction` leaf). */
  correction?: CorrectionRef;
}

/** What a correction's evidence says it corrects. */
export interface CorrectionRef {
  settlementId: string;
  /** The original settlement's evidence root. */
  originalRoot: string;
  seq: number;
  prevNetGrams: string;
  reason: string;
}

/** The mark a recorded device's settlement left (records before mrv-cursor-2 hold a seq high-water mark). */
export function recordedMark(d: Pick<RecordedDevice, 'mark' | 'highWater' | 'prev'>): VisibilityMark | undefined {
  if (d.mark) return d.mark;
  if (d.highWater !== undefined) return { maxSeq: d.highWater, late: 0 };
  return undefined;
}

/** The previous mark of a recorded device, whatever the record's age. */
export function recordedPrev(d: Pick<RecordedDevice, 'prev'>): PrevConsumed | undefined {
  if (!d.prev) return undefined;
  const legacy = d.prev as unknown as { maxSeq?: number; mark?: VisibilityMark; before: number };
  return { mark: legacy.mark ?? { maxSeq: legacy.maxSeq ?? -1, late: 0 }, before: legacy.before };
}

export interface SettlementRow {
  id: string;
  facilityId: string;
  windowStart: number;
  windowEnd: number;
  state: SettlementState;
  complete: boolean;
  netGrams: string;
  actualKg: string;
  evidenceRoot: string;
  mintedGrams: string | null;
  burnedGrams: string | null;
  deficitGrams: string | null;
  txHash: string | null;
  inputs: RecordedInputs;
  createdAt: number;
  updatedAt: number;
}

/** A confirmed settlement: what the gateway lists (grams as integer text, times epoch ms). */
export interface Settlement {
  id: string;
  facilityId: string;
  windowStart: number;
  windowEnd: number;
  complete: boolean;
  netGrams: string;
  mintedGrams: string;
  burnedGrams: string;
  deficitGrams: string;
  evidenceRoot: string;
  txHash: string | null;
  actualKg: string;
  baselineKg: string;
  inputs: RecordedInputs;
}

export interface DeviceCursor {
  deviceId: string;
  facilityId: string;
  settlementId: string;
  /** End of the window this cursor was left at (the device's `prev.before`). */
  windowEnd: number;
  /** What that settlement saw of the device (`prev.mark`); maxSeq -1 when it had no reading. */
  mark: VisibilityMark;
  cursors: RegisterCursor[];
}

export interface SettlementQuery {
  facilityId?: string;
  /** windowStart >= from (epoch ms). */
  from?: number;
  /** windowStart < to (epoch ms). */
  to?: number;
  /** Default 1000, at most 10 000. */
  limit?: number;
  /** Newest window first (then facility id descending); default oldest first. */
  newestFirst?: boolean;
  /** With newestFirst: only those strictly after this one in that order (a paging cursor). */
  before?: { windowStart: number; facilityId: string };
}

/** The confirmed settlement that counted a reading, and whether it flagged it late. */
export interface CountedIn {
  settlement: Settlement;
  late: boolean;
}

export const settlementId = (facilityId: string, windowStart: number): string => `${facilityId}-${windowStart}`;


export interface NewIntent {
  id: string;
  facilityId: string;
  windowStart: number;
  windowEnd: number;
  complete: boolean;
  netGrams: bigint;
  actualKg: string;
  evidenceRoot: string;
  inputs: RecordedInputs;
}

export interface ChainAmounts {
  txHash?: string | null;
  mintedGrams: bigint;
  burnedGrams: bigint;
  deficitGrams: bigint;
}

export type ConfirmOutcome = 'confirmed' | 'already';

/** The read side of the records: what the gateway lists and audits, without the oracle or a signer. Awaitable like every records method (PostgreSQL: store/postgres/records.ts). */
export interface SettlementReader {
  /** Confirmed settlements in window order (see SettlementQuery). */
  listSettlements(q?: SettlementQuery): Awaitable<Settlement[]>;
  /** The confirmed settlement `${facilityId}-${windowStartMs}`, or undefined. */
  getSettlement(id: string): Awaitable<Settlement | undefined>;
  /**
   * The confirmed settlement of `facilityId` that counted the reading (deviceId, seq) stored with `ts`
   * (and `arrival` when it arrived out of order), or undefined while none has; at most `scan` settlements are read.
   */
  settlementOfReading(facilityId: string, r: { deviceId: string; seq: number; ts: number; arrival?: number }, scan?: number): Awaitable<CountedIn | undefined>;
  /** Whether a confirmed settlement flagged the reading late. */
  isLate(deviceId: string, seq: number): Awaitable<boolean>;
  /** Keys `${deviceId}:${seq}` among `keys` that a confirmed settlement of the facility flagged late. */
  lateReadings(facilityId: string, keys: { deviceId: string; seq: number }[]): Awaitable<Set<string>>;
}

/**
 * The oracle's records. A settlement row is keyed (id, evidenceRoot): several intents may exist for
 * one window, at most one is `confirmed` (the one whose root the chain recorded); the others become
 * `discarded`. Confirming a row moves its devices' cursors forward in the same transaction.
 */
export interface OracleRecords extends SettlementReader {
  /** Records the window length of the data dir on first use; afterwards refuses (CONFIG_INVALID) a different one. */
  checkWindow(windowMs: number): Awaitable<void>;
  /** Inserts an intent (idempotent: the same id and root again is a no-op). Returns whether it was new. */
  insertIntent(i: NewIntent): Awaitable<boolean>;
  /** Inserts many intents in one transaction, before any of them is sent. */
  insertIntents(list: NewIntent[]): Awaitable<void>;
  /** The intent was sent in `txHash` (it may or may not be the one the chain kept). */
  markSent(id: string, root: string, txHash: string | null): Awaitable<void>;
  /**
   * The chain settled window `id` with `root`: confirm that row, discard the others of the window, move
   * its devices' cursors forward and record its late readings, atomically. Idempotent. Throws when the
   * row is unknown or another root is already confirmed.
   */
  confirm(id: string, root: string, amounts: ChainAmounts): Awaitable<ConfirmOutcome>;
  /** confirm() for many (id, root) pairs, atomically. */
  confirmMany(list: { id: string; root: string; amounts: ChainAmounts }[]): Awaitable<ConfirmOutcome[]>;
  lastConfirmedWindow(facilityId: string): Awaitable<number | undefined>;
  firstOpenWindow(facilityId: string): Awaitable<number | undefined>;
  /** One row (any state) by window id and root. */
  row(id: string, root: string): Awaitable<SettlementRow | undefined>;
  cursor(deviceId: string): Awaitable<DeviceCursor | undefined>;
  /**
   * The chain lost the facility's settlements from `windowStart` on: those confirmed rows become
   * intents again, their late flags go, and every device cursor they moved goes back to where the
   * first lost settlement started it, atomically. Returns the ids rolled back, oldest first.
   */
  rollbackFrom(facilityId: string, windowStart: number): Awaitable<string[]>;
  /** A facility removed before it ever settled: its intents and devices' cursors go (CONFLICT once one is confirmed). */
  forgetFacility(facilityId: string, deviceIds: string[]): Awaitable<void>;
  /** Takes or renews the named lease until `now + ttlMs`; false when another holder has it. */
  acquireLease(name: string, holder: string, now: number, ttlMs: number): Awaitable<boolean>;
  releaseLease(name: string, holder: string): Awaitable<void>;
}

// ---------------------------------------------------------------------------------------------
// Oracle status: per-facility settlement status (blocked with backoff) and the finality watch list.

export interface FacilitySettlementStatus {
  facilityId: string;
  settlementStatus: 'ok' | 'blocked';
  /** Set when blocked. */
  reason?: string;
  /** Epoch ms: blocked since. */
  since?: number;
  attempts?: number;
  /** Epoch ms: the next attempt is not made before this. */
  retryAt?: number;
}

export interface Backoff {
  /** First retry delay (default 10 s). */
  baseMs: number;
  /** Longest delay (default 10 min). */
  maxMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { baseMs: 10_000, maxMs: 600_000 };

/** A settlement confirmed from a receipt, not yet CHAIN_CONFIRMATIONS blocks deep. */
export interface UnfinalRow {
  id: string;
  facilityId: string;
  windowStart: number;
  evidenceRoot: string;
  blockNumber: number;
}

export interface OracleStatus {
  /** The facility's status (`ok` when nothing is recorded). */
  get(facilityId: string): Awaitable<FacilitySettlementStatus>;
  /** Every blocked facility. */
  listBlocked(): Awaitable<FacilitySettlementStatus[]>;
  /** Records a failed attempt: blocked with `reason`, next attempt after an exponential, capped delay. */
  block(facilityId: string, reason: string, now: number, backoff: Backoff): Awaitable<FacilitySettlementStatus>;
  /** Makes a blocked facility due now. */
  retryNow(facilityId: string, now: number): Awaitable<void>;
  /** A facility removed from the registry: nothing of it stays. */
  forget(facilityId: string): Awaitable<void>;
  /** Not blocked any more. Returns whether it was. */
  clear(facilityId: string): Awaitable<boolean>;
  addUnfinal(list: UnfinalRow[]): Awaitable<void>;
  unfinal(facilityId: string): Awaitable<UnfinalRow[]>;
  unfinalFacilities(): Awaitable<string[]>;
  markFinal(id: string): Awaitable<void>;
  /** The chain lost the facility's windows from `windowStart` on: nothing there is watched any more. */
  forgetFrom(facilityId: string, windowStart: number): Awaitable<void>;
}

// ---------------------------------------------------------------------------------------------
// API keys (rows only: generating, hashing and caching keys is the gateway's, gateway/keys.ts).

export type ApiKeyRole = 'admin' | 'regulator' | 'facility';

export interface ApiKeyRow {
  id: string;
  role: ApiKeyRole;
  facilityId?: string;
  /** First characters of the key. */
  prefix: string;
  createdAt: number;
  lastUsedAt?: number;
}

/** Writes are Awaitable (SQLite at once, PostgreSQL through the network: store/postgres/keys.ts); reads synchronous. */
export interface ApiKeyTable {
  /** A new key row (its hash is unique). */
  insert(row: ApiKeyRow & { keyHash: string }): Awaitable<void>;
  /** Sets the row `id` to this hash and role, un-revoking it (a key configured from outside). */
  upsert(row: { id: string; keyHash: string; role: ApiKeyRole; prefix: string; createdAt: number }): Awaitable<void>;
  /** The key with this hash, unless revoked. */
  byHash(keyHash: string): { id: string; role: ApiKeyRole; facilityId?: string } | undefined;
  /** Keys not revoked, oldest first. */
  list(): ApiKeyRow[];
  /** Marks `id` revoked at `at`; false if unknown or already revoked. */
  revoke(id: string, at: number): Awaitable<boolean>;
  touch(id: string, at: number): Awaitable<void>;
  hasActiveAdmin(): boolean;
}

// ---------------------------------------------------------------------------------------------
// Voids and corrections (SPEC "Methodology", corrections): a regulator voids a device's readings over
// [from, to); they stay stored, are flagged, and no settlement computed afterwards uses them; every
// settled window whose evidence used them gets a correction settlement (append-only).

/** A regulator's void of a device's readings with from <= ts < to (epoch ms). */
export interface ReadingVoid {
  id: number;
  facilityId: string;
  deviceId: string;
  from: number;
  to: number;
  reason: string;
  /** Who voided (the API key id). */
  by: string;
  at: number;
  /** The ledger's void number (ReadingsVoided), once recorded on chain; it authorises the corrections. */
  chainVoidId?: number;
  /** The facility's next window start on chain when the void was recorded there (epoch ms). */
  settledBefore?: number;
}

/** A void as a settlement records it (what it excluded is recomputed from it). */
export interface RecordedVoid {
  id: number;
  deviceId: string;
  from: number;
  to: number;
  reason: string;
}

export type CorrectionState = 'intent' | 'confirmed';

/** A correction settlement of a settled window (grams as integer text, times epoch ms). */
export interface Correction {
  /** `${settlementId}-c${seq}`. */
  id: string;
  /** The original settlement it corrects. */
  settlementId: string;
  /** 1, 2, ... per settled window. */
  seq: number;
  facilityId: string;
  windowStart: number;
  windowEnd: number;
  state: CorrectionState;
  /** The voids that caused it (local ids). */
  voidIds: number[];
  reason: string;
  complete: boolean;
  /** The window's net before this correction (the original's, or the previous correction's). */
  prevNetGrams: string;
  /** The recomputed net. */
  netGrams: string;
  /** netGrams - prevNetGrams: minted (> 0), burned or added to the deficit (< 0). */
  deltaGrams: string;
  actualKg: string;
  evidenceRoot: string;
  mintedGrams: string | null;
  burnedGrams: string | null;
  deficitGrams: string | null;
  txHash: string | null;
  /** The recomputation's inputs (its `voids` and `correction` set), to recompute it like a settlement. */
  inputs: RecordedInputs;
  createdAt: number;
}

export const correctionId = (settlementId: string, seq: number): string => `${settlementId}-c${seq}`;

export type NewCorrection = Omit<Correction, 'state' | 'mintedGrams' | 'burnedGrams' | 'deficitGrams' | 'txHash' | 'createdAt'>;

/**
 * Voids and corrections: in the SQLite file (store/sqlite/corrections.ts, answers at once) or in
 * PostgreSQL with DATABASE_URL (store/postgres/corrections.ts, shared by every process): Awaitable.
 */
export interface CorrectionRecords {
  /** Records a void; returns it with its id. */
  addVoid(v: Omit<ReadingVoid, 'id'>): Awaitable<ReadingVoid>;
  /** Voids of these devices, oldest first. */
  voidsOf(deviceIds: string[]): Awaitable<ReadingVoid[]>;
  voidsOfFacility(facilityId: string): Awaitable<ReadingVoid[]>;
  /** Facilities with at least one void, with their void count (for a cheap "anything new?" check). */
  voidedFacilities(): Awaitable<{ facilityId: string; voids: number }[]>;
  /** The newest correction of a settlement, or undefined. */
  latest(settlementId: string): Awaitable<Correction | undefined>;
  getCorrection(id: string): Awaitable<Correction | undefined>;
  /** The corrections of these settlements, by window and seq. */
  correctionsOf(settlementIds: string[]): Awaitable<Correction[]>;
  /** Corrections, oldest window and seq first; a facility's only when given. */
  listCorrections(q?: { facilityId?: string; state?: CorrectionState; limit?: number }): Awaitable<Correction[]>;
  /**
   * Appends corrections and moves the device cursors their windows left (where the cursor is still at
   * that window's end), atomically. Refuses (CORRECTION_RACED) when a correction's seq
   * is not the next of its settlement (another process corrected it meanwhile): nothing is written.
   */
  insertCorrections(list: NewCorrection[], cursors: { deviceId: string; windowEnd: number; cursors: RegisterCursor[] }[]): Awaitable<void>;
  /** The chain applied correction `id` (idempotent). */
  confirmCorrection(id: string, amounts: ChainAmounts): Awaitable<void>;
}
