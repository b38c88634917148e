/**
 * oracle/chain-sync.ts, the one writer of on-chain registry state (issue 11): the rules the gateway's
 * pushes and the oracle's reconcile share, over the real SQLite registry and the in-memory ledger.
 */
import { ethers } from 'ethers';
import t, { type Test } from 'tap';
import { createLogger, silentLogger } from '../../domain/logger.ts';
import { generateDeviceKey } from '../../domain/signature.ts';
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

t.test("a baseline the gateway could not push reaches the chain from the registry's window, not from the sync's time", async (t) => {
  const { registry, ledger, clock } = setup(t);
  registry.createFacility({ id: 'F', name: 'F', owner: OWNER, baselineKgPerHour: '3600', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162', createdAt: 25_000 });
  const sync = buildChainSync({ ledger, registry, windowMs: W, clock: () => clock.now, logger: silentLogger, metrics: oracleMetrics() });
  const counts = { registered: 0, synced: 0 };
  await sync.syncFacility(registry.getFacility('F')!, counts);
  // Raised from window 30 000 on (the gateway's push failed); the oracle's sync runs much later.
  const raised = registry.updateFacility('F', { baselineKgPerHour: '7200', effectiveFrom: 30_000 });
  clock.now = 95_000;
  await sync.syncFacility(raised, counts);
  t.match(await ledger.facility('F'), { baselineKgPerHour: '7200', baselineEffectiveFrom: 30_000 }, "the registry's window, so the chain's cap for windows 30 000.. is the new baseline's");
  // A window of the raised baseline earning above the old cap settles.
  ledger.chain.now = () => 1_000_000;
  const r = await ledger.settleBatch([
    { facilityId: 'F', windowStart: 20_000, windowEnd: 30_000, netGrams: 10_000n, evidenceRoot: ethers.id('a') },
    { facilityId: 'F', windowStart: 30_000, windowEnd: 40_000, netGrams: 20_000n, evidenceRoot: ethers.id('b') },
  ]);
  t.same(r.results.map((x) => x.mintedGrams), [10_000n, 20_000n]);
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

/** A JSON logger whose lines the test reads. */
function capturingLogger() {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger('debug', { write: (s: string) => void lines.push(JSON.parse(s)) }, 'json');
  return { logger, lines };
}

t.test("device keys: the reconcile pushes a key the chain never saw, reports a differing one and never overwrites it", async (t) => {
  const { registry, ledger, clock } = setup(t);
  registry.createFacility({ id: 'F', name: 'F', owner: OWNER, baselineKgPerHour: '3600', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162', createdAt: 25_000 });
  const K1 = generateDeviceKey().publicKey;
  const K2 = generateDeviceKey().publicKey;
  const K3 = generateDeviceKey().publicKey;
  registry.createDevice('F', 'signed', 'meter', { publicKey: K1 });
  registry.createDevice('F', 'plain', 'meter');
  registry.createDevice('F', 'revoked', 'meter', { publicKey: K3 });
  // The regulator revoked 'revoked' on chain: the chain has no current key but has a history.
  await ledger.setDeviceKey('revoked', K3);
  await ledger.setDeviceKey('revoked', '0'.repeat(64));
  const metrics = oracleMetrics();
  const { logger, lines } = capturingLogger();
  const sync = buildChainSync({ ledger, registry, windowMs: W, clock: () => clock.now, logger, metrics });
  const f = () => registry.getFacility('F')!;
  const gauge = async () => (await metrics.deviceKeyMismatches.get()).values[0]?.value;
  const keyErrors = async () => (await metrics.errors.get()).values.find((v) => v.labels.kind === 'device_key')?.value ?? 0;

  // Run 1: the first key of 'signed' goes on chain; the revoked key is not put back.
  let counts = { registered: 0, synced: 0 };
  let m = await sync.syncDeviceKeys(f(), counts);
  t.equal(await ledger.deviceKey('signed'), K1, 'a key the chain never recorded is pushed');
  t.equal(counts.synced, 1);
  t.same(m, [{ deviceId: 'revoked', facilityId: 'F', registryKey: K3 }], 'a revoked chain key is reported, not re-set');
  t.equal(await ledger.deviceKey('revoked'), undefined);
  t.equal(await gauge(), 1);

  // Run 2: nothing to do; consistent devices cost no chain read.
  ledger.calls.length = 0;
  counts = { registered: 0, synced: 0 };
  m = await sync.syncDeviceKeys(f(), counts);
  t.same(counts, { registered: 0, synced: 0 });
  t.same(ledger.calls.filter((c) => c === 'deviceKey'), ['deviceKey'], "only the mismatched device is read again");

  // The database alone changes the key of 'signed' (tampering, or a rotation that never reached the chain).
  registry.updateDevice('signed', { publicKey: K2 });
  const writesBefore = ledger.writes.length;
  m = await sync.syncDeviceKeys(f(), counts);
  t.equal(await ledger.deviceKey('signed'), K1, 'the chain key is never overwritten by the reconcile');
  t.equal(ledger.writes.length, writesBefore, 'no write at all');
  t.same(m.find((x) => x.deviceId === 'signed'), { deviceId: 'signed', facilityId: 'F', registryKey: K2, chainKey: K1 });
  t.equal(await gauge(), 2);
  t.equal(await keyErrors(), 2, 'each mismatch counted once');
  const reported = lines.filter((l) => l.level === 50 && l.deviceId === 'signed');
  t.equal(reported.length, 1);
  t.match(reported[0], { registryKey: K2, chainKey: K1, msg: /not overwritten/ });
  await sync.syncDeviceKeys(f(), counts);
  t.equal(lines.filter((l) => l.level === 50 && l.deviceId === 'signed').length, 1, 'reported once, not every run');
  t.equal(await keyErrors(), 2);
  t.equal(sync.keyMismatches().length, 2);

  // The regulator's rotation (the gateway's write) puts K2 on chain: agreement again.
  const writer = registryWriter(ledger, registry, W);
  t.equal(await writer.pushDeviceKey('signed', K2), true);
  m = await sync.syncDeviceKeys(f(), counts);
  t.same(m.map((x) => x.deviceId), ['revoked']);
  t.equal(await gauge(), 1);
  t.ok(lines.some((l) => l.deviceId === 'signed' && /agrees with the chain again/.test(String(l.msg))));
  t.same(
    (await ledger.deviceKeys('signed')).map((e) => [e.publicKey, e.previousKey]),
    [
      [K1, null],
      [K2, K1],
    ],
  );
});

t.test('device keys: a chain failure is logged and retried next run; a ledger without device keys is skipped', async (t) => {
  const { registry, ledger, clock } = setup(t);
  registry.createFacility({ id: 'F', name: 'F', owner: OWNER, baselineKgPerHour: '3600', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162', createdAt: 25_000 });
  const K1 = generateDeviceKey().publicKey;
  registry.createDevice('F', 'signed', 'meter', { publicKey: K1 });
  const metrics = oracleMetrics();
  const { logger, lines } = capturingLogger();
  await ledger.revokeRole('regulator', ledger.from); // the chain refuses the key's write
  const sync = buildChainSync({ ledger, registry, windowMs: W, clock: () => clock.now, logger, metrics });
  const counts = { registered: 0, synced: 0 };
  t.same(await sync.syncDeviceKeys(registry.getFacility('F')!, counts), []);
  t.equal(await ledger.deviceKey('signed'), undefined);
  t.ok(lines.some((l) => l.level === 40 && l.deviceId === 'signed' && /retrying next run/.test(String(l.msg))));
  await ledger.grantRole('regulator', ledger.from);
  await sync.syncDeviceKeys(registry.getFacility('F')!, counts);
  t.equal(await ledger.deviceKey('signed'), K1, 'pushed on the next run');

  // A ledger deployed before device keys: a client without deviceKey/deviceKeys/setDeviceKey.
  const old = { facility: (id: string) => ledger.facility(id), registerFacility: ledger.registerFacility.bind(ledger), setFacilitySuspended: ledger.setFacilitySuspended.bind(ledger), setBaseline: ledger.setBaseline.bind(ledger), setFacilityOwner: ledger.setFacilityOwner.bind(ledger) };
  const without = buildChainSync({ ledger: old, registry, windowMs: W, clock: () => clock.now, logger, metrics });
  t.same(await without.syncDeviceKeys(registry.getFacility('F')!, counts), [], 'a ledger without device keys: nothing to do');
});
