/**
 * The oracle: `runOnce(now)` settles every closed, unsettled window of every facility, exactly once,
 * in order per facility; node-cron only calls runOnce (docs/METHODOLOGY.md "Exactly once").
 *
 * The chain is the truth. Each facility's `nextWindowStart` on chain says which window comes next;
 * the contract accepts only that window (a settled one is skipped, a gap reverts). Per round the
 * oracle:
 *  1. reconciles: every window the chain settled that is not confirmed here is matched, by evidence
 *     root, with the intent recorded before it was sent; that intent is confirmed (its end cursors
 *     become current), the others of the window discarded. A crash between send and record, an RPC
 *     timeout followed by a retry, or a second oracle on the same SQLite file all end up here.
 *  2. computes the window `nextWindowStart` of each facility when it is closed, from the cursors
 *     the chain-confirmed previous window ended on, and records an intent BEFORE sending;
 *  3. sends the entries in batches (`settleBatch`, at most `maxBatch` per transaction) and confirms
 *     the entries the chain settled.
 * A facility contributes at most one window per round: the next window's start cursors come from a
 * window the chain has confirmed, never from an intent that might lose to another oracle's. Rounds
 * repeat (catch-up after downtime) until nothing closed is left.
 *
 * Liveness: registry and chain are reconciled every run until they agree (registration, owner,
 * suspension, baseline); confirmed windows the chain lost are rolled back and settled again; with
 * CHAIN_CONFIRMATIONS, windows are re-checked until final and a window builds on a final one only; a
 * facility the chain refuses is blocked (oracle/status.ts: reason, capped exponential backoff,
 * metric, API) while the others go on.
 */
import os from 'node:os';
import cron, { type ScheduledTask } from 'node-cron';
import type { Registry as PromRegistry } from 'prom-client';
import { Decimal } from '../domain/decimal.ts';
import { DomainError, errors } from '../domain/errors.ts';
import type { Logger } from '../domain/logger.ts';
import { isIntervalKind } from '../domain/reading.ts';
import { isClosed, windowOf, type Window } from '../domain/window.ts';
import type { Db } from '../store/db.ts';
import { DEFAULT_REPORTING_INTERVAL_SECONDS, type Facility, type ReadingStore, type Registry, type VisibilityMark } from '../store/types.ts';
import { buildEvidence, readingProof, type Evidence, type ReadingProof } from './evidence.ts';
import { applyFactors, sealFactors } from './factors.ts';
import { toBig, toMs, type ChainFacilityState, type IntLike, type OracleLedger, type SettleInput } from './ledger.ts';
import { settleWindow, METHODOLOGY_VERSION, NO_COVERAGE, type DeviceWindowInput, type WindowResult } from './methodology.ts';
import { oracleMetrics } from './metrics.ts';
import { OracleRecords, recordedMark, recordedPrev, settlementId, type CountedIn, type NewIntent, type RecordedInputs, type Settlement, type SettlementQuery, type SettlementRow } from './records.ts';
import { DEFAULT_BACKOFF, OracleStatus, type Backoff, type FacilitySettlementStatus, type UnfinalRow } from './status.ts';

