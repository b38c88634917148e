/**
 * The chain boundary: the one `LedgerPort` the oracle and the gateway depend on, and its value types.
 * `Ledger` (contracts/client/ledger.ts, ethers v6 on CreditLedger) implements it; the tests use one
 * in-memory ledger with the contract's rules (test/helpers/memory-ledger.ts).
 *
 * Units on this side of the port: times are epoch milliseconds (whole seconds: the contract keeps
 * UNIX seconds), amounts are bigint grams, baselines are decimal kg/h text (mg/h on chain), block
 * numbers are numbers. Failures leave the port as catalogue errors (contracts/client/errors.ts):
 * a revert the client decodes is LEDGER_REVERTED (LedgerRevertError), an unreachable node is
 * CHAIN_UNAVAILABLE, a write without a key is CHAIN_SIGNER_MISSING.
 */

/** The contract's roles (DEFAULT_ADMIN_ROLE, REGULATOR_ROLE, ORACLE_ROLE). */
export type LedgerRole = 'admin' | 'regulator' | 'oracle';

/** A facility as the ledger holds it (`facility(id)`); an unregistered id reads as zeroes. */
export interface FacilityView {
  registered: boolean;
  owner: string;
  suspended: boolean;
  /** epoch ms of the next window the ledger accepts */
  nextWindowStart: number;
  /** decimal kg/h text */
  baselineKgPerHour: string;
  /** epoch ms */
  baselineEffectiveFrom: number;
  /** The most a window may net (baseline + export allowance for one window), grams. */
  capGramsPerWindow: bigint;
  /** The facility's deficit (kept per facility). */
  deficitGrams: bigint;
  /** Totals over the facility's batches: issued, burned for negative nets, retired by any holder. */
  mintedGrams: bigint;
  burnedGrams: bigint;
  retiredGrams: bigint;
  /** What the owner holds of the facility's batches (its balance of them, summed). */
  ownerHeldGrams: bigint;
}

/** A batch: one facility's credits of one vintage (UTC month), an ERC-1155 token id. */
export interface BatchView {
  /** The token id, as decimal text. */
  id: string;
  facilityId: string;
  facilityKey: string;
  /** year * 100 + month, e.g. 202601 */
  vintage: number;
  issuedGrams: bigint;
  retiredGrams: bigint;
  burnedGrams: bigint;
  /** issued - retired - burned */
  supplyGrams: bigint;
  /** What the facility's owner holds of it. */
  ownerBalanceGrams: bigint;
}

/** An account's balance of one batch. */
export interface Holding {
  batch: BatchView;
  balanceGrams: bigint;
}

/** One window to settle. */
export interface SettlementEntry {
  facilityId: string;
  /** epoch ms, a whole second */
  windowStart: number;
  /** epoch ms, a whole second */
  windowEnd: number;
  netGrams: bigint;
  /** 0x-prefixed 32-byte Merkle root of the window's evidence */
  evidenceRoot: string;
}

/** A settlement as the ledger recorded it (its WindowSettled event). */
export interface OnChainSettlement {
  /** Known when the client has seen the facility's registration (or was told the id). */
  facilityId?: string;
  /** keccak256 of the facility id */
  facilityKey: string;
  windowStart: number;
  windowEnd: number;
  netGrams: bigint;
  mintedGrams: bigint;
  /** First serial minted in the batch of the window's vintage (0 when nothing was minted). */
  firstSerial: bigint;
  burnedGrams: bigint;
  /** the facility's deficit after this settlement */
  deficitGrams: bigint;
  evidenceRoot: string;
  txHash: string;
  blockNumber: number;
}

/** What became of one entry of a settleBatch. */
export interface SettlementResult {
  facilityId: string;
  windowStart: number;
  /** `skipped`: the window was already settled (by an earlier transaction); nothing changed now. */
  status: 'settled' | 'skipped';
  /** For a skipped entry: the amounts of the earlier settlement (see `original`). */
  mintedGrams: bigint;
  burnedGrams: bigint;
  deficitGrams: bigint;
  /** For a skipped entry: the earlier settlement of that window, read back from the ledger. */
  original?: OnChainSettlement;
}

