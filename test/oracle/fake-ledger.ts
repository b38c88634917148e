/**
 * An in-memory ledger with the contract's settlement rules (contracts/CarbonLedger.sol `_settle`):
 * contiguity (windowStart must equal nextWindowStart; earlier -> skipped in a batch, later -> revert),
 * deficit pay-down before minting, burns capped at the balance with the rest added to the deficit.
 * For the oracle's fast tests; the fault tests run the same scenarios against the real contract.
 */
import type { ChainFacilityState, ChainSettlement, OracleLedger, SettleBatchResult, SettleInput } from '../../oracle/ledger.ts';

interface FakeFacility {
  owner: string;
  next: number;
  suspended: boolean;
  baselineKgPerHour: string;
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
}

export class RevertError extends Error {
  readonly code = 'CALL_EXCEPTION';
}

export class FakeLedger implements OracleLedger {
  readonly facilities = new Map<string, FakeFacility>();
  readonly accounts = new Map<string, { balance: bigint; minted: bigint; burned: bigint; deficit: bigint; retired: bigint }>();
  readonly events: FakeEvent[] = [];
  readonly calls: string[] = [];
  transactions = 0;
  private tx = 0;

  private account(owner: string) {
    let a = this.accounts.get(owner);
    if (!a) {
      a = { balance: 0n, minted: 0n, burned: 0n, deficit: 0n, retired: 0n };
      this.accounts.set(owner, a);
    }
    return a;
  }

  async facility(id: string): Promise<ChainFacilityState> {
    this.calls.push('facility');
    const f = this.facilities.get(id);
    if (!f) return { registered: false, owner: '0x0000000000000000000000000000000000000000', suspended: false, nextWindowStart: 0, deficitGrams: 0n, mintedGrams: 0n, burnedGrams: 0n, retiredGrams: 0n };
    const a = this.account(f.owner);
    return { registered: true, owner: f.owner, suspended: f.suspended, nextWindowStart: f.next, deficitGrams: a.deficit, mintedGrams: a.minted, burnedGrams: a.burned, retiredGrams: a.retired, baselineKgPerHour: f.baselineKgPerHour };
  }

  async registerFacility(id: string, owner: string, baselineKgPerHour: string, firstWindowStartMs: number): Promise<unknown> {
    this.calls.push('registerFacility');
    if (this.facilities.has(id)) throw new RevertError(`FacilityAlreadyRegistered(${id})`);
    this.transactions++;
    this.facilities.set(id, { owner, next: firstWindowStartMs, suspended: false, baselineKgPerHour });
    return { txHash: this.nextHash() };
  }

  async setFacilitySuspended(id: string, suspended: boolean): Promise<unknown> {
    this.calls.push('setFacilitySuspended');
    const f = this.facilities.get(id);
    if (!f) throw new RevertError(`FacilityNotRegistered(${id})`);
    this.transactions++;
    f.suspended = suspended;
    return {};
  }

  async setBaseline(id: string, baselineKgPerHour: string): Promise<unknown> {
    this.calls.push('setBaseline');
    const f = this.facilities.get(id);
    if (!f) throw new RevertError(`FacilityNotRegistered(${id})`);
    this.transactions++;
    f.baselineKgPerHour = baselineKgPerHour;
    return {};
  }

  async settleBatch(inputs: SettleInput[]): Promise<SettleBatchResult> {
    this.calls.push('settleBatch');
    // Validate first: any revert leaves no state change (the whole transaction reverts).
    const nexts = new Map<string, number>();
    for (const s of inputs) {
      const f = this.facilities.get(s.facilityId);
      if (!f) throw new RevertError(`FacilityNotRegistered(${s.facilityId})`);
      const next = nexts.get(s.facilityId) ?? f.next;
      if (s.windowStart > next) throw new RevertError(`WindowOutOfOrder(${s.facilityId}, ${next}, ${s.windowStart})`);
      if (s.windowStart === next) {
        if (s.windowEnd <= s.windowStart) throw new RevertError('InvalidWindow');
        nexts.set(s.facilityId, s.windowEnd);
      }
    }
    this.transactions++;
    const txHash = this.nextHash();
    const results: SettleBatchResult['results'] = [];
    for (const s of inputs) {
      const f = this.facilities.get(s.facilityId) as FakeFacility;
      if (s.windowStart !== f.next) {
        results.push({ facilityId: s.facilityId, windowStart: s.windowStart, status: 'skipped', mintedGrams: 0n, burnedGrams: 0n, deficitGrams: this.account(f.owner).deficit });
        continue;
      }
      f.next = s.windowEnd;
      const a = this.account(f.owner);
      let minted = 0n;
      let burned = 0n;
      if (s.netGrams > 0n) {
        const paid = s.netGrams < a.deficit ? s.netGrams : a.deficit;
        minted = s.netGrams - paid;
        a.deficit -= paid;
        a.balance += minted;
        a.minted += minted;
      } else if (s.netGrams < 0n) {
        const amount = -s.netGrams;
        burned = amount < a.balance ? amount : a.balance;
        a.balance -= burned;
        a.burned += burned;
        a.deficit += amount - burned;
      }
      this.events.push({ facilityId: s.facilityId, windowStart: s.windowStart, windowEnd: s.windowEnd, netGrams: s.netGrams, mintedGrams: minted, burnedGrams: burned, deficitGrams: a.deficit, evidenceRoot: s.evidenceRoot, txHash });
      results.push({ facilityId: s.facilityId, windowStart: s.windowStart, status: 'settled', mintedGrams: minted, burnedGrams: burned, deficitGrams: a.deficit });
    }
    return { txHash, gasUsed: 21_000n + 30_000n * BigInt(inputs.length), results };
  }

  async settlementAt(facilityId: string, windowStartMs: number): Promise<ChainSettlement | undefined> {
    this.calls.push('settlementAt');
    const e = this.events.find((x) => x.facilityId === facilityId && x.windowStart === windowStartMs);
    return e ? { ...e } : undefined;
  }

  /** Owner balance (the ERC-20 balanceOf). */
  balanceOf(owner: string): bigint {
    return this.account(owner).balance;
  }

  /** WindowSettled events per `${facilityId}-${windowStart}`. */
  settledCounts(): Map<string, number> {
    const m = new Map<string, number>();
    for (const e of this.events) m.set(`${e.facilityId}-${e.windowStart}`, (m.get(`${e.facilityId}-${e.windowStart}`) ?? 0) + 1);
    return m;
  }

  private nextHash(): string {
    return `0x${(++this.tx).toString(16).padStart(64, '0')}`;
  }
}

/** Wraps a ledger so chosen calls fail (an RPC outage) or the send succeeds and then "times out". */
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
    settleBatch: async (inputs) => {
      down();
      const res = await inner.settleBatch(inputs);
      if (plan.timeoutAfterSend?.()) throw Object.assign(new Error('request timeout'), { code: 'TIMEOUT' });
      return res;
    },
  };
}
