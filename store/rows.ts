/**
 * What the SQL reading stores (store/sqlite/, store/postgres/) share: the readings table's row shape
 * (one column list, the same in both schemas), its mapping to a Reading and to the ingest rules'
 * StoredReading, and the rules as every store applies them: `checkReading` over the store's
 * per-device lookup, where a late reading whose neighbour of the same metric is more than
 * MAX_METRIC_WALK rows away is refused `implausible` rather than walked to. Also the oracle's
 * settlement rows and their mapping, the same in both schemas, and the other rows both SQL stores map
 * alike (API keys, the oracle's facility status and finality watch list).
 */
import { checkReading, type DeviceReadings, type StoredReading } from '../domain/ingest-rules.ts';
import type { Metric, Reading } from '../domain/reading.ts';
import { MAX_METRIC_WALK, type ApiKeyRole, type ApiKeyRow, type CommitOutcome, type DeviceLimits, type Correction, type CorrectionState, type FacilitySettlementStatus, type ReadingVoid, type RecordedInputs, type Settlement, type SettlementRow, type SettlementState, type UnfinalRow } from './types.ts';

/** A row of the readings table; `reset` is 0/1 in SQLite, a boolean in PostgreSQL. */
export interface ReadingRow {
  device_id: string;
  seq: number;
  facility_id: string;
  ts: number;
  metric: string;
  value: string;
  unit: string;
  reset: number | boolean;
  received_at: number;
  arrival: number | null;
  sig: string | null;
  prev: string | null;
  sent_value: string | null;
  sent_unit: string | null;
}

/** The readings table's columns, in ReadingRow's order. */
export const READING_COLS = 'device_id, seq, facility_id, ts, metric, value, unit, reset, received_at, arrival, sig, prev, sent_value, sent_unit';

export function rowToReading(r: ReadingRow): Reading {
  const out: Reading = {
    facilityId: r.facility_id,
    deviceId: r.device_id,
    seq: r.seq,
    ts: r.ts,
    metric: r.metric as Metric,
    value: r.value,
    unit: r.unit,
    reset: r.reset === true || r.reset === 1,
    receivedAt: r.received_at,
  };
  if (r.arrival !== null) out.arrival = r.arrival;
  if (r.sig !== null) {
    out.sig = r.sig;
    out.prev = r.prev ?? '';
    if (r.sent_value !== null) out.sentValue = r.sent_value;
    if (r.sent_unit !== null) out.sentUnit = r.sent_unit;
  }
  return out;
}

/** The part of a row the ingest rules compare (neighbours, duplicates). */
export function rowToStored(r: { seq: number; ts: number; metric: string; value: string; unit: string; reset: number | boolean; sig: string | null }): StoredReading {
  const s: StoredReading = { seq: r.seq, ts: r.ts, metric: r.metric, value: r.value, unit: r.unit, reset: r.reset === true || r.reset === 1 };
  if (r.sig !== null) s.sig = r.sig;
  return s;
}

/** Thrown by a store's lookup that would have to walk more than MAX_METRIC_WALK rows. */
export class WalkTooLong extends Error {}

/** `checkReading`, with a walk beyond MAX_METRIC_WALK refused `implausible` (the detail says why). */
export function checkStoredReading(candidate: StoredReading, view: DeviceReadings, limits: DeviceLimits | undefined, metric: string): CommitOutcome {
  try {
    return checkReading(candidate, view, limits);
  } catch (err) {
    if (!(err instanceof WalkTooLong)) throw err;
    return {
      status: 'rejected',
      reason: 'implausible',
      detail: `late seq ${candidate.seq}: its neighbour of metric ${metric} is more than ${MAX_METRIC_WALK} readings away; not checked`,
    };
  }
}

/** An `oracle_settlements` row as both SQL stores read it (`complete` is 0/1 in SQLite, boolean in PostgreSQL). */
export interface SettlementDbRow {
  id: string;
  evidence_root: string;
  facility_id: string;
  window_start: number;
  window_end: number;
  state: SettlementState;
  complete: number | boolean;
  net_grams: string;
  actual_kg: string;
  minted_grams: string | null;
  burned_grams: string | null;
  deficit_grams: string | null;
  tx_hash: string | null;
  inputs: string;
  created_at: number;
  updated_at: number;
}

/** The columns of `SettlementDbRow`, in the order both stores select them. */
export const SETTLEMENT_COLS =
  'id, evidence_root, facility_id, window_start, window_end, state, complete, net_grams, actual_kg, minted_grams, burned_grams, deficit_grams, tx_hash, inputs, created_at, updated_at';

