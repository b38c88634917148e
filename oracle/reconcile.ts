/**
 * Records vs chain, per facility, before each round computes anything: every window the chain settled
 * that is not confirmed here is confirmed from the intent with the same evidence root; windows
 * confirmed here that the chain lost (a reorganisation, a restored chain) are rolled back so they are
 * settled again; with CHAIN_CONFIRMATIONS, confirmed windows are watched until they are deep enough to
 * be final. The chain is the source of truth; what cannot be matched blocks the facility (Blocked).
 */
import type { Logger } from '../domain/logger.ts';
import type { Facility } from '../store/types.ts';
import { Blocked, firstWindowStart } from './chain-sync.ts';
import { toBig, toMs, type IntLike, type LedgerPort } from '../contracts/client/port.ts';
import type { OracleMetrics } from './metrics.ts';
import { settlementId, type OracleRecords, type OracleStatus, type UnfinalRow } from '../store/types.ts';

export interface ReconcileDeps {
  records: OracleRecords;
  status: OracleStatus;
  ledger: Pick<LedgerPort, 'facility' | 'settlementAt' | 'blockNumber' | 'resetNonce'>;
  logger: Logger;
  metrics: Pick<OracleMetrics, 'settlements' | 'reconciled'>;
  windowMs: number;
  /** CHAIN_CONFIRMATIONS (0: a confirmed settlement is final at once). */
  confirmations: number;
  /** Told of a facility whose records were rolled back (cached chain state is stale). */
  onRollback?(facilityId: string): void;
}

/** What reconciliation did, added to the run's report. */
export interface ReconcileCounts {
  reconciled: number;
  lost: number;
  finalised: number;
}

/** A confirmed settlement to watch until final, with the block it was mined in. */
export interface Watched {
  id: string;
  facilityId: string;
  windowStart: number;
  root: string;
  blockNumber: IntLike | undefined;
}

export interface Reconciler {
  /**
   * Confirms, in order, every window the chain settled that is not confirmed here. Returns the next
   * window start (== the chain's). The chain is the source of truth: windows confirmed here that the
   * chain lost are rolled back and settled again. Throws Blocked when the chain holds a settlement we
   * have no intent for.
   */
  reconcile(f: Facility, chainNext: number, counts: ReconcileCounts): Promise<number>;
  /** Watches settlements confirmed at their block until they are CHAIN_CONFIRMATIONS deep. */
  watch(list: Watched[]): Promise<void>;
}

