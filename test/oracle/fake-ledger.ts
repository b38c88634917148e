/**
 * An in-memory ledger with the contract's rules (contracts/CarbonLedger.sol), for the oracle's fast
 * tests; the fault tests run the same scenarios against the real contract (Hardhat, anvil).
 * - Reverts as the contract: roles (REGULATOR for the registry, ORACLE for settlement), pause, owner
 *   rules (non-zero, one facility per owner, owner change / removal only before the first
 *   settlement), window order (earlier -> skipped in a batch, later -> WindowOutOfOrder, empty ->
 *   InvalidWindow), NetOutOfRange (|net| >= 2^64), TotalOutOfRange. An owner address with a bad
 *   EIP-55 checksum fails in the client as ethers does (INVALID_ARGUMENT), before any transaction.
 * - Transactions do not land at once: a call is checked against the current state when sent (like
 *   estimateGas), then waits in a mempool and is mined with the others sent in the same tick, in
 *   order, in one block; a transaction that fails when mined reverts alone (all or nothing).
 * - Blocks are numbered, events carry theirs; `snapshot()` / `revertTo()` make the chain lose blocks
 *   (a reorganisation or a restored state).
 */
import { ethers } from 'ethers';
import type { ChainFacilityState, ChainSettlement, OracleLedger, SettleBatchResult, SettleInput } from '../../oracle/ledger.ts';

interface FakeFacility {
  owner: string;
  next: number;
  first: number;
  suspended: boolean;
  baselineKgPerHour: string;
}

interface FakeAccount {
  balance: bigint;
  minted: bigint;
  burned: bigint;
  deficit: bigint;
  retired: bigint;
}

export interface FakeEvent {
  facilityId: string;
  windowStart: number;
  windowEnd: number;
  netGrams: bigint;
  mintedGrams: bigint;
  burnedGrams: bigint;
  deficitGrams: bigint;
  evidenceRoot: string;
  txHash: string;
  blockNumber: number;
}

interface State {
  facilities: Map<string, FakeFacility>;
  accounts: Map<string, FakeAccount>;
  owners: Map<string, string>;
  roles: { regulator: Set<string>; oracle: Set<string> };
  paused: boolean;
  supply: bigint;
  events: FakeEvent[];
  block: number;
}

export class RevertError extends Error {
  readonly code = 'CALL_EXCEPTION';
  readonly errorName: string;
  constructor(errorName: string, args: unknown[] = []) {
    super(`execution reverted: ${errorName}(${args.map(String).join(', ')})`);
    this.errorName = errorName;
  }
}

const MAX64 = (1n << 64n) - 1n;
/** The account the fake signs with by default: it holds the oracle and regulator roles. */
export const FAKE_SIGNER = '0x00000000000000000000000000000000000000A1';

interface Queued {
  apply: (s: State, block: number, txHash: string) => unknown;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/** The chain shared by every FakeLedger connected to it. */
class FakeChain {
  s: State = {
    facilities: new Map(),
    accounts: new Map(),
    owners: new Map(),
    roles: { regulator: new Set([FAKE_SIGNER]), oracle: new Set([FAKE_SIGNER]) },
    paused: false,
    supply: 0n,
    events: [],
    block: 0,
  };
  transactions = 0;
  readonly calls: string[] = [];
  private readonly snapshots: State[] = [];
  private mempool: Queued[] = [];
  private tx = 0;

