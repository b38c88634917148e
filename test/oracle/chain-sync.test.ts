/**
 * oracle/chain-sync.ts, the one writer of on-chain registry state (issue 11): the rules the gateway's
 * pushes and the oracle's reconcile share, over the real SQLite registry and the in-memory ledger.
 */
import t, { type Test } from 'tap';
import { silentLogger } from '../../domain/logger.ts';
import { openDatabase } from '../../store/sqlite/db.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import { baselineEffectiveFrom, buildChainSync, firstWindowStart, registryWriter } from '../../oracle/chain-sync.ts';
import { oracleMetrics } from '../../oracle/metrics.ts';
import { MemoryLedger } from '../helpers/memory-ledger.ts';

const W = 10_000;
const OWNER = '0x1111111111111111111111111111111111111111';

function setup(t: Test) {
  const db = openDatabase(t.testdir());
  t.teardown(() => db.close());
  const clock = { now: 25_000 };
  const stores = openSqliteStores(db, { clock: () => clock.now });
  return { ...stores, clock, ledger: new MemoryLedger() };
}

t.test('a baseline change takes effect from the next window, never before the chain expects', async (t) => {
  t.equal(baselineEffectiveFrom(25_000, W), 30_000, 'mid-window: the next window');
  t.equal(baselineEffectiveFrom(30_000, W), 30_000, 'on a boundary: the window starting then');
  t.equal(baselineEffectiveFrom(25_000, W, 20_000), 30_000, 'the chain behind: still the next window');
  t.equal(baselineEffectiveFrom(25_000, W, 50_000), 50_000, "the chain ahead: from the chain's next window");
  t.equal(firstWindowStart({ createdAt: 25_000 }, W), 20_000, 'registered from the window containing the registration');
});

t.test('the writer registers with the baseline in force in the first window, and mirrors the registry', async (t) => {
  const { registry, ledger, clock } = setup(t);
  const f0 = registry.createFacility({ id: 'F', name: 'F', owner: OWNER, baselineKgPerHour: '3600', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162', createdAt: 25_000 });
  const writer = registryWriter(ledger, registry, W);
  // Re-baselined before the chain heard of it: the first window still has the original baseline.
  clock.now = 27_000;
  const f1 = registry.updateFacility('F', { baselineKgPerHour: '1800', effectiveFrom: baselineEffectiveFrom(clock.now, W) });
  t.equal(await writer.register(f1), 20_000);
  let c = await ledger.facility('F');
  t.match(c, { registered: true, owner: OWNER, nextWindowStart: 20_000, baselineKgPerHour: '3600' }, 'the baseline in force in window 20 000');
  t.equal(f0.baselineKgPerHour, '3600');

  t.equal(await writer.pushSuspension(registry.updateFacility('F', { status: 'suspended' })), true);
  t.equal((await ledger.facility('F')).suspended, true, 'suspension mirrors the registry');
  t.equal(await writer.pushBaseline(f1, baselineEffectiveFrom(clock.now, W, 20_000)), true);
  c = await ledger.facility('F');
  t.equal(c.baselineKgPerHour, '1800', 'the current baseline, from the next window');

  // The oracle's reconcile uses the same writer: nothing left to push.
  const metrics = oracleMetrics();
  const sync = buildChainSync({ ledger, registry, windowMs: W, clock: () => clock.now, logger: silentLogger, metrics });
  const counts = { registered: 0, synced: 0 };
  const { agreed } = await sync.syncFacility(registry.getFacility('F')!, counts);
  t.ok(agreed);
  t.same(counts, { registered: 0, synced: 0 }, 'registry and chain already agree');

  // What the gateway could not push, the oracle does, by the same rules.
  const f2 = registry.updateFacility('F', { status: 'active', baselineKgPerHour: '900', effectiveFrom: baselineEffectiveFrom(clock.now, W) });
  const again = await sync.syncFacility(f2, counts);
  t.ok(again.agreed);
  t.same(counts, { registered: 0, synced: 2 }, 'suspension and baseline pushed');
  t.match(await ledger.facility('F'), { suspended: false, baselineKgPerHour: '900' });
});