/**
 * A device key as the ledger recorded it (its DeviceKeySet event, by the regulator): set, rotated
 * (`previousKey` set) or revoked (`publicKey` null). Keys are 64 lowercase hex, as the registry keeps them.
 */
export interface DeviceKeyRecord {
  /** Known from the event (it carries the id). */
  deviceId: string;
  /** keccak256 of the device id */
  deviceKey: string;
  /** The Ed25519 public key from now on, null when revoked. */
  publicKey: string | null;
  /** The key it replaced, null when none. */
  previousKey: string | null;
  txHash: string;
  blockNumber: number;
}

/** A mined transaction. */
export interface TxInfo {
  txHash: string;
  blockNumber: number;
  gasUsed: bigint;
}

export interface SettleBatchResult extends TxInfo {
  /** One per entry, in the entries' order. */
  results: SettlementResult[];
}

/** A holder-signed EIP-712 retirement request (CreditLedger `Retire`), as the ledger takes it. */
export interface SignedRetirement {
  holder: string;
  /** Token ids of the batches retired from, and the grams of each (same length, 1..32). */
  batchIds: bigint[];
  amounts: bigint[];
  beneficiary: string;
  reason: string;
  nonce: bigint;
  /** UNIX seconds */
  deadline: number;
  signature: string;
}

/** EIP-712 types of a retirement request (CreditLedger.sol RETIRE_TYPEHASH). */
export const RETIRE_TYPES = {
  Retire: [
    { name: 'holder', type: 'address' },
    { name: 'batchIds', type: 'uint256[]' },
    { name: 'amounts', type: 'uint256[]' },
    { name: 'beneficiary', type: 'string' },
    { name: 'reason', type: 'string' },
    { name: 'nonce', type: 'uint256' },
    { name: 'deadline', type: 'uint256' },
  ],
};

/** One batch's part of a retirement: serials firstSerial .. lastSerial of that batch. */
export interface RetiredPart {
  /** token id, decimal text */
  batchId: string;
  facilityId: string;
  vintage: number;
  amountGrams: bigint;
  firstSerial: bigint;
  lastSerial: bigint;
}

/** A retirement certificate on the ledger. */
export interface RetirementRecord {
  id: bigint;
  account: string;
  /** The facilities whose batches it retired from, in part order, without repeats. */
  facilityIds: string[];
  parts: RetiredPart[];
  amountGrams: bigint;
  beneficiary: string;
  reason: string;
  /** epoch ms (block time) */
  retiredAt: number;
  txHash?: string;
}

/** The retirement a transaction produced. */
export interface RetirementReceipt {
  id: bigint;
  txHash: string;
}

/** The serial of gram `n` of a facility's batch of `vintage`: `{facilityId}-{YYYY-MM}-{n}`. */
export function serialOf(facilityId: string, vintage: number, n: bigint): string {
  return `${facilityId}-${vintagePrefix(vintage)}-${n}`;
}

/** A vintage (yyyymm) as `YYYY-MM`. */
export function vintagePrefix(vintage: number): string {
  return `${Math.floor(vintage / 100)}-${String(vintage % 100).padStart(2, '0')}`;
}

/** The vintage (UTC year * 100 + month) of an epoch-ms time, as the contract computes it. */
export function vintageOf(ms: number): number {
  const d = new Date(ms);
  return d.getUTCFullYear() * 100 + d.getUTCMonth() + 1;
}

/**
 * Most entries one settleBatch should carry: a first settlement costs ~35k gas per entry, and a
 * transaction is capped at 2^24 gas since Osaka (EIP-7825). Callers split larger sets.
 */
export const MAX_BATCH = 250;

/** What the oracle and the gateway call on the ledger. */
export interface LedgerPort {
  /** The latest block number (the gateway's /health, the oracle's CHAIN_CONFIRMATIONS). */
  blockNumber(): Promise<number>;
  facility(facilityId: string): Promise<FacilityView>;
  /** The facility's batches, oldest vintage first (none before its first settlement). */
  batches(facilityId: string): Promise<BatchView[]>;
  /** The batches an account holds (non-zero balances), oldest first per facility. */
  holdings(account: string): Promise<Holding[]>;

