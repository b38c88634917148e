/**
 * Property test of corrections (fast-check): for random register series of one or two devices and
 * random voids, the windows' nets after the corrections (each window's latest correction, or its
 * original settlement) equal what a fresh platform settles from a store that never held the voided
 * readings — an independent recomputation of "what the remaining readings justify" (no void code
 * runs on that side). Then one more window settles alike on both (the device cursors moved with the
 * corrections). Registers without resets: a voided reset and voided interval readings follow stricter
 * rules than "never stored" (docs/METHODOLOGY.md "Corrections"), tested in corrections.test.ts.
 * PROPERTY_RUNS (default 12) and PROPERTY_SEED as in property.test.ts.
 */
import t from 'tap';
import fc from 'fast-check';
import { silentLogger } from '../../domain/logger.ts';
import type { Metric, Reading } from '../../domain/reading.ts';
import { openDatabase } from '../../store/sqlite/db.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import { buildOracle } from '../../oracle/oracle.ts';
import { buildCorrector } from '../../oracle/corrections.ts';
import { MemoryLedger } from '../helpers/memory-ledger.ts';

const W = 10_000;
const WINDOWS = 8;
const RUNS = Number(process.env.PROPERTY_RUNS ?? 12);
const SEED = process.env.PROPERTY_SEED === 'random' ? undefined : Number(process.env.PROPERTY_SEED ?? 20261201);
const METRICS: Metric[] = ['electricity_import', 'natural_gas'];

interface Scenario {
  devices: { gaps: number[]; steps: number[] }[];
  voids: { device: number; from: number; length: number }[];
}

const deviceArb = fc.record({
  gaps: fc.array(fc.integer({ min: 700, max: 4_000 }), { minLength: 40, maxLength: 40 }),
  steps: fc.array(fc.integer({ min: 0, max: 300 }), { minLength: 40, maxLength: 40 }),
});
const scenarioArb = fc.record({
  devices: fc.array(deviceArb, { minLength: 1, maxLength: 2 }),
  voids: fc.array(fc.record({ device: fc.integer({ min: 0, max: 1 }), from: fc.integer({ min: 0, max: WINDOWS * W }), length: fc.integer({ min: 500, max: 3 * W }) }), {
    minLength: 1,
    maxLength: 3,
  }),
});

/** Each device's readings: ts from its gaps, register values from its steps (hundredths). */
function series(s: Scenario): Reading[] {
  const out: Reading[] = [];
  s.devices.forEach((d, i) => {
    let ts = 0;
    let value = 100_000;
    d.gaps.forEach((gap, k) => {
      ts += gap;
      value += d.steps[k];
      const metric = METRICS[i];
      out.push({ facilityId: 'F', deviceId: `d${i}`, seq: k + 1, ts, metric, value: (value / 100).toFixed(2), unit: metric === 'natural_gas' ? 'm3' : 'kWh', reset: false, receivedAt: ts });
    });
  });
  return out;
}

function platform(dir: string, devices: number) {
  const db = openDatabase(dir);
  const stores = openSqliteStores(db, { clock: () => 0 });
  stores.registry.createFacility({ id: 'F', name: 'F', owner: '0x' + '11'.repeat(20), baselineKgPerHour: '3600', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162', createdAt: 0 });
  for (let i = 0; i < devices; i++) stores.registry.createDevice('F', `d${i}`, 'meter');
  const oracle = buildOracle({ db, readings: stores.readings, registry: stores.registry, ledger: new MemoryLedger(), logger: silentLogger, windowMs: W, graceMs: 1_000 });
  return {
    ...stores,
    oracle,
    async close() {
      await oracle.close();
      db.close();
    },
  };
}

t.test('corrected nets equal a fresh settlement without the voided readings', async (t) => {
  const base = t.testdir();
  let n = 0;
  let corrected = 0;
  await fc.assert(
    fc.asyncProperty(scenarioArb, async (s) => {
      const id = n++;
      const all = series(s);
      const voids = s.voids.filter((v) => v.device < s.devices.length).map((v) => ({ deviceId: `d${v.device}`, from: v.from, to: v.from + v.length }));
      const voided = (r: Reading) => voids.some((v) => v.deviceId === r.deviceId && v.from <= r.ts && r.ts < v.to);
      const due = (r: Reading, end: number) => r.ts < end;
      const a = platform(`${base}/a-${id}`, s.devices.length);
      const b = platform(`${base}/b-${id}`, s.devices.length);
      try {
        // A: everything stored and settled, then the voids, each followed by its corrections.
        await a.readings.commit(all.filter((r) => due(r, WINDOWS * W)));
        await a.oracle.runOnce(WINDOWS * W + 1_000);
        const corrector = buildCorrector({ readings: a.readings, records: a.oracle.records, corrections: a.corrections });
        for (const v of voids) {
          a.corrections.addVoid({ facilityId: 'F', ...v, reason: 'faulty', by: 'test', at: 0 });
          await corrector.plan('F');
        }
        // B: the voided readings were never stored.
        await b.readings.commit(all.filter((r) => due(r, WINDOWS * W) && !voided(r)));
        await b.oracle.runOnce(WINDOWS * W + 1_000);
        const effective = a.oracle.listSettlements({ facilityId: 'F' }).map((x) => {
          const c = a.corrections.latest(x.id);
          if (c) corrected++;
          return { id: x.id, net: c ? c.netGrams : x.netGrams, complete: c ? c.complete : x.complete };
        });
        const fresh = b.oracle.listSettlements({ facilityId: 'F' }).map((x) => ({ id: x.id, net: x.netGrams, complete: x.complete }));
        if (JSON.stringify(effective) !== JSON.stringify(fresh)) throw new Error(`after corrections ${JSON.stringify(effective)} != fresh ${JSON.stringify(fresh)} (voids ${JSON.stringify(voids)})`);
        // One more window on both: A's cursors moved with its corrections.
        const later = all.filter((r) => r.ts >= WINDOWS * W && due(r, (WINDOWS + 1) * W));
        await a.readings.commit(later);
        await b.readings.commit(later.filter((r) => !voided(r)));
        await a.oracle.runOnce((WINDOWS + 1) * W + 1_000);
        await b.oracle.runOnce((WINDOWS + 1) * W + 1_000);
        const next = `F-${WINDOWS * W}`;
        const [x, y] = [a.oracle.getSettlement(next), b.oracle.getSettlement(next)];
        if (x?.netGrams !== y?.netGrams || x?.complete !== y?.complete) throw new Error(`window ${next}: ${x?.netGrams} != ${y?.netGrams}`);
      } finally {
        await a.close();
        await b.close();
      }
    }),
    { numRuns: RUNS, includeErrorInReport: true, endOnFailure: process.env.PROPERTY_SHRINK !== '1', ...(SEED !== undefined ? { seed: SEED } : {}) },
  );
  t.ok(corrected > 0, `${n} scenarios, ${corrected} corrected windows compared`);
});
