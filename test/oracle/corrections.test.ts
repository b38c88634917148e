/**
 * Voids and corrections over the real SQLite store and the oracle (in-memory ledger for the
 * settlements; the chain side of corrections is test/contracts/corrections-port.test.ts).
 * W = 10 s, baseline 3600 kg/h (10 kg per window), grid 0.5366 kg/kWh: a window with k kWh nets
 * floor((100000 - 5366 k) / 10) g when complete.
 */
import t, { type Test } from 'tap';
import { StandardMerkleTree } from '@openzeppelin/merkle-tree';
import { silentLogger } from '../../domain/logger.ts';
import type { Metric, Reading } from '../../domain/reading.ts';
import { openDatabase } from '../../store/sqlite/db.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import { buildOracle } from '../../oracle/oracle.ts';
import { buildCorrector } from '../../oracle/corrections.ts';
import { buildCorrectionAudit } from '../../oracle/correction-audit.ts';
import { settleWindow, type RegisterCursor } from '../../oracle/methodology.ts';
import { applyFactors } from '../../oracle/factors.ts';
import { MemoryLedger } from '../helpers/memory-ledger.ts';
import { auditOffline } from '../../audit/audit.ts';
import { parseBundle } from '../../audit/bundle.ts';

const W = 10_000;
const OWNER = '0x1111111111111111111111111111111111111111';

/** The net of a complete window of k kWh (independent of the methodology code). */
const netOf = (kWh: number): bigint => {
  const tenths = 100_000n - 5366n * BigInt(kWh);
  return tenths >= 0n ? tenths / 10n : -((-tenths + 9n) / 10n);
};

function rd(deviceId: string, seq: number, ts: number, metric: Metric, value: string, reset = false): Reading {
  const unit = metric === 'co2_direct' ? 'kg' : 'kWh';
  return { facilityId: 'F', deviceId, seq, ts, metric, value, unit, reset, receivedAt: ts };
}