  // registry (REGULATOR_ROLE)
  registerFacility(facilityId: string, owner: string, baselineKgPerHour: string, firstWindowStart: number): Promise<TxInfo>;
  setFacilitySuspended(facilityId: string, suspended: boolean): Promise<TxInfo>;
  /** The baseline from `effectiveFrom` on (epoch ms; at or after the facility's next window). */
  setBaseline(facilityId: string, baselineKgPerHour: string, effectiveFrom: number): Promise<TxInfo>;
  /** Corrects the owner of a facility that never settled (reverts FacilityHasSettlements otherwise). */
  setFacilityOwner(facilityId: string, owner: string): Promise<TxInfo>;
  /** Removes a facility that never settled (reverts FacilityHasSettlements otherwise). */
  deregisterFacility(facilityId: string): Promise<TxInfo>;

  /**
   * Records (or rotates) a device's Ed25519 public key on chain (64 hex, or 0x + 64 hex); setting the
   * current key again changes nothing. REGULATOR_ROLE, refused while paused.
   */
  setDeviceKey(deviceId: string, publicKeyHex: string): Promise<TxInfo>;
  /** The device's current key on chain (64 lowercase hex), undefined when none (never set, or revoked). */
  deviceKey(deviceId: string): Promise<string | undefined>;
  /** The recorded key changes (DeviceKeySet events), oldest first, of one device or of all. */
  deviceKeys(deviceId?: string): Promise<DeviceKeyRecord[]>;

  // settlement (ORACLE_ROLE)
  /**
   * Settles the entries in one transaction (at most MAX_BATCH). Already-settled windows are skipped
   * and reported as `skipped`; a gap, an unknown facility or an empty window reverts the whole batch.
   */
  settleBatch(entries: SettlementEntry[]): Promise<SettleBatchResult>;
  /** The settlement of one facility window, or undefined when that window is not settled. */
  settlementAt(facilityId: string, windowStart: number): Promise<OnChainSettlement | undefined>;
  /** Settlements, oldest first, optionally of one facility or one window start. */
  settlements(filter?: { facilityId?: string; fromBlock?: number; windowStart?: number }): Promise<OnChainSettlement[]>;

  // retirement
  /** Retirement certificates, oldest first, optionally of one account or one facility. */
  retirements(filter?: { account?: string; facilityId?: string }): Promise<RetirementRecord[]>;
  /** One certificate, undefined when there is no retirement with that id. */
  retirement(id: bigint): Promise<RetirementRecord | undefined>;
  /** Relays a holder-signed retirement request (this client's signer pays the gas). */
  retireWithSig(req: SignedRetirement): Promise<RetirementReceipt>;
  /** The retirement a signed request produced once its nonce is used (by anyone), else undefined. */
  retirementOfRequest(req: SignedRetirement): Promise<RetirementReceipt | undefined>;

  /** Forgets any local nonce count (the chain went backwards: its nonces did too). */
  resetNonce(): void;
}

/** The administrator's part (DEFAULT_ADMIN_ROLE): roles and pause. */
export interface LedgerAdminPort {
  hasRole(role: LedgerRole, account: string): Promise<boolean>;
  grantRole(role: LedgerRole, account: string): Promise<TxInfo>;
  revokeRole(role: LedgerRole, account: string): Promise<TxInfo>;
  pause(): Promise<TxInfo>;
  unpause(): Promise<TxInfo>;
  paused(): Promise<boolean>;
}

/** Integer grams, ms or block numbers as they may arrive from JSON or a wrapper (bigint, or integer text/number). */
export type IntLike = bigint | number | string;

/** An IntLike as bigint (undefined and null as 0n). */
export function toBig(v: IntLike | undefined | null): bigint {
  if (v === undefined || v === null) return 0n;
  return typeof v === 'bigint' ? v : BigInt(v);
}

/** An IntLike as a safe-integer number of epoch ms (throws otherwise). */
export function toMs(v: IntLike): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new TypeError(`not an epoch-ms integer: ${String(v)}`);
  return n;
}
