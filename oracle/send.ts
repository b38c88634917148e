/**
 * Sending a round's intents (recorded before anything is sent) in `settleBatch` transactions and
 * recording what the chain settled: confirmed with the receipt's amounts, or marked sent when the
 * chain skipped the entry (someone settled that window: the next round's reconciliation decides).
 * A reverted batch is retried one entry per transaction so one bad entry cannot block the rest.
 */
import type { Facility } from '../store/types.ts';
import type { Logger } from '../domain/logger.ts';
import { isRevert } from '../contracts/client/errors.ts';
import { message } from './chain-sync.ts';
import { toBig, toMs, type LedgerPort, type SettlementEntry } from '../contracts/client/port.ts';
import type { OracleMetrics } from './metrics.ts';
import type { NewIntent, OracleRecords } from '../store/types.ts';
import type { Reconciler } from './reconcile.ts';

/** A computed window, its intent recorded, to send. */
export interface Pending {
  facility: Facility;
  id: string;
  root: string;
  input: SettlementEntry;
  intent: NewIntent;
}

/** A settlement transaction failed on the chain side (RPC down, timeout, revert). */
export class ChainFailure extends Error {
  constructor(cause: unknown) {
    super(message(cause), { cause });
  }
}

/** What sending did, added to the run's report. */
export interface SendCounts {
  transactions: number;
  gasUsed: bigint;
  settled: number;
  skippedOnChain: number;
}

export interface SendDeps {
  records: OracleRecords;
  ledger: Pick<LedgerPort, 'settleBatch'>;
  logger: Logger;
  metrics: Pick<OracleMetrics, 'transactions' | 'gas' | 'settlements'>;
  watch: Reconciler['watch'];
}

export type Send = (chunk: Pending[], report: SendCounts, refused: (p: Pending, e: unknown) => void) => Promise<Map<string, number | undefined>>;

export function buildSender(deps: SendDeps): Send {
  const { records, ledger, logger, metrics, watch } = deps;

  /**
   * Sends one chunk; on a revert, falls back to one entry per transaction so one bad entry cannot
   * block the rest (`refused` is told of each entry the chain refuses). Returns, per facility that
   * moved, whether the chain settled our entry (then its next window start is known from the
   * receipt) or skipped it (then the chain is read again).
   */
  async function send(chunk: Pending[], report: SendCounts, refused: (p: Pending, e: unknown) => void): Promise<Map<string, number | undefined>> {
    const advanced = new Map<string, number | undefined>();
    const apply = async (res: Awaited<ReturnType<LedgerPort['settleBatch']>>, sent: Pending[]) => {
      report.transactions++;
      metrics.transactions.inc({ kind: 'settle' });
      const gas = toBig(res.gasUsed);
      report.gasUsed += gas;
      metrics.gas.inc(Number(gas));
      const confirms: Parameters<OracleRecords['confirmMany']>[0] = [];
      for (const p of sent) {
        const r = res.results.find((x) => x.facilityId === p.input.facilityId && toMs(x.windowStart) === p.input.windowStart);
        if (r?.status === 'settled') {
          confirms.push({
            id: p.id,
            root: p.root,
            amounts: { txHash: res.txHash, mintedGrams: toBig(r.mintedGrams), burnedGrams: toBig(r.burnedGrams), deficitGrams: toBig(r.deficitGrams) },
          });
          advanced.set(p.facility.id, p.input.windowEnd);
        } else {
          // Already settled (by an earlier attempt of ours or another oracle): the next round's
          // reconciliation confirms whichever intent the chain kept.
          await records.markSent(p.id, p.root, res.txHash);
          report.skippedOnChain++;
          metrics.settlements.inc({ status: 'skipped' });
          advanced.set(p.facility.id, undefined);
        }
      }
      // Watched before they are confirmed: a crash in between leaves a watch entry, never an unwatched confirmation.
      await watch(sent.filter((p) => confirms.some((c) => c.id === p.id)).map((p) => ({ id: p.id, facilityId: p.facility.id, windowStart: p.input.windowStart, root: p.root, blockNumber: res.blockNumber })));
      // One transaction for the whole batch (a crash before it is a crash between send and record).
      await records.confirmMany(confirms);
      report.settled += confirms.length;
      metrics.settlements.inc({ status: 'settled' }, confirms.length);
    };
    // Chain failures are ChainFailure (the run stops, intents stay for reconciliation); a failure to
    // record after a successful send propagates as is (like a crash: the next run reconciles).
    let res;
    try {
      res = await ledger.settleBatch(chunk.map((p) => p.input));
    } catch (e) {
      if (!isRevert(e)) throw new ChainFailure(e);
      if (chunk.length === 1) {
        refused(chunk[0], e);
        return advanced;
      }
      logger.warn({ err: e, entries: chunk.length }, 'settlement batch reverted; retrying its entries one by one');
    }
    if (res) {
      await apply(res, chunk);
      return advanced;
    }
    for (const p of chunk) {
      let one;
      try {
        one = await ledger.settleBatch([p.input]);
      } catch (e) {
        if (!isRevert(e)) throw new ChainFailure(e);
        refused(p, e);
        continue;
      }
      await apply(one, [p]);
    }
    return advanced;
  }

  return send;
}
