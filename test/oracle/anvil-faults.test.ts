/**
 * The oracle against a REAL anvil, over HTTP JSON-RPC through a proxy that injects faults below the
 * signer (test/helpers/rpc-proxy.ts), with the real SQLite store:
 * - the chain loses settled windows (evm_snapshot / evm_revert: a restored state, a reorganisation):
 *   the running oracle and a second oracle with another key on the same file settle them again,
 *   each window exactly once, nothing blocked, each reading counted once;
 * - a raw transaction refused or answered into the void after ethers' NonceManager counted its
 *   nonce: the next run settles (no nonce gap), the lost answer is reconciled by root.
 */
import t, { type Test } from 'tap';
import { ethers } from 'ethers';
import { silentLogger } from '../../domain/logger.ts';
import type { Reading } from '../../domain/reading.ts';
import { openDatabase } from '../../store/sqlite/db.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import { anvilBinary, startAnvil } from '../../contracts/client/chain.ts';
import { Ledger } from '../../contracts/client/ledger.ts';
import { buildOracle, type Oracle } from '../../oracle/oracle.ts';
import { startRpcProxy } from '../helpers/rpc-proxy.ts';

const W = 10_000;
const GRACE = 1_000;
const T0 = Date.UTC(2026, 0, 1);
const FACILITIES = ['A', 'B'];
const closeOf = (k: number) => T0 + (k + 1) * W + GRACE;

