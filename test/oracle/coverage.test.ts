/**
 * Issue 10 items 2-4 at the oracle level, over the real SQLite store (its ingest rules, arrival numbers
 * and visibility marks) with the in-memory ledger: suspending the CO2 meter earns nothing, a device
 * silent mid-window or with a missing interval reading leaves the window incomplete, a reading that
 * arrives after higher seqs and after a settlement is counted exactly once (late), a decommissioning
 * takes a device out of coverage from its time on and is recorded. W = 10 s, grace 2 s.
 */
import t, { type Test } from 'tap';
import { silentLogger } from '../../domain/logger.ts';
import type { Metric, Reading } from '../../domain/reading.ts';
import { openDatabase } from '../../store/sqlite/db.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import { buildOracle, type OracleDeps } from '../../oracle/oracle.ts';
import { MemoryLedger } from '../helpers/memory-ledger.ts';

const W = 10_000;
const GRACE = 2_000;
const OWNER = '0x1111111111111111111111111111111111111111';

function setup(t: Test, opts: Partial<OracleDeps> = {}) {
  const dir = t.testdir();
  const db = openDatabase(dir);
  t.teardown(() => db.close());
  const registryClock = { now: 0 };
  const stores = openSqliteStores(db, { clock: () => registryClock.now });
  const ledger = new MemoryLedger();
  const oracle = buildOracle({ db, readings: stores.readings, registry: stores.registry, ledger, logger: silentLogger, windowMs: W, graceMs: GRACE, ...opts });
  t.teardown(() => oracle.close());
  return { db, ...stores, ledger, oracle, registryClock };
}

function rd(deviceId: string, seq: number, ts: number, metric: Metric, value: string, reset = false): Reading {
  const unit = metric === 'natural_gas' ? 'm3' : metric === 'co2_direct' ? 'kg' : 'kWh';
  return { facilityId: 'F', deviceId, seq, ts, metric, value, unit, reset, receivedAt: ts };
}

