/**
 * Settling: `runOnce(now)` settles every closed, unsettled window of every facility, exactly once, in
 * order per facility (docs/METHODOLOGY.md "Exactly once"). schedule.ts only decides when it runs.
 *
 * The chain is the truth. Each facility's `nextWindowStart` on chain says which window comes next;
 * the contract accepts only that window (a settled one is skipped, a gap reverts). Per run the
 * settler first has chain-sync.ts bring the chain's registry record in line with the registry, then
 * per round:
 *  1. reconciles (reconcile.ts): every window the chain settled that is not confirmed here is
 *     matched, by evidence root, with the intent recorded before it was sent; that intent is
 *     confirmed (its end cursors become current), the others of the window discarded. A crash between
 *     send and record, an RPC timeout followed by a retry, or a second oracle on the same SQLite file
 *     all end up here.
 *  2. computes the window `nextWindowStart` of each facility when it is closed, from the cursors
 *     the chain-confirmed previous window ended on (inputs.ts), and records an intent BEFORE sending;
 *  3. sends the entries in batches (send.ts: `settleBatch`, at most `maxBatch` per transaction) and
 *     confirms the entries the chain settled.
 * A facility contributes at most one window per round: the next window's start cursors come from a
 * window the chain has confirmed, never from an intent that might lose to another oracle's. Rounds
 * repeat (catch-up after downtime) until nothing closed is left.
 *
 * Liveness: confirmed windows the chain lost are rolled back and settled again; with
 * CHAIN_CONFIRMATIONS, windows are re-checked until final and a window builds on a final one only; a
 * facility the chain refuses is blocked (store/sqlite/status.ts: reason, capped exponential backoff,
 * metric, API) while the others go on. A SQLite lease keeps two oracles on one file from doing the
 * same work at once (correctness never depends on it: the chain check does).
 */
import { errors } from '../domain/errors.ts';
import type { Logger } from '../domain/logger.ts';
import { isClosed, type Window } from '../domain/window.ts';
import type { Facility, ReadingStore, FacilityRegistry } from '../store/types.ts';
import { isRevert } from '../contracts/client/errors.ts';
import { Blocked, buildChainSync, message } from './chain-sync.ts';
import { currentInputs, evaluate, Raced, recordedInputs, type InputSources } from './inputs.ts';
import { buildReconciler } from './reconcile.ts';
import { buildSender, ChainFailure, type Pending } from './send.ts';
import { toMs, type FacilityView, type LedgerPort, type SettlementEntry } from '../contracts/client/port.ts';
import type { OracleMetrics } from './metrics.ts';
import { settlementId, type Backoff, type NewIntent, type OracleRecords, type OracleStatus } from '../store/types.ts';

export interface SettleDeps {
  records: OracleRecords;
  status: OracleStatus;
  readings: ReadingStore;
  registry: FacilityRegistry;
  ledger: LedgerPort;
  /** Already bound to the oracle's component. */
  logger: Logger;
  metrics: OracleMetrics;
  windowMs: number;
  graceMs: number;
  clock: () => number;
  /** Settlement entries per transaction. */
  maxBatch: number;
  /** Rounds per run (a round settles at most one window per facility). */
  maxRounds: number;
  /** Facilities read/computed in parallel. */
  concurrency: number;
  /** The SQLite lease (ttl 0: none) and this process's name in it. */
  lease: { ttlMs: number; holder: string };
  /** CHAIN_CONFIRMATIONS: blocks a settlement must be deep before it counts as final. */
  confirmations: number;
  backoff: Backoff;
  /** The regulator's voids: a window computed here never uses a voided reading (oracle/voids.ts). */
  voids?: InputSources['voids'];
}

export interface RunReport {
  at: number;
  /** Set when the run did nothing: another run of this process is in progress, or another holder has the lease. */
  skipped?: 'busy' | 'lease';
  facilities: number;
  registered: number;
  synced: number;
  reconciled: number;
  settled: number;
  skippedOnChain: number;
  transactions: number;
  gasUsed: bigint;
  rounds: number;
  /** Facilities that could not be settled in this run, with the reason. */
  blocked: { facilityId: string; reason: string }[];
  /** Blocked facilities left alone this run: their backoff has not elapsed. */
  deferred: string[];
  /** Confirmed settlements the chain no longer has (reorganisation, restored state): settled again. */
  lost: number;
  /** Settlements that became final (CHAIN_CONFIRMATIONS deep) in this run. */
  finalised: number;
  errors: string[];
}

