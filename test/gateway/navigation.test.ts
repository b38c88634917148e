/**
 * An auditor's navigation with every real part (CarbonLedger on Hardhat's in-process chain, the
 * SQLite store and registry, the oracle driven by runOnce, the gateway): settlements newest first
 * and paged by cursor, readings paged by cursor across readings that share a timestamp, a reading
 * opened with the settlement that counted it (whose proof then verifies), and the deficit a window
 * added or paid down next to the facility's deficit after it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
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
import { facilityFixture } from '../helpers/fixtures.ts';

const W = 10_000;
const T0 = Date.UTC(2026, 10, 22, 6, 0, 0);

const rd = (deviceId: string, seq: number, ts: number, metric: Metric, value: string): Reading => ({
  facilityId: 'F', deviceId, seq, ts, metric, value, unit: metric === 'natural_gas' ? 'm3' : 'kWh', reset: false, receivedAt: ts,
});

t.test('settlements and readings paged newest first; a reading leads to its settlement; deficit per window and after', async (t) => {
  const chain = await startHardhatChain();
  t.teardown(() => chain.close());
  const ledger = await Ledger.deploy(chain.signers[0], { windowSeconds: W / 1000 });
  const db = openDatabase(tmpDir(t, 'mrv-gw-'));
  t.teardown(() => db.close());
  const { readings, registry } = openSqliteStores(db, { clock: () => T0 });
  registry.createFacility(facilityFixture('F', { name: 'Plant F', createdAt: T0 }));
  registry.createDevice('F', 'd1', 'meter');
  registry.createDevice('F', 'd2', 'meter');
  const oracle = buildOracle({ db, readings, registry, ledger, logger: silentLogger, windowMs: W, graceMs: 2_000, lease: false });
  t.teardown(() => oracle.close());

  // Baseline 10 kg per 10 s window. d1: +5 kWh (+7317 g net), then +20 m3 gas (-33 240 g: burns the
  // balance, the rest is deficit), then nothing (+10 000 g pays the deficit down). d2 reads at the
  // same instants as d1 (readings sharing a ts) and never moves.
  const rows = [
    rd('d1', 1, T0 + 5_000, 'electricity_import', '1000'),
    rd('d1', 2, T0 + 6_000, 'natural_gas', '20'),
    rd('d1', 3, T0 + 15_000, 'electricity_import', '1005'),
    rd('d1', 4, T0 + 25_000, 'natural_gas', '40'),
    rd('d1', 5, T0 + 35_000, 'electricity_import', '1005'),
  ];
  for (const [i, ts] of [T0 + 5_000, T0 + 15_000, T0 + 25_000, T0 + 35_000].entries()) rows.push(rd('d2', i + 1, ts, 'electricity_import', '500'));
  const stored = await readings.commit(rows);
  t.ok(stored.every((o) => o.status === 'stored'), 'all stored');
  const run = await oracle.runOnce(T0 + 4 * W + 3_000);
  t.equal(run.settled, 4, `four windows settled (${JSON.stringify(run.errors)})`);
  // A reading no settlement has counted yet (its window is open).
  t.equal((await readings.commit([rd('d1', 6, T0 + 45_000, 'electricity_import', '1006')]))[0].status, 'stored');

  const app = await buildGateway({ db, registry, readings, ledger, settlements: oracle, audit: oracle, logger: silentLogger, options: { windowSeconds: W / 1000, chainCacheMs: 0 } });
  t.teardown(() => app.close());
  const key = createKeyStore(db).create('regulator').key;
  const get = async (url: string, status = 200) => {
    const res = await app.inject({ url, headers: { authorization: `Bearer ${key}` } });
    t.equal(res.statusCode, status, `${url} → ${status} ${res.statusCode === status ? '' : res.body}`);
    return res.json();
  };

  // Settlements: newest first, one per page, the cursor leading through all of them once.
  const ids: string[] = [];
  const all: Record<string, string>[] = [];
  let cursor: string | undefined;
  for (let pages = 0; pages < 10; pages++) {
    const page = await get(`/v1/settlements?facilityId=F&limit=1${cursor ? `&cursor=${cursor}` : ''}`);
    t.ok(page.items.length <= 1, 'at most limit items');
    for (const s of page.items) {
      ids.push(s.id);
      all.push(s);
    }
    cursor = page.next;
    if (!cursor) break;
  }
  t.same(ids, [3, 2, 1, 0].map((i) => `F-${T0 + i * W}`), 'newest window first, each once, the last page without next');
  t.same((await get('/v1/settlements?limit=5')).items.map((s: { id: string }) => s.id), ids, '?limit=5 is accepted');
  t.same((await get(`/v1/settlements?limit=2&from=${T0 + W}&to=${T0 + 3 * W}`)).items.map((s: { id: string }) => s.id), [`F-${T0 + 2 * W}`, `F-${T0 + W}`], 'filters kept');

  // Deficit: what each window added or paid down, and the facility's deficit after it.
  let deficit = 0n;
  for (const s of [...all].reverse()) {
    const net = BigInt(s.netGrams);
    t.equal(s.deficitGrams, s.deficitAfterGrams, `${s.id}: deficitGrams is the deficit after the settlement`);
    if (net < 0n) t.equal(BigInt(s.burnedGrams) + BigInt(s.deficitAddedGrams), -net, `${s.id}: burned + added = -net`);
    if (net > 0n) t.equal(BigInt(s.mintedGrams) + BigInt(s.deficitPaidGrams), net, `${s.id}: minted + paid = net`);
    deficit += BigInt(s.deficitAddedGrams) - BigInt(s.deficitPaidGrams);
    t.equal(BigInt(s.deficitAfterGrams), deficit, `${s.id}: after = previous after + added - paid`);
  }
  const byId = Object.fromEntries(all.map((s) => [s.id, s]));
  t.match(byId[`F-${T0 + 2 * W}`], { netGrams: '-33240', burnedGrams: '7317', deficitAddedGrams: '25923', deficitPaidGrams: '0', deficitAfterGrams: '25923' });
  t.match(byId[`F-${T0 + 3 * W}`], { netGrams: '10000', mintedGrams: '0', deficitAddedGrams: '0', deficitPaidGrams: '10000', deficitAfterGrams: '15923' });
  t.equal((await get('/v1/facilities/F/balance')).deficitGrams, '15923', "the chain's deficit is the last deficitAfterGrams");

  // Readings: two per page across readings sharing a ts, newest first, each once.
  const seen: string[] = [];
  cursor = undefined;
  for (let pages = 0; pages < 20; pages++) {
    const page = await get(`/v1/facilities/F/readings?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
    seen.push(...page.items.map((r: { deviceId: string; seq: number; ts: string }) => `${r.ts} ${r.deviceId}/${r.seq}`));
    cursor = page.next;
    if (!cursor) break;
  }
  const expected = [...rows, rd('d1', 6, T0 + 45_000, 'electricity_import', '1006')]
    .sort((a, b) => b.ts - a.ts || (a.deviceId < b.deviceId ? 1 : -1))
    .map((r) => `${new Date(r.ts).toISOString()} ${r.deviceId}/${r.seq}`);
  t.same(seen, expected, 'every reading once, newest first');
  t.same((await get(`/v1/facilities/F/readings?deviceId=d2&limit=1&cursor=${(await get('/v1/facilities/F/readings?deviceId=d2&limit=1')).next}`)).items.map((r: { seq: number }) => r.seq), [3], 'filters kept across pages');
  const bad = await get('/v1/facilities/F/readings?cursor=bm9wZQ', 400);
  t.match(bad.error.message, /cursor .* is not a cursor of this list/);

  // One reading and the settlement that counted it; its proof verifies against that settlement.
  const windowOf = (ts: number) => `F-${Math.floor((ts - T0) / W) * W + T0}`;
  for (const r of rows) {
    const one = await get(`/v1/facilities/F/readings/${r.deviceId}/${r.seq}`);
    t.match(one.reading, { deviceId: r.deviceId, seq: r.seq, value: r.value, ts: new Date(r.ts).toISOString() });
    t.equal(one.settlement?.id, windowOf(r.ts), `${r.deviceId}/${r.seq} counted by its own window`);
    t.equal(one.settlement.late, false);
    const proof = await get(`/v1/settlements/${one.settlement.id}/proof?deviceId=${r.deviceId}&seq=${r.seq}`);
    t.ok(StandardMerkleTree.verify(proof.root, proof.leafEncoding, proof.leaf, proof.proof), `${r.deviceId}/${r.seq} proven in ${one.settlement.id}`);
  }
  t.same((await get('/v1/facilities/F/readings/d1/6')).settlement, null, 'not settled yet: null');

  // A late reading: a CEMS registered after window 3 settled reports one reading of window 3 and
  // one of window 4; window 4's settlement counts both, the first flagged late.
  registry.createDevice('F', 'd3', 'cems');
  const cems = (seq: number, ts: number): Reading => ({ ...rd('d3', seq, ts, 'co2_direct', '1.5'), unit: 'kg' });
  t.same((await readings.commit([cems(1, T0 + 38_000), cems(2, T0 + 41_000)])).map((o) => o.status), ['stored', 'stored']);
  const second = await oracle.runOnce(T0 + 5 * W + 3_000);
  t.equal(second.settled, 1, `window 4 settled (${JSON.stringify(second.errors)})`);
  for (const [path, late] of [['d3/1', true], ['d3/2', false], ['d1/6', false]] as const) {
    const one = await get(`/v1/facilities/F/readings/${path}`);
    t.match(one.settlement, { id: `F-${T0 + 4 * W}`, windowStart: new Date(T0 + 4 * W).toISOString(), windowEnd: new Date(T0 + 5 * W).toISOString(), late }, `${path} counted by window 4, late ${late}`);
    t.equal(one.reading.late === true, late, 'the reading carries the same late flag');
    const [deviceId, seq] = path.split('/');
    const proof = await get(`/v1/settlements/${one.settlement.id}/proof?deviceId=${deviceId}&seq=${seq}`);
    t.ok(StandardMerkleTree.verify(proof.root, proof.leafEncoding, proof.leaf, proof.proof), `${path} proven in window 4`);
  }

  // The README's audit example, as written there (its host and facility swapped for this stack's),
  // picks its ids through the API: run it with bash, curl and node.
  const readme = fs.readFileSync(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'README.md'), 'utf8');
  const snippet = /Audit one settlement[^\n]*\n *```sh\n([\s\S]*?) *```/.exec(readme)?.[1]; // a block in a list is indented
  t.ok(snippet, "README's audit example found");
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  const script = snippet!.replaceAll('localhost:3000', url.replace('http://', '')).replaceAll('sim-f1', 'F');
  const { stdout } = await promisify(execFile)('bash', ['-euo', 'pipefail', '-c', `KEY=${key}\n${script}`], { encoding: 'utf8' });
  const outputs = stdout.replaceAll('}{', '}\n{').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  t.equal(outputs.length, 3, 'reading, verification, proof');
  t.equal(outputs[0].settlement.id, `F-${T0 + 4 * W}`, 'the newest settlement and one of its readings');
  t.equal(outputs[1].match, true, 'it verifies');
  t.ok(StandardMerkleTree.verify(outputs[2].root, outputs[2].leafEncoding, outputs[2].leaf, outputs[2].proof), 'its proof verifies');
  t.equal((await get('/v1/facilities/F/readings/d1/99', 404)).error.code, 'NOT_FOUND');
  t.equal((await get('/v1/facilities/F/readings/d1/x', 400)).error.code, 'VALIDATION_FAILED');
});