function facility(registry: ReturnType<typeof openSqliteStores>['registry'], baseline = '3600') {
  return registry.createFacility({ id: 'F', name: 'F', owner: OWNER, baselineKgPerHour: baseline, gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162', createdAt: 0 });
}

/** Commits and asserts every reading was stored (a rejection would make the scenario meaningless). */
async function commit(t: Test, readings: ReturnType<typeof openSqliteStores>['readings'], batch: Reading[]) {
  const out = await readings.commit(batch);
  t.same(out.map((o) => o.status), batch.map(() => 'stored'), `stored ${batch.map((r) => `${r.deviceId}:${r.seq}`).join(', ')}`);
}

t.test('suspending the CO2 meter earns no credits (issue 10 item 3)', async (t) => {
  // Baseline 10,800 kg/h = 30 kg a window. The grid meter reads flat; the CEMS measures 300 kg in window 1.
  const { readings, registry, ledger, oracle } = setup(t);
  facility(registry, '10800');
  registry.createDevice('F', 'grid', 'grid');
  registry.createDevice('F', 'cems', 'cems');
  await commit(t, readings, [
    rd('grid', 1, 5_000, 'electricity_import', '1000'),
    rd('cems', 1, 5_000, 'co2_direct', '0'),
    rd('grid', 2, 15_000, 'electricity_import', '1000'),
    rd('cems', 2, 15_000, 'co2_direct', '300'),
  ]);
  // The regulator suspends the CO2 meter before window 1 is settled (it can no longer connect).
  registry.updateDevice('cems', { status: 'suspended' });
  await oracle.runOnce(2 * W + GRACE);
  // Its 300 kg still count: 30 - 300 = -270 kg -> -270,000 g (before: it was left out, +30,000 g minted).
  const s1 = oracle.getSettlement('F-10000');
  t.match(s1, { complete: true, netGrams: '-270000', mintedGrams: '0' });
  t.same(s1?.inputs.devices.map((d) => [d.deviceId, d.inCoverage, d.status]), [['cems', true, 'ok'], ['grid', true, 'ok']]);
  t.equal(s1?.inputs.totals.co2_direct, '300');
  t.equal((await oracle.verify('F-10000')).match, true);
  // Window 2: the suspended meter is silent, the grid meter reads on: incomplete, capped at 0 (+30,000 before).
  await commit(t, readings, [rd('grid', 3, 25_000, 'electricity_import', '1000')]);
  await oracle.runOnce(3 * W + GRACE);
  t.match(oracle.getSettlement('F-20000'), { complete: false, netGrams: '0', mintedGrams: '0' });
  t.equal(oracle.getSettlement('F-20000')?.inputs.rawNetGrams, '30000');
  t.equal(await ledger.heldBy(OWNER), 0n, 'nothing minted at any point');
});

t.test('a device silent after the start of the window leaves it incomplete; a reading after the end rescues it (item 4)', async (t) => {
  const { readings, registry, oracle } = setup(t);
  facility(registry);
  // Declared to report every second: its last reading in a window must be at or after the window end - 2 s.
  registry.createDevice('F', 'd1', 'grid', { reportingIntervalSeconds: 1 });
  await commit(t, readings, [rd('d1', 1, 9_000, 'electricity_import', '1000'), rd('d1', 2, 11_000, 'electricity_import', '1001')]);
  await oracle.runOnce(2 * W + GRACE);
  // Window 1: last reading at 11 s < 20 s - 2 s: silent -> incomplete; 1 kWh = 0.5366 kg -> raw 9463, capped at 0.
  const s1 = oracle.getSettlement('F-10000');
  t.match(s1, { complete: false, netGrams: '0' });
  t.equal(s1?.inputs.rawNetGrams, '9463');
  t.same(s1?.inputs.devices.map((d) => d.status), ['silent']);
  // Window 2: the device reads at 21 s only, but a reading at 30 s (window 3) is visible when window 2 is settled.
  await commit(t, readings, [rd('d1', 3, 21_000, 'electricity_import', '1002'), rd('d1', 4, 30_000, 'electricity_import', '1003')]);
  await oracle.runOnce(3 * W + GRACE);
  const s2 = oracle.getSettlement('F-20000');
  t.match(s2, { complete: true, netGrams: '9463' });
  t.same(s2?.inputs.devices[0].coverage, { before: { seq: 2, ts: 11_000 }, lastIn: { seq: 3, ts: 21_000 }, after: true, between: 1, interval: false });
  t.equal((await oracle.verify('F-10000')).match, true);
  t.equal((await oracle.verify('F-20000')).match, true);
});

t.test('a co2 reading arriving after higher seqs and after a settlement: counted once, in the next window, late (item 2)', async (t) => {
  const { readings, registry, oracle, ledger } = setup(t);
  facility(registry, '36000'); // 100 kg a window
  registry.createDevice('F', 'cems', 'cems');
  // Seq 2 (ts 12 s, 40 kg) is held back in the device's buffer; seq 1 and 3 arrive.
  await commit(t, readings, [rd('cems', 1, 5_000, 'co2_direct', '1'), rd('cems', 3, 15_000, 'co2_direct', '10')]);
  await oracle.runOnce(2 * W + GRACE);
  // Window 1: seq 2 is missing between seq 1 (before) and seq 3 (last in): unmeasured emissions, incomplete.
  // Counted: 10 kg -> raw 90,000 g, capped at 0.
  const s1 = oracle.getSettlement('F-10000');
  t.match(s1, { complete: false, netGrams: '0' });
  t.same(s1?.inputs.devices.map((d) => d.status), ['seq_gap']);
  // Seq 2 arrives now, below the stored seq 3 (it used to be refused: seq_not_increasing), then seq 4.
  await commit(t, readings, [rd('cems', 2, 12_000, 'co2_direct', '40')]);
  await commit(t, readings, [rd('cems', 4, 25_000, 'co2_direct', '5')]);
  t.equal((await readings.get('cems', 2))?.arrival, 1, 'stored as the first late arrival');
  await oracle.runOnce(3 * W + GRACE);
  // Window 2 counts seq 2 (late) and seq 4: 45 kg -> 100 - 45 = +55,000 g, complete (before: seq 3, last in: seq 4).
  const s2 = oracle.getSettlement('F-20000');
  t.match(s2, { complete: true, netGrams: '55000' });
  t.same(s2?.inputs.lateKeys, ['cems:2']);
  t.equal(s2?.inputs.totals.co2_direct, '45');
  t.same(s2?.inputs.devices[0].mark, { maxSeq: 4, late: 1 });
  t.same(s2?.inputs.devices[0].prev, { mark: { maxSeq: 3, late: 0 }, before: 20_000 });
  t.equal(oracle.isLate('cems', 2), true);
  // Later windows never count it again.
  await commit(t, readings, [rd('cems', 5, 35_000, 'co2_direct', '1'), rd('cems', 6, 45_000, 'co2_direct', '1')]);
  await oracle.runOnce(5 * W + GRACE);
  const all = oracle.listSettlements({ facilityId: 'F' });
  t.same(all.map((s) => s.inputs.totals.co2_direct), ['1', '10', '45', '1', '1'], 'each reading counted in exactly one window');
  for (const s of all) t.equal((await oracle.verify(s.id)).match, true, `${s.id} verifies`);
  // The proof of the late reading is in window 2's evidence, flagged late, and in no other.
  t.same((await oracle.proof('F-20000', 'cems', 2))?.leaf, ['reading', 'cems', '2', '12000', 'co2_direct', '40', false, true, '']);
  t.equal(await oracle.proof('F-10000', 'cems', 2), undefined);
  t.equal(await ledger.heldBy(OWNER), 55_000n + 2n * 99_000n);
});

t.test('a register reading arriving after a higher seq was settled is covered: nothing counted twice', async (t) => {
  const { readings, registry, oracle } = setup(t);
  facility(registry);
  registry.createDevice('F', 'm', 'grid');
  await commit(t, readings, [rd('m', 1, 5_000, 'electricity_import', '1000'), rd('m', 3, 15_000, 'electricity_import', '1010')]);
  await oracle.runOnce(2 * W + GRACE);
  // 10 kWh in window 1 (5.366 kg -> 4634 g).
  t.match(oracle.getSettlement('F-10000'), { complete: true, netGrams: '4634' });
  await commit(t, readings, [rd('m', 2, 12_000, 'electricity_import', '1004'), rd('m', 4, 25_000, 'electricity_import', '1010')]);
  await oracle.runOnce(3 * W + GRACE);
  // Seq 2 is below the cursor (seq 3): covered, adds nothing; 1010 -> 1010: 0 kWh -> +10,000 g.
  const s2 = oracle.getSettlement('F-20000');
  t.match(s2, { complete: true, netGrams: '10000' });
  t.equal(s2?.inputs.totals.electricity_import, '0');
  t.same(s2?.inputs.lateKeys, ['m:2']);
});

t.test('decommissioning takes a device out of coverage from its time on, is recorded, and its readings still count', async (t) => {
  const { readings, registry, oracle, registryClock } = setup(t);
  facility(registry);
  registry.createDevice('F', 'grid', 'grid');
  registry.createDevice('F', 'old', 'cems');
  await commit(t, readings, [rd('grid', 1, 5_000, 'electricity_import', '1000'), rd('old', 1, 5_000, 'co2_direct', '1')]);
  await commit(t, readings, [rd('grid', 2, 15_000, 'electricity_import', '1005'), rd('old', 2, 19_000, 'co2_direct', '2')]);
  // The regulator decommissions the old CEMS at 20 s (the start of window 2).
  registryClock.now = 20_000;
  registry.updateDevice('old', { status: 'decommissioned', reason: 'replaced by a new CEMS' });
  await commit(t, readings, [rd('grid', 3, 25_000, 'electricity_import', '1010')]);
  await oracle.runOnce(3 * W + GRACE);
  // Window 1: both in coverage: 5 kWh + 2 kg = 4.683 kg -> +5317.
  const s1 = oracle.getSettlement('F-10000');
  t.match(s1, { complete: true, netGrams: '5317' });
  t.same(s1?.inputs.decommissioned, []);
  // Window 2: the old CEMS is silent but out of coverage: complete on the grid meter alone, +7317.
  const s2 = oracle.getSettlement('F-20000');
  t.match(s2, { complete: true, netGrams: '7317' });
  t.same(s2?.inputs.decommissioned, [{ deviceId: 'old', at: 20_000, reason: 'replaced by a new CEMS' }]);
  t.same(s2?.inputs.devices.map((d) => [d.deviceId, d.inCoverage, d.status]), [['grid', true, 'ok'], ['old', false, 'out_of_coverage']]);
  // A reading it had buffered (ts 21 s) still arrives and counts: emissions never vanish.
  await commit(t, readings, [rd('old', 3, 21_000, 'co2_direct', '3'), rd('grid', 4, 35_000, 'electricity_import', '1015')]);
  await oracle.runOnce(4 * W + GRACE);
  const s3 = oracle.getSettlement('F-30000');
  // 5 kWh + 3 kg (late) = 5.683 kg -> +4317.
  t.match(s3, { complete: true, netGrams: '4317' });
  t.same(s3?.inputs.lateKeys, ['old:3']);
  for (const id of ['F-10000', 'F-20000', 'F-30000']) t.equal((await oracle.verify(id)).match, true, `${id} verifies`);
});