async function setup(t: Test) {
  const anvil = await startAnvil();
  t.teardown(() => anvil.close());
  const proxy = await startRpcProxy(anvil.rpcUrl!);
  t.teardown(() => proxy.close());
  const provider = new ethers.JsonRpcProvider(proxy.url, { chainId: 31337, name: 'anvil' }, { staticNetwork: true, pollingInterval: 100, cacheTimeout: -1, batchMaxCount: 1 });
  t.teardown(() => provider.destroy());
  const wallet = (i: number) => new ethers.NonceManager(new ethers.Wallet(anvil.privateKeys[i], provider));
  const admin = await Ledger.deploy(wallet(0), { windowSeconds: W / 1000, confirmTimeoutMs: 20_000 });
  const keys = [1, 2].map((i) => ethers.computeAddress(anvil.privateKeys[i]));
  for (const k of keys) {
    await admin.grantRole('oracle', k);
    await admin.grantRole('regulator', k);
  }
  // A stalled transaction (a nonce gap) fails the run after 20 s instead of hanging the test.
  const ledgerOf = (i: number) => Ledger.attach(admin.address, wallet(i), { startBlock: admin.startBlock, confirmTimeoutMs: 20_000 });
  const db = openDatabase(t.testdir());
  t.teardown(() => db.close());
  const stores = openSqliteStores(db, { clock: () => T0 });
  const owners = new Map<string, string>();
  FACILITIES.forEach((id, i) => {
    owners.set(id, ethers.computeAddress(anvil.privateKeys[4 + i]));
    stores.registry.createFacility({ id, name: id, owner: owners.get(id)!, baselineKgPerHour: '3600', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162', createdAt: T0 });
    stores.registry.createDevice(id, `${id}-m`, 'meter');
  });
  const make = (ledger: Ledger): Oracle => {
    const o = buildOracle({ db, readings: stores.readings, registry: stores.registry, ledger, logger: silentLogger, windowMs: W, graceMs: GRACE, lease: false });
    t.teardown(() => o.close());
    return o;
  };
  const feed = async (from: number, to: number) => {
    for (const id of FACILITIES) {
      const batch: Reading[] = [];
      for (let k = from; k <= to; k++) {
        batch.push({ facilityId: id, deviceId: `${id}-m`, seq: k + 1, ts: T0 + k * W + 5_000, metric: 'electricity_import', value: String(1000 + 5 * k), unit: 'kWh', reset: false, receivedAt: T0 + k * W + 5_000 });
      }
      await stores.readings.commit(batch);
    }
  };
  return { anvil, proxy, admin, ledgerOf, make, feed, owners };
}

/** One WindowSettled per window 0..last, the recorded roots are the chain's, balance == sum of nets. */
async function checkChain(t: Test, admin: Ledger, oracle: Oracle, owners: Map<string, string>, last: number) {
  for (const f of FACILITIES) {
    const events = await admin.settlements({ facilityId: f });
    t.same(events.map((e) => e.windowStart), Array.from({ length: last + 1 }, (_, k) => T0 + k * W), `${f}: windows 0..${last} once each, in order`);
    const recorded = oracle.listSettlements({ facilityId: f });
    t.same(recorded.map((s) => [s.windowStart, s.evidenceRoot]), events.map((e) => [e.windowStart, e.evidenceRoot]), `${f}: recorded roots are the chain's`);
    const sum = recorded.reduce((a, s) => a + BigInt(s.netGrams), 0n);
    t.equal(await admin.heldBy(owners.get(f)!), sum, `${f}: balance == sum of nets (${sum}): each reading counted once`);
  }
}

if (!anvilBinary()) {
  if (process.env.CI) t.fail('anvil binary not found (@foundry-rs/anvil): required under CI');
  else t.plan(0, 'anvil binary not found');
} else {
  t.test('the chain loses settled windows: settled again exactly once, by either of two signers, nothing blocked', async (t) => {
    const { anvil, admin, ledgerOf, make, feed, owners } = await setup(t);
    await feed(0, 5);
    const a = make(ledgerOf(1));
    t.equal((await a.runOnce(closeOf(1))).settled, 4, 'windows 0..1 of A and B');
    const snap = (await anvil.provider.send('evm_snapshot', [])) as string;
    t.equal((await a.runOnce(closeOf(3))).settled, 4, 'windows 2..3 of A and B');
    t.equal((await admin.facility('A')).nextWindowStart, T0 + 4 * W);
    t.equal(await anvil.provider.send('evm_revert', [snap]), true);
    t.equal((await admin.facility('A')).nextWindowStart, T0 + 2 * W, 'the chain lost windows 2..3');
    t.equal(await admin.settlementAt('A', T0 + 2 * W), undefined, 'and their events');

    // The running oracle (its nonce count is now ahead of the chain) and a second one with its own key.
    const b = make(ledgerOf(2));
    const [ra, rb] = await Promise.all([a.runOnce(closeOf(4)), b.runOnce(closeOf(4))]);
    t.same([...ra.blocked, ...rb.blocked], [], 'nothing blocked');
    t.same([...ra.errors, ...rb.errors], [], 'no errors (no nonce gap)');
    t.ok(ra.lost + rb.lost >= 4, `the lost windows were noticed (${ra.lost} + ${rb.lost})`);
    await a.runOnce(closeOf(5));
    await b.runOnce(closeOf(5));
    await checkChain(t, admin, a, owners, 5);
    t.same(
      a.listSettlements().map((s) => [s.id, s.evidenceRoot]),
      b.listSettlements().map((s) => [s.id, s.evidenceRoot]),
    );
    for (const f of FACILITIES) t.equal(a.facilityStatus(f).settlementStatus, 'ok');
  });

  t.test('a refused or lost raw transaction: the next run settles, no nonce gap', async (t) => {
    const { proxy, admin, ledgerOf, make, feed, owners } = await setup(t);
    await feed(0, 4);
    const oracle = make(ledgerOf(1));
    t.equal((await oracle.runOnce(closeOf(0))).settled, 2);
    // Refused below the signer, after the NonceManager counted the nonce.
    proxy.failNext('eth_sendRawTransaction', 'refuse');
    const r1 = await oracle.runOnce(closeOf(1));
    t.match(r1.errors, [/injected fault/]);
    t.equal(r1.settled, 0);
    const r2 = await oracle.runOnce(closeOf(1));
    t.same(r2.errors, []);
    t.equal(r2.settled, 2, 'window 1 settled by the next run');
    // Sent and mined, the answer lost: the next run confirms it by root, then goes on.
    proxy.failNext('eth_sendRawTransaction', 'loseAnswer');
    const r3 = await oracle.runOnce(closeOf(2));
    t.equal(r3.settled, 0);
    t.equal(r3.errors.length, 1);
    const r4 = await oracle.runOnce(closeOf(4));
    t.same(r4.errors, []);
    t.equal(r4.reconciled, 2, 'window 2 confirmed from the chain');
    t.equal(r4.settled, 4, 'windows 3..4');
    await checkChain(t, admin, oracle, owners, 4);
  });
}
