/**
 * Exactly-once settlement against the real CarbonLedger on Hardhat's in-process chain and the real
 * SQLite store: the oracle killed between send and record, the RPC down for several runs, two oracles
 * at once on the same file and chain, a restart after several windows of downtime. Each scenario ends
 * with `checkChain`: one WindowSettled per (facility, window), contiguous from the first window, the
 * recorded roots equal to the chain's, and per facility balance + retired - deficit == the sum of the
 * methodology's nets (and the chain's own sum of nets).
 */
import t, { type Test } from 'tap';
import { silentLogger } from '../../domain/logger.ts';
import type { Reading } from '../../domain/reading.ts';
import { openDatabase } from '../../store/sqlite/db.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import { Ledger, startHardhatChain, type Chain } from '../../contracts/client/index.ts';
import { buildOracle, type Oracle, type OracleDeps } from '../../oracle/oracle.ts';
import { faultyLedger } from '../helpers/memory-ledger.ts';

const W = 10_000;
const GRACE = 1_000;
const T0 = Date.UTC(2026, 0, 1);
const FACILITIES = ['A', 'B'];
const closeOf = (k: number) => T0 + (k + 1) * W + GRACE; // when window k may be settled

async function setup(t: Test) {
  const chain: Chain = await startHardhatChain({ accounts: 6 });
  t.teardown(() => chain.close());
  const ledger = await Ledger.deploy(chain.signers[0], { windowSeconds: W / 1000 });
  const dir = t.testdir();
  const db = openDatabase(dir);
  t.teardown(() => db.close());
  const stores = openSqliteStores(db, { clock: () => T0 });
  const owners = new Map<string, number>();
  FACILITIES.forEach((id, i) => {
    owners.set(id, 2 + i);
    stores.registry.createFacility({ id, name: id, owner: chain.signers[2 + i].address, baselineKgPerHour: '3600', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162', createdAt: T0 });
    stores.registry.createDevice(id, `${id}-meter`, 'meter');
  });
  const oracles: Oracle[] = [];
  const make = (extra: Partial<OracleDeps> = {}) => {
    const o = buildOracle({ db, readings: stores.readings, registry: stores.registry, ledger, logger: silentLogger, windowMs: W, graceMs: GRACE, lease: false, ...extra });
    oracles.push(o);
    t.teardown(() => o.close());
    return o;
  };
  return { chain, ledger, db, ...stores, make, owners };
}

/**
 * Window k of each facility: import register 1000 + 5k kWh (so +5 kWh = +7317 g per window), gas
 * register 100 m3, jumping +20 m3 in window 3 (43.24 + 2.683 = 45.923 kg -> -35923 g: a burn bigger
 * than the balance, leaving a deficit that later windows pay down), and B's readings of window 2
 * arriving one window late.
 */
function windowReadings(facilityId: string, k: number): Reading[] {
  const deviceId = `${facilityId}-meter`;
  const base = T0 + k * W;
  const gas = 100 + (k >= 3 ? 20 : 0);
  return [
    { facilityId, deviceId, seq: 2 * k + 1, ts: base + 4_000, metric: 'electricity_import', value: String(1000 + 5 * k), unit: 'kWh', reset: false, receivedAt: base + 4_000 },
    { facilityId, deviceId, seq: 2 * k + 2, ts: base + 6_000, metric: 'natural_gas', value: String(gas), unit: 'm3', reset: false, receivedAt: base + 6_000 },
  ];
}

/** Readings that exist by `until` (end of window `upTo`), B's window 2 delayed until window 3's readings. */
async function feed(readings: ReturnType<typeof openSqliteStores>['readings'], from: number, upTo: number) {
  for (let k = from; k <= upTo; k++) {
    for (const f of FACILITIES) {
      if (f === 'B' && k === 2) continue; // late: sent with window 3
      if (f === 'B' && k === 3) await readings.commit(windowReadings('B', 2));
      const out = await readings.commit(windowReadings(f, k));
      if (out.some((o) => o.status === 'rejected')) throw new Error(`feed ${f} ${k}: ${JSON.stringify(out)}`);
    }
  }
}

async function checkChain(t: Test, ledger: Ledger, oracle: Oracle, chain: Chain, owners: Map<string, number>, lastWindow: number) {
  const events = await ledger.settlements();
  for (const f of FACILITIES) {
    const mine = events.filter((e) => e.facilityId === f);
    const starts = mine.map((e) => e.windowStart);
    t.same(starts, Array.from({ length: lastWindow + 1 }, (_, k) => T0 + k * W), `${f}: windows 0..${lastWindow} settled once each, in order`);
    const recorded = oracle.listSettlements({ facilityId: f });
    t.same(recorded.map((s) => [s.windowStart, s.evidenceRoot]), mine.map((e) => [e.windowStart, e.evidenceRoot]), `${f}: recorded roots are the chain's`);
    const sum = recorded.reduce((a, s) => a + BigInt(s.netGrams), 0n);
    t.equal(mine.reduce((a, e) => a + e.netGrams, 0n), sum, `${f}: chain nets sum to the methodology's`);
    const state = await ledger.facility(f);
    const balance = await ledger.heldBy(chain.signers[owners.get(f) as number].address);
    t.equal(balance + state.retiredGrams - state.deficitGrams, sum, `${f}: balance + retired - deficit == sum of nets (${sum})`);
    t.equal(state.nextWindowStart, T0 + (lastWindow + 1) * W);
  }
}

t.test('killed between send and record: a fresh oracle on the same file confirms and continues', async (t) => {
  const { ledger, readings, make, chain, owners, db } = await setup(t);
  await feed(readings, 0, 1);
  const first = make();
  const confirm = first.records.confirmMany.bind(first.records);
  first.records.confirmMany = () => {
    throw new Error('SIGKILL');
  };
  await t.rejects(first.runOnce(closeOf(1)), /SIGKILL/);
  first.records.confirmMany = confirm;
  await first.close();
  t.equal((await ledger.facility('A')).nextWindowStart, T0 + W, 'window 0 of both facilities reached the chain');
  t.equal(db.prepare("SELECT COUNT(*) FROM oracle_settlements WHERE state = 'confirmed'").pluck().get(), 0, 'nothing recorded as confirmed');
  await feed(readings, 2, 7);
  const second = make();
  const r = await second.runOnce(closeOf(7));
  t.equal(r.reconciled, 2, 'window 0 of A and B confirmed from the chain by root');
  t.equal(r.settled, 14, 'windows 1..7 of A and B');
  t.equal(r.transactions, 7, 'one transaction per round: both facilities in each batch');
  // A: w1 +7317, w2 +7317, w3 -35923 (burns 14634, deficit 21289), w4 +7317, w5 +7317, w6 +7317 (pays 6655, mints 662), w7 +7317.
  t.match(second.getSettlement(`A-${T0 + 3 * W}`), { netGrams: '-35923', burnedGrams: '14634', deficitGrams: '21289' });
  t.match(second.getSettlement(`A-${T0 + 6 * W}`), { netGrams: '7317', mintedGrams: '662', deficitGrams: '0' });
  // B's window 2 readings were stored before window 2 was settled: on time, complete.
  t.match(second.getSettlement(`B-${T0 + 2 * W}`), { complete: true, netGrams: '7317' });
  await checkChain(t, ledger, second, chain, owners, 7);
});

t.test('RPC down for several runs, then recovering', async (t) => {
  const { ledger, readings, make, chain, owners } = await setup(t);
  let down = false;
  const oracle = make({ ledger: faultyLedger(ledger, { down: () => down }) });
  await feed(readings, 0, 1);
  t.equal((await oracle.runOnce(closeOf(1))).settled, 4);
  down = true;
  for (let k = 2; k <= 5; k++) {
    await feed(readings, k, k);
    const r = await oracle.runOnce(closeOf(k));
    t.equal(r.settled, 0, `run during outage (window ${k})`);
    t.equal(r.blocked.length, 2);
  }
  down = false;
  await feed(readings, 6, 6);
  const r = await oracle.runOnce(closeOf(6));
  t.equal(r.settled, 10, 'windows 2..6 of A and B');
  await checkChain(t, ledger, oracle, chain, owners, 6);
  // (An owner's retirement keeping the identity balance + retired - deficit = sum of nets is
  // checked in test/contracts/ledger-client.test.ts: these windows of January 2026 lag the node's
  // clock by far more than two windows, so the ledger freezes the owners' credits here.)
  const aOwner = chain.signers[owners.get('A') as number];
  const [batch] = await ledger.batches('A');
  await t.rejects(ledger.retire(aOwner, [BigInt(batch.id)], [600n], 'City of Shenzhen', 'test retirement'), { code: 'LEDGER_REVERTED', message: /lags more than two windows/ });
  await checkChain(t, ledger, oracle, chain, owners, 6);
});

t.test('RPC answer lost after the send (timeout), then retried', async (t) => {
  const { ledger, readings, make, chain, owners } = await setup(t);
  let lose = 0;
  const oracle = make({ ledger: faultyLedger(ledger, { timeoutAfterSend: () => lose-- > 0 }) });
  await feed(readings, 0, 2);
  lose = 2; // the answers of the first two batches are lost
  const r1 = await oracle.runOnce(closeOf(2));
  t.match(r1.errors, [/timeout/]);
  t.equal(r1.settled, 0, 'window 0 landed, but we did not hear back');
  const r2 = await oracle.runOnce(closeOf(2));
  t.match(r2, { reconciled: 2, settled: 0, errors: [/timeout/] }, 'window 0 confirmed by root; window 1 landed unheard');
  const r3 = await oracle.runOnce(closeOf(2));
  t.match(r3, { reconciled: 2, settled: 2, errors: [] }, 'window 1 confirmed by root; window 2 settled');
  // B's window 2 readings had not arrived when window 2 was settled: incomplete, capped at 0.
  t.match(oracle.getSettlement(`B-${T0 + 2 * W}`), { complete: false, netGrams: '0' });
  await feed(readings, 3, 4);
  await oracle.runOnce(closeOf(4));
  // Window 3 counts them (import 1005 -> 1010 -> 1015 = 10 kWh; gas 100 -> 100 -> 120 = 20 m3:
  // 5.366 + 43.24 = 48.606 kg -> -38606 g) and flags them late.
  t.match(oracle.getSettlement(`B-${T0 + 3 * W}`), { complete: true, netGrams: '-38606' });
  t.same(oracle.getSettlement(`B-${T0 + 3 * W}`)?.inputs.lateKeys, ['B-meter:5', 'B-meter:6']);
  t.same([...oracle.lateReadings('B', [{ deviceId: 'B-meter', seq: 5 }, { deviceId: 'B-meter', seq: 7 }])], ['B-meter:5']);
  t.equal((await oracle.verify(`B-${T0 + 3 * W}`)).match, true);
  await checkChain(t, ledger, oracle, chain, owners, 4);
});

t.test('two oracles at once on the same file and chain (two signers, lease off)', async (t) => {
  const { ledger, readings, make, chain, owners } = await setup(t);
  // Two equal oracle processes (each may also register facilities: both race to do it in round 0).
  await ledger.grantRole('oracle', chain.signers[1].address);
  await ledger.grantRole('regulator', chain.signers[1].address);
  const other = ledger.connect(chain.signers[1]);
  const a = make();
  const b = make({ ledger: other, maxBatch: 1 });
  let collisions = 0;
  for (let k = 0; k <= 6; k += 2) {
    await feed(readings, k, k + 1);
    const [ra, rb] = await Promise.all([a.runOnce(closeOf(k + 1)), b.runOnce(closeOf(k + 1))]);
    t.same([...ra.errors, ...rb.errors], [], `round ${k}: no errors`);
    t.same([...ra.blocked, ...rb.blocked], [], `round ${k}: nothing blocked`);
    collisions += ra.skippedOnChain + rb.skippedOnChain + ra.reconciled + rb.reconciled;
  }
  t.ok(collisions > 0, `the two oracles did collide (${collisions} skipped or reconciled entries)`);
  // Whatever each saw, both end with the chain's history.
  await a.runOnce(closeOf(7));
  await b.runOnce(closeOf(7));
  t.same(
    a.listSettlements().map((s) => [s.id, s.evidenceRoot, s.netGrams]),
    b.listSettlements().map((s) => [s.id, s.evidenceRoot, s.netGrams]),
  );
  await checkChain(t, ledger, a, chain, owners, 7);
});

t.test('restart after several windows of downtime: catches up in order', async (t) => {
  const { ledger, readings, make, chain, owners } = await setup(t);
  const before = make();
  await feed(readings, 0, 1);
  await before.runOnce(closeOf(1));
  await before.close();
  // Down for windows 2..7 while devices keep reporting (the store is up).
  await feed(readings, 2, 7);
  const after = make();
  const r = await after.runOnce(closeOf(7));
  t.equal(r.settled, 12);
  t.equal(r.rounds, 7, 'six catch-up rounds (one window per facility each) and a final empty one');
  t.same(r.blocked, []);
  await checkChain(t, ledger, after, chain, owners, 7);
  // Every settlement still re-verifies against the chain.
  for (const s of after.listSettlements()) t.equal((await after.verify(s.id)).match, true, `verify ${s.id}`);
});

t.test('a settlement the contract refuses (NetOutOfRange) blocks that facility only; the batch falls back to one entry per transaction', async (t) => {
  const { ledger, readings, make, chain, owners } = await setup(t);
  let poison = true;
  // Whatever produced it, B's net reaches the ledger out of range while `poison` holds.
  const poisoned = new Proxy(ledger, {
    get(target, prop, receiver) {
      if (prop === 'settleBatch') {
        return (inputs: Parameters<Ledger['settleBatch']>[0]) => target.settleBatch(inputs.map((s) => (s.facilityId === 'B' && poison ? { ...s, netGrams: -(1n << 70n) } : s)));
      }
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  const oracle = make({ ledger: poisoned, backoff: { baseMs: 1_000, maxMs: 1_000 } });
  await feed(readings, 0, 2);
  const r = await oracle.runOnce(closeOf(2));
  t.equal(r.settled, 3, 'A: windows 0..2');
  t.match(r.blocked, [{ facilityId: 'B', reason: /NetOutOfRange/ }]);
  t.same(r.errors, [], 'the run went on');
  t.equal((await ledger.facility('B')).nextWindowStart, T0, 'nothing of B on chain');
  t.match(oracle.facilityStatus('B'), { settlementStatus: 'blocked', attempts: 1 });
  poison = false;
  const r2 = await oracle.runOnce(closeOf(2) + 1_000);
  t.equal(r2.settled, 3, 'B: windows 0..2 once the poison is gone');
  t.equal(oracle.facilityStatus('B').settlementStatus, 'ok');
  await feed(readings, 3, 3);
  await oracle.runOnce(closeOf(3));
  await checkChain(t, ledger, oracle, chain, owners, 3);
});
