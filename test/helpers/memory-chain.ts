/**
 * The state and rules of the in-memory ledger (test/helpers/memory-ledger.ts): CarbonLedger's
 * storage as maps, its `_settle` and `_retire` rules, blocks mined from a mempool, snapshots.
 */
import { ethers } from 'ethers';
import { LedgerRevertError } from '../../contracts/client/errors.ts';
import { RETIRE_TYPES, type DeviceKeyRecord, type OnChainSettlement, type LedgerRole, type RetirementReceipt, type RetirementRecord, type SettlementEntry, type SettlementResult, type SignedRetirement, type TxInfo } from '../../contracts/client/port.ts';
import { facilityKey } from '../../contracts/client/units.ts';

const MAX64 = (1n << 64n) - 1n;
const MAX_TEXT_LENGTH = 256;
export const MAX_FACILITY_ID_LENGTH = 64;
export const MAX_DEVICE_ID_LENGTH = 64;
/** The account a MemoryLedger signs with by default: it holds every role. */
export const MEMORY_SIGNER = '0x00000000000000000000000000000000000000A1';
/** The EIP-712 domain the memory ledger checks signatures against (sign with it in tests). */
export const MEMORY_DOMAIN = { name: 'CarbonLedger', version: '1', chainId: 31337n, verifyingContract: '0x000000000000000000000000000000000000ca7b' };

export interface MemoryFacility {
  owner: string;
  /** epoch ms */
  next: number;
  first: number;
  suspended: boolean;
  baselineKgPerHour: string;
  baselineEffectiveFrom: number;
  retiredGrams: bigint;
}

export interface MemoryAccount {
  balance: bigint;
  mintedGrams: bigint;
  burnedGrams: bigint;
  deficitGrams: bigint;
}

export interface Retired extends RetirementRecord {
  /** The signed request that produced it (retireWithSig). */
  request?: SignedRetirement;
}

export interface State {
  facilities: Map<string, MemoryFacility>;
  accounts: Map<string, MemoryAccount>;
  owners: Map<string, string>;
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
}

