/**
 * Issue 11: the gateway lists settlements from the oracle's records, which are local data, without
 * building an oracle and without any chain signer (before, without a chain it answered 503). An
 * oracle settles a window into a real SQLite file; then the gateway service (as `npm run
 * start:gateway` composes it) starts on that file with no CHAIN_RPC_URL and no key, over real HTTP:
 * list, get and proof answer 200 (the proof is recomputed from the store), verify answers 503.
 */
import t from 'tap';
import { loadConfig } from '../../domain/config.ts';
import { silentLogger } from '../../domain/logger.ts';
import type { Reading } from '../../domain/reading.ts';
import { openDatabase } from '../../store/sqlite/db.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import { buildOracle } from '../../oracle/oracle.ts';
import { startGatewayService } from '../../gateway/main.ts';
import { MemoryLedger } from '../helpers/memory-ledger.ts';

const ADMIN = 'admin-key-for-the-no-signer-test';
const OWNER = '0x1111111111111111111111111111111111111111';

function rd(seq: number, ts: number, value: string): Reading {
  return { facilityId: 'F', deviceId: 'd1', seq, ts, metric: 'electricity_import', value, unit: 'kWh', reset: false, receivedAt: ts };
}

t.test('settlements list, get and prove with no chain and no signer configured', async (t) => {
  const config = loadConfig({ ADMIN_API_KEY: ADMIN, DATA_DIR: t.testdir() }, { httpPort: 0 });
  t.equal(config.chainRpcUrl, undefined, 'no chain configured');
  t.equal(config.gatewayPrivateKey, undefined, 'no gateway key');
  t.equal(config.oraclePrivateKey, undefined, 'no oracle key');
  const W = config.windowSeconds * 1000;

  // An oracle (elsewhere, with its own chain) settled windows 0 and 1 into the shared file.
  {
    const db = openDatabase(config.dataDir);
    const stores = openSqliteStores(db, { clock: () => 0 });
    stores.registry.createFacility({ id: 'F', name: 'F', owner: OWNER, baselineKgPerHour: '3600', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162', createdAt: 0 });
    stores.registry.createDevice('F', 'd1', 'meter');
    const out = await stores.readings.commit([rd(1, 5_000, '1000'), rd(2, W + 5_000, '1005')]);
    t.same(out.map((o) => o.status), ['stored', 'stored']);
    const oracle = buildOracle({ db, readings: stores.readings, registry: stores.registry, ledger: new MemoryLedger(), logger: silentLogger, windowMs: W, graceMs: 1_000, lease: false });
    const report = await oracle.runOnce(2 * W + 1_000);
    t.equal(report.settled, 2, 'two windows settled');
    await oracle.close();
    db.close();
  }

  const service = await startGatewayService(config, { logger: silentLogger });
  t.teardown(() => service.close());
  const get = async (path: string) => {
    const res = await fetch(`${service.url}${path}`, { headers: { authorization: `Bearer ${ADMIN}` } });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> & { items?: { id: string; windowStart: string; evidenceRoot: string; netGrams: string }[] } };
  };

  const list = await get('/v1/settlements?facilityId=F');
  t.equal(list.status, 200, 'the list answers without a signer');
  t.same(list.body.items!.map((s) => s.windowStart), [new Date(W).toISOString(), new Date(0).toISOString()], 'newest window first');

  const id = list.body.items![0].id;
  const one = await get(`/v1/settlements/${id}`);
  t.equal(one.status, 200, 'one settlement answers without a signer');
  t.same(one.body, list.body.items![0], 'the same settlement as listed');

  const proof = await get(`/v1/settlements/${id}/proof?deviceId=d1&seq=2`);
  t.equal(proof.status, 200, 'a proof is recomputed from the store, no chain needed');
  t.equal(proof.body.root, list.body.items![0].evidenceRoot);

  const verify = await get(`/v1/settlements/${id}/verify`);
  t.equal(verify.status, 503, 'verify compares with the chain: unavailable without one');
  t.match(verify.body, { error: { code: 'CHAIN_UNAVAILABLE' } });

  t.equal((await get('/v1/settlements/nope')).status, 404);
  t.match((await get('/v1/facilities/F')).body, { settlementStatus: 'ok' }, "the facility shows the oracle's status");
});
