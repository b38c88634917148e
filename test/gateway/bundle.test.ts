/**
 * GET /v1/settlements/{id}/bundle over HTTP, with the real SQLite store and registry, the oracle
 * (buildOracle, driven by runOnce(now)) and the in-memory ledger that applies the contract's
 * settlement rules (test/helpers/memory-ledger.ts): two signed devices (a meter and an interval
 * co2_direct device, keys registered) and an unsigned one settle; the bundle fetched over HTTP
 * passes the audit (audit/audit.ts) against the ledger's record; one value changed in the JSON is
 * caught; a facility key reads its own facility's bundles only.
 */
import t from 'tap';
import { auditBundle, auditOffline, type ChainView } from '../../audit/audit.ts';
import { parseBundle } from '../../audit/bundle.ts';
import { generateDeviceKey } from '../../domain/signature.ts';
import { silentLogger } from '../../domain/logger.ts';
import type { Metric, Reading } from '../../domain/reading.ts';
import { buildGateway } from '../../gateway/app.ts';
import { createKeyStore } from '../../gateway/keys.ts';
import { buildOracle } from '../../oracle/oracle.ts';
import { METHODOLOGY_VERSION } from '../../oracle/methodology.ts';
import { openDatabase } from '../../store/sqlite/db.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import { facilityFixture } from '../helpers/fixtures.ts';
import { MemoryLedger } from '../helpers/memory-ledger.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { signChain } from '../helpers/audit-fixture.ts';

const W = 10_000;
const T0 = Date.UTC(2026, 10, 22, 6, 0, 0);

const rd = (facilityId: string, deviceId: string, seq: number, ts: number, metric: Metric, value: string): Reading => ({
  facilityId, deviceId, seq, ts, metric, value, unit: metric === 'natural_gas' ? 'm3' : metric === 'co2_direct' ? 'kg' : 'kWh', reset: false, receivedAt: ts,
});