export function toSettlementRow(r: SettlementDbRow): SettlementRow {
  return {
    id: r.id,
    facilityId: r.facility_id,
    windowStart: r.window_start,
    windowEnd: r.window_end,
    state: r.state,
    complete: r.complete === true || r.complete === 1,
    netGrams: r.net_grams,
    actualKg: r.actual_kg,
    evidenceRoot: r.evidence_root,
    mintedGrams: r.minted_grams,
    burnedGrams: r.burned_grams,
    deficitGrams: r.deficit_grams,
    txHash: r.tx_hash,
    inputs: JSON.parse(r.inputs) as RecordedInputs,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

/** A settlement as the API and the oracle see it, from its row (amounts not yet on chain read as 0). */
export function toSettlement(r: SettlementDbRow): Settlement {
  const row = toSettlementRow(r);
  return {
    id: row.id,
    facilityId: row.facilityId,
    windowStart: row.windowStart,
    windowEnd: row.windowEnd,
    complete: row.complete,
    netGrams: row.netGrams,
    mintedGrams: row.mintedGrams ?? '0',
    burnedGrams: row.burnedGrams ?? '0',
    deficitGrams: row.deficitGrams ?? '0',
    evidenceRoot: row.evidenceRoot,
    txHash: row.txHash,
    actualKg: row.actualKg,
    baselineKg: row.inputs.baselineKg,
    inputs: row.inputs,
  };
}

/** Rows of `reading_voids` and `oracle_corrections`, the same in both SQL schemas, and their mapping. */
export interface VoidRow {
  id: number;
  facility_id: string;
  device_id: string;
  from_ms: number;
  to_ms: number;
  reason: string;
  voided_by: string;
  voided_at: number;
  chain_void_id: number | null;
  settled_before: number | null;
}

export interface CorrectionRow {
  id: string;
  settlement_id: string;
  seq: number;
  facility_id: string;
  window_start: number;
  window_end: number;
  state: CorrectionState;
  void_ids: string;
  reason: string;
  complete: number | boolean;
  prev_net_grams: string;
  net_grams: string;
  delta_grams: string;
  actual_kg: string;
  evidence_root: string;
  minted_grams: string | null;
  burned_grams: string | null;
  deficit_grams: string | null;
  tx_hash: string | null;
  inputs: string;
  created_at: number;
}

export const toVoid = (r: VoidRow): ReadingVoid => ({
  id: r.id,
  facilityId: r.facility_id,
  deviceId: r.device_id,
  from: r.from_ms,
  to: r.to_ms,
  reason: r.reason,
  by: r.voided_by,
  at: r.voided_at,
  ...(r.chain_void_id !== null ? { chainVoidId: r.chain_void_id } : {}),
  ...(r.settled_before !== null ? { settledBefore: r.settled_before } : {}),
});

export const toCorrection = (r: CorrectionRow): Correction => ({
  id: r.id,
  settlementId: r.settlement_id,
  seq: r.seq,
  facilityId: r.facility_id,
  windowStart: r.window_start,
  windowEnd: r.window_end,
  state: r.state,
  voidIds: JSON.parse(r.void_ids) as number[],
  reason: r.reason,
  complete: r.complete === true || r.complete === 1,
  prevNetGrams: r.prev_net_grams,
  netGrams: r.net_grams,
  deltaGrams: r.delta_grams,
  actualKg: r.actual_kg,
  evidenceRoot: r.evidence_root,
  mintedGrams: r.minted_grams,
  burnedGrams: r.burned_grams,
  deficitGrams: r.deficit_grams,
  txHash: r.tx_hash,
  inputs: JSON.parse(r.inputs) as RecordedInputs,
  createdAt: r.created_at,
});

export const CORRECTION_COLS =
  'id, settlement_id, seq, facility_id, window_start, window_end, state, void_ids, reason, complete, prev_net_grams, net_grams, delta_grams, actual_kg, evidence_root, minted_grams, burned_grams, deficit_grams, tx_hash, inputs, created_at';

export const VOID_COLS = 'id, facility_id, device_id, from_ms, to_ms, reason, voided_by, voided_at, chain_void_id, settled_before';

/** An `api_keys` row as both key tables list it (revoked_at and key_hash apart). */
export interface ApiKeyDbRow {
  id: string;
  role: ApiKeyRole;
  facility_id: string | null;
  prefix: string;
  created_at: number;
  last_used_at: number | null;
}

/** What a key lookup by hash answers: the key's id, role and facility (when bound to one). */
export const toKeyOwner = (r: { id: string; role: ApiKeyRole; facility_id: string | null }): { id: string; role: ApiKeyRole; facilityId?: string } => ({
  id: r.id,
  role: r.role,
  ...(r.facility_id ? { facilityId: r.facility_id } : {}),
});

export const toApiKeyRow = (r: ApiKeyDbRow): ApiKeyRow => ({
  ...toKeyOwner(r),
  prefix: r.prefix,
  createdAt: r.created_at,
  ...(r.last_used_at ? { lastUsedAt: r.last_used_at } : {}),
});

/** An `oracle_facility_status` row (a blocked facility) and an `oracle_unfinal` row, the same in both SQL schemas. */
export interface StatusRow {
  facility_id: string;
  reason: string;
  since: number;
  attempts: number;
  retry_at: number;
}

export const STATUS_COLS = 'facility_id, reason, since, attempts, retry_at';

export const toStatus = (r: StatusRow): FacilitySettlementStatus => ({ facilityId: r.facility_id, settlementStatus: 'blocked', reason: r.reason, since: r.since, attempts: r.attempts, retryAt: r.retry_at });

export interface UnfinalDbRow {
  id: string;
  facility_id: string;
  window_start: number;
  evidence_root: string;
  block_number: number;
}

export const UNFINAL_COLS = 'id, facility_id, window_start, evidence_root, block_number';

export const toUnfinal = (r: UnfinalDbRow): UnfinalRow => ({ id: r.id, facilityId: r.facility_id, windowStart: r.window_start, evidenceRoot: r.evidence_root, blockNumber: r.block_number });
