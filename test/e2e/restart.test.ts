/**
 * The stack stopped mid-run and started again on the same DATA_DIR: balances, registry and readings
 * survive (anvil's state file, the SQLite file), the fleet continues its registers and seqs from its
 * state file, and settlement resumes with no gap and no repeat, including the windows that closed
 * while everything was down.
 */
import path from 'node:path';
import t from 'tap';
import { startFleet } from '../../simulators/fleet.ts';
import { openDatabase } from '../../store/sqlite/db.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import type { Stack } from '../../main.ts';
import { ADMIN_KEY, GRACE_SECONDS, WINDOW_SECONDS, api, checkFacility, runFleetFor, start, tempDataDir, waitSettledThrough, windowsPass } from './helpers.ts';

async function runFleet(stack: Stack, dataDir: string, windows: number) {
  const fleet = await startFleet({
    url: stack.mqttUrl,
    devices: 8,
    rate: 3,
    seed: 'e2e-restart',
    faults: 'duplicate=0.05,garbage=0.03',
    api: { url: stack.httpUrl, key: ADMIN_KEY },
    windowSeconds: WINDOW_SECONDS,
    graceSeconds: GRACE_SECONDS,
    statePath: path.join(dataDir, 'sim-state.json'),
    recordAcks: true,
    progress: false,
  });
  await runFleetFor(fleet, windows, 60);
  const summary = await fleet.stop();
  return { summary, lastTs: Date.now() };
}

async function snapshot(stack: Stack, facilityIds: string[]) {
  const out: Record<string, { balance: unknown; readings: number; settlements: number }> = {};
  for (const f of facilityIds) {
    const b = await api(stack, `/v1/facilities/${f}/balance`);
    const { items } = await api(stack, `/v1/settlements?facilityId=${f}&limit=1000`);
    // Exact count from the SQLite file (a second connection), not a listing capped by its limit.
    const db = openDatabase(stack.config.dataDir);
    let readings: number;
    try {
      readings = (db.prepare('SELECT COUNT(*) AS n FROM readings WHERE facility_id = ?').get(f) as { n: number }).n;
    } finally {
      db.close();
    }
    out[f] = { balance: { balanceGrams: b.balanceGrams, mintedGrams: b.mintedGrams, burnedGrams: b.burnedGrams, deficitGrams: b.deficitGrams }, readings, settlements: items.length };
  }
  return out;
}

t.test('stop mid-run, start again on the same DATA_DIR: nothing lost, no gap, no repeat', async (t) => {
  const dataDir = tempDataDir(t);
  const first = await start(t, dataDir);
  const contract = first.contractAddress;
  const run1 = await runFleet(first, dataDir, 3);
  const facilityIds = run1.summary.facilityIds;
  await waitSettledThrough(first, facilityIds, run1.lastTs);
  const before = await snapshot(first, facilityIds);
  await first.close();

  // Down for a couple of windows, then up again on the same directory.
  await windowsPass(2);
  const second = await start(t, dataDir);
  t.equal(second.contractAddress, contract, 'the contracts were not deployed again');
  const after = await snapshot(second, facilityIds);
  for (const f of facilityIds) {
    t.ok(before[f].readings > 0, `${f}: readings stored before the restart (${before[f].readings})`);
    t.same(after[f].balance, before[f].balance, `${f}: balances read from the restarted chain are intact`);
    t.equal(after[f].readings, before[f].readings, `${f}: readings intact`);
    t.ok(after[f].settlements >= before[f].settlements, `${f}: settlement records intact`);
  }

  const run2 = await runFleet(second, dataDir, 3);
  t.ok(run2.summary.readingsAcked > 0, 'the fleet carried on after the restart');
  await waitSettledThrough(second, facilityIds, run2.lastTs);

  // Every acknowledged reading of both runs is stored; seqs continued rather than restarting.
  const db = openDatabase(dataDir);
  const { readings } = openSqliteStores(db);
  let missing = 0;
  for (const s of [run1.summary, run2.summary]) for (const d of s.deviceDetails) for (const seq of d.ackedSeqs ?? []) if (!(await readings.get(d.deviceId, seq))) missing++;
  db.close();
  t.equal(missing, 0, 'every acknowledged reading of both runs is stored');
  const firstSeqs = new Map(run1.summary.deviceDetails.map((d) => [d.deviceId, d.lastSeq]));
  t.ok(run2.summary.deviceDetails.every((d) => Math.min(...(d.ackedSeqs ?? [Infinity])) > (firstSeqs.get(d.deviceId) ?? 0)), 'seqs continued across the restart');

  for (const f of facilityIds) await checkFacility(t, second, f);
});
