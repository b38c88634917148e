/**
 * The oracle's read side: the recorded settlements as the gateway reads them, and their audit
 * (recompute a settlement from the store with its recorded inputs, compare with the chain, prove a
 * reading's inclusion). Read-only: it needs the records, the reading store and, for `verify` only, a
 * read-only view of the chain; never a signer. So the gateway lists settlements and serves proofs
 * without an oracle key, and without any chain; `verify` alone answers 503 without a chain.
 */
import { errors } from '../domain/errors.ts';
import type { Awaitable, CountedIn, FacilitySettlementStatus, OracleRecords, OracleStatus, ReadingStore, Settlement, SettlementQuery } from '../store/types.ts';
import { readingProof, type ReadingProof } from './evidence.ts';
import { evaluate, recordedWindowInputs } from './inputs.ts';
import { toBig, type LedgerPort } from '../contracts/client/port.ts';
import { createBundle, type AuditBundle, type BundleDeviceKey } from '../audit/bundle.ts';
import { message } from './chain-sync.ts';

/** What `/v1/settlements/:id/verify` reports: the chain's record, the recomputation, the oracle's record. */
export interface VerifyReport {
  match: boolean;
  /** `found: false` when the chain has no WindowSettled event for the window. */
  onChain: { found: boolean; evidenceRoot?: string; netGrams?: string; txHash?: string | null; mintedGrams?: string; burnedGrams?: string; deficitGrams?: string };
  recomputed: { evidenceRoot: string; netGrams: string; actualKg: string; baselineKg: string; complete: boolean; factorsHash: string; readings: number };
  recorded: { evidenceRoot: string; netGrams: string };
}

export interface SettlementAudit {
  /** Recomputes the settlement and compares it with the chain (CHAIN_UNAVAILABLE without a chain view). */
  verify(id: string): Promise<VerifyReport>;
  /** Inclusion proof of reading (deviceId, seq) in the settlement's evidence, or undefined when it is not in it. */
  proof(id: string, deviceId: string, seq: number): Promise<ReadingProof | undefined>;
  /**
   * The settlement's audit bundle (audit/bundle.ts): its recorded inputs with the readings it used
   * and their chain context read from the store, the record as held here, plus what the caller knows
   * of the facility, the device keys and the chain. Served as the store holds it, even when it no
   * longer recomputes to the recorded root: showing that is the audit's job.
   */
  bundle(id: string, extra?: BundleExtras): Promise<AuditBundle>;
}

/** What the registry and the chain add to a bundle (the gateway's part). */
export interface BundleExtras {
  facility?: { name?: string; owner?: string };
  /**
   * Keys per device (absent: an unsigned device). A key without `setAt` (the registry keeps no key
   * history) gets the ts of the device's first signed reading in the bundle, or the window end.
   */
  keys?: Record<string, (Omit<BundleDeviceKey, 'setAt'> & { setAt?: number })[]>;
  chain?: AuditBundle['chain'];
}

export interface AuditDeps {
  records: { getSettlement(id: string): Awaitable<Settlement | undefined> };
  readings: ReadingStore;
  /** A read-only view of the chain (verify only); absent: verify answers CHAIN_UNAVAILABLE. */
  ledger?: Pick<LedgerPort, 'settlementAt'>;
}

