/**
 * The one in-memory ledger for tests: the ledger port (contracts/client/port.ts) with the rules of
 * contracts/CreditLedger.sol, failing as the ethers client does (LedgerRevertError with the contract's
 * custom error and arguments: facility keys, UNIX seconds). test/contracts/memory-ledger.test.ts runs
 * the same scenarios here and on the real contract and compares the results step by step.
 * - Roles (REGULATOR for the registry, ORACLE for settlement, admin for roles and pause), pause,
 *   owner rules (non-zero, several facilities per owner, owner change / removal only before the
 *   first settlement), window order (earlier -> skipped in a batch, later -> WindowOutOfOrder), the
 *   guards (one fixed window length, learnt from the first settlement unless given; the window must
 *   have ended by the block time -> WindowNotEnded; net above baseline + export allowance ->
 *   NetAboveCap), settlement amounts (a gain pays the facility's deficit first, then mints into the
 *   batch of the window's vintage; a loss burns the owner's holdings of the facility's batches,
 *   oldest vintage first, the rest becomes deficit), serials, freezes (suspension; deficit or a lag
 *   of more than two windows for the owner), retirements over several batches with EIP-712
 *   signatures and nonces. An owner address with a bad EIP-55 checksum fails in the client as ethers
 *   does, before any transaction; a baseline with more than 6 decimals fails as VALIDATION.
 * - Transactions do not land at once: a call is checked against the current state when sent (like
 *   estimateGas), then waits in a mempool and is mined with the others sent in the same tick, in
 *   order, in one block; a transaction that fails when mined reverts alone (all or nothing). Admin
 *   calls (roles, pause) apply at once: the test is the administrator.
 * - Blocks are numbered, events carry theirs; `snapshot()` / `revertTo()` make the chain lose blocks
 *   (a reorganisation or a restored state).
 * - For inspection: `calls` (every port method called, by name), `writes` (each write with its
 *   arguments), `facilities`, `batchRows`, `events`, `retirementRows`, `settledCounts()`.
 */
import { ethers } from 'ethers';
import {
  MAX_BATCH,
  type BatchView,
  type Holding,
  type DeviceKeyRecord,
  type FacilityView,
  type LedgerAdminPort,
  type LedgerPort,
  type LedgerRole,
  type OnChainSettlement,
  type RetirementReceipt,
  type RetirementRecord,
  type SettleBatchResult,
  type SettlementEntry,
  type SettlementResult,
  type SignedRetirement,
  type TxInfo,
} from '../../contracts/client/port.ts';
import { bytes32ToPublicKey, deviceIdKey, facilityKey, kgPerHourToMg, LEDGER_ROLES, mgToKgPerHour, publicKeyToBytes32, toSeconds } from '../../contracts/client/units.ts';
import { errors } from '../../domain/errors.ts';
import { balanceIn, batchIdOf, capOf, MAX_DEVICE_ID_LENGTH, MAX_FACILITY_ID_LENGTH, MEMORY_SIGNER, MemoryChain, retireFrom, revert, secs, settleOne, transferFrom, txInfo, verifyRetirement, type MemoryBatch, type MemoryFacility, type State } from './memory-chain.ts';

export { batchIdOf, MEMORY_DOMAIN, MEMORY_SIGNER, MemoryChain, verifyRetirement, type MemoryBatch, type MemoryFacility } from './memory-chain.ts';

export interface MemoryLedgerOptions {
  /** The chain to connect to (default a fresh one, every role held by `from`). */
  chain?: MemoryChain;
  /** The account this client signs with (default MEMORY_SIGNER). */
  from?: string;
  /**
   * Whether a retirement signature is the holder's. Default: EIP-712 recovery over MEMORY_DOMAIN, as
   * the contract does; tests whose holders have no key pass their own rule.
   */
  checkSignature?: (req: SignedRetirement) => boolean;
  /** The ledger's fixed window length, ms (default: learnt from the first settlement). */
  windowMs?: number;
}

export class MemoryLedger implements LedgerPort, LedgerAdminPort {
  readonly chain: MemoryChain;
  /** The account this client signs with. */
  readonly from: string;
  readonly #checkSignature: (req: SignedRetirement) => boolean;