interface Queued {
  apply: (s: State, block: number, txHash: string) => unknown;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

export function clone(s: State): State {
  return {
    facilities: new Map([...s.facilities].map(([k, v]) => [k, { ...v }])),
    accounts: new Map([...s.accounts].map(([k, v]) => [k, { ...v }])),
    owners: new Map(s.owners),
    roles: { admin: new Set(s.roles.admin), regulator: new Set(s.roles.regulator), oracle: new Set(s.roles.oracle) },
    nonces: new Map(s.nonces),
    paused: s.paused,
    supply: s.supply,
    events: [...s.events],
    retirements: s.retirements.map((r) => ({ ...r })),
    deviceKeys: new Map(s.deviceKeys),
    keyEvents: [...s.keyEvents],
    block: s.block,
  };
}

export function revert(name: string, ...args: unknown[]): LedgerRevertError {
  return new LedgerRevertError({ name, args }, undefined);
}

export const secs = (ms: number) => BigInt(Math.floor(ms / 1000));

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
  constructor(deployer: string = MEMORY_SIGNER) {
    const d = ethers.getAddress(deployer);
    this.s = {
      facilities: new Map(),
      accounts: new Map(),
      owners: new Map(),
      roles: { admin: new Set([d]), regulator: new Set([d]), oracle: new Set([d]) },
      nonces: new Map(),
      paused: false,
      supply: 0n,
      events: [],
      retirements: [],
      deviceKeys: new Map(),
      keyEvents: [],
      block: 0,
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

export function account(s: State, owner: string): MemoryAccount {
  let a = s.accounts.get(owner);
  if (!a) {
    a = { balance: 0n, mintedGrams: 0n, burnedGrams: 0n, deficitGrams: 0n };
    s.accounts.set(owner, a);
  }
  return a;
}

export function txInfo(txHash: string, block: number, gasUsed = 50_000n): TxInfo {
  return { txHash, blockNumber: block, gasUsed };
}

/** CarbonLedger `_settle` (with skipSettled, as settleBatch calls it). */
export function settleOne(s: State, x: SettlementEntry, block: number, txHash: string): SettlementResult {
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
  if (x.windowEnd <= x.windowStart) throw revert('InvalidWindow', key, secs(x.windowStart), secs(x.windowEnd));
  if (x.netGrams > MAX64 || x.netGrams < -MAX64) throw revert('NetOutOfRange', key, x.netGrams);
  f.next = x.windowEnd;
  const a = account(s, f.owner);
  let minted = 0n;
  let burned = 0n;
  if (x.netGrams > 0n) {
    // A gain pays the deficit first; the rest is minted.
    const paid = x.netGrams < a.deficitGrams ? x.netGrams : a.deficitGrams;
    minted = x.netGrams - paid;
    if (a.mintedGrams + minted > MAX64) throw revert('TotalOutOfRange', key);
    a.deficitGrams -= paid;
    a.balance += minted;
    a.mintedGrams += minted;
    s.supply += minted;
    if (s.supply > MAX64) throw revert('SupplyCapExceeded', s.supply);
  } else if (x.netGrams < 0n) {
    // A loss burns the balance; what the balance cannot cover becomes deficit.
    const amount = -x.netGrams;
    burned = amount < a.balance ? amount : a.balance;
    if (a.burnedGrams + burned > MAX64 || a.deficitGrams + amount - burned > MAX64) throw revert('TotalOutOfRange', key);
    a.balance -= burned;
    a.burnedGrams += burned;
    a.deficitGrams += amount - burned;
    s.supply -= burned;
  }
  const event: OnChainSettlement = {
    facilityId: x.facilityId,
    facilityKey: key,
    windowStart: x.windowStart,
    windowEnd: x.windowEnd,
    netGrams: x.netGrams,
    mintedGrams: minted,
    burnedGrams: burned,
    deficitGrams: a.deficitGrams,
    evidenceRoot: ethers.zeroPadValue(x.evidenceRoot, 32).toLowerCase(),
    txHash,
    blockNumber: block,
  };
  s.events.push(event);
  return { facilityId: x.facilityId, windowStart: x.windowStart, status: 'settled', mintedGrams: minted, burnedGrams: burned, deficitGrams: a.deficitGrams };
}

/** CarbonLedger `_retire`. */
export function retireFrom(s: State, holder: string, amount: bigint, beneficiary: string, reason: string, now: number, txHash: string, request?: SignedRetirement): RetirementReceipt {
  if (amount === 0n) throw revert('InvalidRetirementAmount', amount);
  const b = Buffer.byteLength(beneficiary, 'utf8');
  if (b === 0) throw revert('MissingBeneficiary');
  if (b > MAX_TEXT_LENGTH) throw revert('RetirementTextTooLong', BigInt(b), BigInt(MAX_TEXT_LENGTH));
  const r = Buffer.byteLength(reason, 'utf8');
  if (r > MAX_TEXT_LENGTH) throw revert('RetirementTextTooLong', BigInt(r), BigInt(MAX_TEXT_LENGTH));
  const facilityId = s.owners.get(holder);
  const f = facilityId === undefined ? undefined : s.facilities.get(facilityId);
  if (f?.suspended) throw revert('FacilityIsSuspended', facilityKey(facilityId!), holder);
  const a = account(s, holder);
  if (a.balance < amount) throw revert('ERC20InsufficientBalance', holder, a.balance, amount);
  a.balance -= amount;
  s.supply -= amount;
  if (f) f.retiredGrams += amount;
  const id = BigInt(s.retirements.length + 1);
  s.retirements.push({
    id,
    account: holder,
    facilityKey: facilityId === undefined ? ethers.ZeroHash : facilityKey(facilityId),
    ...(facilityId !== undefined ? { facilityId } : {}),
    amountGrams: amount,
    beneficiary,
    reason,
    retiredAt: Number(secs(now)) * 1000,
    txHash,
    ...(request ? { request } : {}),
  });
  return { id, txHash };
}

/** Whether `req.signature` is the holder's EIP-712 signature of the request over MEMORY_DOMAIN. */
export function verifyRetirement(req: SignedRetirement): boolean {
  try {
    const value = { holder: req.holder, amount: req.amount, beneficiary: req.beneficiary, reason: req.reason, nonce: req.nonce, deadline: req.deadline };
    return ethers.getAddress(ethers.verifyTypedData(MEMORY_DOMAIN, RETIRE_TYPES, value, req.signature)) === ethers.getAddress(req.holder);
  } catch {
    return false;
  }
}