export interface OracleDeps {
  db: Db;
  readings: ReadingStore;
  registry: Registry;
  ledger: OracleLedger;
  logger: Logger;
  metrics?: PromRegistry;
  windowMs: number;
  graceMs: number;
  clock?: () => number;
  /** Settlement entries per transaction (default 100). */
  maxBatch?: number;
  /** Rounds per run (a round settles at most one window per facility); default 1000. */
  maxRounds?: number;
  /** Facilities read/computed in parallel (default 8). */
  concurrency?: number;
  /**
   * A SQLite lease so two oracles on one file do not do the same work at once (default ttl 60 s).
   * `false` disables it; correctness never depends on it (the chain check does).
   */
  lease?: { ttlMs?: number; holder?: string } | false;
  /**
   * CHAIN_CONFIRMATIONS: blocks a settlement must be deep before it counts as final (default 0).
   * Until then every run re-checks it against the chain.
   */
  confirmations?: number;
  /** Retry delays of a blocked facility (exponential from baseMs, capped at maxMs). */
  backoff?: Partial<Backoff>;
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

export interface VerifyReport {
  match: boolean;
  /** `found: false` when the chain has no WindowSettled event for the window. */
  onChain: { found: boolean; evidenceRoot?: string; netGrams?: string; txHash?: string | null; mintedGrams?: string; burnedGrams?: string; deficitGrams?: string };
  recomputed: { evidenceRoot: string; netGrams: string; actualKg: string; baselineKg: string; complete: boolean; factorsHash: string; readings: number };
  recorded: { evidenceRoot: string; netGrams: string };
}

export interface Oracle {
  runOnce(now?: number): Promise<RunReport>;
  /** Schedules runOnce with node-cron (seconds field allowed) and runs once at once. */
  start(cronExpression: string): void;
  stop(): void;
  verify(id: string): Promise<VerifyReport>;
  proof(id: string, deviceId: string, seq: number): Promise<ReadingProof | undefined>;
  listSettlements(q?: SettlementQuery): Settlement[];
  getSettlement(id: string): Settlement | undefined;
  lateReadings(facilityId: string, keys: { deviceId: string; seq: number }[]): Set<string>;
  isLate(deviceId: string, seq: number): boolean;
  /** The confirmed settlement that counted a stored reading (and whether late), or undefined while none has. */
  settlementOfReading(facilityId: string, r: { deviceId: string; seq: number; ts: number; arrival?: number }): CountedIn | undefined;
  /** A facility's settlement status: `blocked` with the reason while the chain refuses it. */
  facilityStatus(facilityId: string): FacilitySettlementStatus;
  /** Forgets a facility removed before it ever settled (refuses, 409, once one is confirmed). */
  forgetFacility(facilityId: string, deviceIds: string[]): void;
  readonly records: OracleRecords;
  readonly status: OracleStatus;
  close(): Promise<void>;
}

const LEASE_NAME = 'oracle';

/** A facility that cannot be settled safely until someone looks (reason in the message). */
class Blocked extends Error {}

/** Another process moved this facility on while we computed: not an error, the next round continues. */
class Raced extends Error {}

/** A settlement transaction failed on the chain side (RPC down, timeout, revert). */
class ChainFailure extends Error {
  constructor(cause: unknown) {
    super(message(cause), { cause });
  }
}

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

function isRevert(e: unknown): boolean {
  const x = e as { code?: unknown; name?: unknown } | null;
  return x?.code === 'CALL_EXCEPTION' || x?.code === 'LEDGER_REVERTED' || x?.name === 'LedgerRevertError';
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export function buildOracle(deps: OracleDeps): Oracle {
  const { db, readings, registry, ledger, windowMs, graceMs } = deps;
  if (!Number.isSafeInteger(windowMs) || windowMs <= 0 || windowMs % 1000 !== 0) {
    throw errors.CONFIG_INVALID(`window length must be a positive whole number of seconds (got ${windowMs} ms)`);
  }
  const clock = deps.clock ?? Date.now;
  const logger = deps.logger.child({ component: 'oracle' });
  const metrics = oracleMetrics(deps.metrics);
  const maxBatch = Math.max(1, deps.maxBatch ?? 100);
  const maxRounds = Math.max(1, deps.maxRounds ?? 1000);
  const concurrency = Math.max(1, deps.concurrency ?? 8);
  const leaseTtl = deps.lease === false ? 0 : (deps.lease?.ttlMs ?? 60_000);
  const holder = (deps.lease && deps.lease.holder) || `${os.hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 10)}`;
  const records = new OracleRecords(db, clock);
  records.checkWindow(windowMs);
  const status = new OracleStatus(db);
  const confirmations = Math.max(0, Math.floor(deps.confirmations ?? 0));
  if (confirmations > 0 && !ledger.blockNumber) throw errors.CONFIG_INVALID('CHAIN_CONFIRMATIONS > 0 needs a ledger client that reads block numbers');
  const backoff: Backoff = { ...DEFAULT_BACKOFF, ...deps.backoff };
  /** The registry record a blocked facility was blocked with: a correction retries it at once. */
  const blockedWith = new Map<string, string>();
  const fingerprint = (f: Facility) => `${f.owner.toLowerCase()}|${f.baselineKgPerHour}|${f.status}`;

  /**
   * Last known chain state per facility (this process only). A facility whose cached next window is
   * not closed yet and whose registry status and baseline are unchanged needs no chain read this run.
   * A stale entry can only be behind the chain (it only moves forward), so it delays, never skips.
   */
  const known = new Map<string, { chain: ChainFacilityState; status: string; baseline: string }>();
  const remember = (f: Facility, chain: ChainFacilityState) => known.set(f.id, { chain, status: f.status, baseline: f.baselineKgPerHour });

  let running: Promise<RunReport> | undefined;
  let task: ScheduledTask | undefined;
  let closed = false;

  // ---------------------------------------------------------------------------------------------
  // Computing a window

  /**
   * Inputs of window `w` for `facility`: every device of the facility created before the window end,
   * whatever its status (a suspended device stays in coverage; a decommissioned one leaves coverage
   * but its readings still count), with its cursors, visibility mark, consumed readings and coverage.
   */
  async function gatherInputs(facility: Facility, w: Window): Promise<DeviceWindowInput[]> {
    // Devices registered after the window ended had nothing to report in it: they do not make it incomplete.
    const devices = registry.listDevices(facility.id).filter((d) => d.createdAt < w.end);
    const ids = devices.map((d) => d.deviceId);
    const marks = ids.length ? await readings.marks(ids) : new Map<string, VisibilityMark>();
    const out: DeviceWindowInput[] = [];
    for (const d of devices) {
      const id = d.deviceId;
      const c = records.cursor(id);
      // Another oracle on this file confirmed this window meanwhile: skip the facility this round.
      if (c && c.windowEnd > w.start) throw new Raced(`device ${id} cursor moved to ${c.windowEnd} while computing window ${w.start}`);
      const input: DeviceWindowInput = {
        deviceId: id,
        startCursors: c?.cursors ?? [],
        readings: [],
        coverage: NO_COVERAGE,
        reportingIntervalSeconds: d.reportingIntervalSeconds ?? DEFAULT_REPORTING_INTERVAL_SECONDS,
        intervalDevice: isIntervalKind(d.kind),
      };
      if (d.status === 'decommissioned') input.decommissioned = { at: d.decommissionedAt ?? 0, reason: d.decommissionReason ?? '' };
      if (c) input.prev = { mark: c.mark, before: c.windowEnd };
      const mark = marks.get(id);
      if (mark !== undefined) await fill(input, w, mark);
      out.push(input);
    }
    return out;
  }

  /** Reads what `input`'s device shows under `mark`: the consumed set and the coverage facts. */
  async function fill(input: DeviceWindowInput, w: Window, mark: VisibilityMark): Promise<void> {
    input.mark = mark;
    input.readings = await readings.consume({ deviceId: input.deviceId, mark, before: w.end, ...(input.prev ? { prev: input.prev } : {}) });
    input.coverage = await readings.coverage({ deviceId: input.deviceId, start: w.start, end: w.end, mark });
  }

  function recordedInputs(r: WindowResult, devices: DeviceWindowInput[]): RecordedInputs {
    const declared = new Map(devices.map((d) => [d.deviceId, d.intervalDevice === true]));
    return {
      methodologyVersion: r.methodologyVersion,
      baselineKgPerHour: r.baselineKgPerHour,
      factors: r.factors,
      devices: r.devices.map((d) => ({
        deviceId: d.deviceId,
        ...(d.mark !== undefined ? { mark: d.mark } : {}),
        ...(d.prev ? { prev: d.prev } : {}),
        startCursors: d.startCursors,
        endCursors: d.endCursors,
        reportingIntervalSeconds: d.reportingIntervalSeconds,
        intervalDeclared: declared.get(d.deviceId) ?? false,
        ...(d.decommissioned ? { decommissioned: d.decommissioned } : {}),
        coverage: d.coverage,
        inCoverage: d.inCoverage,
        status: d.status,
        consumedCount: d.consumed.length,
      })),
      lateKeys: r.lateKeys,
      decommissioned: r.decommissioned,
      totals: r.totals,
      baselineKg: r.baselineKg,
      rawNetGrams: r.rawNetGrams.toString(),
    };
  }

  /** Computes window `start` of `facility`: the intent to record before sending. */
  async function computeIntent(facility: Facility, start: number): Promise<{ input: SettleInput; root: string; id: string; intent: NewIntent }> {
    const w: Window = { start, end: start + windowMs };
    const devices = await gatherInputs(facility, w);
    const result = settleWindow({
      facilityId: facility.id,
      window: w,
      devices,
      factors: applyFactors(start, facility),
      baselineKgPerHour: registry.baselineAt(facility.id, start),
    });
    const evidence = buildEvidence(result);
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
      inputs: recordedInputs(result, devices),
    };
    return { id, root: evidence.root, intent, input: { facilityId: facility.id, windowStart: w.start, windowEnd: w.end, netGrams: result.netGrams, evidenceRoot: evidence.root } };
  }

  /** Recomputes a recorded settlement from the store with its recorded visibility marks and cursors. */
  async function recompute(row: Pick<SettlementRow, 'facilityId' | 'windowStart' | 'windowEnd' | 'inputs'>): Promise<{ result: WindowResult; evidence: Evidence }> {
    if (row.inputs.methodologyVersion !== METHODOLOGY_VERSION) {
      throw errors.METHODOLOGY_MISMATCH(`settlement was computed with methodology ${row.inputs.methodologyVersion}; this oracle implements ${METHODOLOGY_VERSION}`);
    }
    const w: Window = { start: row.windowStart, end: row.windowEnd };
    const devices: DeviceWindowInput[] = [];
    for (const d of row.inputs.devices) {
      const input: DeviceWindowInput = {
        deviceId: d.deviceId,
        startCursors: d.startCursors,
        readings: [],
        coverage: NO_COVERAGE,
        reportingIntervalSeconds: d.reportingIntervalSeconds,
        intervalDevice: d.intervalDeclared,
      };
      if (d.decommissioned) input.decommissioned = d.decommissioned;
      const prev = recordedPrev(d);
      if (prev) input.prev = prev;
      const mark = recordedMark(d);
      if (mark !== undefined) await fill(input, w, mark);
      devices.push(input);
    }
    const result = settleWindow({
      facilityId: row.facilityId,
      window: w,
      devices,
      factors: sealFactors(row.inputs.factors),
      baselineKgPerHour: row.inputs.baselineKgPerHour,
    });
    return { result, evidence: buildEvidence(result) };
  }

  // ---------------------------------------------------------------------------------------------
  // Chain state

  /**
   * Reconciles the facility's chain record with the registry, every run until they agree: registers
   * it if the chain lacks it, corrects the owner of a facility that never settled, pushes suspension
   * and baseline. Returns the chain state and whether both now agree (a disagreement is not cached,
   * so the next run tries again: one failed push by the gateway is repaired here).
   * Throws Blocked when the chain refuses what the registry holds (registration, owner).
   */
  async function syncFacility(f: Facility, report: RunReport): Promise<{ chain: ChainFacilityState; agreed: boolean }> {
    let chain = await ledger.facility(f.id);
    let agreed = true;
    if (!chain.registered) {
      const first = windowOf(f.createdAt, windowMs).start;
      let failure: unknown;
      try {
        await ledger.registerFacility(f.id, f.owner, registry.baselineAt(f.id, first), first);
        metrics.transactions.inc({ kind: 'register' });
        report.registered++;
        logger.info({ facilityId: f.id, firstWindowStart: first }, 'facility registered on chain');
      } catch (e) {
        // Someone else (the gateway, another oracle) may have registered it meanwhile: re-read below.
        failure = e;
        logger.warn({ err: e, facilityId: f.id }, 'registerFacility failed; re-reading the chain');
      }
      chain = await ledger.facility(f.id);
      if (!chain.registered) {
        if (failure !== undefined && !isRevert(failure)) throw failure;
        throw new Blocked(`not registered on chain: ${failure === undefined ? 'the registration did not take effect' : message(failure)}`);
      }
    }
    if (chain.owner.toLowerCase() !== f.owner.toLowerCase()) {
      // Credits are minted to the chain's owner: never settle for an owner the registry does not name.
      const differs = `the chain's owner ${chain.owner} differs from the registry's ${f.owner}`;
      if (!ledger.setFacilityOwner) throw new Blocked(differs);
      try {
        await ledger.setFacilityOwner(f.id, f.owner);
      } catch (e) {
        if (!isRevert(e)) throw e;
        throw new Blocked(`${differs} and the chain refuses the correction: ${message(e)}`);
      }
      chain = { ...chain, owner: f.owner };
      metrics.transactions.inc({ kind: 'sync' });
      report.synced++;
      logger.info({ facilityId: f.id, owner: f.owner }, 'facility owner synced to chain');
    }
    // Suspension and baseline never block settlement (the evidence header carries the baseline
    // actually applied); a failed push is retried next run.
    const wantSuspended = f.status === 'suspended';
    if (chain.suspended !== wantSuspended && ledger.setFacilitySuspended) {
      try {
        await ledger.setFacilitySuspended(f.id, wantSuspended);
        chain = { ...chain, suspended: wantSuspended };
        metrics.transactions.inc({ kind: 'sync' });
        report.synced++;
        logger.info({ facilityId: f.id, suspended: wantSuspended }, 'facility suspension synced to chain');
      } catch (e) {
        agreed = false;
        metrics.errors.inc({ kind: 'sync' });
        logger.warn({ err: e, facilityId: f.id }, 'could not sync suspension to the chain; retrying next run');
      }
    }
    if (ledger.setBaseline && chain.baselineKgPerHour !== undefined && !sameDecimalText(f.baselineKgPerHour, chain.baselineKgPerHour)) {
      // The latest configured baseline, from the later of the chain's next window and the window after now.
      const from = Math.max(toMs(chain.nextWindowStart), Math.ceil(clock() / windowMs) * windowMs);
      try {
        await ledger.setBaseline(f.id, f.baselineKgPerHour, from);
        chain = { ...chain, baselineKgPerHour: f.baselineKgPerHour };
        metrics.transactions.inc({ kind: 'sync' });
        report.synced++;
        logger.info({ facilityId: f.id, baselineKgPerHour: f.baselineKgPerHour, effectiveFrom: from }, 'facility baseline synced to chain');
      } catch (e) {
        agreed = false;
        metrics.errors.inc({ kind: 'sync' });
        logger.warn({ err: e, facilityId: f.id }, 'could not sync the baseline to the chain; retrying next run');
      }
    }
    return { chain, agreed };
  }

  /** The chain lost the facility's settlements from `from` on: roll the records back so they are settled again. */
  function rollback(f: Facility, from: number, report: RunReport, why: string): void {
    const lost = records.rollbackFrom(f.id, from);
    status.forgetFrom(f.id, from);
    known.delete(f.id);
    report.lost += lost.length;
    if (lost.length > 0) metrics.settlements.inc({ status: 'lost' }, lost.length);
    // The chain went backwards: so did our account's nonce (a locally counted one would leave a gap).
    ledger.resetNonce?.();
    logger.warn({ facilityId: f.id, from, lost, why }, 'the chain lost settlements this oracle had confirmed: settling them again');
  }

  /** Watches settlements confirmed at `blockNumber` until they are CHAIN_CONFIRMATIONS deep. */
  function watch(list: { id: string; facilityId: string; windowStart: number; root: string; blockNumber: IntLike | undefined }[]): void {
    if (confirmations === 0 || list.length === 0) return;
    const rows: UnfinalRow[] = list.map((u) => ({ id: u.id, facilityId: u.facilityId, windowStart: u.windowStart, evidenceRoot: u.root, blockNumber: u.blockNumber === undefined ? -1 : Number(u.blockNumber) }));
    status.addUnfinal(rows);
  }

  /**
   * Re-checks the facility's confirmed-but-not-final settlements against the chain: final once
   * CHAIN_CONFIRMATIONS deep; from the first one the chain lost or holds with another root (a
   * reorganisation, perhaps won by another signer), the records are rolled back, and reconcile then
   * confirms whatever the chain holds (or the window is settled again).
   */
  async function checkFinality(f: Facility, report: RunReport): Promise<void> {
    if (confirmations === 0) return;
    const list = status.unfinal(f.id);
    if (list.length === 0) return;
    const head = await ledger.blockNumber!();
    for (const u of list) {
      const on = await ledger.settlementAt(f.id, u.windowStart);
      if (!on || on.evidenceRoot.toLowerCase() !== u.evidenceRoot.toLowerCase()) {
        rollback(f, u.windowStart, report, on ? `the chain now holds root ${on.evidenceRoot.toLowerCase()} for window ${u.windowStart}` : `the chain no longer has window ${u.windowStart}`);
        return;
      }
      const block = on.blockNumber === undefined ? u.blockNumber : Number(on.blockNumber);
      if (block >= 0 && head - block + 1 >= confirmations) {
        status.markFinal(u.id);
        report.finalised++;
      } else if (block !== u.blockNumber) {
        status.addUnfinal([{ ...u, blockNumber: block }]);
      }
    }
  }

  /**
   * Confirms, in order, every window the chain settled that is not confirmed here. Returns the next
   * window start (== the chain's). The chain is the source of truth: windows confirmed here that the
   * chain lost are rolled back and settled again. Throws Blocked when the chain holds a settlement we
   * have no intent for.
   */
  async function reconcile(f: Facility, chainNext: number, report: RunReport): Promise<number> {
    if (chainNext % windowMs !== 0) throw new Blocked(`chain next window ${chainNext} is not aligned to the ${windowMs / 1000} s window`);
    await checkFinality(f, report);
    const last = records.lastConfirmedWindow(f.id);
    const open = records.firstOpenWindow(f.id);
    let w = last !== undefined ? last + windowMs : (open ?? chainNext);
    if (last === undefined && open === undefined && chainNext > windowOf(f.createdAt, windowMs).start) {
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
        rollback(f, chainNext, report, `confirmed here up to ${w}, the chain expects ${chainNext}`);
      }
      if (w > chainNext) w = chainNext;
    }
    for (; w < chainNext; w += windowMs) {
      const on = await ledger.settlementAt(f.id, w);
      if (!on) throw new Blocked(`chain is past window ${w} but has no WindowSettled event for it`);
      const id = settlementId(f.id, w);
      const root = on.evidenceRoot.toLowerCase();
      if (!records.row(id, root)) {
        throw new Blocked(`window ${id} was settled on chain with root ${root}, which no recorded intent has (a foreign oracle?)`);
      }
      watch([{ id, facilityId: f.id, windowStart: w, root, blockNumber: on.blockNumber }]);
      const outcome = records.confirm(id, root, {
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

  // ---------------------------------------------------------------------------------------------
  // A run

  interface Pending {
    facility: Facility;
    id: string;
    root: string;
    input: SettleInput;
    intent: NewIntent;
  }

  /**
   * Sends one chunk; on a revert, falls back to one entry per transaction so one bad entry cannot
   * block the rest (`refused` is told of each entry the chain refuses). Returns, per facility that
   * moved, whether the chain settled our entry (then its next window start is known from the
   * receipt) or skipped it (then the chain is read again).
   */
  async function send(chunk: Pending[], report: RunReport, refused: (p: Pending, e: unknown) => void): Promise<Map<string, number | undefined>> {
    const advanced = new Map<string, number | undefined>();
    const apply = (res: Awaited<ReturnType<OracleLedger['settleBatch']>>, sent: Pending[]) => {
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
          records.markSent(p.id, p.root, res.txHash);
          report.skippedOnChain++;
          metrics.settlements.inc({ status: 'skipped' });
          advanced.set(p.facility.id, undefined);
        }
      }
      // Watched before they are confirmed: a crash in between leaves a watch entry, never an unwatched confirmation.
      watch(sent.filter((p) => confirms.some((c) => c.id === p.id)).map((p) => ({ id: p.id, facilityId: p.facility.id, windowStart: p.input.windowStart, root: p.root, blockNumber: res.blockNumber })));
      // One transaction for the whole batch (a crash before it is a crash between send and record).
      records.confirmMany(confirms);
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
      apply(res, chunk);
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
      apply(one, [p]);
    }
    return advanced;
  }

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
    if (leaseTtl > 0 && !records.acquireLease(LEASE_NAME, holder, clock(), leaseTtl)) {
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
      const block = (f: Facility, e: unknown, kind: string) => {
        const reason = message(e);
        report.blocked.push({ facilityId: f.id, reason });
        blockedNow.add(f.id);
        known.delete(f.id);
        metrics.errors.inc({ kind });
        if (e instanceof Blocked || isRevert(e)) {
          // The chain refuses this facility (or disagrees with its records): retried with backoff,
          // reported in the API, while the others go on.
          const st = status.block(f.id, reason, now, backoff);
          blockedWith.set(f.id, fingerprint(f));
          metrics.facilityBlocked.set({ facility: f.id }, 1);
          logger.error({ facilityId: f.id, reason, attempts: st.attempts, retryAt: st.retryAt }, 'facility blocked');
        } else {
          logger.error({ err: e, facilityId: f.id }, 'facility skipped this run');
        }
      };
      // A blocked facility waits for its backoff, unless its registry record was corrected since.
      const due = facilities.filter((f) => {
        const st = status.get(f.id);
        if (st.settlementStatus !== 'blocked') return true;
        metrics.facilityBlocked.set({ facility: f.id }, 1);
        if ((st.retryAt ?? 0) <= now) return true;
        const was = blockedWith.get(f.id);
        if (was !== undefined && was !== fingerprint(f)) return true;
        report.deferred.push(f.id);
        return false;
      });
      const watched = new Set(confirmations > 0 ? status.unfinalFacilities() : []);
      // Registration and sync (idempotent), which also gives each facility's chain state.
      const states = await mapLimit(due, concurrency, async (f) => {
        const k = known.get(f.id);
        if (k && k.status === f.status && k.baseline === f.baselineKgPerHour && k.chain.owner.toLowerCase() === f.owner.toLowerCase() && !watched.has(f.id)) {
          const next = toMs(k.chain.nextWindowStart);
          if (!isClosed({ start: next, end: next + windowMs }, now, graceMs)) return undefined;
        }
        try {
          const { chain, agreed } = await syncFacility(f, report);
          if (agreed) remember(f, chain);
          else known.delete(f.id);
          return chain;
        } catch (e) {
          block(f, e, e instanceof Blocked || isRevert(e) ? 'reconcile' : 'chain');
          return undefined;
        }
      });
      let work: { f: Facility; chain: ChainFacilityState }[] = [];
      due.forEach((f, i) => {
        const chain = states[i];
        if (chain) work.push({ f, chain });
      });
      const refused = (p: Pending, e: unknown) => block(p.facility, new Blocked(`settlement of window ${p.input.windowStart} reverted: ${message(e)}`), 'revert');
      while (work.length > 0 && report.rounds < maxRounds && !closed) {
        report.rounds++;
        if (leaseTtl > 0 && !records.acquireLease(LEASE_NAME, holder, clock(), leaseTtl)) {
          report.errors.push('lease lost during the run');
          break;
        }
        const computed = await mapLimit(work, concurrency, async ({ f, chain }): Promise<Pending | undefined> => {
          try {
            const next = await reconcile(f, toMs(chain.nextWindowStart), report);
            // With CHAIN_CONFIRMATIONS, a window's start cursors come from a FINAL previous window
            // only: one that a reorganisation could still replace is never built upon.
            if (!isClosed({ start: next, end: next + windowMs }, now, graceMs) || (confirmations > 0 && status.unfinal(f.id).length > 0)) {
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
        records.insertIntents(pending.map((p) => p.intent));
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
        work = fresh.filter((x): x is { f: Facility; chain: ChainFacilityState } => x !== undefined);
      }
      for (const id of healthy) {
        if (blockedNow.has(id) || !status.clear(id)) continue;
        blockedWith.delete(id);
        metrics.facilityBlocked.remove({ facility: id });
        logger.info({ facilityId: id }, 'facility unblocked: settling again');
      }
      metrics.runs.inc({ outcome: report.errors.length ? 'failed' : 'ok' });
      metrics.blocked.set(status.listBlocked().length);
      return report;
    } catch (e) {
      metrics.runs.inc({ outcome: 'failed' });
      throw e;
    } finally {
      stopTimer();
      metrics.lastRun.set(clock() / 1000);
      if (leaseTtl > 0) records.releaseLease(LEASE_NAME, holder);
    }
  }

  async function runOnce(now?: number): Promise<RunReport> {
    if (closed) throw new DomainError('ORACLE_CLOSED', 'oracle is closed', 503);
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
  // ---------------------------------------------------------------------------------------------
  // Audit

  async function verify(id: string): Promise<VerifyReport> {
    const s = records.getSettlement(id);
    if (!s) throw errors.SETTLEMENT_NOT_FOUND(id);
    const { result, evidence } = await recompute({ facilityId: s.facilityId, windowStart: s.windowStart, windowEnd: s.windowEnd, inputs: s.inputs });
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
  }

  async function proof(id: string, deviceId: string, seq: number): Promise<ReadingProof | undefined> {
    const s = records.getSettlement(id);
    if (!s) throw errors.SETTLEMENT_NOT_FOUND(id);
    const { evidence } = await recompute({ facilityId: s.facilityId, windowStart: s.windowStart, windowEnd: s.windowEnd, inputs: s.inputs });
    if (evidence.root.toLowerCase() !== s.evidenceRoot.toLowerCase()) {
      throw errors.EVIDENCE_MISMATCH(`settlement ${id} no longer recomputes to its evidence root; see /verify`);
    }
    return readingProof(evidence, deviceId, seq);
  }

  // ---------------------------------------------------------------------------------------------
  // Scheduling

  function start(cronExpression: string): void {
    if (closed) throw new DomainError('ORACLE_CLOSED', 'oracle is closed', 503);
    if (task) return;
    if (!cron.validate(cronExpression)) throw errors.CONFIG_INVALID(`ORACLE_CRON is not a valid cron expression: ${cronExpression}`);
    const tick = () => {
      if (running) {
        logger.debug('oracle run still in progress; tick skipped');
        return;
      }
      runOnce().catch((e: unknown) => logger.error({ err: e }, 'oracle run failed'));
    };
    task = cron.schedule(cronExpression, tick, { name: 'oracle', noOverlap: true });
    logger.info({ cron: cronExpression, windowSeconds: windowMs / 1000, graceSeconds: graceMs / 1000 }, 'oracle scheduled');
    tick();
  }

  function stop(): void {
    if (!task) return;
    void task.destroy();
    task = undefined;
  }

  async function close(): Promise<void> {
    if (closed) return;
    stop();
    closed = true;
    if (running) await running.catch(() => undefined);
  }

  return {
    runOnce,
    start,
    stop,
    verify,
    proof,
    listSettlements: (q) => records.listSettlements(q),
    getSettlement: (id) => records.getSettlement(id),
    lateReadings: (facilityId, keys) => records.lateReadings(facilityId, keys),
    isLate: (deviceId, seq) => records.isLate(deviceId, seq),
    settlementOfReading: (facilityId, r) => records.settlementOfReading(facilityId, r),
    facilityStatus: (facilityId) => status.get(facilityId),
    forgetFacility: (facilityId, deviceIds) => {
      records.forgetFacility(facilityId, deviceIds);
      status.forget(facilityId);
      known.delete(facilityId);
      blockedWith.delete(facilityId);
      metrics.facilityBlocked.remove({ facility: facilityId });
    },
    records,
    status,
    close,
  };
}

/** Same decimal value ("3600" equals "3600.0"); false when either is not a decimal. */
function sameDecimalText(a: string, b: string): boolean {
  try {
    return Decimal.parse(a).cmp(Decimal.parse(b)) === 0;
  } catch {
    return false;
  }
}
