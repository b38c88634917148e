/**
 * The oracle as one object for the processes that run it (`npm start`, `npm run start:oracle`): it
 * composes the jobs, each in its own module, on one SQLite file and one chain client:
 *  - settle.ts: `runOnce(now)` settles every closed, unsettled window exactly once, with the lease;
 *    per run chain-sync.ts brings the chain's registry record in line with the registry and
 *    reconcile.ts the records in line with the chain; inputs.ts gathers what a window is computed
 *    from; send.ts sends the intents and records what the chain settled;
 *  - schedule.ts: node-cron calls runOnce;
 *  - audit.ts: the records as the gateway reads them, verify and proof (read-only: the gateway uses
 *    that module directly and never builds an oracle).
 */
import os from 'node:os';
import type { Registry as PromRegistry } from 'prom-client';
import { errors } from '../domain/errors.ts';
import type { Logger } from '../domain/logger.ts';
import type { Db } from '../store/sqlite/db.ts';
import { DEFAULT_BACKOFF, type Awaitable, type Backoff, type CorrectionRecords, type FacilityRegistry, type OracleRecords, type OracleStatus, type ReadingStore } from '../store/types.ts';
import { SqliteOracleRecords } from '../store/sqlite/records.ts';
import { SqliteCorrections } from '../store/sqlite/corrections.ts';
import { SqliteOracleStatus } from '../store/sqlite/status.ts';
import { buildAudit, settlementView, type SettlementAudit, type SettlementView } from './audit.ts';
import type { LedgerPort } from '../contracts/client/port.ts';
import type { CorrectionPort } from '../contracts/client/corrections.ts';
import { buildCorrectionRun, buildCorrectionSender, buildCorrector } from './corrections.ts';
import { oracleMetrics } from './metrics.ts';
import { schedule } from './schedule.ts';
import { buildSettler, type RunReport } from './settle.ts';

export type { RunReport } from './settle.ts';

export interface OracleDeps {
  db: Db;
  readings: ReadingStore;
  registry: FacilityRegistry;
  ledger: LedgerPort;
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
  /**
   * The ledger's correction side (CreditLedger) on the oracle's key: corrections are sent through it
   * after each run. Absent: they are recorded (and the voids applied) but not sent.
   */
  correctionPort?: CorrectionPort;
}

/** The oracle on any records (PostgreSQL's answer through promises). */
export interface OracleService extends SettlementView, SettlementAudit {
  runOnce(now?: number): Promise<RunReport>;
  /** Schedules runOnce with node-cron (seconds field allowed) and runs once at once. */
  start(cronExpression: string): void;
  stop(): void;
  isLate(deviceId: string, seq: number): Awaitable<boolean>;
  readonly records: OracleRecords;
  readonly status: OracleStatus;
  close(): Promise<void>;
}

/** `T` with every Awaitable result synchronous (the SQLite records answer at once). */
type Sync<T> = { [K in keyof T]: T[K] extends (...a: infer A) => infer R ? (...a: A) => Awaited<R> : T[K] };

/** The oracle on the SQLite file's records (no `shared` records given): its reads are synchronous. */
export type Oracle = SqliteOracle;
export type SqliteOracle = Omit<OracleService, keyof SettlementView | 'records' | 'status' | 'isLate'> &
  Sync<SettlementView> & { readonly records: SqliteOracleRecords; readonly status: SqliteOracleStatus; isLate(deviceId: string, seq: number): boolean };

/**
 * What the oracle may take from the stores (store/open.ts) instead of `deps.db`: with DATABASE_URL,
 * PostgreSQL's (store/postgres/stores.ts), shared by every oracle and gateway on the database. Without
 * `corrections`, the voids and corrections are `deps.db`'s.
 */
export interface SharedRecords {
  records: OracleRecords;
  status: OracleStatus;
  corrections?: CorrectionRecords;
}

