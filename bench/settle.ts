/**
 * Settle 1,000 facilities for one window through the whole oracle (store reads, methodology, evidence
 * tree, intent records, settleBatch, confirmation) on the real CreditLedger (in-process Hardhat), next
 * to the same oracle sending one transaction per facility (maxBatch 1) for another 1,000 facilities in
 * the same run, same chain, same store. Window 0 registers the facilities and warms their state; we
 * measure window 1 (first mint: zero -> non-zero balances) and window 2 (steady state).
 * Targets: >= 10x fewer transactions, <= 0.5x gas per facility (steady window).
 * With PostgreSQL 15 installed (test/helpers/postgres.ts starts a throwaway cluster), a third oracle
 * settles another 1,000 facilities (same shape, same chain, same readings store, maxBatch 100) with its
 * registry, records, status and lease in PostgreSQL, as DATABASE_URL composes it; its wall time is
 * compared with the batched SQLite side's. Target (issue 14): <= 1.5x the SQLite time.
 * Run: `npx tsx bench/settle.ts [facilities]` or `npm run bench -- settle`. Needs `npm run compile`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ethers } from 'ethers';
import { Ledger, startHardhatChain } from '../contracts/client/index.ts';
import { silentLogger } from '../domain/logger.ts';
import type { Reading } from '../domain/reading.ts';
import { openDatabase } from '../store/sqlite/db.ts';
import { openSqliteStores } from '../store/sqlite/stores.ts';
import type { Device, FacilityRegistry } from '../store/types.ts';
import { buildOracle, type OracleService, type RunReport } from '../oracle/oracle.ts';
import { openPostgresStores, type PostgresStores } from '../store/postgres/stores.ts';
import { postgresMissing, startPostgres, type PostgresCluster } from '../test/helpers/postgres.ts';

const W = 3_600_000;
const T0 = Date.UTC(2026, 0, 1);
const GRACE = 300_000;

export interface SettleSide {
  wallMs: number;
  transactions: number;
  gasPerFacility: number;
  settled: number;
}

export interface SettleWindowRow {
  window: 'first-mint' | 'steady';
  batched: SettleSide;
  single: SettleSide;
  txRatio: number;
  gasRatio: number;
  /** The same window settled with the records in PostgreSQL (absent when PostgreSQL is not installed). */
  postgres?: SettleSide;
  /** postgres wall time / batched (SQLite) wall time. */
  pgRatio?: number;
}

export interface SettleBenchResult {
  facilities: number;
  maxBatch: number;
  rows: SettleWindowRow[];
  targetsMet: boolean;
  /** Why the PostgreSQL side did not run, when it did not. */
  postgresSkipped?: string;
}

/** The registry, limited to facilities with `prefix`, each with one synthetic active meter (no scrypt hashing). */
function scopedRegistry(inner: FacilityRegistry, prefix: string): FacilityRegistry {
  return Object.assign(Object.create(inner) as FacilityRegistry, {
    listFacilities: () => inner.listFacilities().filter((f) => f.id.startsWith(prefix)),
    listDevices: (facilityId: string): Device[] => [{ deviceId: `${facilityId}-m`, facilityId, kind: 'meter', status: 'active', reportingIntervalSeconds: 60, createdAt: T0, online: true }],
  });
}

function side(r: RunReport, wallMs: number): SettleSide {
  return { wallMs: Math.round(wallMs), transactions: r.transactions, gasPerFacility: r.settled ? Math.round(Number(r.gasUsed) / r.settled) : 0, settled: r.settled };
}

