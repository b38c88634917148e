/**
 * The state and rules of the in-memory ledger (test/helpers/memory-ledger.ts): CreditLedger's
 * storage as maps (facilities, vintage batches, holders' balances, certificates), its `_settle`,
 * `_burnFromOwner` and `_retire` rules, blocks mined from a mempool, snapshots.
 */
import { ethers } from 'ethers';
import { LedgerRevertError } from '../../contracts/client/errors.ts';
import {
  RETIRE_TYPES,
  vintageOf,
  type DeviceKeyRecord,
  type OnChainSettlement,
  type LedgerRole,
  type RetirementReceipt,
  type RetirementRecord,
  type SettlementEntry,
  type SettlementResult,
  type SignedRetirement,
  type TxInfo,
} from '../../contracts/client/port.ts';
import { facilityKey } from '../../contracts/client/units.ts';

const MAX64 = (1n << 64n) - 1n;
const MAX_ABS_NET = MAX64 >> 1n;
const MAX_TEXT_LENGTH = 256;
export const MAX_RETIRE_BATCHES = 32;
export const MAX_FACILITY_ID_LENGTH = 64;
export const MAX_DEVICE_ID_LENGTH = 64;
/** The account a MemoryLedger signs with by default: it holds every role. */
export const MEMORY_SIGNER = '0x00000000000000000000000000000000000000A1';
/** The EIP-712 domain the memory ledger checks signatures against (sign with it in tests). */
export const MEMORY_DOMAIN = { name: 'CreditLedger', version: '1', chainId: 31337n, verifyingContract: '0x000000000000000000000000000000000000ca7b' };

export interface MemoryLimits {
  baselineMgPerHour: bigint;
  exportGPerHour: bigint;
  /** epoch ms */
  effectiveFrom: number;
}

export interface MemoryFacility {
  owner: string;
  /** epoch ms */
  next: number;
  first: number;
  suspended: boolean;
  limits: MemoryLimits;
  pending?: MemoryLimits;
  /** The cap in force, grams per window. */
  cap: bigint;
  /** yyyymm of the first and the current batch (0 before the first settlement). */
  firstVintage: number;
  currentVintage: number;
  deficit: bigint;
}

export interface MemoryBatch {
  facilityId: string;
  vintage: number;
  issued: bigint;
  /** retired + burned: serials are taken in order */
  taken: bigint;
  retired: bigint;
  /** The owner's balance (the contract's "position", never negative here: the deficit is kept apart). */
  ownerBalance: bigint;
}

export interface Retired extends RetirementRecord {
  /** The signed request that produced it (retireWithSig). */
  request?: SignedRetirement;
}

export interface State {
  facilities: Map<string, MemoryFacility>;
  /** By token id (decimal text). */
  batches: Map<string, MemoryBatch>;
  /** Balances of holders other than the facility owner, by `${batchId}:${address}`. */
  balances: Map<string, bigint>;
  roles: Record<LedgerRole, Set<string>>;
  nonces: Map<string, bigint>;
  paused: boolean;
  supply: bigint;
  events: OnChainSettlement[];
  retirements: Retired[];
  /** Current key per device id (64 hex), and every DeviceKeySet, oldest first. */
  deviceKeys: Map<string, string>;
  keyEvents: DeviceKeyRecord[];
  block: number;
  /** The ledger's fixed window length (ms); learnt from the first settlement when not given. */
  windowMs?: number;
}

