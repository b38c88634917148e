/**
 * Embedded reading store (store/sqlite.ts), on a temp file with the production pragmas (WAL,
 * synchronous=FULL):
 * - group commit of 500-reading batches (the largest MQTT payload) with all the stateful checks,
 *   against a baseline of plain INSERTs of the same rows into a bare table in one transaction;
 * - consume() of one window on a device with 1e5 historic readings, against the same query made
 *   to scan the table (what settling would cost without the indexes);
 * - the PostgreSQL store (store/postgres/readings.ts) committing the same batches, on a throwaway
 *   PostgreSQL 15 cluster started for the run (fsync and synchronous_commit on; test/helpers/
 *   postgres.ts), one batch at a time and with two batches in flight, against the SQLite store's
 *   rate (the bar: at least 0.5x). Skipped, with the reason, when PostgreSQL is not installed.
 * Run alone: npx tsx bench/store-commit.ts [--batches 200] [--devices 50]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { openDatabase } from '../store/sqlite/db.ts';
import { openSqliteStores } from '../store/sqlite/stores.ts';
import type { Reading } from '../domain/reading.ts';
import { openPostgresReadingStore } from '../store/postgres/readings.ts';
import { postgresMissing, startPostgres } from '../test/helpers/postgres.ts';

const BATCH = 500;
const T0 = Date.parse('2026-01-01T00:00:00Z');

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

function makeBatches(batches: number, devices: number): Reading[][] {
  const seqs = new Array<number>(devices).fill(0);
  const out: Reading[][] = [];
  for (let b = 0; b < batches; b++) {
    const batch: Reading[] = [];
    for (let i = 0; i < BATCH; i++) {
      const d = (b * BATCH + i) % devices;
      const seq = ++seqs[d];
      const ts = T0 + seq * 1000;
      batch.push({ facilityId: 'f1', deviceId: `d${d}`, seq, ts, metric: 'electricity_import', value: `${seq}.5`, unit: 'kWh', reset: false, receivedAt: ts });
    }
    out.push(batch);
  }
  return out;
}

export async function benchStore(opts: { log?: (line: string) => void; batches?: number; devices?: number } = {}) {
  const log = opts.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const batches = opts.batches ?? 200;
  const devices = opts.devices ?? 50;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mrv-bench-store-'));
  const db = openDatabase(dir);
  try {
    const { readings } = openSqliteStores(db);
    const work = makeBatches(batches, devices);

    // Baseline: the same rows, plain INSERT, one transaction per batch, no checks, no indexes.
    db.exec('CREATE TABLE bare (device_id TEXT, seq INTEGER, facility_id TEXT, ts INTEGER, metric TEXT, value TEXT, unit TEXT, reset INTEGER, received_at INTEGER)');
    const ins = db.prepare('INSERT INTO bare VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
    const bareTx = db.transaction((rows: Reading[]) => {
      for (const r of rows) ins.run(r.deviceId, r.seq, r.facilityId, r.ts, r.metric, r.value, r.unit, 0, r.receivedAt);
    });
    const bareTimes: number[] = [];
    for (const batch of work) {
      const t = performance.now();
      bareTx.immediate(batch);
      bareTimes.push(performance.now() - t);
    }

    const times: number[] = [];
    let stored = 0;
    for (const batch of work) {
      const t = performance.now();
      const out = await readings.commit(batch);
      times.push(performance.now() - t);
      for (const o of out) if (o.status === 'stored') stored++;
    }
    const rate = (ts: number[]) => Math.round(((ts.length * BATCH) / ts.reduce((a, b) => a + b, 0)) * 1000);
    const ours = rate(times);
    const bare = rate(bareTimes);
    log(`commit: ${batches} batches x ${BATCH} readings over ${devices} devices (stored ${stored}), synchronous=FULL`);
    log(`  store.commit   ${String(ours).padStart(7)} readings/s  p50 ${pct(times, 50).toFixed(2)} ms  p99 ${pct(times, 99).toFixed(2)} ms per batch`);
    log(`  bare INSERT    ${String(bare).padStart(7)} readings/s  p50 ${pct(bareTimes, 50).toFixed(2)} ms  p99 ${pct(bareTimes, 99).toFixed(2)} ms per batch`);
    log(`  ratio ${(ours / bare).toFixed(2)}x of bare inserts`);

    // consume() on a device with 1e5 historic readings.
    const N = 100_000;
    const STEP = 10_000;
    for (let s = 1; s <= N; s += 10_000) {
      const batch: Reading[] = [];
      for (let seq = s; seq < s + 10_000; seq++) {
        batch.push({ facilityId: 'f1', deviceId: 'big', seq, ts: T0 + seq * STEP, metric: 'natural_gas', value: String(seq), unit: 'm3', reset: false, receivedAt: 0 });
      }
      await readings.commit(batch);
    }
    const W = 3600_000;
    const winStart = Math.floor((T0 + N * STEP) / W) * W - W;
    const prevMax = Math.floor((winStart - T0) / STEP);
    const q = { deviceId: 'big', mark: { maxSeq: N, late: 0 }, before: winStart + W, prev: { mark: { maxSeq: prevMax, late: 0 }, before: winStart } };
    const ct: number[] = [];
    let n = 0;
    for (let i = 0; i < 100; i++) {
      const t = performance.now();
      n = (await readings.consume(q)).length;
      ct.push(performance.now() - t);
    }
    const scan = db.prepare(
      `SELECT * FROM readings NOT INDEXED WHERE device_id = ? AND ((seq > ? AND seq <= ? AND ts < ?) OR (seq <= ? AND ts >= ? AND ts < ?)) ORDER BY seq`,
    );
    const st: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t = performance.now();
      scan.all('big', prevMax, N, winStart + W, prevMax, winStart, winStart + W);
      st.push(performance.now() - t);
    }
    log(`consume one window (${n} readings) of a device with 1e5 readings:`);
    log(`  consume()      p50 ${pct(ct, 50).toFixed(3)} ms  p99 ${pct(ct, 99).toFixed(3)} ms`);
    log(`  full scan      p50 ${pct(st, 50).toFixed(3)} ms`);
    log(`  ratio ${(pct(st, 50) / pct(ct, 50)).toFixed(1)}x faster than scanning`);
    const postgres = await benchPostgres(work, ours, log);
    return { commitReadingsPerSec: ours, bareReadingsPerSec: bare, commitP99Ms: pct(times, 99), consumeP50Ms: pct(ct, 50), scanP50Ms: pct(st, 50), ...postgres };
  } finally {
    db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The same batches through the PostgreSQL store: one at a time, then two in flight; ratios to SQLite's rate. */
