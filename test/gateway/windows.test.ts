/**
 * GET /v1/facilities/{id}/windows over HTTP with the real SQLite store and registry, the oracle
 * (buildOracle, driven by runOnce(now)) and the in-memory ledger that applies the contract's settlement
 * rules: settled windows show their settlement's figures (net, actual, totals) with emissions by
 * source adding up to the actual exactly; the window not settled yet shows what the oracle then
 * settles; consumption per device; a facility key on another facility is 403; bad ranges are 400.
 */
import t from 'tap';
import { Decimal } from '../../domain/decimal.ts';
import { errors } from '../../domain/errors.ts';
import { silentLogger } from '../../domain/logger.ts';
import type { Metric, Reading } from '../../domain/reading.ts';
import { buildGateway } from '../../gateway/app.ts';
import { createKeyStore } from '../../gateway/keys.ts';
import { MAX_WINDOWS } from '../../gateway/routes/windows.ts';
import { buildOracle } from '../../oracle/oracle.ts';
import { openDatabase } from '../../store/sqlite/db.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import { facilityFixture } from '../helpers/fixtures.ts';
import { MemoryLedger } from '../helpers/memory-ledger.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { generateDeviceKey } from '../../domain/signature.ts';
import { signChain } from '../helpers/audit-fixture.ts';

const W = 10_000;
const T0 = Date.UTC(2026, 10, 22, 6, 0, 0);
const UNIT: Record<Metric, string> = { electricity_import: 'kWh', electricity_export: 'kWh', renewable_generation: 'kWh', natural_gas: 'm3', co2_direct: 'kg' };

const rd = (facilityId: string, deviceId: string, seq: number, ts: number, metric: Metric, value: string): Reading => ({
  facilityId, deviceId, seq, ts, metric, value, unit: UNIT[metric], reset: false, receivedAt: ts,
});

/** Four devices, one reading each per window (windows 0..3 of T0). */
function fleetReadings(): Reading[] {
  const series: [string, Metric, string[]][] = [
    ['m1', 'electricity_import', ['1000', '1005', '1012.5', '1020']],
    ['e1', 'electricity_export', ['50', '51', '53', '53.5']],
    ['g1', 'natural_gas', ['10', '10.5', '11.25', '12']],
    ['c1', 'co2_direct', ['0.25', '0.25', '0.5', '0.75']],
  ];
  return series.flatMap(([d, m, values]) => values.map((v, i) => rd('F', d, i + 1, T0 + i * W + 5_000, m, v)));
}

