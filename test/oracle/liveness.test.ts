/**
 * Liveness of the oracle against the in-memory ledger with the contract's reverts (test/helpers/memory-ledger.ts):
 * - a facility whose settlement reverts is blocked (reason, metric, status), retried with capped
 *   exponential backoff, while the others settle in the same run; a reverted batch falls back to
 *   one entry per transaction;
 * - registry and chain are reconciled every run until they agree (a failed push is repaired);
 * - the chain is the source of truth: settlements it lost are settled again, exactly once;
 * - with CHAIN_CONFIRMATIONS, confirmed-but-not-final settlements are re-checked, and one the chain
 *   replaced (a reorganisation won by another signer) is corrected before the next window counts on it.
 */
import t, { type Test } from 'tap';
import { Registry as PromRegistry } from 'prom-client';
import { silentLogger } from '../../domain/logger.ts';
import type { Reading } from '../../domain/reading.ts';
import { openDatabase } from '../../store/sqlite/db.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import { SqliteOracleRecords } from '../../store/sqlite/records.ts';
import { SqliteOracleStatus } from '../../store/sqlite/status.ts';
import { buildOracle, type OracleDeps } from '../../oracle/oracle.ts';
import type { LedgerPort } from '../../contracts/client/port.ts';
import { generateDeviceKey } from '../../domain/signature.ts';
import { MemoryLedger } from '../helpers/memory-ledger.ts';

const W = 10_000;
const GRACE = 1_000;
const closeOf = (k: number) => (k + 1) * W + GRACE;
const owner = (i: number) => `0x${String(i).repeat(40)}`;

