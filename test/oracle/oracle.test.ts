/**
 * The oracle end to end over the real SQLite store, with an in-memory ledger that applies the
 * contract's settlement rules (test/helpers/memory-ledger.ts). Runs are driven by runOnce(now) with an injected clock.
 * W = 10 s, grace = 2 s; facility F created at t = 0, so its first window is [0, 10 s).
 */
import t, { type Test } from 'tap';
import { StandardMerkleTree } from '@openzeppelin/merkle-tree';
import { Registry as PromRegistry } from 'prom-client';
import { silentLogger } from '../../domain/logger.ts';
import type { Metric, Reading } from '../../domain/reading.ts';
import { openDatabase } from '../../store/sqlite/db.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import { buildOracle, type OracleDeps } from '../../oracle/oracle.ts';
import { SqliteOracleRecords } from '../../store/sqlite/records.ts';
import { buildEvidence, LEAF_ENCODING } from '../../oracle/evidence.ts';
import { evaluate, recordedWindowInputs } from '../../oracle/inputs.ts';
import { METHODOLOGY_V2, METHODOLOGY_VERSION, settleWindow } from '../../oracle/methodology.ts';
import { generateDeviceKey } from '../../domain/signature.ts';
import { signChain } from '../helpers/audit-fixture.ts';
import type { GatewaySettlements } from '../../gateway/deps.ts';
import type { SettlementAudit } from '../../oracle/audit.ts';
import { MemoryLedger, faultyLedger } from '../helpers/memory-ledger.ts';
import { eventually } from '../helpers/eventually.ts';

const W = 10_000;
const GRACE = 2_000;
const OWNER = '0x1111111111111111111111111111111111111111';
const OWNER2 = '0x2222222222222222222222222222222222222222';

function setup(t: Test, opts: Partial<OracleDeps> = {}) {
  const dir = t.testdir();
  const db = openDatabase(dir);
  t.teardown(() => db.close());
  const registryClock = { now: 0 };
  const stores = openSqliteStores(db, { clock: () => registryClock.now });
  const ledger = new MemoryLedger();
  const make = (extra: Partial<OracleDeps> = {}) => {
    const o = buildOracle({ db, readings: stores.readings, registry: stores.registry, ledger, logger: silentLogger, windowMs: W, graceMs: GRACE, ...opts, ...extra });
    t.teardown(() => o.close());
    return o;
  };
  return { dir, db, ...stores, ledger, make, registryClock };
}

function rd(deviceId: string, seq: number, ts: number, metric: Metric, value: string, reset = false): Reading {
  const unit = metric === 'natural_gas' ? 'm3' : metric === 'co2_direct' ? 'kg' : 'kWh';
  return { facilityId: 'F', deviceId, seq, ts, metric, value, unit, reset, receivedAt: ts };
}