/** The oracle on `deps.db`'s records, status, voids and corrections, or on `shared` ones. */
export function buildOracle(deps: OracleDeps): SqliteOracle;
export function buildOracle(deps: OracleDeps, shared: SharedRecords): OracleService;
export function buildOracle(deps: OracleDeps, shared?: SharedRecords): OracleService | SqliteOracle {
  const { db, readings, registry, ledger, windowMs, graceMs } = deps;
  if (!Number.isSafeInteger(windowMs) || windowMs <= 0 || windowMs % 1000 !== 0) {
    throw errors.CONFIG_INVALID(`window length must be a positive whole number of seconds (got ${windowMs} ms)`);
  }
  const clock = deps.clock ?? Date.now;
  const logger = deps.logger.child({ component: 'oracle' });
  const metrics = oracleMetrics(deps.metrics);
  const records = shared?.records ?? new SqliteOracleRecords(db, clock);
  const status = shared?.status ?? new SqliteOracleStatus(db);
  // SQLite checks at once (throws here); PostgreSQL before the first run does anything.
  const ready = Promise.resolve(records.checkWindow(windowMs));
  ready.catch((err: unknown) => logger.error({ err }, 'the records refuse this window length'));
  const confirmations = Math.max(0, Math.floor(deps.confirmations ?? 0));
  if (confirmations > 0 && !ledger.blockNumber) throw errors.CONFIG_INVALID('CHAIN_CONFIRMATIONS > 0 needs a ledger client that reads block numbers');
  const corrections: CorrectionRecords = shared?.corrections ?? new SqliteCorrections(db, clock);
  const settler = buildSettler({
    records,
    status,
    readings,
    registry,
    ledger,
    logger,
    metrics,
    windowMs,
    graceMs,
    clock,
    maxBatch: Math.max(1, deps.maxBatch ?? 100),
    maxRounds: Math.max(1, deps.maxRounds ?? 1000),
    concurrency: Math.max(1, deps.concurrency ?? 8),
    lease: {
      ttlMs: deps.lease === false ? 0 : (deps.lease?.ttlMs ?? 60_000),
      holder: (deps.lease && deps.lease.holder) || `${os.hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 10)}`,
    },
    confirmations,
    backoff: { ...DEFAULT_BACKOFF, ...deps.backoff },
    voids: corrections,
  });
  const correctionRun = buildCorrectionRun({
    corrector: buildCorrector({ readings, records, corrections }),
    corrections,
    records,
    ...(deps.correctionPort ? { sender: buildCorrectionSender({ port: deps.correctionPort, corrections, logger }) } : {}),
    logger,
    windowMs,
  });
  const reader = settlementView(records, status);
  const audit = buildAudit({ records, readings, ledger });
  /**
   * Corrections a new void calls for first (so the next window starts from a corrected cursor), the
   * settlement run, then the corrections it may call for (planned, and sent when a port is given).
   */
  async function runOnce(now?: number): Promise<RunReport> {
    await ready;
    if (!settler.busy()) await correctionRun.run();
    const report = await settler.runOnce(now);
    if (!report.skipped) await correctionRun.run();
    return report;
  }
  let scheduled: { stop(): void } | undefined;
  let closed = false;

  function stop(): void {
    scheduled?.stop();
    scheduled = undefined;
  }

  return {
    ...reader,
    ...audit,
    records,
    status,
    runOnce,
    start(cronExpression) {
      if (closed) throw errors.ORACLE_CLOSED();
      if (scheduled) return;
      scheduled = schedule({ cronExpression, run: () => runOnce(), busy: settler.busy, logger, windowMs, graceMs });
    },
    stop,
    isLate: (deviceId, seq) => records.isLate(deviceId, seq),
    async forgetFacility(facilityId, deviceIds) {
      await reader.forgetFacility(facilityId, deviceIds);
      settler.forget(facilityId);
    },
    async close() {
      if (closed) return;
      stop();
      closed = true;
      await settler.close();
    },
  };
}
