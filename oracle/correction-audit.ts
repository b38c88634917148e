/**
 * Verify and proof for corrections, as oracle/audit.ts does them for settlements: a correction
 * records the inputs of its recomputation (the original's devices and marks, the start cursors the
 * cursors rule gave it, the voids it applied, what it corrects), so it is recomputed from the stored
 * readings like a settlement and compared with the chain's CorrectionSettled event. Read-only.
 */
import { errors } from '../domain/errors.ts';
import type { Awaitable, Correction, ReadingStore } from '../store/types.ts';
import type { CorrectionPort } from '../contracts/client/corrections.ts';
import { getProof } from '@openzeppelin/merkle-tree/dist/core.js';
import { leafEncoding, readingProof, type Evidence, type ReadingProof } from './evidence.ts';
import { evaluate, recordedWindowInputs } from './inputs.ts';
import { message } from './chain-sync.ts';

export interface CorrectionVerifyReport {
  match: boolean;
  onChain: { found: boolean; evidenceRoot?: string; deltaGrams?: string; txHash?: string | null; mintedGrams?: string; burnedGrams?: string; deficitGrams?: string };
  recomputed: { evidenceRoot: string; netGrams: string; deltaGrams: string; complete: boolean; readings: number; voided: number };
  recorded: { evidenceRoot: string; netGrams: string; deltaGrams: string };
}

export interface CorrectionAuditDeps {
  corrections: { getCorrection(id: string): Awaitable<Correction | undefined> };
  readings: ReadingStore;
  /** The chain's corrections (verify only); absent: verify answers CHAIN_UNAVAILABLE. */
  port?: Pick<CorrectionPort, 'correctionsOf'>;
}

export interface CorrectionAudit {
  verify(id: string): Promise<CorrectionVerifyReport>;
  /** Inclusion proof of a reading (used, or voided: its `voided` leaf) in the correction's evidence. */
  proof(id: string, deviceId: string, seq: number): Promise<ReadingProof | undefined>;
}

export function buildCorrectionAudit(deps: CorrectionAuditDeps): CorrectionAudit {
  const { corrections, readings, port } = deps;
  const load = async (id: string): Promise<Correction> => {
    const c = await corrections.getCorrection(id);
    if (!c) throw errors.CORRECTION_NOT_FOUND(id);
    return c;
  };
  const recompute = async (c: Correction) => evaluate(await recordedWindowInputs(readings, c));

  return {
    async verify(id) {
      const c = await load(id);
      if (!port) throw errors.CHAIN_UNAVAILABLE('no correction ledger configured in this process');
      const { result, evidence } = await recompute(c);
      let on;
      try {
        on = (await port.correctionsOf(c.facilityId)).find((a) => a.windowStart === c.windowStart && a.seq === c.seq);
      } catch (e) {
        throw errors.CHAIN_UNAVAILABLE(message(e));
      }
      const onChain: CorrectionVerifyReport['onChain'] = on
        ? {
            found: true,
            evidenceRoot: on.evidenceRoot.toLowerCase(),
            deltaGrams: on.deltaGrams.toString(),
            txHash: on.txHash ?? null,
            mintedGrams: on.mintedGrams.toString(),
            burnedGrams: on.burnedGrams.toString(),
            deficitGrams: on.deficitAfterGrams.toString(),
          }
        : { found: false };
      const delta = (result.netGrams - BigInt(c.prevNetGrams)).toString();
      const recomputed = {
        evidenceRoot: evidence.root.toLowerCase(),
        netGrams: result.netGrams.toString(),
        deltaGrams: delta,
        complete: result.complete,
        readings: result.devices.reduce((n, d) => n + d.consumed.length, 0),
        voided: result.devices.reduce((n, d) => n + (d.voided?.length ?? 0), 0),
      };
      const match = onChain.found && onChain.evidenceRoot === recomputed.evidenceRoot && onChain.deltaGrams === recomputed.deltaGrams;
      return { match, onChain, recomputed, recorded: { evidenceRoot: c.evidenceRoot, netGrams: c.netGrams, deltaGrams: c.deltaGrams } };
    },

    async proof(id, deviceId, seq) {
      const c = await load(id);
      const { evidence } = await recompute(c);
      if (evidence.root.toLowerCase() !== c.evidenceRoot.toLowerCase()) {
        throw errors.EVIDENCE_MISMATCH(`correction ${id} no longer recomputes to its evidence root; see /verify`);
      }
      const used = readingProof(evidence, deviceId, seq);
      if (used) return used;
      // A voided reading: prove its `voided` leaf (what the correction left out).
      const index = evidence.leaves.findIndex((l) => l[0] === 'voided' && l[1] === deviceId && l[2] === String(seq));
      if (index < 0) return undefined;
      return voidedProof(evidence, index);
    },
  };
}

function voidedProof(e: Evidence, index: number): ReadingProof {
  const leaf = e.leaves[index];
  return { root: e.root, leaf, proof: getProof(e.tree, e.treeIndex[index]), leafEncoding: leafEncoding(leaf) };
}