t.test('per-window figures: settled windows equal their settlements, the next one what the oracle settles, per device', async (t) => {
  const db = openDatabase(tmpDir(t, 'mrv-windows-'));
  t.teardown(() => db.close());
  const { readings, registry } = openSqliteStores(db, { clock: () => T0 });
  const ledger = new MemoryLedger();
  registry.createFacility(facilityFixture('F', { name: 'Plant F', createdAt: T0 }));
  registry.createFacility(facilityFixture('G', { name: 'Plant G', createdAt: T0 }));
  for (const [d, kind] of [['m1', 'meter'], ['e1', 'meter'], ['g1', 'meter'], ['c1', 'cems']]) registry.createDevice('F', d, kind);
  registry.createDevice('G', 'x1', 'meter');
  const stored = await readings.commit([...fleetReadings(), rd('G', 'x1', 1, T0 + 5_000, 'electricity_import', '1')]);
  t.same(new Set(stored.map((o) => o.status)), new Set(['stored']));
  const oracle = buildOracle({ db, readings, registry, ledger, logger: silentLogger, windowMs: W, graceMs: 2_000, lease: false });
  t.teardown(() => oracle.close());
  const run = await oracle.runOnce(T0 + 32_000);
  t.equal(run.errors.length, 0, JSON.stringify(run.errors));
  t.equal(oracle.listSettlements({ facilityId: 'F' }).length, 3, 'windows 0..2 settled, window 3 not yet');

  let now = T0 + 45_000;
  const app = await buildGateway({ db, registry, readings, ledger, settlements: oracle, audit: oracle, logger: silentLogger, now: () => now, options: { windowSeconds: W / 1000, chainCacheMs: 0 } });
  t.teardown(() => app.close());
  const keys = createKeyStore(db);
  const facF = { authorization: `Bearer ${keys.create('facility', 'F').key}` };
  const facG = { authorization: `Bearer ${keys.create('facility', 'G').key}` };
  const regulator = { authorization: `Bearer ${keys.create('regulator').key}` };
  const windows = (q: string, headers: Record<string, string> = facF, id = 'F') => app.inject({ url: `/v1/facilities/${id}/windows${q}`, headers });

  const res = await windows(`?from=${T0}&to=${T0 + 60_000}`);
  t.equal(res.statusCode, 200, res.body);
  const body = res.json();
  t.match(body, { facilityId: 'F', windowSeconds: 10, maxWindows: MAX_WINDOWS });
  const items = body.items;
  t.same(
    items.map((w: { windowStart: string; settled: boolean; open: boolean }) => [w.windowStart, w.settled, w.open]),
    [0, 1, 2, 3, 4].map((i) => [new Date(T0 + i * W).toISOString(), i < 3, i === 4]),
    'windows 0..2 settled, 3 closed and not settled, 4 in progress; nothing after now',
  );

  // Settled windows: exactly their settlements' figures.
  for (const w of items.slice(0, 3)) {
    const s = oracle.getSettlement(w.settlementId)!;
    t.ok(s, `window ${w.windowStart} names its settlement`);
    const api = (await app.inject({ url: `/v1/settlements/${w.settlementId}`, headers: facF })).json();
    t.equal(w.netGrams, api.netGrams, `${w.settlementId}: net equals the settlement's`);
    t.equal(w.complete, api.complete);
    t.equal(w.actualKg, s.actualKg, 'actual equals the settlement\'s');
    t.same(w.totals, s.inputs.totals);
    t.equal(w.baselineKg, s.inputs.baselineKg);
    t.equal(w.recomputedMatches, true);
    const e = w.emissionsKg;
    const sum = Decimal.parse(e.gridImport).add(Decimal.parse(e.gas)).add(Decimal.parse(e.direct)).sub(Decimal.parse(e.exportCredit));
    t.equal(sum.toString(), w.actualKg, 'the sources add up to the actual, exactly');
  }
  // Window 0: the registers' first readings add nothing; no reading before it: incomplete, no mint.
  t.match(items[0], { complete: false, netGrams: '0', emissionsKg: { gridImport: '0', gas: '0', direct: '0.25', exportCredit: '0' } });
  // Window 1: 5 kWh x 0.5366 + 0.5 m3 x 2.162 + 0.25 kg - 1 kWh x 0.5366 = 3.4774 kg; 10 kg baseline: 6522 g.
  t.match(items[1], { complete: true, baselineKg: '10', actualKg: '3.4774', netGrams: '6522', emissionsKg: { gridImport: '2.683', gas: '1.081', direct: '0.25', exportCredit: '0.5366' } });
  const perDevice = (w: { devices: { deviceId: string; totals: Record<string, string> }[] }) =>
    Object.fromEntries(w.devices.map((d) => [d.deviceId, Object.fromEntries(Object.entries(d.totals).filter(([, v]) => v !== '0'))]));
  t.same(perDevice(items[1]), { c1: { co2_direct: '0.25' }, e1: { electricity_export: '1' }, g1: { natural_gas: '0.5' }, m1: { electricity_import: '5' } }, 'consumption per device');
  t.same(perDevice(items[2]), { c1: { co2_direct: '0.5' }, e1: { electricity_export: '2' }, g1: { natural_gas: '0.75' }, m1: { electricity_import: '7.5' } });
  t.equal(items[2].netGrams, '4927');

  // Window 3, not settled: what the oracle would settle now (7.5 x 0.5366 + 0.75 x 2.162 + 0.75 - 0.5 x 0.5366 = 6.1277 kg).
  t.match(items[3], { settled: false, settlementId: null, complete: true, actualKg: '6.1277', netGrams: '3872' });
  t.notOk('recomputedMatches' in items[3]);
  t.same(perDevice(items[3]), { c1: { co2_direct: '0.75' }, e1: { electricity_export: '0.5' }, g1: { natural_gas: '0.75' }, m1: { electricity_import: '7.5' } });
  // ... and the oracle settles exactly that.
  const projected = items[3];
  t.equal((await oracle.runOnce(T0 + 45_000)).errors.length, 0);
  const after = (await windows(`?from=${T0 + 3 * W}&to=${T0 + 4 * W}`)).json().items;
  t.equal(after.length, 1, 'one window asked, one answered');
  t.match(after[0], { settled: true, settlementId: `F-${T0 + 3 * W}`, netGrams: projected.netGrams, actualKg: projected.actualKg, emissionsKg: projected.emissionsKg });
  t.equal(oracle.getSettlement(`F-${T0 + 3 * W}`)!.netGrams, projected.netGrams, 'the projection was what the oracle settled');

  // A range starting past the last settlement: the cursors are carried over the unsettled windows before it.
  now = T0 + 75_000;
  await readings.commit([rd('F', 'm1', 5, T0 + 45_000, 'electricity_import', '1030'), rd('F', 'm1', 6, T0 + 65_000, 'electricity_import', '1031')]);
  const later = (await windows(`?from=${T0 + 6 * W}&to=${T0 + 7 * W}`)).json().items;
  const whole = (await windows(`?from=${T0 + 4 * W}&to=${T0 + 7 * W}`)).json().items;
  t.equal(later[0].totals.electricity_import, '1', 'only its own increase (1031 - 1030), not the windows before');
  t.same(later[0], whole[2], 'the same figures whether the windows before it are in the answer or not');

  // Defaults: the last windows up to now, at most the default count.
  const def = (await windows('')).json().items;
  t.equal(def.at(-1).windowStart, new Date(T0 + 7 * W).toISOString(), 'the window in progress last');
  t.equal(def[0].windowStart, new Date(T0).toISOString(), 'from the facility\'s first window (nothing before its registration)');

  t.same((await windows(`?from=${T0 + 100 * W}&to=${T0 + 110 * W}`)).json().items, [], 'nothing after the window in progress');

  // Access.
  t.equal((await windows('', regulator)).statusCode, 200, 'a regulator reads any facility');
  const forbidden = await windows('', facG);
  t.equal(forbidden.statusCode, 403);
  t.equal(forbidden.json().error.code, errors.FORBIDDEN.code);
  t.equal((await app.inject({ url: '/v1/facilities/F/windows' })).statusCode, 401);
  t.equal((await windows('', regulator, 'nope')).json().error.code, errors.FACILITY_NOT_FOUND.code);

  // Bad ranges.
  const reversed = await windows(`?from=${T0 + W}&to=${T0}`);
  t.equal(reversed.statusCode, 400);
  t.match(reversed.json().error, { code: errors.VALIDATION.code, message: /from must be before to/ });
  const huge = await windows(`?from=0&to=${T0}`);
  t.equal(huge.statusCode, 400);
  t.equal(huge.json().error.code, errors.WINDOW_RANGE_TOO_LARGE.code);
  t.match(huge.json().error.message, new RegExp(`at most ${MAX_WINDOWS} per request`));
  const justOver = await windows(`?from=${T0}&to=${T0 + (MAX_WINDOWS + 1) * W}`);
  t.equal(justOver.json().error?.code, errors.WINDOW_RANGE_TOO_LARGE.code, `${MAX_WINDOWS + 1} windows refused`);
  t.equal((await windows(`?from=${T0}&to=${T0 + MAX_WINDOWS * W}`)).statusCode, 200, `${MAX_WINDOWS} windows answered`);
  const notTime = await windows('?from=yesterday');
  t.equal(notTime.statusCode, 400);
  t.equal(notTime.json().error.code, errors.VALIDATION.code);
  t.equal((await windows('?colour=red')).statusCode, 400, 'an unknown query parameter');

  // A stored reading of a settled window changed afterwards: the window still shows what was settled,
  // and says that the store no longer recomputes to it.
  t.equal(db.prepare("UPDATE readings SET value = '1004' WHERE device_id = 'm1' AND seq = 2").run().changes, 1);
  const tampered = (await windows(`?from=${T0 + W}&to=${T0 + 2 * W}`)).json().items[0];
  t.match(tampered, { settled: true, netGrams: '6522', actualKg: '3.4774', recomputedMatches: false });
  t.equal(tampered.devices.find((d: { deviceId: string }) => d.deviceId === 'm1').totals.electricity_import, '4', 'the devices as the store recomputes them');

  // The route is in the OpenAPI document.
  const doc = (await app.inject({ url: '/openapi.json' })).json();
  t.ok(doc.paths['/v1/facilities/{id}/windows']?.get, 'documented in /openapi.json');
});

