/**
 * Tamper detection through the API, with every real part: the CarbonLedger on Hardhat's in-process
 * chain (contracts/client Ledger), the SQLite store and registry, the oracle (buildOracle, driven by
 * runOnce(now)) and the gateway.
 * - a settled window verifies, its balance is read from the chain;
 * - a proof verifies with StandardMerkleTree.verify for the real reading, its root is the on-chain root;
 * - after an UPDATE of the stored reading in SQLite, /verify reports a mismatch and the altered
 *   reading fails the proof.
 */
import t from 'tap';
import { StandardMerkleTree } from '@openzeppelin/merkle-tree';
import { startHardhatChain } from '../../contracts/client/chain.ts';
import { Ledger } from '../../contracts/client/ledger.ts';
import { buildOracle } from '../../oracle/oracle.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import { openDatabase } from '../../store/sqlite/db.ts';
import { silentLogger } from '../../domain/logger.ts';
import type { Metric, Reading } from '../../domain/reading.ts';
import { buildGateway } from '../../gateway/app.ts';
import { createKeyStore } from '../../gateway/keys.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { OWNER, facilityFixture } from '../helpers/fixtures.ts';

const W = 10_000;
const T0 = Date.UTC(2026, 10, 22, 6, 0, 0);

const rd = (seq: number, ts: number, metric: Metric, value: string): Reading => ({
  facilityId: 'F', deviceId: 'd1', seq, ts, metric, value, unit: metric === 'natural_gas' ? 'm3' : 'kWh', reset: false, receivedAt: ts,
});

t.test('an altered reading is detected by /verify and fails its /proof', async (t) => {
  const chain = await startHardhatChain();
  t.teardown(() => chain.close());
  const ledger = await Ledger.deploy(chain.signers[0], { windowSeconds: W / 1000 });
  const db = openDatabase(tmpDir(t, 'mrv-gw-'));
  t.teardown(() => db.close());
  const { readings, registry } = openSqliteStores(db, { clock: () => T0 });
  registry.createFacility(facilityFixture('F', { name: 'Plant F', createdAt: T0 }));
  registry.createDevice('F', 'd1', 'meter');
  const oracle = buildOracle({ db, readings, registry, ledger, logger: silentLogger, windowMs: W, graceMs: 2_000, lease: false });
  t.teardown(() => oracle.close());

  // SPEC worked example: 1000 kWh before the window, 1005 kWh in it: +7317 g.
  const stored = await readings.commit([rd(1, T0 + 5_000, 'electricity_import', '1000'), rd(2, T0 + 15_000, 'electricity_import', '1005'), rd(3, T0 + 16_000, 'natural_gas', '20')]);
  t.same(stored.map((o) => o.status), ['stored', 'stored', 'stored']);
  const run = await oracle.runOnce(T0 + 22_000);
  t.equal(run.settled, 2, `two windows settled (${JSON.stringify(run.errors)})`);

  const app = await buildGateway({ db, registry, readings, ledger, settlements: oracle, audit: oracle, logger: silentLogger, options: { windowSeconds: W / 1000, chainCacheMs: 0 } });
  t.teardown(() => app.close());
  const key = createKeyStore(db).create('facility', 'F').key;
  const get = async (url: string) => {
    const res = await app.inject({ url, headers: { authorization: `Bearer ${key}` } });
    t.equal(res.statusCode, 200, `${url} ${res.statusCode === 200 ? "" : res.body}`);
    return res.json();
  };

  const list = await get('/v1/settlements?facilityId=F');
  t.same(list.items.map((s: { id: string }) => s.id), [`F-${T0 + W}`, `F-${T0}`], 'newest window first');
  const id = `F-${T0 + W}`;
  const settled = await get(`/v1/settlements/${id}`);
  t.match(settled, { facilityId: 'F', windowStart: new Date(T0 + W).toISOString(), complete: true, netGrams: '7317', mintedGrams: '7317', txHash: /^0x[0-9a-f]{64}$/ });
  t.match(await get('/v1/facilities/F/balance'), { owner: OWNER, balanceGrams: '7317', mintedGrams: '7317', balanceTonnes: '0.007317' }, 'balance read from the chain');

  const before = await get(`/v1/settlements/${id}/verify`);
  t.equal(before.match, true, 'untouched readings verify');
  t.equal(before.onChain.evidenceRoot, settled.evidenceRoot, 'the chain holds the recorded root');
  t.equal(before.recomputed.evidenceRoot, settled.evidenceRoot);

  const proof = await get(`/v1/settlements/${id}/proof?deviceId=d1&seq=2`);
  t.equal(proof.root, before.onChain.evidenceRoot, 'the proof is against the on-chain root');
  t.equal(proof.leaf[0], 'reading');
  t.equal(proof.leaf[5], '1005', 'the leaf carries the reading as settled');
  t.ok(StandardMerkleTree.verify(proof.root, proof.leafEncoding, proof.leaf, proof.proof), 'the real reading verifies with the Merkle package alone');
  const missing = await app.inject({ url: `/v1/settlements/${id}/proof?deviceId=d1&seq=99`, headers: { authorization: `Bearer ${key}` } });
  t.equal(missing.statusCode, 404);

  // Tamper: lower the stored register behind the platform's back (fewer kWh = more credits).
  const changed = db.prepare("UPDATE readings SET value = '1001' WHERE device_id = 'd1' AND seq = 2").run();
  t.equal(changed.changes, 1, 'row altered in SQLite');

  const after = await get(`/v1/settlements/${id}/verify`);
  t.equal(after.match, false, '/verify reports the mismatch');
  t.not(after.recomputed.evidenceRoot, after.onChain.evidenceRoot, 'the recomputed root differs from the chain');
  t.not(after.recomputed.netGrams, after.onChain.netGrams, 'and so does the amount');
  t.equal(after.onChain.netGrams, '7317', 'the chain still says what was settled');

  const served = (await get('/v1/facilities/F/readings?deviceId=d1&metric=electricity_import')).items.find((r: { seq: number }) => r.seq === 2);
  t.equal(served.value, '1001', 'the store now serves the altered value');
  const altered = [...proof.leaf];
  altered[5] = served.value;
  t.notOk(StandardMerkleTree.verify(proof.root, proof.leafEncoding, altered, proof.proof), 'the altered reading fails the proof');
});
