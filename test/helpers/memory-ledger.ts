/**
 * The one in-memory ledger for tests: the ledger port (contracts/client/port.ts) with the rules of
 * contracts/CarbonLedger.sol, failing as the ethers client does (LedgerRevertError with the contract's
 * custom error and arguments: facility keys, UNIX seconds). test/contracts/memory-ledger.test.ts runs
 * the same scenarios here and on the real contract and compares the results.
 * - Roles (REGULATOR for the registry, ORACLE for settlement, admin for roles and pause), pause,
 *   owner rules (non-zero, one facility per owner, owner change / removal only before the first
 *   settlement), window order (earlier -> skipped in a batch, later -> WindowOutOfOrder, empty ->
 *   InvalidWindow), settlement amounts (a gain pays the deficit first, then mints; a loss burns the
 *   balance, the rest becomes deficit), range checks, retirements with EIP-712 signatures and nonces.
 *   An owner address with a bad EIP-55 checksum fails in the client as ethers does, before any
 *   transaction; a baseline with more than 6 decimals fails as VALIDATION.
 * - Transactions do not land at once: a call is checked against the current state when sent (like
 *   estimateGas), then waits in a mempool and is mined with the others sent in the same tick, in
 *   order, in one block; a transaction that fails when mined reverts alone (all or nothing). Admin
 *   calls (roles, pause) apply at once: the test is the administrator.
 * - Blocks are numbered, events carry theirs; `snapshot()` / `revertTo()` make the chain lose blocks
 *   (a reorganisation or a restored state).
 * - For inspection: `calls` (every port method called, by name), `writes` (each write with its
 *   arguments), `facilities`, `accounts`, `events`, `retirementRows`, `settledCounts()`.
 */
import { ethers } from 'ethers';
import {
  MAX_BATCH,
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
import { account, MAX_DEVICE_ID_LENGTH, MAX_FACILITY_ID_LENGTH, MEMORY_SIGNER, MemoryChain, retireFrom, revert, secs, settleOne, txInfo, verifyRetirement, type MemoryAccount, type MemoryFacility, type State } from './memory-chain.ts';

export { MEMORY_DOMAIN, MEMORY_SIGNER, MemoryChain, verifyRetirement, type MemoryAccount, type MemoryFacility } from './memory-chain.ts';

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
}

export class MemoryLedger implements LedgerPort, LedgerAdminPort {
  readonly chain: MemoryChain;
  /** The account this client signs with. */
  readonly from: string;
  readonly #checkSignature: (req: SignedRetirement) => boolean;

  constructor(opts: MemoryLedgerOptions = {}) {
    this.from = ethers.getAddress(opts.from ?? MEMORY_SIGNER);
    this.chain = opts.chain ?? new MemoryChain(this.from);
    this.#checkSignature = opts.checkSignature ?? verifyRetirement;
  }