t.test('signed devices: settled windows recompute to their record, the next one is what the oracle settles, a broken chain shows', async (t) => {
  const db = openDatabase(tmpDir(t, 'mrv-windows-sig-'));
  t.teardown(() => db.close());
  const { readings, registry } = openSqliteStores(db, { clock: () => T0 });
  const ledger = new MemoryLedger();
  registry.createFacility(facilityFixture('F', { createdAt: T0 }));
  const km = generateDeviceKey();
  const kc = generateDeviceKey();
  registry.createDevice('F', 'm1', 'meter', { publicKey: km.publicKey, reportingIntervalSeconds: 5 });
  registry.createDevice('F', 'c1', 'cems', { publicKey: kc.publicKey, reportingIntervalSeconds: 2 });
  const m1 = signChain(km, ['1000', '1005', '1010', '1015'].map((v, i) => rd('F', 'm1', i + 1, T0 + i * W + 5_000, 'electricity_import', v)));
  // c1 every 2 s; in window 3 the reading of seq 20 is replaced by a forged one (its chain link broken).
  const c1 = signChain(kc, Array.from({ length: 20 }, (_, i) => rd('F', 'c1', i + 1, T0 + i * 2_000 + 1_000, 'co2_direct', '0.1')));
  const forged = { ...c1[18], value: '0.01' };
  const stored = await readings.commit([...m1, ...c1.slice(0, 18), forged, c1[19]]);
  t.same(new Set(stored.map((o) => o.status)), new Set(['stored']));
  const oracle = buildOracle({ db, readings, registry, ledger, logger: silentLogger, windowMs: W, graceMs: 2_000, lease: false });
  t.teardown(() => oracle.close());
  t.equal((await oracle.runOnce(T0 + 22_000)).errors.length, 0);
  const app = await buildGateway({ db, registry, readings, ledger, settlements: oracle, audit: oracle, logger: silentLogger, now: () => T0 + 45_000, options: { windowSeconds: W / 1000 } });
  t.teardown(() => app.close());
  const headers = { authorization: `Bearer ${createKeyStore(db).create('regulator').key}` };
  const items = (await app.inject({ url: `/v1/facilities/F/windows?from=${T0}`, headers })).json().items;
  t.same(items.map((w: { settled: boolean; open: boolean }) => [w.settled, w.open]), [[true, false], [true, false], [false, false], [false, false], [false, true]]);
  for (const w of items.slice(0, 2)) {
    t.equal(w.recomputedMatches, true, `${w.settlementId} recomputes to its record with the signatures checked`);
    t.equal(w.netGrams, oracle.getSettlement(w.settlementId)!.netGrams);
  }
  // Window 1: 5 kWh x 0.5366 + 5 x 0.1 kg = 3.183 kg; 10 kg baseline: 6817 g.
  t.match(items[1], { complete: true, actualKg: '3.183', netGrams: '6817' });
  // Window 3 holds the forged reading: the cems's chain is broken there, the window incomplete (net capped at 0).
  t.match(items[3].devices.find((d: { deviceId: string }) => d.deviceId === 'c1'), { status: 'chain_broken' });
  t.match(items[3], { complete: false, netGrams: '0' });
  const projected = items.slice(2, 4).map((w: { netGrams: string; actualKg: string; complete: boolean }) => [w.netGrams, w.actualKg, w.complete]);
  t.equal((await oracle.runOnce(T0 + 45_000)).errors.length, 0);
  t.same(
    [2, 3].map((i) => {
      const s = oracle.getSettlement(`F-${T0 + i * W}`)!;
      return [s.netGrams, s.actualKg, s.complete];
    }),
    projected,
    'the oracle settled what the projection showed, signatures and broken chain included',
  );
});
