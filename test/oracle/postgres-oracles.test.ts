/**
 * Issue 14: two oracles on one PostgreSQL database (records, status, lease, registry and readings all
 * there), each with its own key, its own pool and lease session, against a REAL anvil: run at once,
 * one settles at a time (the other skips on the lease, or finds the work done), every window is
 * settled exactly once on chain and recorded once, and both read the same records. Then the leader's
 * lease session dies (its connection is terminated, as when its process is killed) in the middle of
 * holding the lease: the other takes over at its next run and settles the next windows exactly once.
 */
import { ethers } from 'ethers';
import pg from 'pg';
import t, { type Test } from 'tap';
import { anvilBinary, startAnvil } from '../../contracts/client/chain.ts';
import { Ledger } from '../../contracts/client/ledger.ts';
import { silentLogger } from '../../domain/logger.ts';
import type { Reading } from '../../domain/reading.ts';
import { buildOracle } from '../../oracle/oracle.ts';
import { openPostgresReadingStore } from '../../store/postgres/readings.ts';
import { openPostgresStores } from '../../store/postgres/stores.ts';
import { openDatabase } from '../../store/sqlite/db.ts';
import { eventually } from '../helpers/eventually.ts';
import { postgresForFile, postgresMissing } from '../helpers/postgres.ts';
import { missing, skipUnless } from '../helpers/require.ts';

const W = 10_000;
const GRACE = 1_000;
const T0 = Date.UTC(2026, 0, 1);
const FACILITIES = ['A', 'B'];
const closeOf = (k: number) => T0 + (k + 1) * W + GRACE;

async function setup(t: Test) {
  const cluster = (await postgresForFile(t))!;
  const url = await cluster.createDatabase();
  const anvil = await startAnvil();
  t.teardown(() => anvil.close());
  const wallet = (i: number) => new ethers.NonceManager(new ethers.Wallet(anvil.privateKeys[i], anvil.provider));
  const admin = await Ledger.deploy(wallet(0), { windowSeconds: W / 1000, confirmTimeoutMs: 20_000 });
  for (const i of [1, 2]) {
    const k = ethers.computeAddress(anvil.privateKeys[i]);
    await admin.grantRole('oracle', k);
    await admin.grantRole('regulator', k);
  }
  const oracle = async (i: number) => {
    const stores = await openPostgresStores(url, { clock: () => T0 });
    t.teardown(() => stores.close());
    const readings = await openPostgresReadingStore(url);
    t.teardown(() => readings.close());
    const db = openDatabase(t.testdir() + `-${i}`);
    t.teardown(() => db.close());
    const ledger = Ledger.attach(admin.address, wallet(i), { startBlock: admin.startBlock, confirmTimeoutMs: 20_000 });
    const o = buildOracle(
      { db, readings, registry: stores.registry, ledger, logger: silentLogger, windowMs: W, graceMs: GRACE, lease: { holder: `oracle-${i}` } },
      { records: stores.records, status: stores.status },
    );
    t.teardown(() => o.close());
    return { o, stores, readings };
  };
  const a = await oracle(1);
  const b = await oracle(2);
  for (const [n, id] of FACILITIES.entries()) {
    const owner = ethers.computeAddress(anvil.privateKeys[4 + n]);
    await a.stores.registry.createFacility({ id, name: id, owner, baselineKgPerHour: '3600', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162', createdAt: T0 });
    await a.stores.registry.createDevice(id, `${id}-m`, 'meter');
  }
  await eventually("the registry in b's replica", () => FACILITIES.every((id) => b.stores.registry.getDevice(`${id}-m`) !== undefined));
  const feed = async (from: number, to: number) => {
    for (const id of FACILITIES) {
      const batch: Reading[] = [];
      for (let k = from; k <= to; k++) {
        batch.push({ facilityId: id, deviceId: `${id}-m`, seq: k + 1, ts: T0 + k * W + 5_000, metric: 'electricity_import', value: String(1000 + 5 * k), unit: 'kWh', reset: false, receivedAt: T0 + k * W + 5_000 });
      }
      await a.readings.commit(batch);
    }
  };
  return { url, admin, a, b, feed };
}

/** Windows 0..last settled once each on chain, in order, and recorded with the chain's roots. */
async function checkOnce(t: Test, admin: Ledger, list: () => Promise<{ facilityId: string; windowStart: number; evidenceRoot: string }[]>, last: number) {
  const recorded = await list();
  for (const f of FACILITIES) {
    const events = await admin.settlements({ facilityId: f });
    t.same(events.map((e) => e.windowStart), Array.from({ length: last + 1 }, (_, k) => T0 + k * W), `${f}: windows 0..${last} once each on chain`);
    t.same(
      recorded.filter((s) => s.facilityId === f).map((s) => [s.windowStart, s.evidenceRoot.toLowerCase()]),
      events.map((e) => [e.windowStart, e.evidenceRoot.toLowerCase()]),
      `${f}: recorded once, with the chain's roots`,
    );
  }
}

const skip = skipUnless(postgresMissing() ?? missing.anvil());

t.test('two oracles on one database: one settles at a time, exactly once; a dead leader is replaced at the next run', { skip }, async (t) => {
  if (!anvilBinary()) return;
  const { url, admin, a, b, feed } = await setup(t);
  await feed(0, 5);

  const [ra, rb] = await Promise.all([a.o.runOnce(closeOf(1)), b.o.runOnce(closeOf(1))]);
  t.same([...ra.errors, ...rb.errors, ...ra.blocked, ...rb.blocked], [], 'no errors, nothing blocked');
  t.equal(ra.settled + rb.settled, 4, 'windows 0..1 of A and B settled once between them');
  await checkOnce(t, admin, async () => a.o.listSettlements(), 1);
  t.same(
    (await b.o.listSettlements()).map((s) => s.id),
    (await a.o.listSettlements()).map((s) => s.id),
    'both read the same records',
  );

  // The leader takes the lease, then its lease session dies (as when its process is SIGKILLed).
  t.ok(await a.stores.records.acquireLease('oracle', 'oracle-1', Date.now(), 3_600_000), 'a holds the lease');
  t.equal((await b.o.runOnce(closeOf(3))).skipped, 'lease', 'b skips while a lives');
  const kill = new pg.Client({ connectionString: url });
  await kill.connect();
  t.teardown(() => kill.end());
  const pid = (await kill.query<{ p: number }>("SELECT backend_pid AS p FROM oracle_lease WHERE name = 'oracle'")).rows[0].p;
  await kill.query('SELECT pg_terminate_backend($1)', [pid]);
  // pg_terminate_backend signals the session; it is gone once its server process left.
  await eventually("a's lease session gone", async () => (await kill.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).rowCount === 0);
  const rb2 = await b.o.runOnce(closeOf(3));
  t.equal(rb2.skipped, undefined, 'b runs at once, long before the ttl of a hour');
  t.equal(rb2.settled, 4, 'and settles windows 2..3 of A and B');
  await checkOnce(t, admin, async () => b.o.listSettlements(), 3);
});