export function buildAudit(deps: AuditDeps): SettlementAudit {
  const { records, readings, ledger } = deps;

  async function settlement(id: string): Promise<Settlement> {
    const s = await records.getSettlement(id);
    if (!s) throw errors.SETTLEMENT_NOT_FOUND(id);
    return s;
  }

  return {
    async verify(id) {
      const s = await settlement(id);
      if (!ledger) throw errors.CHAIN_UNAVAILABLE('no chain configured in this process');
      const { result, evidence } = evaluate(await recordedWindowInputs(readings, s));
      let on;
      try {
        on = await ledger.settlementAt(s.facilityId, s.windowStart);
      } catch (e) {
        throw errors.CHAIN_UNAVAILABLE(message(e));
      }
      const onChain: VerifyReport['onChain'] = on
        ? {
            found: true,
            evidenceRoot: on.evidenceRoot.toLowerCase(),
            netGrams: toBig(on.netGrams).toString(),
            txHash: on.txHash ?? null,
            ...(on.mintedGrams !== undefined ? { mintedGrams: toBig(on.mintedGrams).toString() } : {}),
            ...(on.burnedGrams !== undefined ? { burnedGrams: toBig(on.burnedGrams).toString() } : {}),
            ...(on.deficitGrams !== undefined ? { deficitGrams: toBig(on.deficitGrams).toString() } : {}),
          }
        : { found: false };
      const recomputed = {
        evidenceRoot: evidence.root.toLowerCase(),
        netGrams: result.netGrams.toString(),
        actualKg: result.actualKg,
        baselineKg: result.baselineKg,
        complete: result.complete,
        factorsHash: result.factors.hash,
        readings: result.devices.reduce((n, d) => n + d.consumed.length, 0),
      };
      const match = onChain.found && onChain.evidenceRoot === recomputed.evidenceRoot && onChain.netGrams === recomputed.netGrams;
      return { match, onChain, recomputed, recorded: { evidenceRoot: s.evidenceRoot, netGrams: s.netGrams } };
    },

    async proof(id, deviceId, seq) {
      const s = await settlement(id);
      const { evidence } = evaluate(await recordedWindowInputs(readings, s));
      if (evidence.root.toLowerCase() !== s.evidenceRoot.toLowerCase()) {
        throw errors.EVIDENCE_MISMATCH(`settlement ${id} no longer recomputes to its evidence root; see /verify`);
      }
      return readingProof(evidence, deviceId, seq);
    },

    async bundle(id, extra = {}) {
      const s = await settlement(id);
      const input = await recordedWindowInputs(readings, s);
      const keys: Record<string, BundleDeviceKey[]> = {};
      for (const d of input.devices) {
        const given = extra.keys?.[d.deviceId];
        if (!given || given.length === 0) continue;
        const signedTs = [...d.readings, ...(d.chainContext ?? [])].filter((r) => r.sig !== undefined).map((r) => r.ts);
        const firstSigned = signedTs.length ? Math.min(...signedTs) : s.windowEnd;
        keys[d.deviceId] = given.map((k) => ({ publicKey: k.publicKey, setAt: k.setAt ?? firstSigned }));
      }
      return createBundle({
        input,
        methodologyVersion: s.inputs.methodologyVersion,
        settlement: bundleSettlement(s),
        ...(extra.facility ? { facility: extra.facility } : {}),
        keys,
        ...(extra.chain ? { chain: extra.chain } : {}),
      });
    },
  };
}

/**
 * The recorded settlements as the gateway shows them: the store's read side plus each facility's
 * settlement status (and forgetting a facility removed before it ever settled).
 */
export interface SettlementView {
  listSettlements(q?: SettlementQuery): Awaitable<Settlement[]>;
  getSettlement(id: string): Awaitable<Settlement | undefined>;
  /** Keys `${deviceId}:${seq}` of the given readings that a settlement flagged late. */
  lateReadings(facilityId: string, keys: { deviceId: string; seq: number }[]): Awaitable<Set<string>>;
  /** The confirmed settlement that counted a stored reading (and whether late), or undefined while none has. */
  settlementOfReading(facilityId: string, r: { deviceId: string; seq: number; ts: number; arrival?: number }): Awaitable<CountedIn | undefined>;
  /** A facility's settlement status: `blocked` with the reason while the chain refuses it. */
  facilityStatus(facilityId: string): Awaitable<FacilitySettlementStatus>;
  /** Forgets a facility removed before it ever settled (refuses, 409, once one is confirmed). */
  forgetFacility(facilityId: string, deviceIds: string[]): Awaitable<void>;
}

/** The view over the oracle's records and statuses (`openStores(config)` gives both; no chain, no signer). */
export function settlementView(records: OracleRecords, status: OracleStatus): SettlementView & { records: OracleRecords } {
  return {
    records,
    listSettlements: (q) => records.listSettlements(q),
    getSettlement: (id) => records.getSettlement(id),
    lateReadings: (facilityId, keys) => records.lateReadings(facilityId, keys),
    settlementOfReading: (facilityId, r) => records.settlementOfReading(facilityId, r),
    facilityStatus: (facilityId) => status.get(facilityId),
    forgetFacility: async (facilityId, deviceIds) => {
      await records.forgetFacility(facilityId, deviceIds);
      await status.forget(facilityId);
    },
  };
}

/** The platform's record of a settlement as an audit bundle carries it. */
export function bundleSettlement(s: Settlement) {
  return {
    id: s.id,
    netGrams: s.netGrams,
    evidenceRoot: s.evidenceRoot,
    complete: s.complete,
    ...(s.txHash ? { txHash: s.txHash } : {}),
    mintedGrams: s.mintedGrams,
    burnedGrams: s.burnedGrams,
    deficitGrams: s.deficitGrams,
  };
}
