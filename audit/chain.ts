/**
 * The auditor's only window on the chain (audit/audit.ts ChainView), read with ethers and the event
 * ABI alone: no artifact, no platform code, no key. Settlements are CarbonLedger's `WindowSettled`
 * events; device keys are its `DeviceKeySet` events (the regulator's record of every key set or
 * rotated), so a key swapped in the platform's database alone is not among them. A ledger deployed
 * before device keys (no `deviceKey` view) answers "records no keys".
 */
import { ethers } from 'ethers';
import type { ChainView } from './audit.ts';

const ABI = [
  'event WindowSettled(bytes32 indexed facility, uint64 windowStart, uint64 windowEnd, int256 netGrams, uint256 minted, uint256 burned, uint256 deficitAfter, bytes32 evidenceRoot)',
  'event DeviceKeySet(bytes32 indexed device, string deviceId, bytes32 publicKey, bytes32 previousKey)',
  'function deviceKey(bytes32 device) view returns (bytes32)',
];
/** Blocks per eth_getLogs request (what public RPC endpoints commonly allow). */
const RANGE = 10_000;

export interface ChainViewOptions {
  rpcUrl: string;
  ledger: string;
  /** First block to search (the ledger's deployment block); default 0. */
  startBlock?: number;
}

export function carbonLedgerView(opts: ChainViewOptions): ChainView & { close(): void } {
  if (!ethers.isAddress(opts.ledger)) throw new TypeError(`--ledger ${opts.ledger} is not an address`);
  const provider = new ethers.JsonRpcProvider(opts.rpcUrl, undefined, { staticNetwork: true });
  const contract = new ethers.Contract(opts.ledger, ABI, provider);
  const start = opts.startBlock ?? 0;
  return {
    async settlement(facilityId, windowStart) {
      const filter = contract.filters.WindowSettled(ethers.id(facilityId));
      let to = await provider.getBlockNumber();
      // Newest range first: a recent settlement is found in one request.
      while (to >= start) {
        const from = Math.max(start, to - RANGE + 1);
        const logs = await contract.queryFilter(filter, from, to);
        for (let i = logs.length - 1; i >= 0; i--) {
          const log = logs[i] as ethers.EventLog;
          const a = log.args;
          if (Number(a.windowStart) * 1000 === windowStart) {
            return { windowEnd: Number(a.windowEnd) * 1000, netGrams: a.netGrams as bigint, evidenceRoot: a.evidenceRoot as string, txHash: log.transactionHash };
          }
        }
        to = from - 1;
      }
      return undefined;
    },
    async deviceKeys(_facilityId, deviceId) {
      const device = ethers.id(deviceId);
      try {
        await contract.deviceKey(device);
      } catch (e) {
        // A node that answers but a ledger without the view: it records no keys. Anything else
        // (the node unreachable) is an error, never "no keys".
        if (ethers.isError(e, 'CALL_EXCEPTION') || ethers.isError(e, 'BAD_DATA')) return undefined;
        throw e;
      }
      // Every key the regulator ever recorded for the device (a rotated key still verifies the
      // readings signed before the rotation); a revocation (0) adds none.
      const keys = new Set<string>();
      const head = await provider.getBlockNumber();
      for (let from = start; from <= head; from += RANGE) {
        const logs = await contract.queryFilter(contract.filters.DeviceKeySet(device), from, Math.min(head, from + RANGE - 1));
        for (const log of logs) {
          const a = (log as ethers.EventLog).args;
          if (a.deviceId !== deviceId) continue;
          const hex = (a.publicKey as string).toLowerCase().slice(2);
          if (!/^0+$/.test(hex)) keys.add(hex);
        }
      }
      return [...keys];
    },
    close() {
      provider.destroy();
    },
  };
}