export async function benchSettle(opts: { log?: (line: string) => void; facilities?: number } = {}): Promise<SettleBenchResult> {
  const log = opts.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const n = opts.facilities ?? 1000;
  const maxBatch = 100;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-settle-'));
  const chain = await startHardhatChain();
  const db = openDatabase(dir);
  const pgSkipped = postgresMissing();
  let cluster: PostgresCluster | undefined;
  let pgStores: PostgresStores | undefined;
  try {
    if (!pgSkipped) {
      cluster = await startPostgres();
      pgStores = await openPostgresStores(await cluster.createDatabase('bench_settle'), { clock: () => T0, poolSize: 10 });
    }
    const ledger = await Ledger.deploy(chain.signers[0], { windowSeconds: W / 1000 });
    const stores = openSqliteStores(db, { clock: () => T0 });
    const readings: Reading[] = [];
    for (const prefix of pgStores ? ['batch-', 'single-', 'pg-'] : ['batch-', 'single-']) {
      for (let i = 0; i < n; i++) {
        const id = `${prefix}${i}`;
        const owner = ethers.getAddress(ethers.dataSlice(ethers.id(`owner-${id}`), 12));
        const facility = { id, name: id, owner, baselineKgPerHour: '3600', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162', createdAt: T0 };
        if (prefix === 'pg-') await pgStores?.registry.createFacility(facility);
        else stores.registry.createFacility(facility);
        // One import reading per window: +5 kWh per window, varied by a few Wh so every root differs.
        for (let k = 0; k < 3; k++) {
          readings.push({ facilityId: id, deviceId: `${id}-m`, seq: k + 1, ts: T0 + k * W + W / 2, metric: 'electricity_import', value: `${1000 + 5 * k}.${String(i % 1000).padStart(3, '0')}`, unit: 'kWh', reset: false, receivedAt: T0 });
        }
      }
    }
    for (let i = 0; i < readings.length; i += 5000) await stores.readings.commit(readings.slice(i, i + 5000));
    const make = (prefix: string, batch: number) =>
      buildOracle({ db, readings: stores.readings, registry: scopedRegistry(stores.registry, prefix), ledger, logger: silentLogger, windowMs: W, graceMs: GRACE, maxBatch: batch, lease: false });
    const batched = make('batch-', maxBatch);
    const single = make('single-', 1);
    const onPg: OracleService | undefined = pgStores
      ? buildOracle(
          { db, readings: stores.readings, registry: scopedRegistry(pgStores.registry, 'pg-'), ledger, logger: silentLogger, windowMs: W, graceMs: GRACE, maxBatch, lease: { ttlMs: 60_000, holder: 'bench' } },
          { records: pgStores.records, status: pgStores.status },
        )
      : undefined;
    const closeOf = (k: number) => T0 + (k + 1) * W + GRACE;
    const t0 = performance.now();
    await batched.runOnce(closeOf(0));
    await single.runOnce(closeOf(0));
    await onPg?.runOnce(closeOf(0));
    log(`setup: ${(pgStores ? 3 : 2) * n} facilities registered on chain and window 0 settled in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    const rows: SettleWindowRow[] = [];
    for (const [k, label] of [[1, 'first-mint'], [2, 'steady']] as const) {
      let s = performance.now();
      const rb = await batched.runOnce(closeOf(k));
      const b = side(rb, performance.now() - s);
      s = performance.now();
      const rs = await single.runOnce(closeOf(k));
      const o = side(rs, performance.now() - s);
      if (b.settled !== n || o.settled !== n) throw new Error(`expected ${n} settlements per side, got ${b.settled} and ${o.settled}`);
      const row: SettleWindowRow = { window: label, batched: b, single: o, txRatio: o.transactions / b.transactions, gasRatio: b.gasPerFacility / o.gasPerFacility };
      if (onPg) {
        s = performance.now();
        const rp = await onPg.runOnce(closeOf(k));
        const p = side(rp, performance.now() - s);
        if (p.settled !== n) throw new Error(`expected ${n} settlements with the records in PostgreSQL, got ${p.settled}`);
        row.postgres = p;
        row.pgRatio = p.wallMs / Math.max(1, b.wallMs);
      }
      rows.push(row);
    }
    await batched.close();
    await single.close();
    await onPg?.close();

    log(`settling ${n} facilities for one window (maxBatch ${maxBatch}) vs one transaction per facility, same oracle, same chain:`);
    log('window       side     wall ms  transactions  gas/facility');
    for (const r of rows) {
      for (const [name, x] of [['batched', r.batched], ['single', r.single]] as const) {
        log(`${r.window.padEnd(11)}  ${name.padEnd(7)}  ${String(x.wallMs).padStart(7)}  ${String(x.transactions).padStart(12)}  ${String(x.gasPerFacility).padStart(12)}`);
      }
      if (r.postgres) log(`${r.window.padEnd(11)}  ${'pg'.padEnd(7)}  ${String(r.postgres.wallMs).padStart(7)}  ${String(r.postgres.transactions).padStart(12)}  ${String(r.postgres.gasPerFacility).padStart(12)}`);
      log(`${r.window.padEnd(11)}  ratios: ${r.txRatio.toFixed(0)}x fewer transactions, ${r.gasRatio.toFixed(3)}x gas per facility`);
      if (r.pgRatio !== undefined) log(`${r.window.padEnd(11)}  records in PostgreSQL: ${r.pgRatio.toFixed(2)}x the SQLite (batched) wall time`);
    }
    const steady = rows[1];
    const targetsMet = steady.txRatio >= 10 && steady.gasRatio <= 0.5;
    log(`targets (steady): >= 10x fewer transactions -> ${steady.txRatio.toFixed(0)}x; <= 0.5x gas per facility -> ${steady.gasRatio.toFixed(3)}x: ${targetsMet ? 'MET' : 'NOT MET'}`);
    if (pgSkipped) log(`records in PostgreSQL: skipped (${pgSkipped})`);
    else {
      const worst = Math.max(...rows.map((r) => r.pgRatio ?? 0));
      log(`target (issue 14): records in PostgreSQL <= 1.5x the SQLite time -> worst window ${worst.toFixed(2)}x: ${worst <= 1.5 ? 'MET' : 'NOT MET'}`);
    }
    return { facilities: n, maxBatch, rows, targetsMet, ...(pgSkipped ? { postgresSkipped: pgSkipped } : {}) };
  } finally {
    await pgStores?.close().catch(() => undefined);
    await cluster?.stop();
    db.close();
    await chain.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const arg = Number(process.argv[2]);
  await benchSettle(Number.isSafeInteger(arg) && arg > 0 ? { facilities: arg } : {});
}