  /** Checks `apply` against the current state (estimateGas), then queues it for the next block. */
  send<R>(apply: (s: State, block: number, txHash: string) => R): Promise<R> {
    apply(clone(this.s), this.s.block + 1, '0x0'); // throws the revert before anything is sent
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

function clone(s: State): State {
  return {
    facilities: new Map([...s.facilities].map(([k, v]) => [k, { ...v }])),
    accounts: new Map([...s.accounts].map(([k, v]) => [k, { ...v }])),
    owners: new Map(s.owners),
    roles: { regulator: new Set(s.roles.regulator), oracle: new Set(s.roles.oracle) },
    paused: s.paused,
    supply: s.supply,
    events: [...s.events],
    block: s.block,
  };
}

function account(s: State, owner: string): FakeAccount {
  let a = s.accounts.get(owner);
  if (!a) {
    a = { balance: 0n, minted: 0n, burned: 0n, deficit: 0n, retired: 0n };
    s.accounts.set(owner, a);
  }
  return a;
}

export class FakeLedger implements OracleLedger {
  readonly chain: FakeChain;
  /** The account this client signs with. */
  readonly from: string;

  constructor(chain: FakeChain = new FakeChain(), from: string = FAKE_SIGNER) {
    this.chain = chain;
    this.from = ethers.getAddress(from);
  }

  /** The same chain, signing as `from`. */
  connect(from: string): FakeLedger {
    return new FakeLedger(this.chain, from);
  }

  get facilities(): Map<string, FakeFacility> {
    return this.chain.s.facilities;
  }
  get accounts(): Map<string, FakeAccount> {
    return this.chain.s.accounts;
  }
  get events(): FakeEvent[] {
    return this.chain.s.events;
  }
  get calls(): string[] {
    return this.chain.calls;
  }
  get transactions(): number {
    return this.chain.transactions;
  }

  // ----- admin (no role checks: the test is the admin)

  grantRole(role: 'regulator' | 'oracle', who: string): void {
    this.chain.s.roles[role].add(ethers.getAddress(who));
  }
  revokeRole(role: 'regulator' | 'oracle', who: string): void {
    this.chain.s.roles[role].delete(ethers.getAddress(who));
  }
  pause(paused = true): void {
    this.chain.s.paused = paused;
  }
  snapshot(): number {
    return this.chain.snapshot();
  }
  revertTo(id: number): void {
    this.chain.revertTo(id);
  }

  private need(s: State, role: 'regulator' | 'oracle'): void {
    if (!s.roles[role].has(this.from)) throw new RevertError('AccessControlUnauthorizedAccount', [this.from, role]);
  }

  private registered(s: State, id: string): FakeFacility {
    const f = s.facilities.get(id);
    if (!f) throw new RevertError('FacilityNotRegistered', [id]);
    return f;
  }

  // ----- reads

  async blockNumber(): Promise<number> {
    return this.chain.s.block;
  }

  async facility(id: string): Promise<ChainFacilityState> {
    this.calls.push('facility');
    const s = this.chain.s;
    const f = s.facilities.get(id);
    if (!f) return { registered: false, owner: ethers.ZeroAddress, suspended: false, nextWindowStart: 0, deficitGrams: 0n, mintedGrams: 0n, burnedGrams: 0n, retiredGrams: 0n };
    const a = s.accounts.get(f.owner) ?? { balance: 0n, minted: 0n, burned: 0n, deficit: 0n, retired: 0n };
    return { registered: true, owner: f.owner, suspended: f.suspended, nextWindowStart: f.next, deficitGrams: a.deficit, mintedGrams: a.minted, burnedGrams: a.burned, retiredGrams: a.retired, baselineKgPerHour: f.baselineKgPerHour };
  }

  async settlementAt(facilityId: string, windowStartMs: number): Promise<ChainSettlement | undefined> {
    this.calls.push('settlementAt');
    const e = this.chain.s.events.find((x) => x.facilityId === facilityId && x.windowStart === windowStartMs);
    return e ? { ...e } : undefined;
  }

  /** Owner balance (the ERC-20 balanceOf). */
  balanceOf(owner: string): bigint {
    return this.chain.s.accounts.get(ethers.getAddress(owner))?.balance ?? 0n;
  }

  /** WindowSettled events per `${facilityId}-${windowStart}`. */
  settledCounts(): Map<string, number> {
    const m = new Map<string, number>();
    for (const e of this.chain.s.events) m.set(`${e.facilityId}-${e.windowStart}`, (m.get(`${e.facilityId}-${e.windowStart}`) ?? 0) + 1);
    return m;
  }

  // ----- registry (REGULATOR)

  async registerFacility(id: string, owner: string, baselineKgPerHour: string, firstWindowStartMs: number): Promise<unknown> {
    this.calls.push('registerFacility');
    const who = ethers.getAddress(owner); // a bad checksum fails here, as in the real client
    return this.chain.send((s, _b, txHash) => {
      this.need(s, 'regulator');
      if (who === ethers.ZeroAddress) throw new RevertError('InvalidFacilityOwner', [who]);
      if (s.facilities.has(id)) throw new RevertError('FacilityAlreadyRegistered', [id]);
      const existing = s.owners.get(who);
      if (existing !== undefined) throw new RevertError('OwnerAlreadyHasFacility', [who, existing]);
      if (!/^\d+(\.\d{1,6})?$/.test(baselineKgPerHour)) throw new Error(`baseline must be a non-negative kg/h with at most 6 decimals: ${baselineKgPerHour}`);
      s.facilities.set(id, { owner: who, next: firstWindowStartMs, first: firstWindowStartMs, suspended: false, baselineKgPerHour });
      s.owners.set(who, id);
      return { txHash };
    });
  }

  async setFacilitySuspended(id: string, suspended: boolean): Promise<unknown> {
    this.calls.push('setFacilitySuspended');
    return this.chain.send((s) => {
      this.need(s, 'regulator');
      this.registered(s, id).suspended = suspended;
      return {};
    });
  }

  async setBaseline(id: string, baselineKgPerHour: string, effectiveFromMs?: number): Promise<unknown> {
    this.calls.push('setBaseline');
    return this.chain.send((s) => {
      this.need(s, 'regulator');
      const f = this.registered(s, id);
      if (effectiveFromMs !== undefined && effectiveFromMs < f.next) throw new RevertError('BaselineEffectiveTooEarly', [id, effectiveFromMs, f.next]);
      f.baselineKgPerHour = baselineKgPerHour;
      return {};
    });
  }

  async setFacilityOwner(id: string, owner: string): Promise<unknown> {
    this.calls.push('setFacilityOwner');
    const who = ethers.getAddress(owner);
    return this.chain.send((s) => {
      this.need(s, 'regulator');
      const f = this.registered(s, id);
      if (f.next !== f.first) throw new RevertError('FacilityHasSettlements', [id, f.next]);
      if (who === f.owner) return {};
      if (who === ethers.ZeroAddress) throw new RevertError('InvalidFacilityOwner', [who]);
      const existing = s.owners.get(who);
      if (existing !== undefined) throw new RevertError('OwnerAlreadyHasFacility', [who, existing]);
      s.owners.delete(f.owner);
      s.owners.set(who, id);
      f.owner = who;
      return {};
    });
  }

  async deregisterFacility(id: string): Promise<unknown> {
    this.calls.push('deregisterFacility');
    return this.chain.send((s) => {
      this.need(s, 'regulator');
      const f = this.registered(s, id);
      if (f.next !== f.first) throw new RevertError('FacilityHasSettlements', [id, f.next]);
      s.owners.delete(f.owner);
      s.facilities.delete(id);
      return {};
    });
  }

  // ----- settlement (ORACLE)

  async settleBatch(inputs: SettleInput[]): Promise<SettleBatchResult> {
    this.calls.push('settleBatch');
    return this.chain.send((s, block, txHash) => {
      this.need(s, 'oracle');
      if (s.paused) throw new RevertError('EnforcedPause');
      const results: SettleBatchResult['results'] = [];
      for (const x of inputs) {
        const f = this.registered(s, x.facilityId);
        if (x.windowStart !== f.next) {
          if (x.windowStart > f.next) throw new RevertError('WindowOutOfOrder', [x.facilityId, f.next, x.windowStart]);
          results.push({ facilityId: x.facilityId, windowStart: x.windowStart, status: 'skipped', mintedGrams: 0n, burnedGrams: 0n, deficitGrams: account(s, f.owner).deficit });
          continue;
        }
        if (x.windowEnd <= x.windowStart) throw new RevertError('InvalidWindow', [x.facilityId, x.windowStart, x.windowEnd]);
        if (x.netGrams > MAX64 || x.netGrams < -MAX64) throw new RevertError('NetOutOfRange', [x.facilityId, x.netGrams]);
        f.next = x.windowEnd;
        const a = account(s, f.owner);
        let minted = 0n;
        let burned = 0n;
        if (x.netGrams > 0n) {
          const paid = x.netGrams < a.deficit ? x.netGrams : a.deficit;
          minted = x.netGrams - paid;
          if (a.minted + minted > MAX64) throw new RevertError('TotalOutOfRange', [x.facilityId]);
          a.deficit -= paid;
          a.balance += minted;
          a.minted += minted;
          s.supply += minted;
          if (s.supply > MAX64) throw new RevertError('SupplyCapExceeded', [s.supply]);
        } else if (x.netGrams < 0n) {
          const amount = -x.netGrams;
          burned = amount < a.balance ? amount : a.balance;
          if (a.burned + burned > MAX64 || a.deficit + amount - burned > MAX64) throw new RevertError('TotalOutOfRange', [x.facilityId]);
          a.balance -= burned;
          a.burned += burned;
          a.deficit += amount - burned;
          s.supply -= burned;
        }
        s.events.push({ facilityId: x.facilityId, windowStart: x.windowStart, windowEnd: x.windowEnd, netGrams: x.netGrams, mintedGrams: minted, burnedGrams: burned, deficitGrams: a.deficit, evidenceRoot: x.evidenceRoot, txHash, blockNumber: block });
        results.push({ facilityId: x.facilityId, windowStart: x.windowStart, status: 'settled', mintedGrams: minted, burnedGrams: burned, deficitGrams: a.deficit });
      }
      return { txHash, gasUsed: 21_000n + 30_000n * BigInt(inputs.length), blockNumber: block, results };
    });
  }
}

/**
 * Wraps a ledger so chosen calls fail ABOVE the signer (an RPC outage seen by the client, or the send
 * succeeding and its answer "timing out"). Faults below the signer (nonce handling, tx.wait) are
 * tested against anvil behind test/helpers/rpc-proxy.ts.
 */
export function faultyLedger<L extends OracleLedger>(inner: L, plan: { down?: () => boolean; timeoutAfterSend?: () => boolean }): OracleLedger {
  const down = () => {
    if (plan.down?.()) throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8545'), { code: 'ECONNREFUSED' });
  };
  return {
    facility: async (id) => (down(), inner.facility(id)),
    registerFacility: async (...a) => (down(), inner.registerFacility(...a)),
    settlementAt: async (...a) => (down(), inner.settlementAt(...a)),
    setFacilitySuspended: inner.setFacilitySuspended ? async (...a) => (down(), inner.setFacilitySuspended!(...a)) : undefined,
    setBaseline: inner.setBaseline ? async (...a) => (down(), inner.setBaseline!(...a)) : undefined,
    setFacilityOwner: inner.setFacilityOwner ? async (...a) => (down(), inner.setFacilityOwner!(...a)) : undefined,
    blockNumber: inner.blockNumber ? async () => (down(), inner.blockNumber!()) : undefined,
    settleBatch: async (inputs) => {
      down();
      const res = await inner.settleBatch(inputs);
      if (plan.timeoutAfterSend?.()) throw Object.assign(new Error('request timeout'), { code: 'TIMEOUT' });
      return res;
    },
  };
}
