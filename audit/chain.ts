/**
 * The auditor's only window on the chain (audit/audit.ts ChainView): the ledger client's evidence
 * reads (contracts/client/evidence-reads.ts: the event ABI alone, no artifact, no platform state, no
 * key). Settlements are CreditLedger's `WindowSettled` events; device keys are its `DeviceKeySet`
 * events (the regulator's record of every key set or rotated), so a key swapped in the platform's
 * database alone is not among them. A ledger deployed before device keys answers "records no keys".
 */
import { openLedgerEvidence } from '../contracts/client/evidence-reads.ts';
import type { ChainView } from './audit.ts';

export interface ChainViewOptions {
  rpcUrl: string;
  ledger: string;
  /** First block to search (the ledger's deployment block); default 0. */
  startBlock?: number;
}

export function carbonLedgerView(opts: ChainViewOptions): ChainView & { close(): void } {
  const reads = openLedgerEvidence({ rpcUrl: opts.rpcUrl, address: opts.ledger, ...(opts.startBlock !== undefined ? { startBlock: opts.startBlock } : {}) });
  return {
    settlement: (facilityId, windowStart) => reads.settlement(facilityId, windowStart),
    deviceKeys: (_facilityId, deviceId) => reads.deviceKeys(deviceId),
    close: () => reads.close(),
  };
}