interface Queued {
  apply: (s: State, block: number, txHash: string) => unknown;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

export function clone(s: State): State {
  return {
    facilities: new Map([...s.facilities].map(([k, v]) => [k, { ...v, limits: { ...v.limits }, ...(v.pending ? { pending: { ...v.pending } } : {}) }])),
    batches: new Map([...s.batches].map(([k, v]) => [k, { ...v }])),
    balances: new Map(s.balances),
    roles: { admin: new Set(s.roles.admin), regulator: new Set(s.roles.regulator), oracle: new Set(s.roles.oracle) },
    nonces: new Map(s.nonces),
    paused: s.paused,
    supply: s.supply,
    events: [...s.events],
    retirements: s.retirements.map((r) => ({ ...r, parts: r.parts.map((p) => ({ ...p })) })),
    deviceKeys: new Map(s.deviceKeys),
    keyEvents: [...s.keyEvents],
    block: s.block,
    ...(s.windowMs !== undefined ? { windowMs: s.windowMs } : {}),
  };
}

export function revert(name: string, ...args: unknown[]): LedgerRevertError {
  return new LedgerRevertError({ name, args }, undefined);
}

export const secs = (ms: number) => BigInt(Math.floor(ms / 1000));

/** The token id of a facility's batch of `vintage`, as the contract makes it (key prefix | vintage). */
export function batchIdOf(facilityId: string, vintage: number): bigint {
  return ((BigInt(facilityKey(facilityId)) >> 32n) << 32n) | BigInt(vintage);
}

function nextVintage(v: number): number {
  return v % 100 === 12 ? (Math.floor(v / 100) + 1) * 100 + 1 : v + 1;
}

/** The cap per window of these limits (CreditLedger `_cap`). */
export function capOf(l: Pick<MemoryLimits, 'baselineMgPerHour' | 'exportGPerHour'>, windowMs: number): bigint {
  return ((l.baselineMgPerHour + l.exportGPerHour * 1000n) * BigInt(windowMs / 1000)) / 3_600_000n;
}

/** The chain shared by every MemoryLedger connected to it. */
export class MemoryChain {
  s: State;
  /** Mined transactions (reverted ones excluded). */
  transactions = 0;
  readonly calls: string[] = [];
  readonly writes: string[] = [];
  /** Block time, epoch ms (default the wall clock). */
  now: () => number = () => Date.now();
  private readonly snapshots: State[] = [];
  private mempool: Queued[] = [];
  private tx = 0;

  /** A fresh ledger whose every role `deployer` holds (as the contract's constructor does by default). */
  constructor(deployer: string = MEMORY_SIGNER, windowMs?: number) {
    const d = ethers.getAddress(deployer);
    this.s = {
      facilities: new Map(),
      batches: new Map(),
      balances: new Map(),
      roles: { admin: new Set([d]), regulator: new Set([d]), oracle: new Set([d]) },
      nonces: new Map(),
      paused: false,
      supply: 0n,
      events: [],
      retirements: [],
      deviceKeys: new Map(),
      keyEvents: [],
      block: 0,
      ...(windowMs !== undefined ? { windowMs } : {}),
    };
  }