function facility(registry: ReturnType<typeof openSqliteStores>['registry'], id = 'F', owner = OWNER, baseline = '3600') {
  return registry.createFacility({ id, name: id, owner, baselineKgPerHour: baseline, gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162', createdAt: 0 });
}

t.test('worked example, late reading, boundary reading, verify and proof', async (t) => {
  const { readings, registry, ledger, make } = setup(t);
  facility(registry);
  registry.createDevice('F', 'd1', 'meter');
  const oracle = make();
  const forGateway: [GatewaySettlements, SettlementAudit] = [oracle, oracle]; // compile-time check: the gateway can use the oracle as is
  t.ok(forGateway);
  // Window 0 [0,10s): d1's first reading (1000 kWh) is its cursor: +0, and its first window is incomplete.
  // Window 1 [10s,20s): 1000 -> 1005 = 5 kWh: +7317 g (SPEC worked example).
  await readings.commit([rd('d1', 1, 5_000, 'electricity_import', '1000'), rd('d1', 2, 15_000, 'electricity_import', '1005')]);
  const r1 = await oracle.runOnce(22_000);
  t.equal(r1.registered, 1, 'the facility was registered on chain');
  t.equal(ledger.facilities.get('F')?.next, 20_000);
  t.equal(r1.settled, 2);
  t.equal(r1.rounds, 3, 'one window per facility per round, then a round that finds nothing closed');
  const s0 = oracle.getSettlement('F-0');
  const s1 = oracle.getSettlement('F-10000');
  t.match(s0, { complete: false, netGrams: '0', mintedGrams: '0' });
  t.match(s1, { complete: true, netGrams: '7317', mintedGrams: '7317', burnedGrams: '0', deficitGrams: '0', actualKg: '2.683', baselineKg: '10' });
  t.equal(await ledger.heldBy(OWNER), 7317n);
  // Not closed yet: window 2 ends at 30 s, closes at 32 s.
  t.equal((await oracle.runOnce(31_999)).settled, 0);

  // seq 3 (ts 18 s, inside window 1) arrives after window 1 was settled: window 2 counts and flags it.
  // seq 5 is exactly on the end of window 2 (ts 30 s): it belongs to window 3.
  await readings.commit([rd('d1', 3, 18_000, 'electricity_import', '1006'), rd('d1', 4, 25_000, 'electricity_import', '1010'), rd('d1', 5, 30_000, 'electricity_import', '1011')]);
  const r2 = await oracle.runOnce(32_000);
  t.equal(r2.settled, 1);
  const s2 = oracle.getSettlement('F-20000');
  // 1005 -> 1006 -> 1010 = 5 kWh -> +7317 g; seq 5 not consumed.
  t.match(s2, { complete: true, netGrams: '7317' });
  t.same(s2?.inputs.lateKeys, ['d1:3']);
  t.same(s2?.inputs.devices[0].endCursors, [{ metric: 'electricity_import', seq: 4, ts: 25_000, value: '1010' }]);
  t.same(s1?.inputs.devices[0].endCursors[0].value, '1005', 'the settled window did not change');
  t.same([...oracle.lateReadings('F', [{ deviceId: 'd1', seq: 3 }, { deviceId: 'd1', seq: 4 }])], ['d1:3']);
  t.equal(oracle.isLate('d1', 3), true);
  t.equal(oracle.isLate('d1', 2), false);
  // Window 3: seq 5 at exactly 30 s, not late. 1010 -> 1011 = 1 kWh: 0.5366 kg -> floor(9463.4) = 9463.
  await oracle.runOnce(42_000);
  const s3 = oracle.getSettlement('F-30000');
  t.match(s3, { netGrams: '9463', complete: true });
  t.same(s3?.inputs.lateKeys, []);

  // Exactly once: one WindowSettled per window; chain sums equal the methodology's.
  t.same([...ledger.settledCounts().values()], [1, 1, 1, 1]);
  const list = oracle.listSettlements({ facilityId: 'F' });
  t.same(list.map((s) => s.id), ['F-0', 'F-10000', 'F-20000', 'F-30000']);
  t.same(oracle.listSettlements({ from: 10_000, to: 30_000 }).map((s) => s.id), ['F-10000', 'F-20000']);
  const sum = list.reduce((a, s) => a + BigInt(s.netGrams), 0n);
  t.equal(sum, 7317n + 7317n + 9463n);
  t.equal(await ledger.heldBy(OWNER), sum);

  // Verify recomputes from the store with the recorded high-water marks, even after more readings arrived.
  await readings.commit([rd('d1', 6, 19_000, 'electricity_import', '1020')]);
  const v = await oracle.verify('F-20000');
  t.equal(v.match, true);
  t.equal(v.recomputed.evidenceRoot, s2?.evidenceRoot);
  t.equal(v.onChain?.netGrams, '7317');
  t.equal(v.recomputed.readings, 2);
  // Proof of the late reading, checked with the Merkle package alone against the on-chain root.
  const p = await oracle.proof('F-20000', 'd1', 3);
  t.ok(p);
  t.same(p?.leaf, ['reading', 'd1', '3', '18000', 'electricity_import', '1006', false, true, ''], 'unsigned: empty signature field');
  t.same(p?.leafEncoding, LEAF_ENCODING);
  t.equal(StandardMerkleTree.verify(v.onChain?.evidenceRoot as string, LEAF_ENCODING, p!.leaf, p!.proof), true);
  t.equal(await oracle.proof('F-20000', 'd1', 5), undefined, 'seq 5 belongs to window 3');
  await t.rejects(oracle.verify('F-999'), { code: 'SETTLEMENT_NOT_FOUND' });
});

t.test('signed devices: chains recorded and committed; a reading changed in the store breaks an interval device\'s chain; an mrv-cursor-2 record still recomputes', async (t) => {
  const { db, readings, registry, ledger, make } = setup(t);
  facility(registry);
  registry.createDevice('F', 'm1', 'meter', { reportingIntervalSeconds: 5 });
  registry.createDevice('F', 'c1', 'cems', { reportingIntervalSeconds: 2 });
  const oracle = make();
  const key = generateDeviceKey();
  const m1 = signChain(key, [rd('m1', 1, 5_000, 'electricity_import', '1000'), rd('m1', 2, 15_000, 'electricity_import', '1005'), rd('m1', 3, 25_000, 'electricity_import', '1006')]);
  // c1 (an interval device) reports every 2 to 4 s (declared 2 s); readings near each window's end.
  const c1 = signChain(key, [5_000, 9_000, 11_000, 15_000, 19_000, 21_000, 25_000, 29_000].map((ts, i) => rd('c1', i + 1, ts, 'co2_direct', '0.1')));
  await readings.commit([...m1, ...c1]);
  await oracle.runOnce(22_000);
  const s1 = oracle.getSettlement('F-10000')!;
  t.equal(s1.inputs.methodologyVersion, METHODOLOGY_VERSION);
  t.match(s1, { complete: true });
  const chains = Object.fromEntries(s1.inputs.devices.map((d) => [d.deviceId, d.chain]));
  // The predecessors by seq that window 1 did not use itself come from the store (seq 1 of m1, seq 2 of c1).
  t.same(chains, {
    c1: { signed: 3, unbroken: true, breaks: [], starts: [], context: [2] },
    m1: { signed: 1, unbroken: true, breaks: [], starts: [], context: [1] },
  });
  t.equal((await oracle.verify('F-10000')).match, true);
  const p = await oracle.proof('F-10000', 'c1', 4);
  t.equal(p?.leaf[8], c1[3].sig, 'the reading leaf carries the device signature');
  // The operator lowers c1's seq 6 in the store (ts 21 s, window 2) before window 2 is settled: the
  // signature of seq 7 chains to the original line, so the chain is broken and the window cannot mint.
  db.prepare("UPDATE readings SET value = '0.01' WHERE device_id = 'c1' AND seq = 6").run();
  await oracle.runOnce(32_000);
  const s2 = oracle.getSettlement('F-20000')!;
  const c1s2 = s2.inputs.devices.find((d) => d.deviceId === 'c1')!;
  t.match(c1s2, { status: 'chain_broken', chain: { unbroken: false, breaks: [{ seq: 7, reason: 'prev_missing' }] } });
  t.match(s2, { complete: false, netGrams: '0' });
  t.equal((await oracle.verify('F-20000')).match, true, 'the broken chain is what the record and the chain say');

  // A settlement recorded under mrv-cursor-2 (before signatures were in the evidence) recomputes
  // with that version's rules and 8-field leaves: its root is unchanged.
  const row = { ...s1, inputs: { ...s1.inputs, methodologyVersion: METHODOLOGY_V2 } };
  const v2 = evaluate(await recordedWindowInputs(readings, row));
  t.equal(v2.result.methodologyVersion, METHODOLOGY_V2);
  t.equal(v2.evidence.leaves[0].length, 8);
  t.notOk(v2.evidence.leaves.some((l) => l[0] === 'chain'));
  const v2Input = await recordedWindowInputs(readings, row);
  t.equal(v2Input.devices.every((d) => d.chainContext === undefined), true, 'no chain context read for mrv-cursor-2');
  t.not(v2.evidence.root, s1.evidenceRoot);
  t.equal(v2.evidence.root, buildEvidence(settleWindow({ ...v2Input, methodologyVersion: METHODOLOGY_V2 })).root);
  await t.rejects(recordedWindowInputs(readings, { ...s1, inputs: { ...s1.inputs, methodologyVersion: 'mrv-cursor-1' } }), { code: 'METHODOLOGY_MISMATCH' });
  t.ok(ledger);
});

t.test('a tampered store or record does not verify', async (t) => {
  const { db, readings, registry, make } = setup(t);
  facility(registry);
  registry.createDevice('F', 'd1', 'meter');
  const oracle = make();
  await readings.commit([rd('d1', 1, 5_000, 'electricity_import', '1000'), rd('d1', 2, 15_000, 'electricity_import', '1005')]);
  await oracle.runOnce(22_000);
  t.equal((await oracle.verify('F-10000')).match, true);
  db.prepare("UPDATE readings SET value = '1004' WHERE device_id = 'd1' AND seq = 2").run();
  const v = await oracle.verify('F-10000');
  t.equal(v.match, false);
  t.not(v.recomputed.evidenceRoot, v.onChain?.evidenceRoot);
  t.equal(v.recomputed.netGrams, '7853', '4 kWh: 10 - 2.1464 = 7.8536 kg -> 7853 g');
  await t.rejects(oracle.proof('F-10000', 'd1', 2), { code: 'EVIDENCE_MISMATCH' });
});

t.test('negative net: burn what the balance covers, record the deficit, pay it down later', async (t) => {
  const { readings, registry, ledger, make } = setup(t);
  facility(registry);
  registry.createDevice('F', 'd1', 'meter');
  const oracle = make();
  // w0: first readings (cursors). w1: import 1000 -> 1005 = +7317. w2: gas 100 -> 110 m3 = 21.62 kg -> -11620.
  // w3: gas 110 -> 111 = 2.162 kg -> +7838. w4: import 1005 -> 1006 -> +9463.
  await readings.commit([
    rd('d1', 1, 1_000, 'electricity_import', '1000'),
    rd('d1', 2, 2_000, 'natural_gas', '100'),
    rd('d1', 3, 15_000, 'electricity_import', '1005'),
    rd('d1', 4, 25_000, 'natural_gas', '110'),
    rd('d1', 5, 35_000, 'natural_gas', '111'),
    rd('d1', 6, 45_000, 'electricity_import', '1006'),
  ]);
  const r = await oracle.runOnce(52_000);
  t.equal(r.settled, 5);
  const s = (k: number) => oracle.getSettlement(`F-${k * W}`);
  t.match(s(1), { netGrams: '7317', mintedGrams: '7317', burnedGrams: '0', deficitGrams: '0' });
  // balance 7317 covers 7317 of the 11620 burn; 4303 becomes the deficit.
  t.match(s(2), { netGrams: '-11620', mintedGrams: '0', burnedGrams: '7317', deficitGrams: '4303' });
  // +7838 pays the 4303 deficit first, mints 3535.
  t.match(s(3), { netGrams: '7838', mintedGrams: '3535', burnedGrams: '0', deficitGrams: '0' });
  t.match(s(4), { netGrams: '9463', mintedGrams: '9463', deficitGrams: '0' });
  const sum = oracle.listSettlements().reduce((a, x) => a + BigInt(x.netGrams), 0n);
  // 7317 - 11620 + 7838 + 9463 = 12998 = balance 3535 + 9463, deficit 0
  t.equal(sum, 12998n);
  const chain = await ledger.facility('F');
  t.equal(await ledger.heldBy(OWNER) + BigInt(chain.retiredGrams) - BigInt(chain.deficitGrams), sum);
});

t.test('incomplete window: a silent device', async (t) => {
  const { readings, registry, make, ledger } = setup(t);
  facility(registry);
  registry.createDevice('F', 'd1', 'meter');
  registry.createDevice('F', 'd2', 'meter');
  const oracle = make();
  // d2 reads only before window 1, then is silent: window 1 would mint 7317 but is incomplete -> 0.
  await readings.commit([rd('d1', 1, 5_000, 'electricity_import', '1000'), rd('d1', 2, 15_000, 'electricity_import', '1005'), rd('d2', 1, 5_000, 'co2_direct', '0')]);
  await oracle.runOnce(22_000);
  t.match(oracle.getSettlement('F-10000'), { complete: false, netGrams: '0' });
  t.equal(await ledger.heldBy(OWNER), 0n);
  t.same(oracle.getSettlement('F-10000')?.inputs.rawNetGrams, '7317');
});

t.test('a device added later does not make the earlier windows of a catch-up incomplete', async (t) => {
  const { readings, registry, make, registryClock } = setup(t);
  facility(registry);
  registry.createDevice('F', 'd1', 'meter');
  registryClock.now = 25_000;
  registry.createDevice('F', 'd2', 'meter'); // created during window 2
  await readings.commit([rd('d1', 1, 5_000, 'electricity_import', '1000'), rd('d1', 2, 15_000, 'electricity_import', '1005'), rd('d1', 3, 25_000, 'electricity_import', '1010'), rd('d2', 1, 26_000, 'co2_direct', '0')]);
  const oracle = make();
  await oracle.runOnce(32_000);
  // Window 1 only had d1: complete, +7317. Window 2 has d2's first window: incomplete, capped at 0.
  t.match(oracle.getSettlement('F-10000'), { complete: true, netGrams: '7317' });
  t.same(oracle.getSettlement('F-10000')?.inputs.devices.map((d) => d.deviceId), ['d1']);
  t.match(oracle.getSettlement('F-20000'), { complete: false, netGrams: '0' });
});

t.test('a facility with no devices and a suspended facility keep settling (capped at 0, never skipped)', async (t) => {
  const { registry, ledger, make } = setup(t);
  facility(registry, 'E', OWNER);
  facility(registry, 'S', OWNER2);
  registry.updateFacility('S', { status: 'suspended' });
  const oracle = make();
  const r = await oracle.runOnce(3 * W + GRACE);
  t.equal(r.settled, 6);
  t.equal(r.synced, 1, 'suspension pushed to the chain');
  t.equal(ledger.facilities.get('S')?.suspended, true);
  t.same(oracle.listSettlements({ facilityId: 'E' }).map((s) => [s.complete, s.netGrams]), [[false, '0'], [false, '0'], [false, '0']]);
  t.equal(oracle.listSettlements({ facilityId: 'S' }).length, 3);
  // Reinstated: synced back.
  registry.updateFacility('S', { status: 'active' });
  await oracle.runOnce(3 * W + GRACE);
  t.equal(ledger.facilities.get('S')?.suspended, false);
  // A baseline change in the registry is pushed to the chain from the next window on.
  registry.updateFacility('E', { baselineKgPerHour: '7200', effectiveFrom: 3 * W });
  const r2 = await oracle.runOnce(4 * W + GRACE);
  t.equal((await ledger.facility('E')).baselineKgPerHour, '7200');
  t.equal(r2.synced, 1);
  t.equal(oracle.getSettlement(`E-${3 * W}`)?.inputs.baselineKgPerHour, '7200');
  t.equal(oracle.getSettlement(`E-${2 * W}`)?.inputs.baselineKgPerHour, '3600');
});

t.test('crash between send and record: a fresh oracle confirms from the chain', async (t) => {
  const { readings, registry, ledger, make, db } = setup(t);
  facility(registry);
  registry.createDevice('F', 'd1', 'meter');
  await readings.commit([rd('d1', 1, 5_000, 'electricity_import', '1000'), rd('d1', 2, 15_000, 'electricity_import', '1005'), rd('d1', 3, 25_000, 'electricity_import', '1010')]);
  // The first oracle's recording step throws right after the chain accepted the batch.
  const crashing = make({ maxRounds: 1 });
  const records = crashing.records;
  const realConfirm = records.confirmMany.bind(records);
  records.confirmMany = () => {
    throw new Error('killed');
  };
  await t.rejects(crashing.runOnce(32_000), /killed/);
  t.equal(ledger.facilities.get('F')?.next, 10_000, 'window 0 reached the chain');
  records.confirmMany = realConfirm;
  await crashing.close();
  // A fresh process on the same file: reconciles window 0 from the chain (root match), continues.
  const fresh = make();
  const r = await fresh.runOnce(32_000);
  t.equal(r.reconciled, 1);
  t.equal(r.settled, 2);
  t.same([...ledger.settledCounts().values()], [1, 1, 1]);
  t.match(fresh.getSettlement('F-10000'), { netGrams: '7317' });
  t.match(fresh.getSettlement('F-20000'), { netGrams: '7317' });
  t.equal(db.prepare("SELECT COUNT(*) FROM oracle_settlements WHERE state = 'confirmed'").pluck().get(), 3);
});

t.test('RPC timeouts and retries with more readings visible: the chain keeps one root per window', async (t) => {
  const { readings, registry, ledger, make, db } = setup(t);
  facility(registry);
  registry.createDevice('F', 'd1', 'meter');
  await readings.commit([rd('d1', 1, 5_000, 'electricity_import', '1000'), rd('d1', 3, 15_000, 'electricity_import', '1005')]);
  let timeouts = 1;
  let down = false;
  const oracle = make({ ledger: faultyLedger(ledger, { timeoutAfterSend: () => timeouts-- > 0, down: () => down }) });
  // (a) The batch for window 0 lands but the answer is lost.
  const r1 = await oracle.runOnce(12_000);
  t.match(r1.errors[0], /timeout/);
  t.equal(ledger.facilities.get('F')?.next, 10_000, 'window 0 settled although we did not hear back');
  // A late co2 reading for window 0 arrives (seq 2, below the stored seq 3): a recomputation of window 0 would differ now.
  await readings.commit([rd('d1', 2, 9_000, 'co2_direct', '1')]);
  const r2 = await oracle.runOnce(22_000);
  t.equal(r2.reconciled, 1, 'the intent whose root the chain holds is confirmed');
  t.equal(r2.settled, 1);
  // Window 1 counts the late kilogram: 5 kWh * 0.5366 + 1 = 3.683 kg -> floor(6317) = 6317.
  t.match(oracle.getSettlement('F-10000'), { netGrams: '6317' });
  t.same(oracle.getSettlement('F-10000')?.inputs.lateKeys, ['d1:2']);

  // (b) The batch for window 2 never reaches the chain; meanwhile more readings arrive; the retry
  // computes a different root, which the chain takes; the first intent is discarded.
  await readings.commit([rd('d1', 4, 25_000, 'electricity_import', '1010')]);
  down = true;
  // The facility reads succeed (sync ran before we go down), the send fails.
  const downAfterReads = faultyLedger(ledger, { down: () => down });
  const flaky = make({ ledger: { ...downAfterReads, facility: (id) => ledger.facility(id), settlementAt: (f, w) => ledger.settlementAt(f, w) } });
  const r3 = await flaky.runOnce(32_000);
  t.match(r3.errors[0], /ECONNREFUSED/);
  await readings.commit([rd('d1', 5, 29_000, 'co2_direct', '2')]);
  down = false;
  const r4 = await oracle.runOnce(32_000);
  t.equal(r4.settled, 1);
  const rows = db.prepare("SELECT state, net_grams AS netGrams FROM oracle_settlements WHERE id = ? ORDER BY created_at").all('F-20000') as { state: string; netGrams: string }[];
  t.same(rows.map((r) => r.state), ['discarded', 'confirmed']);
  // 5 kWh + 2 kg co2: 2.683 + 2 = 4.683 kg -> 5317 g (the first intent had 7317).
  t.same(rows.map((r) => r.netGrams), ['7317', '5317']);
  t.equal(oracle.getSettlement('F-20000')?.evidenceRoot, ledger.events[2].evidenceRoot);
  t.same([...ledger.settledCounts().values()], [1, 1, 1]);
  t.equal(db.prepare("SELECT COUNT(*) FROM oracle_settlements WHERE state IN ('intent', 'sent')").pluck().get(), 0);
});

t.test('RPC down for several runs, then back: nothing lost, nothing doubled', async (t) => {
  const { readings, registry, ledger, make } = setup(t);
  facility(registry);
  registry.createDevice('F', 'd1', 'meter');
  await readings.commit([rd('d1', 1, 5_000, 'electricity_import', '1000')]);
  let down = false;
  const oracle = make({ ledger: faultyLedger(ledger, { down: () => down }) });
  await oracle.runOnce(12_000);
  down = true;
  for (let k = 2; k <= 5; k++) {
    await readings.commit([rd('d1', k, k * W - 5_000, 'electricity_import', String(1000 + 5 * (k - 1)))]);
    const r = await oracle.runOnce(k * W + GRACE);
    t.equal(r.settled, 0, `run ${k}: chain down`);
    t.ok(r.blocked.length > 0);
  }
  down = false;
  const r = await oracle.runOnce(5 * W + GRACE);
  t.equal(r.settled, 4, 'catches up windows 1..4');
  t.same([...ledger.settledCounts().values()], [1, 1, 1, 1, 1]);
  t.same(oracle.listSettlements().map((s) => s.netGrams), ['0', '7317', '7317', '7317', '7317']);
});

t.test('two oracles on the same file and chain at once (lease off): each window settled once', async (t) => {
  const { readings, registry, ledger, make } = setup(t, { lease: false, concurrency: 1 });
  for (const [i, id] of ['A', 'B', 'C'].entries()) {
    facility(registry, id, `0x${String(i + 1).repeat(40)}`);
    registry.createDevice(id, `${id}1`, 'meter');
    const batch: Reading[] = [];
    for (let k = 0; k < 6; k++) batch.push({ ...rd(`${id}1`, k + 1, k * W + 5_000, 'electricity_import', String(1000 + 5 * k)), facilityId: id });
    await readings.commit(batch);
  }
  const a = make({ maxBatch: 2 });
  const b = make({ maxBatch: 1 });
  const [ra, rb] = await Promise.all([a.runOnce(6 * W + GRACE), b.runOnce(6 * W + GRACE)]);
  t.equal(ra.settled + rb.settled, 18, 'every window settled by one of them');
  t.ok(ra.skippedOnChain + rb.skippedOnChain + ra.reconciled + rb.reconciled > 0, 'they did collide');
  const counts = ledger.settledCounts();
  t.equal(counts.size, 18);
  t.ok([...counts.values()].every((c) => c === 1), 'no window twice');
  // Both see the same confirmed history; cursors follow the chain.
  await a.runOnce(6 * W + GRACE);
  await b.runOnce(6 * W + GRACE);
  t.same(a.listSettlements().map((s) => [s.id, s.netGrams]), b.listSettlements().map((s) => [s.id, s.netGrams]));
  for (const id of ['A', 'B', 'C']) {
    const nets = a.listSettlements({ facilityId: id }).map((s) => s.netGrams);
    t.same(nets, ['0', '7317', '7317', '7317', '7317', '7317'], `${id}: 5 kWh per window after the first`);
  }
});

t.test('lease: a second oracle skips while the first holds it; runs never overlap in one process', async (t) => {
  const { registry, make, db } = setup(t);
  facility(registry);
  const a = make({ lease: { ttlMs: 60_000, holder: 'A' } });
  const b = make({ lease: { ttlMs: 60_000, holder: 'B' } });
  new SqliteOracleRecords(db).acquireLease('oracle', 'A', Date.now(), 60_000);
  t.equal((await b.runOnce(50_000)).skipped, 'lease');
  new SqliteOracleRecords(db).releaseLease('oracle', 'A');
  const [r1, r2] = await Promise.all([a.runOnce(50_000), a.runOnce(50_000)]);
  t.equal(r1.skipped, undefined);
  t.equal(r2.skipped, 'busy');
  t.equal((await b.runOnce(50_000)).skipped, undefined, 'the lease is released after a run');
});

t.test('the window length is fixed per data dir', async (t) => {
  const { make } = setup(t);
  make();
  t.throws(() => make({ windowMs: 20_000 }), { code: 'CONFIG_INVALID', message: /WINDOW_SECONDS is 20 but this data dir was settled with 10/ });
  t.throws(() => make({ windowMs: 1_500 }), { code: 'CONFIG_INVALID' });
});

t.test('a foreign settlement on chain blocks the facility instead of guessing cursors', async (t) => {
  const { registry, ledger, make } = setup(t);
  facility(registry);
  const oracle = make();
  await oracle.runOnce(5_000); // registers only
  await ledger.settleBatch([{ facilityId: 'F', windowStart: 0, windowEnd: W, netGrams: 5n, evidenceRoot: `0x${'ab'.repeat(32)}` }]);
  const r = await oracle.runOnce(3 * W);
  t.equal(r.settled, 0);
  t.match(r.blocked, [{ facilityId: 'F', reason: /no record of/ }]);
  // With local history, a foreign root for the next window is caught by the root check.
  const { registry: reg2, ledger: l2, make: make2, readings: rs2 } = setup(t);
  facility(reg2);
  reg2.createDevice('F', 'd1', 'meter');
  await rs2.commit([rd('d1', 1, 5_000, 'electricity_import', '1000')]);
  const o2 = make2();
  await o2.runOnce(W + GRACE);
  await l2.settleBatch([{ facilityId: 'F', windowStart: W, windowEnd: 2 * W, netGrams: 5n, evidenceRoot: `0x${'cd'.repeat(32)}` }]);
  const r2 = await o2.runOnce(3 * W + GRACE);
  t.match(r2.blocked, [{ facilityId: 'F', reason: /no recorded intent/ }]);
  t.equal(o2.listSettlements().length, 1);
});

t.test('start/stop with node-cron, metrics', async (t) => {
  const metrics = new PromRegistry();
  const { registry, make } = setup(t);
  facility(registry);
  const oracle = make({ metrics, clock: () => 3 * W });
  t.throws(() => oracle.start('not a cron'), { code: 'CONFIG_INVALID' });
  oracle.start('*/1 * * * * *');
  // start() runs once at once; wait (bounded) for that run to record its settlements.
  await eventually('the first run to record two settlements', () => oracle.listSettlements().length >= 2);
  oracle.stop();
  t.equal(oracle.listSettlements().length, 2);
  const text = await metrics.metrics();
  t.match(text, /mrv_oracle_settlements_total\{status="settled"\} 2/);
  t.match(text, /mrv_oracle_runs_total\{outcome="ok"\} [1-9]/);
});

t.test('no chain reads for facilities whose next window is not closed yet (unless the registry changed)', async (t) => {
  const { registry, ledger, make } = setup(t);
  facility(registry);
  const oracle = make();
  await oracle.runOnce(W + GRACE); // registers, settles window 0
  const reads = () => ledger.calls.filter((c) => c === 'facility').length;
  const before = reads();
  await oracle.runOnce(W + GRACE + 5_000); // window 1 closes at 2W + GRACE
  t.equal(reads(), before, 'nothing closed: no chain read');
  registry.updateFacility('F', { status: 'suspended' });
  await oracle.runOnce(W + GRACE + 6_000);
  t.equal(reads(), before + 1, 'the registry changed: read and synced');
  t.equal(ledger.facilities.get('F')?.suspended, true);
  const r = await oracle.runOnce(2 * W + GRACE);
  t.equal(r.settled, 1, 'window 1 is settled once closed');
});
