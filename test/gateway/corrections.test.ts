/**
 * The void and correction routes through app.inject on a real SQLite file, settled by the oracle
 * (in-memory ledger): who may void, what a void answers, listing and scoping, proof of a voided
 * reading, the readings' `voided` flag, and bad input.
 */
import t from 'tap';
import { StandardMerkleTree } from '@openzeppelin/merkle-tree';
import { silentLogger } from '../../domain/logger.ts';
import type { Reading } from '../../domain/reading.ts';
import { openDatabase } from '../../store/sqlite/db.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import { buildOracle } from '../../oracle/oracle.ts';
import { buildCorrector } from '../../oracle/corrections.ts';
import { buildCorrectionAudit } from '../../oracle/correction-audit.ts';
import { buildGateway } from '../../gateway/app.ts';
import { createKeyStore } from '../../gateway/keys.ts';
import { MemoryLedger } from '../helpers/memory-ledger.ts';
import { errors } from '../../domain/errors.ts';

const W = 10_000;
const rd = (seq: number, ts: number, value: string): Reading => ({ facilityId: 'F', deviceId: 'd1', seq, ts, metric: 'electricity_import', value, unit: 'kWh', reset: false, receivedAt: ts });

t.test('voids and corrections over HTTP', async (t) => {
  const db = openDatabase(t.testdir());
  t.teardown(() => db.close());
  const stores = openSqliteStores(db, { clock: () => 0 });
  const fixture = { baselineKgPerHour: '3600', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162', createdAt: 0 };
  stores.registry.createFacility({ id: 'F', name: 'F', owner: '0x' + '11'.repeat(20), ...fixture });
  stores.registry.createFacility({ id: 'G', name: 'G', owner: '0x' + '22'.repeat(20), ...fixture });
  stores.registry.createDevice('F', 'd1', 'meter');
  const oracle = buildOracle({ db, readings: stores.readings, registry: stores.registry, ledger: new MemoryLedger(), logger: silentLogger, windowMs: W, graceMs: 2_000 });
  t.teardown(() => oracle.close());
  await stores.readings.commit([rd(1, 5_000, '1000'), rd(2, 12_000, '1002'), rd(3, 16_000, '1004'), rd(4, 22_000, '1010'), rd(5, 26_000, '1012'), rd(6, 32_000, '1013'), rd(7, 36_000, '1014')]);
  await oracle.runOnce(42_000);
  const app = await buildGateway({
    db,
    registry: stores.registry,
    readings: stores.readings,
    settlements: oracle,
    audit: oracle,
    corrections: {
      records: stores.corrections,
      corrector: buildCorrector({ readings: stores.readings, records: oracle.records, corrections: stores.corrections }),
      audit: buildCorrectionAudit({ corrections: stores.corrections, readings: stores.readings }),
    },
    logger: silentLogger,
    options: { rateLimitMax: 1000, windowSeconds: 10 },
    now: () => 100_000,
  });
  t.teardown(() => app.close());
  const keys = createKeyStore(db);
  const bearer = (k: string) => ({ authorization: `Bearer ${k}` });
  const k = { admin: keys.create('admin').key, regulator: keys.create('regulator').key, facF: keys.create('facility', 'F').key, facG: keys.create('facility', 'G').key };
  const post = (key: string, body: unknown, device = 'd1') => app.inject({ method: 'POST', url: `/v1/devices/${device}/voids`, headers: bearer(key), payload: body as object });
  const body = { from: '1970-01-01T00:00:20Z', to: 30_000, reason: 'meter found faulty' };

  // Only a regulator voids.
  t.equal((await post(k.facF, body)).statusCode, 403, "a facility key cannot void its own meter's readings");
  t.equal((await post(k.admin, body)).statusCode, 403, 'nor can an admin key');
  t.equal((await app.inject({ method: 'POST', url: '/v1/devices/d1/voids', payload: body })).statusCode, 401);
  t.same(stores.corrections.voidsOfFacility('F'), [], 'nothing was recorded');

  // Bad input.
  const bad = async (b: unknown, code: string, status = 400, device = 'd1') => {
    const r = await post(k.regulator, b, device);
    t.equal(r.statusCode, status, `${JSON.stringify(b)}: ${status}`);
    t.equal(r.json().error.code, code);
  };
  await bad({ ...body, to: 20_000 }, 'VALIDATION_FAILED');
  await bad({ ...body, to: 10_000 }, 'VALIDATION_FAILED');
  await bad({ from: 20_000, to: 30_000 }, 'VALIDATION_FAILED');
  await bad({ ...body, reason: '   ' }, 'VALIDATION_FAILED');
  await bad({ ...body, reason: 'x'.repeat(257) }, 'VALIDATION_FAILED');
  await bad({ ...body, reason: 'é'.repeat(200) }, 'VALIDATION_FAILED');
  await bad({ ...body, from: 'yesterday' }, 'VALIDATION_FAILED');
  await bad({ ...body, extra: 1 }, 'VALIDATION_FAILED');
  await bad({ from: 100_000, to: 200_000, reason: 'no readings there' }, 'VOID_EMPTY');
  await bad(body, 'DEVICE_NOT_FOUND', 404, 'nope');

  // A void over settled readings: 201 with the corrections it caused.
  const r = await post(k.regulator, body);
  t.equal(r.statusCode, 201);
  const out = r.json();
  t.match(out.void, { id: 1, facilityId: 'F', deviceId: 'd1', from: '1970-01-01T00:00:20.000Z', to: '1970-01-01T00:00:30.000Z', reason: 'meter found faulty', chainVoidId: null });
  t.same(out.corrections.map((c: { id: string }) => c.id), ['F-20000-c1', 'F-30000-c1']);
  t.match(out.corrections[0], { settlementId: 'F-20000', seq: 1, state: 'intent', prevNetGrams: '5707', netGrams: '0', deltaGrams: '-5707', complete: false });
  t.match(out.corrections[1], { settlementId: 'F-30000', prevNetGrams: '8926', netGrams: '4634', deltaGrams: '-4292', complete: true });

  // The corrected settlements name their corrections; the others do not.
  const s2 = (await app.inject({ method: 'GET', url: '/v1/settlements/F-20000', headers: bearer(k.facF) })).json();
  t.same(s2.corrections, [{ id: 'F-20000-c1', seq: 1, state: 'intent', netGrams: '0', deltaGrams: '-5707' }]);
  t.equal(s2.netGrams, '5707', 'the settlement itself stays as settled');
  const page = (await app.inject({ method: 'GET', url: '/v1/settlements?facilityId=F', headers: bearer(k.facF) })).json().items as { id: string; corrections?: unknown[] }[];
  t.same(page.filter((x) => x.corrections).map((x) => x.id).sort(), ['F-20000', 'F-30000']);

  // Twice: nothing more to correct.
  const again = await post(k.regulator, { ...body, reason: 'same fault, reported twice' });
  t.equal(again.statusCode, 201);
  t.same(again.json().corrections, [], 'voiding twice does not correct twice');

  // Listing, scoped.
  const list = async (key: string, q = '') => app.inject({ method: 'GET', url: `/v1/corrections${q}`, headers: bearer(key) });
  t.equal((await list(k.regulator, '?facilityId=F')).json().items.length, 2);
  t.equal((await list(k.facF)).json().items.length, 2, "a facility key lists its own facility's");
  t.equal((await list(k.facG)).json().items.length, 0);
  t.equal((await list(k.facG, '?facilityId=F')).statusCode, 403, "and never another's");
  t.equal((await app.inject({ method: 'GET', url: '/v1/corrections/F-20000-c1', headers: bearer(k.facG) })).statusCode, 403);
  t.equal((await app.inject({ method: 'GET', url: '/v1/corrections/F-0-c9', headers: bearer(k.regulator) })).json().error.code, 'CORRECTION_NOT_FOUND');

  // Proof of a voided reading in the correction's evidence; verify needs the chain.
  const p = await app.inject({ method: 'GET', url: '/v1/corrections/F-20000-c1/proof?deviceId=d1&seq=5', headers: bearer(k.facF) });
  t.equal(p.statusCode, 200);
  const proof = p.json();
  t.equal(proof.leaf[0], 'voided');
  t.equal(StandardMerkleTree.verify(out.corrections[0].evidenceRoot, proof.leafEncoding, proof.leaf, proof.proof), true);
  const proofUsed = await app.inject({ method: 'GET', url: '/v1/corrections/F-30000-c1/proof?deviceId=d1&seq=6', headers: bearer(k.facF) });
  t.equal(proofUsed.json().leaf[0], 'reading');
  t.equal((await app.inject({ method: 'GET', url: '/v1/corrections/F-20000-c1/verify', headers: bearer(k.regulator) })).statusCode, 503, 'verify needs a chain');

  // The readings API flags voided readings; they stay stored.
  const readings = (await app.inject({ method: 'GET', url: '/v1/facilities/F/readings?deviceId=d1', headers: bearer(k.facF) })).json().items as { seq: number; voided?: boolean }[];
  t.same(readings.filter((x) => x.voided).map((x) => x.seq).sort(), [4, 5]);
  t.equal(readings.length, 7);
  const one = await app.inject({ method: 'GET', url: '/v1/facilities/F/readings/d1/4', headers: bearer(k.facF) });
  t.equal(one.json().reading.voided, true);
});

t.test("a void answers its corrections when another planner (the oracle's run) recorded them first", async (t) => {
  const db = openDatabase(t.testdir());
  t.teardown(() => db.close());
  const stores = openSqliteStores(db, { clock: () => 0 });
  stores.registry.createFacility({ id: 'F', name: 'F', owner: '0x' + '11'.repeat(20), baselineKgPerHour: '3600', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162', createdAt: 0 });
  stores.registry.createDevice('F', 'd1', 'meter');
  const oracle = buildOracle({ db, readings: stores.readings, registry: stores.registry, ledger: new MemoryLedger(), logger: silentLogger, windowMs: W, graceMs: 2_000 });
  t.teardown(() => oracle.close());
  await stores.readings.commit([rd(1, 5_000, '1000'), rd(2, 12_000, '1002'), rd(3, 16_000, '1004'), rd(4, 22_000, '1010'), rd(5, 26_000, '1012'), rd(6, 32_000, '1013'), rd(7, 36_000, '1014')]);
  await oracle.runOnce(42_000);
  const mine = buildCorrector({ readings: stores.readings, records: oracle.records, corrections: stores.corrections });
  // The oracle's own planner, in this process or another, on the same records.
  const other = buildCorrector({ readings: stores.readings, records: oracle.records, corrections: stores.corrections });
  // Each void's plan loses the race once: the other planner records the corrections first, first
  // before ours starts (ours finds nothing left to do), then while ours runs (the store refuses ours).
  let race: 'first' | 'raced' | 'none' = 'first';
  const corrector = {
    async plan(facilityId: string) {
      if (race === 'first') {
        race = 'raced';
        await other.plan(facilityId);
        return mine.plan(facilityId);
      }
      if (race === 'raced') {
        race = 'none';
        await other.plan(facilityId);
        throw errors.CORRECTION_RACED('settlement F-40000 has 1 correction(s); correction 1 is not the next');
      }
      return mine.plan(facilityId);
    },
  };
  const app = await buildGateway({
    db,
    registry: stores.registry,
    readings: stores.readings,
    settlements: oracle,
    audit: oracle,
    corrections: { records: stores.corrections, corrector, audit: buildCorrectionAudit({ corrections: stores.corrections, readings: stores.readings }) },
    logger: silentLogger,
    options: { rateLimitMax: 1000, windowSeconds: 10 },
    now: () => 100_000,
  });
  t.teardown(() => app.close());
  const key = createKeyStore(db).create('regulator').key;
  const post = (body: unknown) => app.inject({ method: 'POST', url: '/v1/devices/d1/voids', headers: { authorization: `Bearer ${key}` }, payload: body as object });

  const first = await post({ from: 20_000, to: 30_000, reason: 'meter found faulty' });
  t.equal(first.statusCode, 201);
  t.same(first.json().corrections.map((c: { id: string }) => c.id), ['F-20000-c1', 'F-30000-c1'], 'the corrections the void caused, though the other planner recorded them');
  t.same(first.json().corrections.map((c: { voidIds: number[] }) => c.voidIds), [[1], [1]]);

  const second = await post({ from: 30_000, to: 40_000, reason: 'and the next window too' });
  t.equal(second.statusCode, 201, 'a raced plan is not a failed void (the void is recorded, on chain too)');
  t.same(second.json().corrections.map((c: { id: string }) => c.id), ['F-30000-c2'], 'its corrections, recorded by the other planner');
  t.equal(stores.corrections.voidsOfFacility('F').length, 2);

  const again = await post({ from: 30_000, to: 40_000, reason: 'reported twice' });
  t.equal(again.statusCode, 201);
  t.same(again.json().corrections, [], 'a void that changes nothing still answers none');
});
