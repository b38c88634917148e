/**
 * The auditor's only window on the chain (audit/audit.ts ChainView), read with ethers and the event
 * ABI alone: no artifact, no platform code, no key. Today's CarbonLedger settles with
 * `WindowSettled` and records no device keys; when the ledger records keys (an event per key set or
 * rotated), `deviceKeys` reads that event here and nothing else changes.
 */
import { ethers } from 'ethers';
import type { ChainView } from './audit.ts';

const ABI = [
  'event WindowSettled(bytes32 indexed facility, uint64 windowStart, uint64 windowEnd, int256 netGrams, uint256 minted, uint256 burned, uint256 deficitAfter, bytes32 evidenceRoot)',
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
    async deviceKeys() {
      return undefined; // CarbonLedger records no device keys (yet): see the file comment.
    },
    close() {
      provider.destroy();
    },
  };
}