async function benchPostgres(work: Reading[][], sqliteRate: number, log: (line: string) => void) {
  const why = postgresMissing();
  if (why) {
    log(`postgres: skipped (${why})`);
    return {};
  }
  const cluster = await startPostgres();
  try {
    const rate = (n: number, ms: number) => Math.round((n / ms) * 1000);
    const run = async (inFlight: number) => {
      const store = await openPostgresReadingStore(await cluster.createDatabase(), { limits: () => undefined, poolSize: inFlight + 1 });
      try {
        const times: number[] = [];
        let next = 0;
        let stored = 0;
        const t0 = performance.now();
        const lane = async () => {
          while (next < work.length) {
            const batch = work[next++];
            const t = performance.now();
            const out = await store.commit(batch);
            times.push(performance.now() - t);
            for (const o of out) if (o.status === 'stored') stored++;
          }
        };
        await Promise.all(Array.from({ length: inFlight }, lane));
        const elapsed = performance.now() - t0;
        if (stored !== work.length * BATCH) throw new Error(`postgres stored ${stored} of ${work.length * BATCH}`);
        return { rate: rate(stored, elapsed), p50: pct(times, 50), p99: pct(times, 99) };
      } finally {
        await store.close();
      }
    };
    const one = await run(1);
    const two = await run(2);
    log(`postgres store (PostgreSQL 15, fsync on, synchronous_commit on, same batches):`);
    log(`  1 in flight    ${String(one.rate).padStart(7)} readings/s  p50 ${one.p50.toFixed(2)} ms  p99 ${one.p99.toFixed(2)} ms per batch`);
    log(`  2 in flight    ${String(two.rate).padStart(7)} readings/s  p50 ${two.p50.toFixed(2)} ms  p99 ${two.p99.toFixed(2)} ms per batch`);
    log(`  ratio ${(one.rate / sqliteRate).toFixed(2)}x (1 in flight), ${(two.rate / sqliteRate).toFixed(2)}x (2 in flight) of the SQLite store's commit (bar: 0.5x)`);
    return { pgCommitReadingsPerSec: one.rate, pgCommit2InFlightReadingsPerSec: two.rate, pgCommitP99Ms: one.p99, pgRatioToSqlite: one.rate / sqliteRate };
  } finally {
    await cluster.stop();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? Number(process.argv[i + 1]) : undefined;
  };
  await benchStore({ batches: arg('--batches'), devices: arg('--devices') });
}