  constructor(opts: MemoryLedgerOptions = {}) {
    this.from = ethers.getAddress(opts.from ?? MEMORY_SIGNER);
    this.chain = opts.chain ?? new MemoryChain(this.from, opts.windowMs);
    this.#checkSignature = opts.checkSignature ?? verifyRetirement;
  }

  /** The same chain, signing as `from`. */
  connect(from: string): MemoryLedger {
    return new MemoryLedger({ chain: this.chain, from, checkSignature: this.#checkSignature });
  }

  get facilities(): Map<string, MemoryFacility> {
    return this.chain.s.facilities;
  }
  /** Batches by token id (decimal text). */
  get batchRows(): Map<string, MemoryBatch> {
    return this.chain.s.batches;
  }
  get events(): OnChainSettlement[] {
    return this.chain.s.events;
  }
  get retirementRows(): RetirementRecord[] {
    return this.chain.s.retirements;
  }
  get calls(): string[] {
    return this.chain.calls;
  }
  get writes(): string[] {
    return this.chain.writes;
  }
  get transactions(): number {
    return this.chain.transactions;
  }
  snapshot(): number {
    return this.chain.snapshot();
  }
  revertTo(id: number): void {
    this.chain.revertTo(id);
  }

  /** WindowSettled events per `${facilityId}-${windowStart}`. */
  settledCounts(): Map<string, number> {
    const m = new Map<string, number>();
    for (const e of this.chain.s.events) m.set(`${e.facilityId}-${e.windowStart}`, (m.get(`${e.facilityId}-${e.windowStart}`) ?? 0) + 1);
    return m;
  }

  /**
   * Test setup: a batch of `facilityId` of `vintage` with these totals, as if settled (the owner holds
   * `ownerBalance`; the facility's deficit set when given); no event is recorded.
   */
  setBatch(facilityId: string, vintage: number, totals: Partial<Pick<MemoryBatch, 'issued' | 'retired' | 'ownerBalance'>> & { burned?: bigint; deficit?: bigint }): string {
    const s = this.chain.s;
    const f = s.facilities.get(facilityId);
    if (!f) throw new Error(`facility ${facilityId} is not registered`);
    const id = batchIdOf(facilityId, vintage).toString();
    const issued = totals.issued ?? totals.ownerBalance ?? 0n;
    const retired = totals.retired ?? 0n;
    const b: MemoryBatch = { facilityId, vintage, issued, retired, taken: retired + (totals.burned ?? 0n), ownerBalance: totals.ownerBalance ?? issued - retired - (totals.burned ?? 0n) };
    const old = s.batches.get(id);
    s.supply += b.issued - b.taken - (old ? old.issued - old.taken : 0n);
    s.batches.set(id, b);
    if (f.firstVintage === 0 || vintage < f.firstVintage) f.firstVintage = vintage;
    if (vintage > f.currentVintage) f.currentVintage = vintage;
    if (totals.deficit !== undefined) f.deficit = totals.deficit;
    return id;
  }

  /**
   * Test setup: a retirement certificate as if a block had made it (block time filled in when not
   * given; parts from `parts`); no balance moves.
   */
  recordRetirement(r: Omit<RetirementRecord, 'id' | 'retiredAt' | 'facilityIds'> & Partial<Pick<RetirementRecord, 'id' | 'retiredAt'>>): RetirementRecord {
    const s = this.chain.s;
    const rec: RetirementRecord = {
      ...r,
      id: r.id ?? BigInt(s.retirements.length + 1),
      facilityIds: [...new Set(r.parts.map((p) => p.facilityId))],
      retiredAt: r.retiredAt ?? Number(secs(this.chain.now())) * 1000,
    };
    s.retirements.push(rec);
    return rec;
  }

  // ----- admin (applied at once)

  async hasRole(role: LedgerRole, who: string): Promise<boolean> {
    return this.chain.s.roles[role].has(ethers.getAddress(who));
  }
  grantRole(role: LedgerRole, who: string): Promise<TxInfo> {
    return this.#admin(`grantRole ${role} ${who}`, (s) => s.roles[role].add(ethers.getAddress(who)));
  }
  revokeRole(role: LedgerRole, who: string): Promise<TxInfo> {
    return this.#admin(`revokeRole ${role} ${who}`, (s) => s.roles[role].delete(ethers.getAddress(who)));
  }
  pause(): Promise<TxInfo> {
    return this.#admin('pause', (s) => {
      if (s.paused) throw revert('EnforcedPause');
      s.paused = true;
    });
  }
  unpause(): Promise<TxInfo> {
    return this.#admin('unpause', (s) => {
      if (!s.paused) throw revert('ExpectedPause');
      s.paused = false;
    });
  }
  async paused(): Promise<boolean> {
    return this.chain.s.paused;
  }

  #admin(what: string, change: (s: State) => void): Promise<TxInfo> {
    this.writes.push(what);
    try {
      this.#need(this.chain.s, 'admin');
      change(this.chain.s);
    } catch (e) {
      return Promise.reject(e);
    }
    return Promise.resolve(txInfo('0x' + '00'.repeat(32), this.chain.s.block));
  }

  #need(s: State, role: LedgerRole): void {
    if (!s.roles[role].has(this.from)) throw revert('AccessControlUnauthorizedAccount', this.from, LEDGER_ROLES[role]);
  }

  #registered(s: State, id: string): MemoryFacility {
    const f = s.facilities.get(id);
    if (!f) throw revert('FacilityNotRegistered', facilityKey(id));
    return f;
  }

  #unsettled(s: State, id: string): MemoryFacility {
    const f = this.#registered(s, id);
    if (f.next !== f.first) throw revert('FacilityHasSettlements', facilityKey(id));
    return f;
  }

  // ----- reads

  async blockNumber(): Promise<number> {
    this.calls.push('blockNumber');
    return this.chain.s.block;
  }

  async facility(id: string): Promise<FacilityView> {
    this.calls.push('facility');
    const f = this.chain.s.facilities.get(id);
    if (!f) {
      return {
        registered: false,
        owner: ethers.ZeroAddress,
        suspended: false,
        nextWindowStart: 0,
        baselineKgPerHour: '0',
        baselineEffectiveFrom: 0,
        capGramsPerWindow: 0n,
        deficitGrams: 0n,
        mintedGrams: 0n,
        burnedGrams: 0n,
        retiredGrams: 0n,
        ownerHeldGrams: 0n,
      };
    }
    const batches = this.#batchesOf(id);
    const sum = (fn: (b: BatchView) => bigint) => batches.reduce((a, b) => a + fn(b), 0n);
    const limits = f.pending ?? f.limits;
    return {
      registered: true,
      owner: f.owner,
      suspended: f.suspended,
      nextWindowStart: f.next,
      baselineKgPerHour: mgToKgPerHour(limits.baselineMgPerHour),
      baselineEffectiveFrom: limits.effectiveFrom,
      capGramsPerWindow: f.cap,
      deficitGrams: f.deficit,
      mintedGrams: sum((b) => b.issuedGrams),
      burnedGrams: sum((b) => b.burnedGrams),
      retiredGrams: sum((b) => b.retiredGrams),
      ownerHeldGrams: sum((b) => b.ownerBalanceGrams),
    };
  }

  async batches(facilityId: string): Promise<BatchView[]> {
    this.calls.push('batches');
    return this.#batchesOf(facilityId);
  }

  async holdings(account: string): Promise<Holding[]> {
    this.calls.push('holdings');
    const who = ethers.getAddress(account);
    const out: Holding[] = [];
    for (const [id, b] of [...this.chain.s.batches].sort((x, y) => (BigInt(x[0]) < BigInt(y[0]) ? -1 : 1))) {
      const balance = balanceIn(this.chain.s, id, who);
      if (balance > 0n) out.push({ batch: this.#view(id, b), balanceGrams: balance });
    }
    return out;
  }

  /** What an account holds over every batch, grams. */
  async heldBy(account: string): Promise<bigint> {
    return (await this.holdings(account)).reduce((a, h) => a + h.balanceGrams, 0n);
  }

  #batchesOf(facilityId: string): BatchView[] {
    return [...this.chain.s.batches]
      .filter(([, b]) => b.facilityId === facilityId)
      .sort((x, y) => x[1].vintage - y[1].vintage)
      .map(([id, b]) => this.#view(id, b));
  }

  #view(id: string, b: MemoryBatch): BatchView {
    return {
      id,
      facilityId: b.facilityId,
      facilityKey: facilityKey(b.facilityId),
      vintage: b.vintage,
      issuedGrams: b.issued,
      retiredGrams: b.retired,
      burnedGrams: b.taken - b.retired,
      supplyGrams: b.issued - b.taken,
      ownerBalanceGrams: b.ownerBalance,
    };
  }

  async settlementAt(facilityId: string, windowStart: number): Promise<OnChainSettlement | undefined> {
    this.calls.push('settlementAt');
    toSeconds(windowStart, 'windowStart');
    const e = this.chain.s.events.find((x) => x.facilityId === facilityId && x.windowStart === windowStart);
    return e ? { ...e } : undefined;
  }

  async settlements(filter: { facilityId?: string; fromBlock?: number; windowStart?: number } = {}): Promise<OnChainSettlement[]> {
    this.calls.push('settlements');
    return this.chain.s.events
      .filter((e) => (filter.facilityId === undefined || e.facilityId === filter.facilityId) && (filter.windowStart === undefined || e.windowStart === filter.windowStart) && e.blockNumber >= (filter.fromBlock ?? 0))
      .map((e) => ({ ...e }));
  }

  async retirements(filter: { account?: string; facilityId?: string } = {}): Promise<RetirementRecord[]> {
    this.calls.push('retirements');
    return this.chain.s.retirements
      .filter((r) => (filter.account === undefined || r.account.toLowerCase() === filter.account.toLowerCase()) && (filter.facilityId === undefined || r.facilityIds.includes(filter.facilityId)))
      .map(({ request: _request, ...r }) => ({ ...r, parts: r.parts.map((p) => ({ ...p })) }));
  }

  async retirement(id: bigint): Promise<RetirementRecord | undefined> {
    this.calls.push('retirement');
    const r = this.chain.s.retirements.find((x) => x.id === id);
    if (!r) return undefined;
    const { request: _request, ...rest } = r;
    return { ...rest, parts: r.parts.map((p) => ({ ...p })) };
  }

  async retirementOfRequest(req: SignedRetirement): Promise<RetirementReceipt | undefined> {
    this.calls.push('retirementOfRequest');
    const holder = ethers.getAddress(req.holder);
    if ((this.chain.s.nonces.get(holder) ?? 0n) <= req.nonce) return undefined;
    const r = [...this.chain.s.retirements].reverse().find((x) => {
      const q = x.request;
      return q && ethers.getAddress(q.holder) === holder && q.nonce === req.nonce && sameList(q.batchIds, req.batchIds) && sameList(q.amounts, req.amounts) && q.beneficiary === req.beneficiary && q.reason === req.reason && q.deadline === req.deadline;
    });
    return r ? { id: r.id, txHash: r.txHash! } : undefined;
  }

  resetNonce(): void {
    this.calls.push('resetNonce');
  }

  // ----- registry (REGULATOR)

  async registerFacility(id: string, owner: string, baselineKgPerHour: string, firstWindowStart: number): Promise<TxInfo> {
    this.calls.push('registerFacility');
    this.writes.push(`register ${id} ${owner} ${baselineKgPerHour} ${firstWindowStart}`);
    const who = ethers.getAddress(owner); // a bad checksum fails here, as in the real client
    const mg = kgPerHourToMg(baselineKgPerHour);
    toSeconds(firstWindowStart, 'firstWindowStart');
    return this.chain.send((s, block, txHash) => {
      this.#need(s, 'regulator');
      const length = Buffer.byteLength(id, 'utf8');
      if (length === 0 || length > MAX_FACILITY_ID_LENGTH || !/^[A-Za-z0-9_-]+$/.test(id)) throw revert('InvalidFacilityId', BigInt(length));
      if (who === ethers.ZeroAddress) throw revert('InvalidFacilityOwner', who);
      if (s.facilities.has(id)) throw revert('FacilityAlreadyRegistered', facilityKey(id));
      if (s.windowMs !== undefined && firstWindowStart % s.windowMs !== 0) throw revert('MisalignedWindow', facilityKey(id), secs(firstWindowStart));
      if (mg >= 1n << 96n) throw revert('SafeCastOverflowedUintDowncast', 96n, mg);
      const limits = { baselineMgPerHour: mg, exportGPerHour: 0n, effectiveFrom: firstWindowStart };
      s.facilities.set(id, { owner: who, next: firstWindowStart, first: firstWindowStart, suspended: false, limits, cap: this.#cap(s, limits), firstVintage: 0, currentVintage: 0, deficit: 0n });
      return txInfo(txHash, block);
    });
  }

  async setFacilitySuspended(id: string, suspended: boolean): Promise<TxInfo> {
    this.calls.push('setFacilitySuspended');
    this.writes.push(`suspend ${id} ${suspended}`);
    return this.chain.send((s, block, txHash) => {
      this.#need(s, 'regulator');
      this.#registered(s, id).suspended = suspended;
      return txInfo(txHash, block);
    });
  }

  async setBaseline(id: string, baselineKgPerHour: string, effectiveFrom: number): Promise<TxInfo> {
    this.calls.push('setBaseline');
    this.writes.push(`baseline ${id} ${baselineKgPerHour} ${effectiveFrom}`);
    const mg = kgPerHourToMg(baselineKgPerHour);
    toSeconds(effectiveFrom, 'effectiveFrom');
    return this.chain.send((s, block, txHash) => {
      this.#need(s, 'regulator');
      this.#schedule(s, id, effectiveFrom, (l) => (l.baselineMgPerHour = mg));
      return txInfo(txHash, block);
    });
  }

  /** Schedules an export allowance (g/h) from `effectiveFrom` (CreditLedger `setExportAllowance`). */
  async setExportAllowance(id: string, gramsPerHour: bigint, effectiveFrom: number): Promise<TxInfo> {
    this.calls.push('setExportAllowance');
    this.writes.push(`exportAllowance ${id} ${gramsPerHour} ${effectiveFrom}`);
    toSeconds(effectiveFrom, 'effectiveFrom');
    return this.chain.send((s, block, txHash) => {
      this.#need(s, 'regulator');
      this.#schedule(s, id, effectiveFrom, (l) => (l.exportGPerHour = gramsPerHour));
      return txInfo(txHash, block);
    });
  }

  /** CreditLedger `_nextLimits` + `_scheduleLimits`. */
  #schedule(s: State, id: string, effectiveFrom: number, change: (l: { baselineMgPerHour: bigint; exportGPerHour: bigint; effectiveFrom: number }) => void): void {
    const f = this.#registered(s, id);
    const key = facilityKey(id);
    if (effectiveFrom < f.next) throw revert('BaselineEffectiveTooEarly', key, secs(effectiveFrom), secs(f.next));
    if (s.windowMs !== undefined && effectiveFrom % s.windowMs !== 0) throw revert('MisalignedWindow', key, secs(effectiveFrom));
    let base = { ...f.limits, effectiveFrom };
    if (f.pending) {
      if (f.pending.effectiveFrom <= f.next) {
        f.limits = f.pending;
        delete f.pending;
        base = { ...f.limits, effectiveFrom };
      } else if (f.pending.effectiveFrom !== effectiveFrom) {
        throw revert('LimitsChangePending', key, secs(f.pending.effectiveFrom));
      } else {
        base = { ...f.pending };
      }
    }
    change(base);
    if (base.baselineMgPerHour >= 1n << 96n) throw revert('SafeCastOverflowedUintDowncast', 96n, base.baselineMgPerHour);
    const cap = this.#cap(s, base);
    if (effectiveFrom === f.next) {
      f.limits = base;
      f.cap = cap;
      delete f.pending;
    } else {
      f.pending = base;
    }
  }

  async setFacilityOwner(id: string, owner: string): Promise<TxInfo> {
    this.calls.push('setFacilityOwner');
    this.writes.push(`owner ${id} ${owner}`);
    const who = ethers.getAddress(owner);
    return this.chain.send((s, block, txHash) => {
      this.#need(s, 'regulator');
      const f = this.#unsettled(s, id);
      if (who === f.owner) return txInfo(txHash, block);
      if (who === ethers.ZeroAddress) throw revert('InvalidFacilityOwner', who);
      f.owner = who;
      return txInfo(txHash, block);
    });
  }

  async deregisterFacility(id: string): Promise<TxInfo> {
    this.calls.push('deregisterFacility');
    this.writes.push(`deregister ${id}`);
    return this.chain.send((s, block, txHash) => {
      this.#need(s, 'regulator');
      this.#unsettled(s, id);
      s.facilities.delete(id);
      return txInfo(txHash, block);
    });
  }

  // ----- device keys (REGULATOR)

  async setDeviceKey(deviceId: string, publicKeyHex: string): Promise<TxInfo> {
    this.calls.push('setDeviceKey');
    this.writes.push(`deviceKey ${deviceId} ${publicKeyHex}`);
    const word = publicKeyToBytes32(publicKeyHex);
    return this.chain.send((s, block, txHash) => {
      this.#need(s, 'regulator');
      const length = Buffer.byteLength(deviceId, 'utf8');
      if (length === 0 || length > MAX_DEVICE_ID_LENGTH) throw revert('InvalidDeviceRecord');
      const key = bytes32ToPublicKey(word);
      const previous = s.deviceKeys.get(deviceId) ?? null;
      if (previous === key) return txInfo(txHash, block);
      if (key === null) s.deviceKeys.delete(deviceId);
      else s.deviceKeys.set(deviceId, key);
      s.keyEvents.push({ deviceId, deviceKey: deviceIdKey(deviceId), publicKey: key, previousKey: previous, txHash, blockNumber: block });
      return txInfo(txHash, block);
    });
  }

  async deviceKey(deviceId: string): Promise<string | undefined> {
    this.calls.push('deviceKey');
    return this.chain.s.deviceKeys.get(deviceId);
  }

  async deviceKeys(deviceId?: string): Promise<DeviceKeyRecord[]> {
    this.calls.push('deviceKeys');
    return this.chain.s.keyEvents.filter((e) => deviceId === undefined || e.deviceId === deviceId).map((e) => ({ ...e }));
  }

  // ----- settlement (ORACLE)

  async settleBatch(entries: SettlementEntry[]): Promise<SettleBatchResult> {
    this.calls.push('settleBatch');
    this.writes.push(`settle ${entries.map((e) => `${e.facilityId}@${e.windowStart}:${e.netGrams}`).join(' ')}`);
    if (entries.length === 0) throw errors.VALIDATION('settleBatch needs at least one input');
    if (entries.length > MAX_BATCH) throw errors.VALIDATION(`settleBatch takes at most ${MAX_BATCH} inputs, got ${entries.length}`);
    for (const e of entries) {
      toSeconds(e.windowStart, 'windowStart');
      toSeconds(e.windowEnd, 'windowEnd');
    }
    if (this.chain.s.windowMs !== undefined) {
      for (const e of entries) {
        if (e.windowEnd - e.windowStart !== this.chain.s.windowMs) throw errors.CONFIG_INVALID(`the ledger's windows are ${this.chain.s.windowMs / 1000} s, but ${e.facilityId}'s window at ${e.windowStart} is ${(e.windowEnd - e.windowStart) / 1000} s (WINDOW_SECONDS must match the deployed ledger)`);
      }
    }
    const now = this.chain.now();
    return this.chain.send((s, block, txHash) => {
      this.#need(s, 'oracle');
      if (s.paused) throw revert('EnforcedPause');
      const results: SettlementResult[] = [];
      for (const x of entries) results.push(settleOne(s, x, block, txHash, now));
      return { ...txInfo(txHash, block, 21_000n + 30_000n * BigInt(entries.length)), results };
    });
  }

  // ----- retirement

  async retireWithSig(req: SignedRetirement): Promise<RetirementReceipt> {
    this.calls.push('retireWithSig');
    this.writes.push(`retire ${req.holder} ${req.batchIds.join(',')}:${req.amounts.join(',')} ${req.nonce} ${req.deadline}`);
    const holder = ethers.getAddress(req.holder);
    const now = this.chain.now();
    return this.chain.send((s, _block, txHash) => {
      if (s.paused) throw revert('EnforcedPause');
      if (secs(now) > BigInt(req.deadline)) throw revert('RetirementSignatureExpired', BigInt(req.deadline));
      const nonce = s.nonces.get(holder) ?? 0n;
      if (req.nonce !== nonce) throw revert('InvalidAccountNonce', holder, nonce);
      s.nonces.set(holder, nonce + 1n);
      if (!this.#checkSignature(req)) throw revert('InvalidRetirementSignature', holder);
      return retireFrom(s, holder, req.batchIds, req.amounts, req.beneficiary, req.reason, now, txHash, req);
    });
  }

  /** The holder's own retirement (CreditLedger `retire`), sent as this client's account. */
  async retire(batchIds: bigint[], amounts: bigint[], beneficiary: string, reason: string): Promise<RetirementReceipt> {
    this.calls.push('retire');
    this.writes.push(`retire ${this.from} ${batchIds.join(',')}:${amounts.join(',')}`);
    const now = this.chain.now();
    return this.chain.send((s, _block, txHash) => {
      if (s.paused) throw revert('EnforcedPause');
      return retireFrom(s, this.from, batchIds, amounts, beneficiary, reason, now, txHash);
    });
  }

  /** ERC-1155 safeTransferFrom by the holder (this client's account). */
  async transfer(to: string, batchId: bigint, amount: bigint): Promise<TxInfo> {
    this.calls.push('transfer');
    this.writes.push(`transfer ${this.from} ${to} ${batchId}:${amount}`);
    const who = ethers.getAddress(to);
    const now = this.chain.now();
    return this.chain.send((s, block, txHash) => {
      if (s.paused) throw revert('EnforcedPause');
      transferFrom(s, this.from, who, batchId, amount, now);
      return txInfo(txHash, block);
    });
  }

  #cap(s: State, l: { baselineMgPerHour: bigint; exportGPerHour: bigint }): bigint {
    // Before the window length is known (no settlement yet), the cap is computed at settlement.
    return s.windowMs === undefined ? (1n << 56n) - 1n : capOf(l, s.windowMs);
  }
}

/** The port's methods (what faultyLedger wraps). */
const PORT_METHODS = new Set<string>([
  'blockNumber',
  'facility',
  'batches',
  'holdings',
  'registerFacility',
  'setFacilitySuspended',
  'setBaseline',
  'setFacilityOwner',
  'deregisterFacility',
  'setDeviceKey',
  'deviceKey',
  'deviceKeys',
  'settleBatch',
  'settlementAt',
  'settlements',
  'retirements',
  'retirement',
  'retireWithSig',
  'retirementOfRequest',
] satisfies (keyof LedgerPort)[]);

/**
 * Wraps a ledger so its calls fail ABOVE the signer (an RPC outage seen by the client, or the send
 * succeeding and its answer "timing out"). Faults below the signer (nonce handling, tx.wait) are
 * tested against anvil behind test/helpers/rpc-proxy.ts.
 */
export function faultyLedger(inner: LedgerPort, plan: { down?: () => boolean; timeoutAfterSend?: () => boolean }): LedgerPort {
  const down = () => {
    if (plan.down?.()) throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8545'), { code: 'ECONNREFUSED' });
  };
  // A plain object of the port's methods (spreadable, so a test can override some of them).
  const out: Record<string, unknown> = { resetNonce: () => inner.resetNonce() };
  for (const m of PORT_METHODS) {
    const fn = (inner[m as keyof LedgerPort] as (...a: unknown[]) => Promise<unknown>).bind(inner);
    out[m] = async (...a: unknown[]) => {
      down();
      const res = await fn(...a);
      if (m === 'settleBatch' && plan.timeoutAfterSend?.()) throw Object.assign(new Error('request timeout'), { code: 'TIMEOUT' });
      return res;
    };
  }
  return out as unknown as LedgerPort;
}

function sameList(a: bigint[], b: bigint[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