  /** Checks `apply` against the current state (estimateGas), then queues it for the next block. */
  send<R>(apply: (s: State, block: number, txHash: string) => R): Promise<R> {
    try {
      apply(clone(this.s), this.s.block + 1, '0x0'); // throws the revert before anything is sent
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise<R>((resolve, reject) => {
      if (this.mempool.length === 0) setImmediate(() => this.mine());
      this.mempool.push({ apply, resolve: resolve as (v: unknown) => void, reject });
    });
  }

  /** Mines every queued transaction in one block, in order; each reverts alone. */
  mine(): void {
    const txs = this.mempool;
    this.mempool = [];
    if (txs.length === 0) return;
    const block = ++this.s.block;
    for (const q of txs) {
      const draft = clone(this.s);
      const txHash = `0x${(++this.tx).toString(16).padStart(64, '0')}`;
      try {
        const r = q.apply(draft, block, txHash);
        this.s = draft;
        this.transactions++;
        q.resolve(r);
      } catch (e) {
        q.reject(e);
      }
    }
  }

  snapshot(): number {
    this.snapshots.push(clone(this.s));
    return this.snapshots.length - 1;
  }

  /** The chain loses every block since `snapshot` (the snapshot stays usable). */
  revertTo(id: number): void {
    this.s = clone(this.snapshots[id]);
  }
}

export function txInfo(txHash: string, block: number, gasUsed = 50_000n): TxInfo {
  return { txHash, blockNumber: block, gasUsed };
}

/** Applies a pending limits change due at `start` (CreditLedger `_applyPending`). */
function applyPending(f: MemoryFacility, start: number, windowMs: number): void {
  if (!f.pending || f.pending.effectiveFrom > start) return;
  f.limits = f.pending;
  f.cap = capOf(f.limits, windowMs);
  delete f.pending;
}

/** The balance of `holder` in batch `id` (the owner's is kept in the batch). */
export function balanceIn(s: State, id: string, holder: string): bigint {
  const b = s.batches.get(id);
  if (!b) return 0n;
  const f = s.facilities.get(b.facilityId);
  if (f && f.owner === holder) return b.ownerBalance;
  return s.balances.get(`${id}:${holder}`) ?? 0n;
}

/**
 * Burns `amount` from the owner's holdings of the facility's batches, oldest vintage first; what
 * they cannot cover becomes deficit (CreditLedger `_burnFromOwner`). Returns the grams burned.
 */
function burnFromOwner(s: State, facilityId: string, f: MemoryFacility, amount: bigint): bigint {
  let burned = 0n;
  if (f.deficit === 0n) {
    for (let v = f.firstVintage; v <= f.currentVintage && burned < amount; v = nextVintage(v)) {
      const b = s.batches.get(batchIdOf(facilityId, v).toString());
      if (!b) continue;
      const take = b.ownerBalance < amount - burned ? b.ownerBalance : amount - burned;
      b.ownerBalance -= take;
      b.taken += take;
      burned += take;
    }
  }
  f.deficit += amount - burned;
  if (f.deficit > MAX_ABS_NET) throw revert('TotalOutOfRange', facilityKey(facilityId));
  s.supply -= burned;
  return burned;
}

/** CreditLedger `_settle` (with skipSettled, as settleBatch calls it). */
export function settleOne(s: State, x: SettlementEntry, block: number, txHash: string, blockTime: number): SettlementResult {
  const key = facilityKey(x.facilityId);
  const f = s.facilities.get(x.facilityId);
  if (!f) throw revert('FacilityNotRegistered', key);
  if (x.windowStart !== f.next) {
    if (x.windowStart > f.next) throw revert('WindowOutOfOrder', key, secs(f.next), secs(x.windowStart));
    const original = s.events.find((e) => e.facilityId === x.facilityId && e.windowStart === x.windowStart);
    return {
      facilityId: x.facilityId,
      windowStart: x.windowStart,
      status: 'skipped',
      mintedGrams: original?.mintedGrams ?? 0n,
      burnedGrams: original?.burnedGrams ?? 0n,
      deficitGrams: original?.deficitGrams ?? 0n,
      ...(original ? { original: { ...original } } : {}),
    };
  }
  s.windowMs ??= x.windowEnd - x.windowStart;
  const windowMs = s.windowMs;
  const end = x.windowStart + windowMs;
  if (end > blockTime) throw revert('WindowNotEnded', key, secs(end), secs(blockTime));
  applyPending(f, x.windowStart, windowMs);
  f.cap = capOf(f.limits, windowMs);
  if (x.netGrams > f.cap) throw revert('NetAboveCap', key, x.netGrams, f.cap);
  if (x.netGrams < -MAX_ABS_NET) throw revert('NetOutOfRange', key, x.netGrams);
  const v = vintageOf(x.windowStart);
  if (f.currentVintage === 0) f.firstVintage = v;
  f.currentVintage = v;
  const id = batchIdOf(x.facilityId, v).toString();
  let b = s.batches.get(id);
  if (!b) {
    b = { facilityId: x.facilityId, vintage: v, issued: 0n, taken: 0n, retired: 0n, ownerBalance: 0n };
    s.batches.set(id, b);
  }
  let minted = 0n;
  let firstSerial = 0n;
  let burned = 0n;
  if (x.netGrams > 0n) {
    // A gain pays the deficit first; the rest is minted into the window's vintage batch.
    const paid = x.netGrams < f.deficit ? x.netGrams : f.deficit;
    minted = x.netGrams - paid;
    f.deficit -= paid;
    if (minted > 0n) {
      if (b.issued + minted > MAX64 || b.ownerBalance + minted > MAX_ABS_NET) throw revert('TotalOutOfRange', key);
      firstSerial = b.issued + 1n;
      b.issued += minted;
      b.ownerBalance += minted;
      s.supply += minted;
    }
  } else if (x.netGrams < 0n) {
    burned = burnFromOwner(s, x.facilityId, f, -x.netGrams);
  }
  f.next = end;
  const event: OnChainSettlement = {
    facilityId: x.facilityId,
    facilityKey: key,
    windowStart: x.windowStart,
    windowEnd: end,
    netGrams: x.netGrams,
    mintedGrams: minted,
    firstSerial,
    burnedGrams: burned,
    deficitGrams: f.deficit,
    evidenceRoot: ethers.zeroPadValue(x.evidenceRoot, 32).toLowerCase(),
    txHash,
    blockNumber: block,
  };
  s.events.push(event);
  return { facilityId: x.facilityId, windowStart: x.windowStart, status: 'settled', mintedGrams: minted, burnedGrams: burned, deficitGrams: f.deficit };
}

/** CreditLedger `_requireHealthy`: the owner's credits of a facility in deficit or lagging are frozen. */
function requireHealthy(s: State, facilityId: string, f: MemoryFacility, blockTime: number): void {
  if (f.deficit > 0n) throw revert('FacilityInDeficit', facilityKey(facilityId), f.deficit);
  if (s.windowMs !== undefined && f.next + 3 * s.windowMs <= Math.floor(blockTime / 1000) * 1000) throw revert('FacilityLagging', facilityKey(facilityId), secs(f.next));
}

/** CreditLedger `_retire`. */
export function retireFrom(
  s: State,
  holder: string,
  batchIds: bigint[],
  amounts: bigint[],
  beneficiary: string,
  reason: string,
  now: number,
  txHash: string,
  request?: SignedRetirement,
): RetirementReceipt {
  if (batchIds.length !== amounts.length) throw revert('ERC1155InvalidArrayLength', BigInt(batchIds.length), BigInt(amounts.length));
  if (batchIds.length === 0 || batchIds.length > MAX_RETIRE_BATCHES) throw revert('InvalidRetirementBatchCount', BigInt(batchIds.length));
  const b = Buffer.byteLength(beneficiary, 'utf8');
  if (b === 0) throw revert('MissingBeneficiary');
  if (b > MAX_TEXT_LENGTH) throw revert('RetirementTextTooLong', BigInt(b), BigInt(MAX_TEXT_LENGTH));
  const r = Buffer.byteLength(reason, 'utf8');
  if (r > MAX_TEXT_LENGTH) throw revert('RetirementTextTooLong', BigInt(r), BigInt(MAX_TEXT_LENGTH));
  const id = BigInt(s.retirements.length + 1);
  const rec: Retired = { id, account: holder, facilityIds: [], parts: [], amountGrams: 0n, beneficiary, reason, retiredAt: Number(secs(now)) * 1000, txHash, ...(request ? { request } : {}) };
  for (let i = 0; i < batchIds.length; i++) {
    const bid = batchIds[i];
    const amount = amounts[i];
    if (amount === 0n || amount > MAX64) throw revert('InvalidRetirementAmount', amount);
    const batch = s.batches.get(bid.toString());
    const f = batch ? s.facilities.get(batch.facilityId) : undefined;
    if (!batch || !f) throw revert('BatchNotFound', bid);
    if (f.suspended) throw revert('FacilityIsSuspended', facilityKey(batch.facilityId));
    const owner = f.owner === holder;
    if (owner) requireHealthy(s, batch.facilityId, f, now);
    const held = balanceIn(s, bid.toString(), holder);
    if (held < amount) throw revert('ERC1155InsufficientBalance', holder, held, amount, bid);
    if (owner) batch.ownerBalance -= amount;
    else s.balances.set(`${bid}:${holder}`, held - amount);
    const first = batch.taken + 1n;
    batch.taken += amount;
    batch.retired += amount;
    rec.parts.push({ batchId: bid.toString(), facilityId: batch.facilityId, vintage: batch.vintage, amountGrams: amount, firstSerial: first, lastSerial: first + amount - 1n });
    if (!rec.facilityIds.includes(batch.facilityId)) rec.facilityIds.push(batch.facilityId);
    rec.amountGrams += amount;
  }
  s.supply -= rec.amountGrams;
  s.retirements.push(rec);
  return { id, txHash };
}

/** CreditLedger `_move` (safeTransferFrom by the holder itself). */
export function transferFrom(s: State, from: string, to: string, batchId: bigint, amount: bigint, now: number): void {
  if (to === ethers.ZeroAddress) throw revert('ERC1155InvalidReceiver', to);
  const id = batchId.toString();
  const batch = s.batches.get(id);
  const f = batch ? s.facilities.get(batch.facilityId) : undefined;
  if (!batch || !f) throw revert('BatchNotFound', batchId);
  if (f.suspended) throw revert('FacilityIsSuspended', facilityKey(batch.facilityId));
  if (from === f.owner || to === f.owner) requireHealthy(s, batch.facilityId, f, now);
  const held = balanceIn(s, id, from);
  if (held < amount) throw revert('ERC1155InsufficientBalance', from, held, amount, batchId);
  if (from === f.owner) batch.ownerBalance -= amount;
  else s.balances.set(`${id}:${from}`, held - amount);
  if (to === f.owner) batch.ownerBalance += amount;
  else s.balances.set(`${id}:${to}`, (s.balances.get(`${id}:${to}`) ?? 0n) + amount);
}

/** Whether `req.signature` is the holder's EIP-712 signature of the request over MEMORY_DOMAIN. */
export function verifyRetirement(req: SignedRetirement): boolean {
  try {
    const value = { holder: req.holder, batchIds: req.batchIds, amounts: req.amounts, beneficiary: req.beneficiary, reason: req.reason, nonce: req.nonce, deadline: req.deadline };
    return ethers.getAddress(ethers.verifyTypedData(MEMORY_DOMAIN, RETIRE_TYPES, value, req.signature)) === ethers.getAddress(req.holder);
  } catch {
    return false;
  }
}