t.test('the bundle of a settlement with signed devices, fetched over HTTP, passes the audit; one value changed is caught', async (t) => {
  const db = openDatabase(tmpDir(t, 'mrv-bundle-'));
  t.teardown(() => db.close());
  const { readings, registry } = openSqliteStores(db, { clock: () => T0 });
  const ledger = new MemoryLedger();
  registry.createFacility(facilityFixture('F', { name: 'Plant F', createdAt: T0 }));
  registry.createFacility(facilityFixture('G', { name: 'Plant G', createdAt: T0 }));
  const km = generateDeviceKey();
  const kc = generateDeviceKey();
  registry.createDevice('F', 'm1', 'meter', { publicKey: km.publicKey, reportingIntervalSeconds: 5 });
  registry.createDevice('F', 'c1', 'cems', { publicKey: kc.publicKey, reportingIntervalSeconds: 2 });
  registry.createDevice('F', 'g1', 'meter', { reportingIntervalSeconds: 5 });
  registry.createDevice('G', 'x1', 'meter');
  const m1 = signChain(km, [rd('F', 'm1', 1, T0 + 5_000, 'electricity_import', '1000'), { ...rd('F', 'm1', 2, T0 + 15_000, 'electricity_import', '1005'), sentValue: '1005000', sentUnit: 'Wh' }]);
  const c1 = signChain(kc, [5_000, 9_000, 11_000, 15_000, 19_000].map((dt, i) => rd('F', 'c1', i + 1, T0 + dt, 'co2_direct', '0.25')));
  const g1 = [rd('F', 'g1', 1, T0 + 6_000, 'natural_gas', '10'), rd('F', 'g1', 2, T0 + 16_000, 'natural_gas', '10.5')];
  const stored = await readings.commit([...m1, ...c1, ...g1, rd('G', 'x1', 1, T0 + 5_000, 'electricity_import', '1')]);
  t.same(new Set(stored.map((o) => o.status)), new Set(['stored']));
  const oracle = buildOracle({ db, readings, registry, ledger, logger: silentLogger, windowMs: W, graceMs: 2_000, lease: false });
  t.teardown(() => oracle.close());
  const run = await oracle.runOnce(T0 + 22_000);
  t.equal(run.errors.length, 0, JSON.stringify(run.errors));
  const id = `F-${T0 + W}`;
  const s = oracle.getSettlement(id)!;
  // 5 kWh x 0.5366 + 0.5 m3 x 2.162 + 3 x 0.25 kg = 2.683 + 1.081 + 0.75 = 4.514 kg; 10 - 4.514 kg = 5486 g.
  t.match(s, { complete: true, netGrams: '5486' });

  const app = await buildGateway({ db, registry, readings, ledger, settlements: oracle, audit: oracle, logger: silentLogger, options: { windowSeconds: W / 1000, chainCacheMs: 0 } });
  t.teardown(() => app.close());
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  const keys = createKeyStore(db);
  const facF = keys.create('facility', 'F').key;
  const facG = keys.create('facility', 'G').key;
  const regulator = keys.create('regulator').key;
  const get = (path: string, key: string) => fetch(`${url}${path}`, { headers: { authorization: `Bearer ${key}` } });

  // The settlement names its bundle and its signature summary.
  const view = await (await get(`/v1/settlements/${id}`, facF)).json();
  t.same(view.signatures, { devices: 3, signed: 2, chainsUnbroken: true, broken: [] });
  t.equal(view.bundleUrl, `/v1/settlements/${id}/bundle`);

  const res = await get(view.bundleUrl, facF);
  t.equal(res.status, 200);
  t.match(res.headers.get('content-disposition'), /attachment; filename="bundle-F-\d+\.json"/);
  const text = await res.text();
  const bundle = parseBundle(text);
  t.equal(bundle.methodologyVersion, METHODOLOGY_VERSION);
  t.match(bundle.facility, { id: 'F', name: 'Plant F' });
  t.match(bundle.settlement, { id, netGrams: '5486', evidenceRoot: s.evidenceRoot, complete: true });
  t.match(bundle.chain?.settlement, { found: true, evidenceRoot: s.evidenceRoot.toLowerCase(), netGrams: '5486' });
  const dev = Object.fromEntries(bundle.devices.map((d) => [d.deviceId, d]));
  t.same(dev.m1.keys.map((k) => k.publicKey), [km.publicKey]);
  t.same(dev.g1.keys, [], 'an unsigned device');
  t.same(dev.c1.readings.map((r) => r.seq), [3, 4, 5]);
  t.same(dev.c1.context.map((r) => r.seq), [2], 'the stored predecessor the chain needs');
  t.equal(dev.m1.readings[0].sig, m1[1].sig);
  t.equal(dev.m1.readings[0].sentValue, '1005000');

  // The audit: offline, then against the ledger's record (this ledger records no device keys).
  const offline = auditOffline(bundle);
  t.same(offline.findings, []);
  t.same(offline.recomputed, { netGrams: '5486', evidenceRoot: s.evidenceRoot, complete: true });
  const chain: ChainView = {
    async settlement(facilityId, windowStart) {
      const on = await ledger.settlementAt(facilityId, windowStart);
      return on ? { windowEnd: on.windowEnd, netGrams: BigInt(on.netGrams), evidenceRoot: on.evidenceRoot, ...(on.txHash ? { txHash: on.txHash } : {}) } : undefined;
    },
    deviceKeys: async () => undefined,
  };
  const report = await auditBundle(bundle, chain);
  t.equal(report.ok, true, JSON.stringify(report.findings));
  t.same(report.devices.filter((d) => d.signed).map((d) => [d.deviceId, d.chainUnbroken]), [['c1', true], ['m1', true]]);

  // One value changed in the JSON: caught.
  const changed = JSON.parse(text);
  const r4 = changed.devices.find((d: { deviceId: string }) => d.deviceId === 'c1').readings[1];
  r4.value = '0.05';
  const caught = await auditBundle(parseBundle(JSON.stringify(changed)), chain);
  t.equal(caught.ok, false);
  // It was signed as sent: its signature fails, seq 5's link to it breaks, the net and root differ.
  t.same([...new Set(caught.findings.map((f) => f.reason))].sort(), ['bad_signature', 'chain_broken', 'chain_mismatch', 'record_mismatch']);
  t.match(caught.findings.find((f) => f.reason === 'bad_signature'), { deviceId: 'c1', seq: 4 });
  t.match(caught.findings.find((f) => f.reason === 'chain_broken'), { deviceId: 'c1', seq: 5 });

  // Same access as the settlement: the regulator reads it, another facility's key does not, an unknown id is 404.
  t.equal((await get(view.bundleUrl, regulator)).status, 200);
  t.equal((await get(view.bundleUrl, facG)).status, 403);
  t.equal((await fetch(`${url}${view.bundleUrl}`)).status, 401);
  t.equal((await get('/v1/settlements/F-1/bundle', facF)).status, 404);
});