  /** The same chain, signing as `from`. */
  connect(from: string): MemoryLedger {
    return new MemoryLedger({ chain: this.chain, from, checkSignature: this.#checkSignature });
  }

  get facilities(): Map<string, MemoryFacility> {
    return this.chain.s.facilities;
  }
  /** Owner totals by checksummed address. */
  get accounts(): Map<string, MemoryAccount> {
    return this.chain.s.accounts;
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

  /** Test setup: overwrites the totals of a registered facility's owner (and its retired grams). */
  setTotals(facilityId: string, totals: Partial<MemoryAccount & { retiredGrams: bigint }>): void {
    const f = this.chain.s.facilities.get(facilityId);
    if (!f) throw new Error(`facility ${facilityId} is not registered`);
    const { retiredGrams, ...rest } = totals;
    const a = account(this.chain.s, f.owner);
    this.chain.s.supply += (rest.balance ?? a.balance) - a.balance;
    Object.assign(a, rest);
    if (retiredGrams !== undefined) f.retiredGrams = retiredGrams;
  }

  /**
   * Test setup: a retirement record as if a block had retired it (the holder's facility and the
   * block time filled in when not given); no balance moves.
   */
  recordRetirement(r: Omit<RetirementRecord, 'id' | 'facilityKey' | 'retiredAt'> & Partial<Pick<RetirementRecord, 'id' | 'retiredAt'>>): RetirementRecord {
    const s = this.chain.s;
    const facilityId = r.facilityId ?? s.owners.get(ethers.getAddress(r.account));
    const rec: RetirementRecord = {
      ...r,
      id: r.id ?? BigInt(s.retirements.length + 1),
      facilityKey: facilityId === undefined ? ethers.ZeroHash : facilityKey(facilityId),
      ...(facilityId !== undefined ? { facilityId } : {}),
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
    if (f.next !== f.first) throw revert('FacilityHasSettlements', facilityKey(id), secs(f.next));
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
      return { registered: false, owner: ethers.ZeroAddress, suspended: false, nextWindowStart: 0, baselineKgPerHour: '0', baselineEffectiveFrom: 0, deficitGrams: 0n, mintedGrams: 0n, burnedGrams: 0n, retiredGrams: 0n };
    }
    const a = this.chain.s.accounts.get(f.owner) ?? { balance: 0n, mintedGrams: 0n, burnedGrams: 0n, deficitGrams: 0n };
    return {
      registered: true,
      owner: f.owner,
      suspended: f.suspended,
      nextWindowStart: f.next,
      baselineKgPerHour: f.baselineKgPerHour,
      baselineEffectiveFrom: f.baselineEffectiveFrom,
      deficitGrams: a.deficitGrams,
      mintedGrams: a.mintedGrams,
      burnedGrams: a.burnedGrams,
      retiredGrams: f.retiredGrams,
    };
  }

  async balanceOf(owner: string): Promise<bigint> {
    this.calls.push('balanceOf');
    return this.chain.s.accounts.get(ethers.getAddress(owner))?.balance ?? 0n;
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
      .filter((r) => (filter.account === undefined || r.account.toLowerCase() === filter.account.toLowerCase()) && (filter.facilityId === undefined || r.facilityId === filter.facilityId))
      .map(({ request: _request, ...r }) => ({ ...r }));
  }

  async retirementOfRequest(req: SignedRetirement): Promise<RetirementReceipt | undefined> {
    this.calls.push('retirementOfRequest');
    const holder = ethers.getAddress(req.holder);
    if ((this.chain.s.nonces.get(holder) ?? 0n) <= req.nonce) return undefined;
    const r = [...this.chain.s.retirements].reverse().find((x) => {
      const q = x.request;
      return q && ethers.getAddress(q.holder) === holder && q.nonce === req.nonce && q.amount === req.amount && q.beneficiary === req.beneficiary && q.reason === req.reason && q.deadline === req.deadline;
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
    const baseline = mgToKgPerHour(kgPerHourToMg(baselineKgPerHour));
    toSeconds(firstWindowStart, 'firstWindowStart');
    return this.chain.send((s, block, txHash) => {
      this.#need(s, 'regulator');
      const length = Buffer.byteLength(id, 'utf8');
      if (length === 0 || length > MAX_FACILITY_ID_LENGTH) throw revert('InvalidFacilityId', BigInt(length));
      if (who === ethers.ZeroAddress) throw revert('InvalidFacilityOwner', who);
      if (s.facilities.has(id)) throw revert('FacilityAlreadyRegistered', facilityKey(id));
      const existing = s.owners.get(who);
      if (existing !== undefined) throw revert('OwnerAlreadyHasFacility', who, facilityKey(existing));
      s.facilities.set(id, { owner: who, next: firstWindowStart, first: firstWindowStart, suspended: false, baselineKgPerHour: baseline, baselineEffectiveFrom: firstWindowStart, retiredGrams: 0n });
      s.owners.set(who, id);
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
    const baseline = mgToKgPerHour(kgPerHourToMg(baselineKgPerHour));
    toSeconds(effectiveFrom, 'effectiveFrom');
    return this.chain.send((s, block, txHash) => {
      this.#need(s, 'regulator');
      const f = this.#registered(s, id);
      if (effectiveFrom < f.next) throw revert('BaselineEffectiveTooEarly', facilityKey(id), secs(effectiveFrom), secs(f.next));
      f.baselineKgPerHour = baseline;
      f.baselineEffectiveFrom = effectiveFrom;
      return txInfo(txHash, block);
    });
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
      const existing = s.owners.get(who);
      if (existing !== undefined) throw revert('OwnerAlreadyHasFacility', who, facilityKey(existing));
      s.owners.delete(f.owner);
      s.owners.set(who, id);
      f.owner = who;
      return txInfo(txHash, block);
    });
  }

  async deregisterFacility(id: string): Promise<TxInfo> {
    this.calls.push('deregisterFacility');
    this.writes.push(`deregister ${id}`);
    return this.chain.send((s, block, txHash) => {
      this.#need(s, 'regulator');
      const f = this.#unsettled(s, id);
      s.owners.delete(f.owner);
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
      if (s.paused) throw revert('EnforcedPause');
      const length = Buffer.byteLength(deviceId, 'utf8');
      if (length === 0 || length > MAX_DEVICE_ID_LENGTH) throw revert('InvalidDeviceId', BigInt(length));
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
    return this.chain.send((s, block, txHash) => {
      this.#need(s, 'oracle');
      if (s.paused) throw revert('EnforcedPause');
      const results: SettlementResult[] = [];
      for (const x of entries) results.push(settleOne(s, x, block, txHash));
      return { ...txInfo(txHash, block, 21_000n + 30_000n * BigInt(entries.length)), results };
    });
  }

  // ----- retirement

  async retireWithSig(req: SignedRetirement): Promise<RetirementReceipt> {
    this.calls.push('retireWithSig');
    this.writes.push(`retire ${req.holder} ${req.amount} ${req.nonce} ${req.deadline}`);
    const holder = ethers.getAddress(req.holder);
    const now = this.chain.now();
    return this.chain.send((s, _block, txHash) => {
      if (s.paused) throw revert('EnforcedPause');
      if (secs(now) > BigInt(req.deadline)) throw revert('RetirementSignatureExpired', BigInt(req.deadline));
      const nonce = s.nonces.get(holder) ?? 0n;
      if (req.nonce !== nonce) throw revert('InvalidAccountNonce', holder, nonce);
      s.nonces.set(holder, nonce + 1n);
      if (!this.#checkSignature(req)) throw revert('InvalidRetirementSignature', holder);
      return retireFrom(s, holder, req.amount, req.beneficiary, req.reason, now, txHash, req);
    });
  }

  /** The holder's own retirement (CarbonLedger `retire`), sent as this client's account. */
  async retire(amount: bigint, beneficiary: string, reason: string): Promise<RetirementReceipt> {
    this.calls.push('retire');
    this.writes.push(`retire ${this.from} ${amount}`);
    const now = this.chain.now();
    return this.chain.send((s, _block, txHash) => {
      if (s.paused) throw revert('EnforcedPause');
      return retireFrom(s, this.from, amount, beneficiary, reason, now, txHash);
    });
  }
}

/** The port's methods (what faultyLedger wraps). */
const PORT_METHODS = new Set<string>([
  'blockNumber',
  'facility',
  'balanceOf',
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
