/**
 * The part of the ledger client (contracts/client, ethers v6) the oracle calls, as a narrow interface
 * so tests can wrap it (fault injection) and the bench can count what goes through it. Times are
 * epoch ms on this side (the client converts to the contract's UNIX seconds); grams are integers.
 */

/** Integer grams or ms as the client returns them (bigint, or integer text/number). */
export type IntLike = bigint | number | string;

export interface SettleInput {
  facilityId: string;
  windowStart: number;
  windowEnd: number;
  netGrams: bigint;
  /** 0x + 32 bytes: the Merkle root of the settlement's evidence. */
  evidenceRoot: string;
}

export interface SettleEntryResult {
  facilityId: string;
  windowStart: IntLike;
  status: 'settled' | 'skipped';
  mintedGrams?: IntLike;
  burnedGrams?: IntLike;
  deficitGrams?: IntLike;
}

export interface SettleBatchResult {
  txHash: string;
  gasUsed: IntLike;
  results: SettleEntryResult[];
  /** The block the transaction was mined in (for CHAIN_CONFIRMATIONS). */
  blockNumber?: IntLike;
}

export interface ChainFacilityState {
  registered: boolean;
  owner: string;
  suspended: boolean;
  /** Epoch ms of the next window the chain accepts. */
  nextWindowStart: IntLike;
  deficitGrams: IntLike;
  mintedGrams: IntLike;
  burnedGrams: IntLike;
  retiredGrams: IntLike;
  /** Baseline on chain, kg/h decimal text, when the client exposes it. */
  baselineKgPerHour?: string;
}

/** A settlement as the chain recorded it (decoded from its WindowSettled log). */
export interface ChainSettlement {
  facilityId?: string;
  windowStart: IntLike;
  windowEnd?: IntLike;
  netGrams: IntLike;
  mintedGrams?: IntLike;
  burnedGrams?: IntLike;
  deficitGrams?: IntLike;
  evidenceRoot: string;
  txHash?: string;
  blockNumber?: IntLike;
}

export interface OracleLedger {
  settleBatch(inputs: SettleInput[]): Promise<SettleBatchResult>;
  facility(facilityId: string): Promise<ChainFacilityState>;
  registerFacility(facilityId: string, owner: string, baselineKgPerHour: string, firstWindowStartMs: number): Promise<unknown>;
  settlementAt(facilityId: string, windowStartMs: number): Promise<ChainSettlement | undefined | null>;
  setFacilitySuspended?(facilityId: string, suspended: boolean): Promise<unknown>;
  /** The baseline from `effectiveFromMs` on (must be >= the chain's nextWindowStart). */
  setBaseline?(facilityId: string, baselineKgPerHour: string, effectiveFromMs: number): Promise<unknown>;
  /** Corrects the owner of a facility that never settled (the contract refuses it otherwise). */
  setFacilityOwner?(facilityId: string, owner: string): Promise<unknown>;
  /** Forgets any local nonce count (the chain went backwards: its nonces did too). */
  resetNonce?(): void;
  /** The latest block number (needed when CHAIN_CONFIRMATIONS > 0). */
  blockNumber?(): Promise<number>;
}

export function toBig(v: IntLike | undefined | null): bigint {
  if (v === undefined || v === null) return 0n;
  return typeof v === 'bigint' ? v : BigInt(v);
}

export function toMs(v: IntLike): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new TypeError(`not an epoch-ms integer: ${String(v)}`);
  return n;
}