export function buildReconciler(deps: ReconcileDeps): Reconciler {
  const { records, status, ledger, logger, metrics, windowMs, confirmations } = deps;

  /** The chain lost the facility's settlements from `from` on: roll the records back so they are settled again. */
  async function rollback(f: Facility, from: number, report: ReconcileCounts, why: string): Promise<void> {
    const lost = await records.rollbackFrom(f.id, from);
    await status.forgetFrom(f.id, from);
    deps.onRollback?.(f.id);
    report.lost += lost.length;
    if (lost.length > 0) metrics.settlements.inc({ status: 'lost' }, lost.length);
    // The chain went backwards: so did our account's nonce (a locally counted one would leave a gap).
    ledger.resetNonce?.();
    logger.warn({ facilityId: f.id, from, lost, why }, 'the chain lost settlements this oracle had confirmed: settling them again');
  }

  async function watch(list: Watched[]): Promise<void> {
    if (confirmations === 0 || list.length === 0) return;
    const rows: UnfinalRow[] = list.map((u) => ({ id: u.id, facilityId: u.facilityId, windowStart: u.windowStart, evidenceRoot: u.root, blockNumber: u.blockNumber === undefined ? -1 : Number(u.blockNumber) }));
    await status.addUnfinal(rows);
  }

  /**
   * Re-checks the facility's confirmed-but-not-final settlements against the chain: final once
   * CHAIN_CONFIRMATIONS deep; from the first one the chain lost or holds with another root (a
   * reorganisation, perhaps won by another signer), the records are rolled back, and reconcile then
   * confirms whatever the chain holds (or the window is settled again).
   */
  async function checkFinality(f: Facility, report: ReconcileCounts): Promise<void> {
    if (confirmations === 0) return;
    const list = await status.unfinal(f.id);
    if (list.length === 0) return;
    const head = await ledger.blockNumber!();
    for (const u of list) {
      const on = await ledger.settlementAt(f.id, u.windowStart);
      if (!on || on.evidenceRoot.toLowerCase() !== u.evidenceRoot.toLowerCase()) {
        await rollback(f, u.windowStart, report, on ? `the chain now holds root ${on.evidenceRoot.toLowerCase()} for window ${u.windowStart}` : `the chain no longer has window ${u.windowStart}`);
        return;
      }
      const block = on.blockNumber === undefined ? u.blockNumber : Number(on.blockNumber);
      if (block >= 0 && head - block + 1 >= confirmations) {
        await status.markFinal(u.id);
        report.finalised++;
      } else if (block !== u.blockNumber) {
        await status.addUnfinal([{ ...u, blockNumber: block }]);
      }
    }
  }

  async function reconcile(f: Facility, chainNext: number, report: ReconcileCounts): Promise<number> {
    if (chainNext % windowMs !== 0) throw new Blocked(`chain next window ${chainNext} is not aligned to the ${windowMs / 1000} s window`);
    await checkFinality(f, report);
    const last = await records.lastConfirmedWindow(f.id);
    const open = await records.firstOpenWindow(f.id);
    let w = last !== undefined ? last + windowMs : (open ?? chainNext);
    if (last === undefined && open === undefined && chainNext > firstWindowStart(f, windowMs)) {
      // Nothing recorded here, yet the chain starts after the facility's creation window: either it
      // was registered from the next window on (the gateway does that), or windows were settled by
      // someone whose records we do not have. The previous window's event tells which.
      if (await ledger.settlementAt(f.id, chainNext - windowMs)) {
        throw new Blocked(`the chain has settlements up to ${chainNext} that this data dir has no record of (a foreign oracle or a lost data dir?)`);
      }
    }
    if (w > chainNext) {
      // Our chain read may predate a settlement another oracle on this file has confirmed since:
      // read again before concluding that the chain went backwards.
      chainNext = toMs((await ledger.facility(f.id)).nextWindowStart);
      if (w > chainNext && last !== undefined && last >= chainNext) {
        if (await ledger.settlementAt(f.id, chainNext)) {
          throw new Blocked(`the chain expects window ${chainNext} next, yet holds a settlement of it`);
        }
        await rollback(f, chainNext, report, `confirmed here up to ${w}, the chain expects ${chainNext}`);
      }
      if (w > chainNext) w = chainNext;
    }
    for (; w < chainNext; w += windowMs) {
      const on = await ledger.settlementAt(f.id, w);
      if (!on) throw new Blocked(`chain is past window ${w} but has no WindowSettled event for it`);
      const id = settlementId(f.id, w);
      const root = on.evidenceRoot.toLowerCase();
      if (!(await records.row(id, root))) {
        throw new Blocked(`window ${id} was settled on chain with root ${root}, which no recorded intent has (a foreign oracle?)`);
      }
      await watch([{ id, facilityId: f.id, windowStart: w, root, blockNumber: on.blockNumber }]);
      const outcome = await records.confirm(id, root, {
        txHash: on.txHash ?? null,
        mintedGrams: toBig(on.mintedGrams),
        burnedGrams: toBig(on.burnedGrams),
        deficitGrams: toBig(on.deficitGrams),
      });
      if (outcome === 'confirmed') {
        report.reconciled++;
        metrics.reconciled.inc();
        logger.info({ settlementId: id, root }, 'settlement reconciled from the chain');
      }
    }
    return w;
  }

  return { reconcile, watch };
}