function setup(t: Test) {
  const db = openDatabase(t.testdir());
  t.teardown(() => db.close());
  const stores = openSqliteStores(db, { clock: () => 0 });
  stores.registry.createFacility({ id: 'F', name: 'F', owner: OWNER, baselineKgPerHour: '3600', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162', createdAt: 0 });
  stores.registry.createDevice('F', 'd1', 'meter');
  const ledger = new MemoryLedger();
  const oracle = buildOracle({ db, readings: stores.readings, registry: stores.registry, ledger, logger: silentLogger, windowMs: W, graceMs: 2_000 });
  t.teardown(() => oracle.close());
  const corrector = buildCorrector({ readings: stores.readings, records: oracle.records, corrections: stores.corrections });
  const voidRange = (from: number, to: number, reason = 'meter faulty') =>
    stores.corrections.addVoid({ facilityId: 'F', deviceId: 'd1', from, to, reason, by: 'regulator-key', at: 100_000 });
  return { ...stores, oracle, ledger, corrector, voidRange };
}

// d1's register: w0 1000 (first reading: incomplete), w1 1002, 1004 (+4), w2 1010, 1012 (+8), w3 1013, 1014 (+2), w4 1015 (+1).
const SERIES = [
  rd('d1', 1, 5_000, 'electricity_import', '1000'),
  rd('d1', 2, 12_000, 'electricity_import', '1002'),
  rd('d1', 3, 16_000, 'electricity_import', '1004'),
  rd('d1', 4, 22_000, 'electricity_import', '1010'),
  rd('d1', 5, 26_000, 'electricity_import', '1012'),
  rd('d1', 6, 32_000, 'electricity_import', '1013'),
  rd('d1', 7, 36_000, 'electricity_import', '1014'),
  rd('d1', 8, 42_000, 'electricity_import', '1015'),
];

t.test('a void over settled windows: corrections equal an independent recomputation, and never raise a net', async (t) => {
  const s = setup(t);
  await s.readings.commit(SERIES);
  await s.oracle.runOnce(52_000);
  const nets = s.oracle.listSettlements({ facilityId: 'F' }).map((x) => x.netGrams);
  t.same(nets, ['0', netOf(4), netOf(8), netOf(2), netOf(1)].map(String), 'settled as the readings say');

  // The meter was faulty over [20 s, 30 s): seq 4 and 5 are void.
  s.voidRange(20_000, 30_000);
  const made = await s.corrector.plan('F');
  t.same(made.map((c) => c.id), ['F-20000-c1', 'F-30000-c1'], 'the window that used them, and the next (its start cursor was seq 5)');
  // Independent: w2 has no reading left, so it is incomplete (net capped at 0: raw would be +10 kg);
  // w3 walks 1004 (seq 3) -> 1013 -> 1014 = 10 kWh; w4 starts at seq 7 as before: unchanged.
  const [c2, c3] = made;
  t.match(c2, { seq: 1, complete: false, prevNetGrams: String(netOf(8)), netGrams: '0', deltaGrams: String(0n - netOf(8)), state: 'intent', voidIds: [1] });
  t.match(c3, { seq: 1, complete: true, prevNetGrams: String(netOf(2)), netGrams: String(netOf(10)), deltaGrams: String(netOf(10) - netOf(2)) });
  t.equal(c3.reason, 'meter faulty', 'a window corrected through the cursors rule names the void behind it');
  const before = nets.reduce((a, n) => a + BigInt(n), 0n);
  const after = before + BigInt(c2.deltaGrams) + BigInt(c3.deltaGrams);
  t.ok(after <= before, 'the void did not raise the facility\'s total');
  // The same by the methodology over the remaining readings from scratch (w2 then w3 from seq 3).
  const factors = applyFactors(0, s.registry.getFacility('F')!);
  const cur3: RegisterCursor = { metric: 'electricity_import', seq: 3, ts: 16_000, value: '1004' };
  const w3 = settleWindow({
    facilityId: 'F', window: { start: 30_000, end: 40_000 }, factors, baselineKgPerHour: '3600',
    devices: [{ deviceId: 'd1', startCursors: [cur3], readings: [SERIES[5], SERIES[6]], coverage: { before: { seq: 3, ts: 16_000 }, lastIn: { seq: 7, ts: 36_000 }, after: true, between: 4, interval: false }, reportingIntervalSeconds: 60 }],
  });
  t.equal(w3.netGrams.toString(), c3.netGrams, 'w3 correction = methodology over the remaining readings');
  // The correction's evidence: the voided readings as `voided` leaves, the void, what it corrects.
  const leaves = c2.inputs.voids;
  t.same(leaves, [{ id: 1, deviceId: 'd1', from: 20_000, to: 30_000, reason: 'meter faulty' }]);
  t.same(c2.inputs.correction, { settlementId: 'F-20000', originalRoot: s.oracle.getSettlement('F-20000')!.evidenceRoot, seq: 1, prevNetGrams: String(netOf(8)), reason: 'meter faulty' });

  // Verify and proof work for corrections: recomputed from the store, a voided reading proven as such.
  const audit = buildCorrectionAudit({
    corrections: s.corrections,
    readings: s.readings,
    port: { correctionsOf: async () => [{ facilityId: 'F', windowStart: 20_000, seq: 1, voidId: 1, deltaGrams: BigInt(c2.deltaGrams), mintedGrams: 0n, burnedGrams: 0n, deficitAfterGrams: 0n, evidenceRoot: c2.evidenceRoot, reason: c2.reason }] },
  });
  const v = await audit.verify('F-20000-c1');
  t.equal(v.match, true, 'recomputes to its root and delta');
  t.equal(v.recomputed.voided, 2);
  t.equal(v.recomputed.readings, 0);
  const p = await audit.proof('F-20000-c1', 'd1', 4);
  t.same(p?.leaf.slice(0, 6), ['voided', 'd1', '4', '22000', 'electricity_import', '1010']);
  t.equal(StandardMerkleTree.verify(c2.evidenceRoot, p!.leafEncoding, p!.leaf, p!.proof), true);
  await t.rejects(audit.verify('F-0-c1'), { code: 'CORRECTION_NOT_FOUND' });

  // The originals stay as they were; the store still holds the voided readings.
  t.equal(s.oracle.getSettlement('F-20000')!.netGrams, String(netOf(8)));
  t.equal((await s.oracle.verify('F-20000')).match, true, 'the original settlement still verifies');
  t.ok(await s.readings.get('d1', 4));

  // Voiding the same range again corrects nothing more.
  s.voidRange(20_000, 30_000, 'again');
  t.same(await s.corrector.plan('F'), [], 'voiding twice does not correct twice');
  t.equal(s.corrections.listCorrections({ facilityId: 'F' }).length, 2);
});

t.test('a void over readings nobody settled yet only excludes them; the cursor moves with a correction', async (t) => {
  const s = setup(t);
  await s.readings.commit(SERIES.slice(0, 5));
  await s.oracle.runOnce(32_000); // w0..w2 settled; w2 ended on seq 5
  // Void [20 s, 30 s) and [40 s, 50 s), the second over readings not settled yet.
  s.voidRange(20_000, 30_000);
  s.voidRange(40_000, 50_000);
  const made = await s.corrector.plan('F');
  t.same(made.map((c) => c.id), ['F-20000-c1'], 'only the settled window that used a voided reading');
  t.same(s.oracle.records.cursor('d1')?.cursors.map((c) => c.seq), [3], 'the device cursor moved back to the last reading not void');
  // Later readings, one of them void (a spike the regulator threw out).
  await s.readings.commit([...SERIES.slice(5, 7), rd('d1', 8, 42_000, 'electricity_import', '1100'), rd('d1', 9, 46_000, 'electricity_import', '1101'), rd('d1', 10, 52_000, 'electricity_import', '1102')]);
  await s.oracle.runOnce(62_000);
  const w3 = s.oracle.getSettlement('F-30000')!;
  t.equal(w3.netGrams, String(netOf(10)), 'w3 starts at the corrected cursor: 1004 -> 1014, nothing dropped');
  t.same(w3.inputs.voids?.map((v) => v.id), [1], 'its coverage fact "a reading before" moved off a voided one, and says so');
  const w4 = s.oracle.getSettlement('F-40000')!;
  t.equal(w4.inputs.devices[0].consumedCount, 0);
  t.equal(w4.complete, false, 'every reading of w4 is void: it cannot be complete');
  t.equal(w4.netGrams, '0');
  t.same(w4.inputs.voids?.map((v) => v.id), [2]);
  const w5 = s.oracle.getSettlement('F-50000')!;
  t.equal(w5.netGrams, String(netOf(1102 - 1014)), 'the register increase over the void is counted after it, in full');
  t.equal((await s.oracle.verify('F-40000')).match, true, 'a settlement with voids recomputes to its root');
  // Its audit bundle carries the voids and the readings left out, and recomputes offline.
  const bundle = parseBundle(JSON.stringify(await s.oracle.bundle('F-40000')));
  t.same(bundle.voids?.map((v) => v.id), [2]);
  t.same(bundle.devices[0].excluded?.map((r) => r.seq), [8, 9]);
  const report = auditOffline(bundle);
  t.equal(report.ok, true, 'the offline audit recomputes the settlement under its voids');
  const forged = parseBundle(JSON.stringify({ ...bundle, voids: [{ ...bundle.voids![0], from: 45_000 }] }));
  t.equal(auditOffline(forged).ok, false, 'a reading left out outside every void is refused');
  t.same(await s.corrector.plan('F'), [], 'nothing settled used a voided reading: no correction');
});

t.test('methodology: a voided reset counts the next step from 0; a voided interval reading leaves the window incomplete', async (t) => {
  const factors = applyFactors(0, { gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162' });
  const cov = { before: { seq: 1, ts: 5_000 }, lastIn: { seq: 3, ts: 18_000 }, after: false, between: 2, interval: false };
  const start: RegisterCursor = { metric: 'electricity_import', seq: 1, ts: 5_000, value: '1000' };
  const base = { facilityId: 'F', window: { start: 10_000, end: 20_000 }, factors, baselineKgPerHour: '3600' };
  const r = settleWindow({
    ...base,
    devices: [{ deviceId: 'd1', startCursors: [start], readings: [rd('d1', 3, 18_000, 'electricity_import', '5')], excluded: [rd('d1', 2, 12_000, 'electricity_import', '0', true)], coverage: cov, reportingIntervalSeconds: 60 }],
  });
  t.equal(r.totals.electricity_import, '5', 'counted from 0, not lost as a negative step from 1000');
  t.equal(r.netGrams, netOf(5));
  t.same(r.devices[0].endCursors, [{ metric: 'electricity_import', seq: 3, ts: 18_000, value: '5' }]);
  const interval = settleWindow({
    ...base,
    devices: [{ deviceId: 'c1', startCursors: [], readings: [rd('c1', 3, 18_000, 'co2_direct', '1')], excluded: [rd('c1', 2, 12_000, 'co2_direct', '4')], coverage: { ...cov, interval: true }, reportingIntervalSeconds: 60, intervalDevice: true }],
  });
  t.equal(interval.devices[0].status, 'voided');
  t.equal(interval.complete, false);
  t.ok(interval.netGrams <= 0n, 'missing data never earns');
});

t.test('the oracle plans corrections itself: a void recorded between runs is corrected before the next window', async (t) => {
  const s = setup(t);
  await s.readings.commit(SERIES);
  await s.oracle.runOnce(32_000); // w0..w2; w2 ended on seq 5
  s.voidRange(20_000, 30_000); // recorded without planning (another process, or a crash before it planned)
  await s.oracle.runOnce(52_000);
  t.same(s.corrections.listCorrections({ facilityId: 'F' }).map((c) => c.id), ['F-20000-c1'], 'corrected before w3 was computed');
  t.equal(s.oracle.getSettlement('F-30000')!.netGrams, String(netOf(10)), 'w3 started from the corrected cursor: no correction of it needed');
  t.equal(s.oracle.getSettlement('F-40000')!.netGrams, String(netOf(1)));
  await s.oracle.runOnce(53_000);
  t.equal(s.corrections.listCorrections({ facilityId: 'F' }).length, 1, 'a second run adds nothing');
});