export interface Settler {
  runOnce(now?: number): Promise<RunReport>;
  /** Whether a run is in progress. */
  busy(): boolean;
  /** Drops what this process remembers of a facility removed from the registry. */
  forget(facilityId: string): void;
  /** No run starts after this; resolves once the run in progress (if any) ended. */
  close(): Promise<void>;
}

const LEASE_NAME = 'oracle';

/** Runs `fn` over `items` with at most `limit` in flight; results in input order. */
async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

export function buildSettler(deps: SettleDeps): Settler {
  const { records, status, readings, registry, ledger, logger, metrics, windowMs, graceMs, clock, maxBatch, maxRounds, concurrency, confirmations, backoff } = deps;
  const { ttlMs: leaseTtl, holder } = deps.lease;
  const chainSync = buildChainSync({ ledger, registry, windowMs, clock, logger, metrics });
  /** The registry record a blocked facility was blocked with: a correction retries it at once. */
  const blockedWith = new Map<string, string>();
  const fingerprint = (f: Facility) => `${f.owner.toLowerCase()}|${f.baselineKgPerHour}|${f.status}`;

  /**
   * Last known chain state per facility (this process only). A facility whose cached next window is
   * not closed yet and whose registry status and baseline are unchanged needs no chain read this run.
   * A stale entry can only be behind the chain (it only moves forward), so it delays, never skips.
   */
  const known = new Map<string, { chain: FacilityView; status: string; baseline: string }>();
  const remember = (f: Facility, chain: FacilityView) => known.set(f.id, { chain, status: f.status, baseline: f.baselineKgPerHour });
  const { reconcile, watch } = buildReconciler({ records, status, ledger, logger, metrics, windowMs, confirmations, onRollback: (id) => known.delete(id) });

  const send = buildSender({ records, ledger, logger, metrics, watch });

  let running: Promise<RunReport> | undefined;
  let closed = false;

  /** Computes window `start` of `facility`: the intent to record before sending. */
  async function computeIntent(facility: Facility, start: number): Promise<{ input: SettlementEntry; root: string; id: string; intent: NewIntent }> {
    const w: Window = { start, end: start + windowMs };
    const inputs = await currentInputs({ readings, registry, records, ...(deps.voids ? { voids: deps.voids } : {}) }, facility, w);
    const { result, evidence } = evaluate(inputs);
    const id = settlementId(facility.id, start);
    const intent: NewIntent = {
      id,
      facilityId: facility.id,
      windowStart: w.start,
      windowEnd: w.end,
      complete: result.complete,
      netGrams: result.netGrams,
      actualKg: result.actualKg,
      evidenceRoot: evidence.root,
      inputs: recordedInputs(result, inputs.devices),
    };
    return { id, root: evidence.root, intent, input: { facilityId: facility.id, windowStart: w.start, windowEnd: w.end, netGrams: result.netGrams, evidenceRoot: evidence.root } };
  }

  // ---------------------------------------------------------------------------------------------
  // A run

  function emptyReport(at: number): RunReport {
    return {
      at,
      facilities: 0,
      registered: 0,
      synced: 0,
      reconciled: 0,
      settled: 0,
      skippedOnChain: 0,
      transactions: 0,
      gasUsed: 0n,
      rounds: 0,
      blocked: [],
      deferred: [],
      lost: 0,
      finalised: 0,
      errors: [],
    };
  }

  async function run(now: number): Promise<RunReport> {
    const report = emptyReport(now);
    if (leaseTtl > 0 && !(await records.acquireLease(LEASE_NAME, holder, clock(), leaseTtl))) {
      report.skipped = 'lease';
      metrics.runs.inc({ outcome: 'lease' });
      return report;
    }
    const stopTimer = metrics.runSeconds.startTimer();
    try {
      const facilities = registry.listFacilities();
      report.facilities = facilities.length;
      /** Facilities refused this run / that settled or had nothing to settle this run. */
      const blockedNow = new Set<string>();
      const healthy = new Set<string>();
      /** Block writes of this run (awaited before the run reports). */
      const blockWrites: Promise<unknown>[] = [];
      const block = (f: Facility, e: unknown, kind: string) => {
        const reason = message(e);
        report.blocked.push({ facilityId: f.id, reason });
        blockedNow.add(f.id);
        known.delete(f.id);
        metrics.errors.inc({ kind });
        if (e instanceof Blocked || isRevert(e)) {
          // The chain refuses this facility (or disagrees with its records): retried with backoff,
          // reported in the API, while the others go on.
          blockedWith.set(f.id, fingerprint(f));
          metrics.facilityBlocked.set({ facility: f.id }, 1);
          blockWrites.push(
            Promise.resolve(status.block(f.id, reason, now, backoff)).then(
              (st) => logger.error({ facilityId: f.id, reason, attempts: st.attempts, retryAt: st.retryAt }, 'facility blocked'),
              (err: unknown) => logger.error({ err, facilityId: f.id, reason }, 'facility blocked; recording it failed'),
            ),
          );
        } else {
          logger.error({ err: e, facilityId: f.id }, 'facility skipped this run');
        }
      };
      // A blocked facility waits for its backoff, unless its registry record was corrected since.
      // One read of the blocked ones (a facility not listed is `ok`), not one per facility.
      const blockedNowList = new Map((await status.listBlocked()).map((st) => [st.facilityId, st]));
      const due = facilities.filter((f) => {
        const st = blockedNowList.get(f.id) ?? { facilityId: f.id, settlementStatus: 'ok' as const };
        if (st.settlementStatus !== 'blocked') return true;
        metrics.facilityBlocked.set({ facility: f.id }, 1);
        if ((st.retryAt ?? 0) <= now) return true;
        const was = blockedWith.get(f.id);
        if (was !== undefined && was !== fingerprint(f)) return true;
        report.deferred.push(f.id);
        return false;
      });
      const watched = new Set(confirmations > 0 ? await status.unfinalFacilities() : []);
      // Registration and sync (idempotent), which also gives each facility's chain state.
      const states = await mapLimit(due, concurrency, async (f) => {
        const k = known.get(f.id);
        if (k && k.status === f.status && k.baseline === f.baselineKgPerHour && k.chain.owner.toLowerCase() === f.owner.toLowerCase() && !watched.has(f.id)) {
          const next = toMs(k.chain.nextWindowStart);
          if (!isClosed({ start: next, end: next + windowMs }, now, graceMs)) return undefined;
        }
        try {
          const { chain, agreed } = await chainSync.syncFacility(f, report);
          if (agreed) remember(f, chain);
          else known.delete(f.id);
          return chain;
        } catch (e) {
          block(f, e, e instanceof Blocked || isRevert(e) ? 'reconcile' : 'chain');
          return undefined;
        }
      });
      // Device keys, registry -> chain (never overwriting a chain key: chain-sync.ts); settlement
      // does not wait on them, and a facility whose keys are consistent costs no chain read.
      await mapLimit(due, concurrency, (f) => chainSync.syncDeviceKeys(f, report));
      let work: { f: Facility; chain: FacilityView }[] = [];
      due.forEach((f, i) => {
        const chain = states[i];
        if (chain) work.push({ f, chain });
      });
      const refused = (p: Pending, e: unknown) => block(p.facility, new Blocked(`settlement of window ${p.input.windowStart} reverted: ${message(e)}`), 'revert');
      while (work.length > 0 && report.rounds < maxRounds && !closed) {
        report.rounds++;
        if (leaseTtl > 0 && !(await records.acquireLease(LEASE_NAME, holder, clock(), leaseTtl))) {
          report.errors.push('lease lost during the run');
          break;
        }
        const computed = await mapLimit(work, concurrency, async ({ f, chain }): Promise<Pending | undefined> => {
          try {
            const next = await reconcile(f, toMs(chain.nextWindowStart), report);
            // With CHAIN_CONFIRMATIONS, a window's start cursors come from a FINAL previous window
            // only: one that a reorganisation could still replace is never built upon.
            if (!isClosed({ start: next, end: next + windowMs }, now, graceMs) || (confirmations > 0 && (await status.unfinal(f.id)).length > 0)) {
              healthy.add(f.id);
              return undefined;
            }
            return { facility: f, ...(await computeIntent(f, next)) };
          } catch (e) {
            known.delete(f.id);
            if (e instanceof Raced) logger.debug({ facilityId: f.id, reason: e.message }, 'facility moved on by another oracle');
            else block(f, e, e instanceof Blocked ? 'reconcile' : 'compute');
            return undefined;
          }
        });
        const pending = computed.filter((p): p is Pending => p !== undefined);
        if (pending.length === 0) break;
        // Every intent is durable before anything is sent (one transaction for the round).
        await records.insertIntents(pending.map((p) => p.intent));
        const advanced = new Map<string, number | undefined>();
        try {
          for (let i = 0; i < pending.length; i += maxBatch) {
            for (const [id, next] of await send(pending.slice(i, i + maxBatch), report, refused)) advanced.set(id, next);
          }
        } catch (e) {
          for (const p of pending) known.delete(p.facility.id);
          if (!(e instanceof ChainFailure)) throw e;
          // The chain is unreachable (or the call failed without a revert): intents stay recorded,
          // the next run reconciles whatever did reach the chain and retries the rest.
          report.errors.push(`settleBatch failed: ${message(e.cause)}`);
          metrics.errors.inc({ kind: 'chain' });
          logger.warn({ err: e.cause }, 'settlement transaction failed; will reconcile and retry next run');
          break;
        }
        for (const [id, next] of advanced) if (next !== undefined) healthy.add(id);
        // Facilities that moved on go to the next round: those the receipt settled continue from its
        // window end; skipped ones (someone else settled that window) get a fresh chain read.
        const moved = work.filter(({ f }) => advanced.has(f.id));
        const fresh = await mapLimit(moved, concurrency, async ({ f, chain }) => {
          const next = advanced.get(f.id);
          try {
            const fresh = next !== undefined ? { ...chain, nextWindowStart: next } : await ledger.facility(f.id);
            remember(f, fresh);
            return { f, chain: fresh };
          } catch (e) {
            block(f, e, 'chain');
            return undefined;
          }
        });
        work = fresh.filter((x): x is { f: Facility; chain: FacilityView } => x !== undefined);
      }
      await Promise.all(blockWrites);
      for (const id of healthy) {
        // Only a facility with a status row (listed at the run's start, or blocked by this process)
        // has one to clear: not one delete per settled facility (a round trip each on PostgreSQL).
        if (blockedNow.has(id) || !(blockedNowList.has(id) || blockedWith.has(id))) continue;
        if (!(await status.clear(id))) continue;
        blockedWith.delete(id);
        metrics.facilityBlocked.remove({ facility: id });
        logger.info({ facilityId: id }, 'facility unblocked: settling again');
      }
      metrics.runs.inc({ outcome: report.errors.length ? 'failed' : 'ok' });
      metrics.blocked.set((await status.listBlocked()).length);
      return report;
    } catch (e) {
      metrics.runs.inc({ outcome: 'failed' });
      throw e;
    } finally {
      stopTimer();
      metrics.lastRun.set(clock() / 1000);
      if (leaseTtl > 0) await records.releaseLease(LEASE_NAME, holder);
    }
  }

  async function runOnce(now?: number): Promise<RunReport> {
    if (closed) throw errors.ORACLE_CLOSED();
    if (running) {
      metrics.runs.inc({ outcome: 'busy' });
      return { ...emptyReport(now ?? clock()), skipped: 'busy' };
    }
    running = run(now ?? clock());
    try {
      const report = await running;
      if (report.settled || report.reconciled || report.blocked.length || report.errors.length || report.lost) {
        logger.info(
          { settled: report.settled, reconciled: report.reconciled, lost: report.lost, transactions: report.transactions, blocked: report.blocked.length, deferred: report.deferred.length, errors: report.errors },
          'oracle run',
        );
      }
      return report;
    } finally {
      running = undefined;
    }
  }

  return {
    runOnce,
    busy: () => running !== undefined,
    forget(facilityId) {
      known.delete(facilityId);
      blockedWith.delete(facilityId);
      metrics.facilityBlocked.remove({ facility: facilityId });
    },
    async close() {
      closed = true;
      if (running) await running.catch(() => undefined);
    },
  };
}
