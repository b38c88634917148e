/**
 * What an independent auditor reads from a CreditLedger (`npm run audit`, audit/chain.ts): a window's
 * `WindowSettled` event (its end from the ledger's fixed `windowSeconds()`) and a device's
 * `DeviceKeySet` events, read with this ABI alone (no artifact, no key, no platform state), so an
 * auditor needs neither a compile nor the operator.
 * A ledger deployed before device keys (no `deviceKey` view) answers "records no keys" (undefined).
 */
import { ethers } from 'ethers';
import { errors } from '../../domain/errors.ts';
import { readCall } from './connect.ts';
import { bytes32ToPublicKey, deviceIdKey, facilityKey, toSeconds } from './units.ts';

const ABI = [
  'event WindowSettled(bytes32 indexed facility, uint64 windowStart, int256 netGrams, uint256 minted, uint256 firstSerial, uint256 deficitAfter, bytes32 evidenceRoot)',
  'function windowSeconds() view returns (uint64)',
  'event DeviceKeySet(bytes32 indexed device, string deviceId, bytes32 publicKey, bytes32 previousKey)',
  'function deviceKey(bytes32 device) view returns (bytes32)',
];
/** Blocks per eth_getLogs request (what public RPC endpoints commonly allow). */
const RANGE = 10_000;

export interface SettledWindow {
  windowEnd: number;
  netGrams: bigint;
  evidenceRoot: string;
  txHash: string;
}

export interface LedgerEvidence {
  /** The settlement of the facility window starting at `windowStart` (ms), undefined when none. */
  settlement(facilityId: string, windowStart: number): Promise<SettledWindow | undefined>;
  /**
   * Every key the regulator ever recorded for the device (64 lowercase hex, oldest first; a rotated
   * key still verifies the readings signed before the rotation; a revocation adds none), or undefined
   * when the ledger records no device keys. A node that does not answer is an error, never "no keys".
   */
  deviceKeys(deviceId: string): Promise<string[] | undefined>;
  close(): void;
}

export function openLedgerEvidence(opts: { rpcUrl: string; address: string; startBlock?: number }): LedgerEvidence {
  if (!ethers.isAddress(opts.address)) throw errors.VALIDATION(`${String(opts.address).slice(0, 80)} is not an address`);
  const provider = new ethers.JsonRpcProvider(opts.rpcUrl, undefined, { staticNetwork: true });
  const contract = new ethers.Contract(ethers.getAddress(opts.address), ABI, provider);
  const start = opts.startBlock ?? 0;
  return {
    async settlement(facilityId, windowStart) {
      toSeconds(windowStart, 'windowStart');
      const filter = contract.filters.WindowSettled(facilityKey(facilityId));
      const windowMs = Number(await readCall<bigint>(() => contract.windowSeconds())) * 1000;
      let to = await readCall(() => provider.getBlockNumber());
      // Newest range first: a recent settlement is found in one request.
      while (to >= start) {
        const from = Math.max(start, to - RANGE + 1);
        const logs = await readCall(() => contract.queryFilter(filter, from, to));
        for (let i = logs.length - 1; i >= 0; i--) {
          const log = logs[i] as ethers.EventLog;
          const a = log.args;
          if (Number(a.windowStart) * 1000 === windowStart) {
            return { windowEnd: windowStart + windowMs, netGrams: a.netGrams as bigint, evidenceRoot: a.evidenceRoot as string, txHash: log.transactionHash };
          }
        }
        to = from - 1;
      }
      return undefined;
    },
    async deviceKeys(deviceId) {
      const device = deviceIdKey(deviceId);
      try {
        await contract.deviceKey(device);
      } catch (e) {
        // A node that answers but a ledger without the view: it records no keys.
        if (ethers.isError(e, 'CALL_EXCEPTION') || ethers.isError(e, 'BAD_DATA')) return undefined;
        return readCall(() => Promise.reject(e));
      }
      const keys: string[] = [];
      const head = await readCall(() => provider.getBlockNumber());
      for (let from = start; from <= head; from += RANGE) {
        const logs = await readCall(() => contract.queryFilter(contract.filters.DeviceKeySet(device), from, Math.min(head, from + RANGE - 1)));
        for (const log of logs) {
          const a = (log as ethers.EventLog).args;
          if (a.deviceId !== deviceId) continue; // a keccak collision is not this device
          const key = bytes32ToPublicKey(a.publicKey as string);
          if (key !== null && !keys.includes(key)) keys.push(key);
        }
      }
      return keys;
    },
    close() {
      provider.destroy();
    },
  };
}