function setup(t: Test, ids: string[], windows: number) {
  const db = openDatabase(t.testdir());
  t.teardown(() => db.close());
  const stores = openSqliteStores(db, { clock: () => 0 });
  const ledger = new MemoryLedger();
  ids.forEach((id, i) => {
    stores.registry.createFacility({ id, name: id, owner: owner(i + 1), baselineKgPerHour: '3600', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162', createdAt: 0 });
    stores.registry.createDevice(id, `${id}-m`, 'meter');
  });
  const feed = async (from: number, to: number) => {
    for (const id of ids) {
      const batch: Reading[] = [];
      for (let k = from; k <= to; k++) {
        batch.push({ facilityId: id, deviceId: `${id}-m`, seq: k + 1, ts: k * W + 5_000, metric: 'electricity_import', value: String(1000 + 5 * k), unit: 'kWh', reset: false, receivedAt: k * W + 5_000 });
      }
      await stores.readings.commit(batch);
    }
  };
  const make = (extra: Partial<OracleDeps> = {}) => {
    const o = buildOracle({ db, readings: stores.readings, registry: stores.registry, ledger, logger: silentLogger, windowMs: W, graceMs: GRACE, lease: false, ...extra });
    t.teardown(() => o.close());
    return o;
  };
  return { db, ...stores, ledger, make, feed };
}

/** The ledger, with every settlement of `facilityId` carrying a poison net while `on()` (whatever produced it). */
function poisoned(inner: MemoryLedger, facilityId: string, on: () => boolean): LedgerPort {
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'settleBatch') {
        return (inputs: Parameters<LedgerPort['settleBatch']>[0]) =>
          target.settleBatch(inputs.map((s) => (s.facilityId === facilityId && on() ? { ...s, netGrams: -(10n ** 22n) } : s)));
      }
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

t.test('a reverting facility is blocked with backoff; the others settle in the same run', async (t) => {
  const { ledger, make, feed } = setup(t, ['A', 'P', 'B'], 3);
  await feed(0, 3);
  let poison = true;
  const metrics = new PromRegistry();
  const oracle = make({ ledger: poisoned(ledger, 'P', () => poison), metrics, backoff: { baseMs: 1_000, maxMs: 4_000 } });
  const now = closeOf(3);
  const r = await oracle.runOnce(now);
  t.equal(r.settled, 8, 'A and B: windows 0..3 each');
  t.match(r.blocked, [{ facilityId: 'P', reason: /NetOutOfRange/ }]);
  t.equal(r.blocked.length, 1);
  t.same([...ledger.settledCounts().keys()].filter((k) => k.startsWith('P')), [], 'nothing of P on chain');
  t.same(ledger.facilities.get('A')?.next, 4 * W);
  t.same(ledger.facilities.get('B')?.next, 4 * W);
  // Round 1 carried A, P and B in one batch: it reverted, then one transaction per entry (2 mined).
  t.ok(ledger.calls.filter((c) => c === 'settleBatch').length >= 6, 'the reverted batch fell back to one entry per transaction');
  t.match(oracle.facilityStatus('P'), { settlementStatus: 'blocked', reason: /NetOutOfRange/, attempts: 1, since: now, retryAt: now + 1_000 });
  t.same(oracle.facilityStatus('A'), { facilityId: 'A', settlementStatus: 'ok' });
  t.match(await metrics.metrics(), /mrv_oracle_facility_blocked\{facility="P"\} 1/);
  t.match(await metrics.metrics(), /mrv_oracle_blocked_facilities 1/);

  // Before its backoff elapses, P is left alone (no chain traffic for it).
  const sends = ledger.calls.length;
  const r2 = await oracle.runOnce(now + 500);
  t.same(r2.deferred, ['P']);
  t.same(r2.blocked, []);
  t.equal(ledger.calls.length, sends, 'no call for P (A and B have nothing closed)');
  // Exponential, capped: 1 s, 2 s, 4 s, 4 s.
  let at = now + 1_000;
  for (const delay of [2_000, 4_000, 4_000]) {
    const rr = await oracle.runOnce(at);
    t.match(rr.blocked, [{ facilityId: 'P' }]);
    t.equal(oracle.facilityStatus('P').retryAt, at + delay, `next attempt ${delay} ms later`);
    at += delay;
  }
  t.equal(oracle.facilityStatus('P').attempts, 4);
  t.equal(oracle.facilityStatus('P').since, now, 'blocked since the first failure');

  // The poison is gone (say, the readings were voided): P settles windows 0..3 and is unblocked.
  poison = false;
  const r3 = await oracle.runOnce(at);
  t.equal(ledger.facilities.get('P')?.next, 5 * W, 'P settles windows 0..4 (all closed by now)');
  t.same(r3.blocked, []);
  t.same(oracle.facilityStatus('P'), { facilityId: 'P', settlementStatus: 'ok' });
  t.notMatch(await metrics.metrics(), /mrv_oracle_facility_blocked\{facility="P"\}/);
  t.match(await metrics.metrics(), /mrv_oracle_blocked_facilities 0/);
  t.ok([...ledger.settledCounts().values()].every((c) => c === 1), 'every window once');
  t.equal(ledger.settledCounts().size, 15, 'windows 0..4 of A, P and B');
  t.equal(r3.settled, 7, 'P: 0..4, A and B: 4');
});

t.test('the blocked status survives a restart (persisted) and a corrected registry record is retried at once', async (t) => {
  const { ledger, make, feed, registry } = setup(t, ['A'], 1);
  await feed(0, 1);
  // The chain registered A with another owner (say the gateway pushed a record since corrected).
  await ledger.registerFacility('A', owner(9), '3600', 0);
  const first = make({ backoff: { baseMs: 60_000, maxMs: 60_000 }, ledger: ledger.connect(owner(7)) });
  const r = await first.runOnce(closeOf(1));
  t.match(r.blocked, [{ facilityId: 'A', reason: /owner .* differs/ }], 'an owner mismatch blocks: credits would go to the wrong owner');
  t.match(first.facilityStatus('A'), { settlementStatus: 'blocked', reason: /AccessControlUnauthorizedAccount/ }, 'this signer may not correct it');
  await first.close();
  const second = make({ backoff: { baseMs: 60_000, maxMs: 60_000 } });
  t.match(second.facilityStatus('A'), { settlementStatus: 'blocked', attempts: 1 }, 'a new process sees the status');
  t.same((await second.runOnce(closeOf(1) + 1_000)).deferred, ['A'], 'and keeps the backoff');
  // This signer has the regulator role: the owner is corrected on chain (never settled), then A settles.
  const r2 = await second.runOnce(closeOf(1) + 60_000);
  t.equal(ledger.facilities.get('A')?.next, 8 * W, 'A settles every closed window');
  t.equal(r2.synced, 1, 'the owner was corrected');
  t.equal(ledger.facilities.get('A')?.owner.toLowerCase(), owner(1));
  t.equal(second.facilityStatus('A').settlementStatus, 'ok');
  void registry;
});

t.test('registry and chain are reconciled every run until they agree', async (t) => {
  const { ledger, make, feed, registry } = setup(t, ['F'], 2);
  await feed(0, 2);
  // The oracle's clock is the runs' time: a baseline is pushed from the next window after it, and
  // the chain caps each window's net at the baseline it holds for that window.
  let now = closeOf(0);
  const oracle = make({ clock: () => now });
  const run = (at: number) => oracle.runOnce((now = at));
  t.equal((await run(closeOf(0))).settled, 1);
  // The gateway's suspension push failed; the oracle's first push fails too (role revoked for a while).
  registry.updateFacility('F', { status: 'suspended' });
  ledger.revokeRole('regulator', ledger.from);
  const r1 = await run(closeOf(0) + 1_000);
  t.equal(r1.synced, 0);
  t.equal(ledger.facilities.get('F')?.suspended, false);
  ledger.grantRole('regulator', ledger.from);
  // Window 1 has not closed yet: the disagreement alone makes this run read and push again.
  const r2 = await run(closeOf(0) + 2_000);
  t.equal(r2.synced, 1, 'suspension pushed on the next run');
  t.equal(ledger.facilities.get('F')?.suspended, true);
  // Same for the baseline.
  registry.updateFacility('F', { baselineKgPerHour: '7200', effectiveFrom: 2 * W });
  ledger.revokeRole('regulator', ledger.from);
  await run(closeOf(0) + 3_000);
  t.equal((await ledger.facility('F')).baselineKgPerHour, '3600');
  ledger.grantRole('regulator', ledger.from);
  await run(closeOf(0) + 4_000);
  t.equal((await ledger.facility('F')).baselineKgPerHour, '7200');
  // And an unregistered facility (its registration failed everywhere) is registered as soon as it can be.
  registry.createFacility({ id: 'G', name: 'G', owner: owner(5), baselineKgPerHour: '10', gridFactorKgPerKwh: '0.5', gasFactorKgPerM3: '2', createdAt: 0 });
  ledger.revokeRole('regulator', ledger.from);
  const r3 = await run(closeOf(0) + 5_000);
  t.match(r3.blocked, [{ facilityId: 'G', reason: /not registered on chain: .*AccessControlUnauthorizedAccount/ }]);
  ledger.grantRole('regulator', ledger.from);
  const r4 = await run(closeOf(2));
  t.equal(r4.registered, 1);
  t.same(r4.blocked, []);
  t.equal(ledger.facilities.get('G')?.next, 3 * W, 'G registered and settled windows 0..2');
  t.equal(ledger.facilities.get('F')?.next, 3 * W);
});

t.test('the chain loses settled windows: they are settled again, exactly once, nothing blocked', async (t) => {
  const { ledger, make, feed } = setup(t, ['A', 'B'], 4);
  await feed(0, 4);
  const oracle = make();
  await oracle.runOnce(closeOf(0));
  const snap = ledger.snapshot();
  t.equal((await oracle.runOnce(closeOf(2))).settled, 4, 'windows 1..2 of A and B');
  const before = oracle.listSettlements().map((s) => [s.id, s.netGrams, s.evidenceRoot]);
  ledger.revertTo(snap); // a restored chain state: windows 1..2 are gone
  t.equal(ledger.facilities.get('A')?.next, W);
  // This process has read the chain for nothing since (window 3 is not closed): a restart (the usual
  // way a chain's state is restored) or the next closed window makes it look.
  const restarted = make();
  const r = await restarted.runOnce(closeOf(2));
  t.same(r.blocked, [], 'not blocked');
  t.equal(r.lost, 4, 'windows 1..2 of A and B found lost');
  t.equal(r.settled, 4, 'and settled again');
  t.same(restarted.listSettlements().map((s) => [s.id, s.netGrams, s.evidenceRoot]), before, 'with the same readings, the same roots');
  t.ok([...ledger.settledCounts().values()].every((c) => c === 1));
  t.equal(ledger.settledCounts().size, 6);
  const r2 = await oracle.runOnce(closeOf(4));
  t.equal(r2.settled, 4, 'and goes on');
  t.same(oracle.listSettlements({ facilityId: 'A' }).map((s) => s.netGrams), ['0', '7317', '7317', '7317', '7317']);
  t.equal(await ledger.heldBy(owner(1)), 4n * 7317n, 'each reading counted once');
});

t.test('CHAIN_CONFIRMATIONS: a window builds on a final one only; one replaced by a reorganisation is corrected', async (t) => {
  const { ledger, make, feed, db } = setup(t, ['A'], 3);
  await feed(0, 3);
  const oracle = make({ confirmations: 3 });
  t.throws(() => make({ confirmations: 1, ledger: { settleBatch: ledger.settleBatch.bind(ledger), facility: ledger.facility.bind(ledger), registerFacility: ledger.registerFacility.bind(ledger), settlementAt: ledger.settlementAt.bind(ledger) } as unknown as LedgerPort }), { code: 'CONFIG_INVALID' });
  /** Mines a block (a transaction of someone else's that changes nothing here). */
  const block = () => ledger.settleBatch([{ facilityId: 'A', windowStart: 0, windowEnd: W, netGrams: 0n, evidenceRoot: `0x${'00'.repeat(32)}` }]);
  const r0 = await oracle.runOnce(closeOf(1));
  t.equal(r0.settled, 1, 'window 0');
  t.equal(r0.finalised, 0, 'one block deep: not final');
  t.equal((await oracle.runOnce(closeOf(1) + 1)).settled, 0, 'window 1 waits until window 0 is final');
  await block();
  await block();
  const snap = ledger.snapshot();
  const r1 = await oracle.runOnce(closeOf(1) + 2);
  t.equal(r1.finalised, 1, 'window 0 is 3 blocks deep: final');
  t.equal(r1.settled, 1, 'window 1 settled on top of it');
  const mine = oracle.getSettlement(`A-${W}`)!;
  // A reorganisation: the block with our window 1 is replaced by one where another signer (sharing
  // this database) settled window 1 with more readings visible: another root, another net.
  ledger.revertTo(snap);
  const otherRoot = `0x${'ee'.repeat(32)}`;
  db.prepare(
    `INSERT INTO oracle_settlements (id, evidence_root, facility_id, window_start, window_end, state, complete, net_grams, actual_kg, inputs, created_at, updated_at)
     VALUES (?, ?, 'A', ?, ?, 'intent', 1, '1', '0', ?, 0, 0)`,
  ).run(`A-${W}`, otherRoot, W, 2 * W, JSON.stringify({ ...mine.inputs, rawNetGrams: '1' }));
  await ledger.settleBatch([{ facilityId: 'A', windowStart: W, windowEnd: 2 * W, netGrams: 1n, evidenceRoot: otherRoot }]);
  t.equal(ledger.facilities.get('A')?.next, 2 * W, 'the chain is at the same window as our records');
  const r2 = await oracle.runOnce(closeOf(2));
  t.equal(r2.lost, 1, 'our window 1 was found replaced');
  t.equal(r2.reconciled, 1, 'the chain’s window 1 confirmed');
  t.equal(oracle.getSettlement(`A-${W}`)?.evidenceRoot, otherRoot, 'the record follows the chain');
  t.equal(r2.settled, 0, 'window 2 waits until that window 1 is final');
  t.same(r2.blocked, []);
  await block();
  await block();
  const r3 = await oracle.runOnce(closeOf(3));
  t.ok(r3.finalised >= 1, `final once 3 blocks deep (${r3.finalised})`);
  t.equal(r3.settled, 1, 'window 2, from the cursors of the chain’s window 1');
  t.equal(ledger.facilities.get('A')?.next, 3 * W);
  t.ok([...ledger.settledCounts().values()].every((c) => c === 1), 'one settlement per window on the chain');
});

t.test("each run records a device's first key on chain, reports a key changed in the database only, and settles regardless", async (t) => {
  const { ledger, make, feed, registry } = setup(t, ['F'], 2);
  const K1 = generateDeviceKey().publicKey;
  const K2 = generateDeviceKey().publicKey;
  registry.updateDevice('F-m', { publicKey: K1 });
  await feed(0, 2);
  const metrics = new PromRegistry();
  const oracle = make({ metrics });
  const r = await oracle.runOnce(closeOf(1));
  t.equal(await ledger.deviceKey('F-m'), K1, "the device's first key went on chain in the oracle's run");
  t.ok(r.synced >= 1);
  t.equal(ledger.facilities.get('F')?.next, 2 * W, 'and the windows settled');
  registry.updateDevice('F-m', { publicKey: K2 }); // the database alone
  await oracle.runOnce(closeOf(2));
  t.equal(await ledger.deviceKey('F-m'), K1, 'never overwritten by the run');
  t.equal(ledger.facilities.get('F')?.next, 3 * W, 'a key mismatch does not stop settlement');
  t.match(await metrics.metrics(), /mrv_oracle_device_key_mismatches 1/);
  t.match(await metrics.metrics(), /mrv_oracle_errors_total\{kind="device_key"\} 1/);
});

t.test('a run clears the status of facilities that had one, not one delete per settled facility', async (t) => {
  const { db, ledger, readings, registry, feed } = setup(t, ['A', 'P', 'B'], 3);
  await feed(0, 3);
  // The real SQLite status, counting clear() calls (each is a round trip on PostgreSQL).
  const inner = new SqliteOracleStatus(db);
  const cleared: string[] = [];
  const status = new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'clear') return (id: string) => (cleared.push(id), target.clear(id));
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  let poison = true;
  const deps = { db, readings, registry, ledger: poisoned(ledger, 'P', () => poison), logger: silentLogger, windowMs: W, graceMs: GRACE, lease: false as const, backoff: { baseMs: 1_000, maxMs: 1_000 } };
  const oracle = buildOracle(deps, { records: new SqliteOracleRecords(db), status });
  t.teardown(() => oracle.close());
  const r1 = await oracle.runOnce(closeOf(1));
  t.equal(r1.settled, 4, 'A and B: windows 0 and 1');
  t.match(r1.blocked, [{ facilityId: 'P' }]);
  t.same(cleared, [], 'A and B never had a status row: nothing to clear');
  // A row written elsewhere (another oracle process on a shared database) for A, which is healthy.
  inner.block('A', 'blocked by another process', closeOf(1), { baseMs: 1, maxMs: 1 });
  poison = false;
  const r2 = await oracle.runOnce(closeOf(3));
  t.same(r2.blocked, []);
  t.same(cleared.sort(), ['A', 'P'], 'only the facilities that had a status row');
  t.same(inner.get('A'), { facilityId: 'A', settlementStatus: 'ok' });
  t.same(inner.get('P'), { facilityId: 'P', settlementStatus: 'ok' });
  t.ok([...ledger.settledCounts().values()].every((c) => c === 1), 'every window once');
});
