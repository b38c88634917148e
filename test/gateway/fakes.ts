/**
 * Small in-memory stand-ins for the chain and the broker, used where the real module is not the point
 * of the test (the real ones run in tamper/cli tests). They implement gateway/deps.ts interfaces.
 */
import type { ChainFacility, ChainRetirement, GatewayBroker, GatewayLedger, RetireWithSigRequest } from '../../gateway/deps.ts';

export interface FakeLedger extends GatewayLedger {
  calls: string[];
  chain: Map<string, ChainFacility>;
  balances: Map<string, bigint>;
  retirementRows: ChainRetirement[];
  reads: number;
}

/** A chain stand-in: facility state and balances in maps, every write recorded in `calls`. */
export function fakeLedger(): FakeLedger {
  const chain = new Map<string, ChainFacility>();
  const balances = new Map<string, bigint>();
  const retirementRows: ChainRetirement[] = [];
  const calls: string[] = [];
  let block = 1;
  const self: FakeLedger = {
    calls,
    chain,
    balances,
    retirementRows,
    reads: 0,
    async facility(id) {
      self.reads++;
      return (
        chain.get(id) ?? { registered: false, owner: '0x' + '0'.repeat(40), suspended: false, deficitGrams: 0n, mintedGrams: 0n, burnedGrams: 0n, retiredGrams: 0n }
      );
    },
    async balanceOf(address) {
      return balances.get(address.toLowerCase()) ?? 0n;
    },
    async registerFacility(id, owner, baseline, first) {
      calls.push(`register ${id} ${owner} ${baseline} ${first}`);
      chain.set(id, { registered: true, owner, suspended: false, nextWindowStart: BigInt(first), deficitGrams: 0n, mintedGrams: 0n, burnedGrams: 0n, retiredGrams: 0n });
      block++;
    },
    async setFacilitySuspended(id, suspended) {
      calls.push(`suspend ${id} ${suspended}`);
      const f = chain.get(id);
      if (f) f.suspended = suspended;
      block++;
    },
    async retirements(filter) {
      return retirementRows.filter(
        (r) => (!filter.facilityId || r.facilityId === filter.facilityId) && (!filter.account || r.account.toLowerCase() === filter.account.toLowerCase()),
      );
    },
    async retireWithSig(req: RetireWithSigRequest) {
      calls.push(`retire ${req.holder} ${req.amount} ${req.nonce} ${req.deadline}`);
      if (req.signature.endsWith('00')) {
        const err = Object.assign(new Error('execution reverted: InvalidSignature()'), { code: 'CALL_EXCEPTION', reason: 'InvalidSignature()' });
        throw err;
      }
      const id = BigInt(retirementRows.length + 1);
      retirementRows.push({ id, account: req.holder, amountGrams: req.amount, beneficiary: req.beneficiary, reason: req.reason, retiredAt: 1_700_000_000_000 });
      block++;
      return { txHash: '0x' + 'ab'.repeat(32), id };
    },
    async blockNumber() {
      return block;
    },
  };
  return self;
}

export function fakeBroker(): GatewayBroker & { disconnected: string[] } {
  const disconnected: string[] = [];
  return {
    disconnected,
    disconnectDevice(deviceId) {
      disconnected.push(`device:${deviceId}`);
    },
    disconnectFacility(facilityId) {
      disconnected.push(`facility:${facilityId}`);
    },
    ping: () => true,
  };
}
