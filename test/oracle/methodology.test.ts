/**
 * Golden tests of the methodology: every expected value is computed by hand in the comment above its
 * assertion (SPEC "Methodology", docs/METHODOLOGY.md). W = 10 s windows; window k = [10k s, 10(k+1) s).
 */
import t from 'tap';
import { Decimal } from '../../domain/decimal.ts';
import { METRICS, type Metric, type Reading } from '../../domain/reading.ts';
import { applyFactors, factorSetAt, FACTOR_SETS, sealFactors } from '../../oracle/factors.ts';
import { settleWindow, type DeviceWindowInput, type RegisterCursor, type WindowInput } from '../../oracle/methodology.ts';

const W = 10_000;
const win = (k: number) => ({ start: k * W, end: (k + 1) * W });
const V1 = applyFactors(Date.UTC(2026, 0, 1), {});

/** A stored reading: value given in `unit`, normalised exactly by the metric's power of ten. */
function rd(deviceId: string, seq: number, ts: number, metric: Metric, value: string, unit?: string, reset = false): Reading {
  const spec = METRICS[metric];
  const u = unit ?? spec.unit;
  const k = (spec.units as Record<string, number>)[u];
  if (k === undefined) throw new Error(`bad unit ${u}`);
  return { facilityId: 'F', deviceId, seq, ts, metric, value: Decimal.parse(value).shift(k).toString(), unit: spec.unit, reset, receivedAt: ts };
}

function cur(metric: RegisterCursor['metric'], seq: number, ts: number, value: string): RegisterCursor {
  return { metric, seq, ts, value };
}

function dev(deviceId: string, readings: Reading[], opts: Partial<DeviceWindowInput> = {}): DeviceWindowInput {
  return { deviceId, startCursors: [], readings, observedBefore: true, highWater: Math.max(0, ...readings.map((r) => r.seq)), ...opts };
}

function input(devices: DeviceWindowInput[], opts: Partial<WindowInput> = {}): WindowInput {
  return { facilityId: 'F', window: win(1), devices, factors: V1, baselineKgPerHour: '3600', ...opts };
}

t.test('SPEC worked example: 1000 -> 1005 kWh, baseline 3600 kg/h, W = 10 s', async (t) => {
  // increase 1005 - 1000 = 5 kWh; actual = 5 * 0.5366 = 2.683 kg; baseline = 3600 * 10 / 3600 = 10 kg;
  // net = floor((10 - 2.683) * 1000) = floor(7317) = 7317 g.
  const r = settleWindow(input([dev('d1', [rd('d1', 2, 15_000, 'electricity_import', '1005')], { startCursors: [cur('electricity_import', 1, 5_000, '1000')] })]));
  t.equal(r.actualKg, '2.683');
  t.equal(r.baselineKg, '10');
  t.equal(r.netGrams, 7317n);
  t.equal(r.rawNetGrams, 7317n);
  t.equal(r.complete, true);
  t.same(r.devices[0].endCursors, [cur('electricity_import', 2, 15_000, '1005')]);
  t.same(r.totals, { electricity_import: '5', electricity_export: '0', renewable_generation: '0', natural_gas: '0', co2_direct: '0' });
  t.same(r.lateKeys, []);
  t.equal(r.devices[0].consumed[0].late, false);
});

t.test('each metric and its unit conversion', async (t) => {
  // One device, cursors at 0 (seq 1, previous window), one reading per case at ts 15 s.
  const cases: { name: string; metric: Metric; value: string; unit: string; totalKey: Metric; total: string; actual: string; net: bigint }[] = [
    // 1 kWh import: 1 * 0.5366 = 0.5366 kg; net = floor((10 - 0.5366) * 1000) = floor(9463.4) = 9463
    { name: 'import kWh', metric: 'electricity_import', value: '1', unit: 'kWh', totalKey: 'electricity_import', total: '1', actual: '0.5366', net: 9463n },
    // 2500 Wh = 2.5 kWh: 2.5 * 0.5366 = 1.3415 kg; net = floor(8658.5) = 8658
    { name: 'import Wh', metric: 'electricity_import', value: '2500', unit: 'Wh', totalKey: 'electricity_import', total: '2.5', actual: '1.3415', net: 8658n },
    // 0.001 MWh = 1 kWh: 0.5366 kg; net 9463
    { name: 'import MWh', metric: 'electricity_import', value: '0.001', unit: 'MWh', totalKey: 'electricity_import', total: '1', actual: '0.5366', net: 9463n },
    // 1 m3 gas: 2.162 kg; net = floor(7838) = 7838
    { name: 'gas m3', metric: 'natural_gas', value: '1', unit: 'm3', totalKey: 'natural_gas', total: '1', actual: '2.162', net: 7838n },
    // 2 kWh export (register 0 -> 2): actual = -2 * 0.5366 = -1.0732 kg; net = floor(11073.2) = 11073
    { name: 'export kWh', metric: 'electricity_export', value: '2', unit: 'kWh', totalKey: 'electricity_export', total: '2', actual: '-1.0732', net: 11073n },
    // renewables are reported, not credited: 0.5 MWh = 500 kWh in totals, actual 0, net 10000
    { name: 'renewable MWh', metric: 'renewable_generation', value: '0.5', unit: 'MWh', totalKey: 'renewable_generation', total: '500', actual: '0', net: 10000n },
  ];
  for (const c of cases) {
    const r = settleWindow(input([dev('d1', [rd('d1', 2, 15_000, c.metric, c.value, c.unit)], { startCursors: [cur(c.metric as RegisterCursor['metric'], 1, 5_000, '0')] })]));
    t.equal(r.totals[c.totalKey as keyof typeof r.totals], c.total, `${c.name}: total`);
    t.equal(r.actualKg, c.actual, `${c.name}: actual`);
    t.equal(r.netGrams, c.net, `${c.name}: net`);
  }
  // co2_direct is an interval mass, counted as is: 250 g = 0.25 kg -> net = floor(9750) = 9750;
  // 0.002 t = 2 kg -> net 8000; 3 kg -> 7000. Together (one device, three readings): 5.25 kg -> 4750.
  const co2 = [rd('d1', 2, 11_000, 'co2_direct', '250', 'g'), rd('d1', 3, 12_000, 'co2_direct', '0.002', 't'), rd('d1', 4, 13_000, 'co2_direct', '3', 'kg')];
  for (const [i, net] of [9750n, 8000n, 7000n].entries()) {
    t.equal(settleWindow(input([dev('d1', [co2[i]])])).netGrams, net, `co2 reading ${i}`);
  }
  const all = settleWindow(input([dev('d1', co2)]));
  t.equal(all.totals.co2_direct, '5.25');
  t.equal(all.netGrams, 4750n);
  // All metrics at once: 2 kWh import (2000 Wh), 3 m3 gas, 0.5 kg co2 (500 g), 1 kWh export, 7 kWh renewable:
  // actual = 2*0.5366 + 3*2.162 + 0.5 - 1*0.5366 = 1.0732 + 6.486 + 0.5 - 0.5366 = 7.5226 kg
  // net = floor((10 - 7.5226) * 1000) = floor(2477.4) = 2477
  const mixed = settleWindow(
    input([
      dev(
        'd1',
        [
          rd('d1', 10, 12_000, 'electricity_import', '2000', 'Wh'),
          rd('d1', 11, 12_000, 'natural_gas', '103', 'm3'),
          rd('d1', 12, 12_000, 'co2_direct', '500', 'g'),
          rd('d1', 13, 12_000, 'electricity_export', '51', 'kWh'),
          rd('d1', 14, 12_000, 'renewable_generation', '0.207', 'MWh'),
        ],
        {
          startCursors: [
            cur('electricity_import', 1, 5_000, '0'),
            cur('natural_gas', 2, 5_000, '100'),
            cur('electricity_export', 3, 5_000, '50'),
            cur('renewable_generation', 4, 5_000, '200'),
          ],
        },
      ),
    ]),
  );
  t.equal(mixed.actualKg, '7.5226');
  t.equal(mixed.netGrams, 2477n);
  t.same(mixed.totals, { electricity_import: '2', electricity_export: '1', renewable_generation: '7', natural_gas: '3', co2_direct: '0.5' });
});

t.test('export credit: exports are subtracted at the grid factor', async (t) => {
  // import 10 kWh, export 4 kWh: actual = (10 - 4) * 0.5366 = 3.2196 kg; net = floor(6780.4) = 6780
  const r = settleWindow(
    input([
      dev('d1', [rd('d1', 3, 15_000, 'electricity_import', '110'), rd('d1', 4, 15_000, 'electricity_export', '24')], {
        startCursors: [cur('electricity_import', 1, 5_000, '100'), cur('electricity_export', 2, 5_000, '20')],
      }),
    ]),
  );
  t.equal(r.actualKg, '3.2196');
  t.equal(r.netGrams, 6780n);
  // Net exporter, baseline 0: import 0, export 10 kWh -> actual -5.366 kg -> net = floor(5366) = 5366 (mints).
  const exporter = settleWindow(
    input([dev('d1', [rd('d1', 2, 15_000, 'electricity_export', '10')], { startCursors: [cur('electricity_export', 1, 5_000, '0')] })], { baselineKgPerHour: '0' }),
  );
  t.equal(exporter.actualKg, '-5.366');
  t.equal(exporter.netGrams, 5366n);
});

t.test('negative net (a deficit), then a later window that pays it down', async (t) => {
  // window 1: gas 100 -> 110 m3 = 10 m3: actual = 21.62 kg; net = floor((10 - 21.62) * 1000) = -11620 (burn / deficit)
  const w1 = settleWindow(input([dev('d1', [rd('d1', 2, 15_000, 'natural_gas', '110')], { startCursors: [cur('natural_gas', 1, 5_000, '100')] })]));
  t.equal(w1.actualKg, '21.62');
  t.equal(w1.netGrams, -11620n);
  t.equal(w1.complete, true);
  // window 2 continues from w1's end cursor (110): gas 110 -> 111 m3: actual 2.162 kg; net = floor(7838) = +7838.
  // On chain the +7838 first pays down the 11620 deficit (the chain/oracle tests check the balances).
  const w2 = settleWindow(
    input([dev('d1', [rd('d1', 3, 25_000, 'natural_gas', '111')], { startCursors: w1.devices[0].endCursors, prev: { maxSeq: 2, before: 20_000 } })], { window: win(2) }),
  );
  t.equal(w2.netGrams, 7838n);
  // floor is toward minus infinity: baseline 0, 0.5 g of co2 -> -0.5 g -> -1 g (never rounds a burn away)
  const half = settleWindow(input([dev('d1', [rd('d1', 2, 15_000, 'co2_direct', '0.5', 'g')])], { baselineKgPerHour: '0' }));
  t.equal(half.rawNetGrams, -1n);
  t.equal(half.netGrams, -1n);
});

t.test('incomplete window: one of two devices silent; it would otherwise mint', async (t) => {
  // d1 as in the worked example (+7317 g if complete); d2 active but has no reading in the window.
  const d1 = dev('d1', [rd('d1', 2, 15_000, 'electricity_import', '1005')], { startCursors: [cur('electricity_import', 1, 5_000, '1000')] });
  const d2 = dev('d2', [], { startCursors: [cur('electricity_import', 7, 4_000, '50')], highWater: 7 });
  const r = settleWindow(input([d1, d2]));
  t.equal(r.complete, false);
  t.equal(r.rawNetGrams, 7317n, 'the uncapped net is still computed and recorded');
  t.equal(r.netGrams, 0n, 'capped at 0: missing data never earns credits');
  t.same(r.devices.map((d) => [d.deviceId, d.inWindow, d.observedBefore]), [['d1', true, true], ['d2', false, true]]);
  t.same(r.devices[1].endCursors, [cur('electricity_import', 7, 4_000, '50')], 'a silent device keeps its cursor');
  // An incomplete window still burns: d1 gas 10 m3 -> -11620 g stays negative.
  const burn = settleWindow(
    input([dev('d1', [rd('d1', 2, 15_000, 'natural_gas', '110')], { startCursors: [cur('natural_gas', 1, 5_000, '100')] }), d2]),
  );
  t.equal(burn.complete, false);
  t.equal(burn.netGrams, -11620n);
});

t.test("a device's first window: its first reading is the cursor; never complete", async (t) => {
  // No cursor: first reading 1000 (seq 1) is the starting point; 1000 -> 1003 adds 3 kWh:
  // actual = 3 * 0.5366 = 1.6098 kg; raw net = floor(8390.2) = 8390; but no reading before the window -> incomplete -> 0.
  const r = settleWindow(
    input([dev('d1', [rd('d1', 1, 11_000, 'electricity_import', '1000'), rd('d1', 2, 15_000, 'electricity_import', '1003')], { observedBefore: false })]),
  );
  t.equal(r.actualKg, '1.6098');
  t.equal(r.rawNetGrams, 8390n);
  t.equal(r.complete, false);
  t.equal(r.netGrams, 0n);
  t.same(r.devices[0].startCursors, []);
  t.same(r.devices[0].endCursors, [cur('electricity_import', 2, 15_000, '1003')]);
});

t.test('a facility with no devices: never complete, never mints', async (t) => {
  // actual 0, baseline 10 kg: raw net 10000, capped to 0.
  const r = settleWindow(input([]));
  t.equal(r.complete, false);
  t.equal(r.actualKg, '0');
  t.equal(r.rawNetGrams, 10000n);
  t.equal(r.netGrams, 0n);
  t.same(r.devices, []);
});

t.test('a register reset starts a new segment', async (t) => {
  // cursor 1000; 1004 (+4); reset to 2 (new segment, adds nothing); 5 (+3): 7 kWh in all.
  // actual = 7 * 0.5366 = 3.7562 kg; net = floor(6243.8) = 6243. End cursor: the last reading (5).
  const r = settleWindow(
    input([
      dev('d1', [rd('d1', 2, 12_000, 'electricity_import', '1004'), rd('d1', 3, 13_000, 'electricity_import', '2', 'kWh', true), rd('d1', 4, 15_000, 'electricity_import', '5')], {
        startCursors: [cur('electricity_import', 1, 5_000, '1000')],
      }),
    ]),
  );
  t.equal(r.totals.electricity_import, '7');
  t.equal(r.actualKg, '3.7562');
  t.equal(r.netGrams, 6243n);
  t.same(r.devices[0].endCursors, [cur('electricity_import', 4, 15_000, '5')]);
  // A reset as the very last reading: the window ends on the new segment's first value, adding nothing.
  const r2 = settleWindow(
    input([dev('d1', [rd('d1', 2, 15_000, 'electricity_import', '3', 'kWh', true)], { startCursors: [cur('electricity_import', 1, 5_000, '1000')] })]),
  );
  t.equal(r2.totals.electricity_import, '0');
  t.same(r2.devices[0].endCursors, [cur('electricity_import', 2, 15_000, '3')]);
});

t.test('a reading exactly on a window boundary belongs to the window it starts', async (t) => {
  // ts = 10 000 = start of window 1: in window 1, not late, makes the device observed in the window.
  const r = settleWindow(
    input([dev('d1', [rd('d1', 2, 10_000, 'electricity_import', '1005')], { startCursors: [cur('electricity_import', 1, 9_999, '1000')] })]),
  );
  t.equal(r.devices[0].inWindow, true);
  t.equal(r.devices[0].consumed[0].late, false);
  t.equal(r.netGrams, 7317n);
  // ts = 20 000 = end of window 1: not due in window 1 (the store's consume never returns it; passing it is a bug).
  t.throws(() => settleWindow(input([dev('d1', [rd('d1', 3, 20_000, 'electricity_import', '1006')])])), /not due/);
  // ...it is in window 2, not late there.
  const r2 = settleWindow(input([dev('d1', [rd('d1', 3, 20_000, 'electricity_import', '1006')], { startCursors: r.devices[0].endCursors })], { window: win(2) }));
  t.equal(r2.devices[0].consumed[0].late, false);
  t.equal(r2.totals.electricity_import, '1');
});

t.test('a late reading is carried into the next window and flagged', async (t) => {
  // Window 1 was settled with H = 2 (cursor 1000 -> 1005, +7317 g). Then seq 3 (ts 18 s, inside window 1,
  // value 1006) arrives late; window 2 consumes it and seq 4 (ts 25 s, 1010): 1005 -> 1006 -> 1010 = 5 kWh.
  // actual = 5 * 0.5366 = 2.683 kg; net 7317 again; seq 3 flagged late, seq 4 not.
  const w1 = settleWindow(input([dev('d1', [rd('d1', 2, 15_000, 'electricity_import', '1005')], { startCursors: [cur('electricity_import', 1, 5_000, '1000')] })]));
  const w2 = settleWindow(
    input(
      [
        dev('d1', [rd('d1', 3, 18_000, 'electricity_import', '1006'), rd('d1', 4, 25_000, 'electricity_import', '1010')], {
          startCursors: w1.devices[0].endCursors,
          prev: { maxSeq: 2, before: 20_000 },
        }),
      ],
      { window: win(2) },
    ),
  );
  t.equal(w2.totals.electricity_import, '5');
  t.equal(w2.netGrams, 7317n);
  t.same(w2.lateKeys, ['d1:3']);
  t.same(w2.devices[0].consumed.map((c) => [c.reading.seq, c.late]), [[3, true], [4, false]]);
  // Over both windows: 1000 -> 1010 = 10 kWh counted exactly once (5 + 5).
  t.equal(Decimal.parse(w1.totals.electricity_import).add(Decimal.parse(w2.totals.electricity_import)).toString(), '10');
  // A late co2_direct reading is counted once, in the window that consumes it, and flagged too.
  const w3 = settleWindow(input([dev('d1', [rd('d1', 5, 21_000, 'co2_direct', '1')])], { window: win(3) }));
  t.same(w3.lateKeys, ['d1:5']);
  t.equal(w3.totals.co2_direct, '1');
  // Clock went backwards: seq 6 has ts 22 s but the cursor is already at seq 7 (ts 29 s, value 1012): the
  // cumulative register at seq 7 already includes seq 6, so seq 6 adds nothing (flagged covered, late).
  const w4 = settleWindow(
    input([dev('d1', [rd('d1', 6, 22_000, 'electricity_import', '1011'), rd('d1', 8, 35_000, 'electricity_import', '1013')], { startCursors: [cur('electricity_import', 7, 29_000, '1012')] })], {
      window: win(3),
    }),
  );
  t.equal(w4.totals.electricity_import, '1', '1012 -> 1013 only');
  t.same(w4.devices[0].consumed.map((c) => [c.reading.seq, c.late, c.covered]), [[6, true, true], [8, false, false]]);
});

t.test('0.1 + 0.2 kWh: exact decimals, where binary floating point would lose a gram', async (t) => {
  // co2_direct 0.1 kg + 0.2 kg = 0.3 kg exactly; baseline 108 kg/h * 10 s / 3600 = 0.3 kg; net = floor(0) = 0.
  const r = settleWindow(input([dev('d1', [rd('d1', 2, 12_000, 'co2_direct', '0.1'), rd('d1', 3, 13_000, 'co2_direct', '0.2')])], { baselineKgPerHour: '108' }));
  t.equal(r.actualKg, '0.3');
  t.equal(r.netGrams, 0n);
  // The same arithmetic in floats burns a gram: (0.3 - (0.1 + 0.2)) * 1000 = -5.5e-14 -> floor -1.
  t.equal(Math.floor((0.3 - (0.1 + 0.2)) * 1000), -1, 'floats get this wrong');
  // Registers: 0 -> 0.1 -> 0.3 kWh (steps 0.1 + 0.2) at a facility grid factor of 1 kg/kWh: actual 0.3 kg, net 0.
  const unit = applyFactors(0, { gridFactorKgPerKwh: '1' });
  const r2 = settleWindow(
    input([dev('d1', [rd('d1', 2, 12_000, 'electricity_import', '0.1'), rd('d1', 3, 13_000, 'electricity_import', '0.3')], { startCursors: [cur('electricity_import', 1, 5_000, '0')] })], {
      baselineKgPerHour: '108',
      factors: unit,
    }),
  );
  t.equal(r2.totals.electricity_import, '0.3');
  t.equal(r2.netGrams, 0n);
  // At the default factor: 0.3 * 0.5366 = 0.16098 kg; baseline 0.3; net = floor(139.02) = 139.
  const r3 = settleWindow(
    input([dev('d1', [rd('d1', 2, 12_000, 'electricity_import', '0.1'), rd('d1', 3, 13_000, 'electricity_import', '0.3')], { startCursors: [cur('electricity_import', 1, 5_000, '0')] })], {
      baselineKgPerHour: '108',
    }),
  );
  t.equal(r3.actualKg, '0.16098');
  t.equal(r3.netGrams, 139n);
});

t.test('baseline that does not divide evenly: net uses the exact rational', async (t) => {
  // baseline 1 kg/h, W = 10 s: 1/360 kg = 2.777... g; net = floor(2.777...) = 2 g; shown as 0.002777777 kg.
  const r = settleWindow(input([dev('d1', [], { highWater: 1 })], { baselineKgPerHour: '1', devices: [] }));
  t.equal(r.rawNetGrams, 2n);
  t.equal(r.baselineKg, '0.002777777');
  // actual 0.0028 kg (2.8 g) > 2.777... g: net = floor(-0.0222...) = -1
  const r2 = settleWindow(input([dev('d1', [rd('d1', 2, 12_000, 'co2_direct', '2.8', 'g')])], { baselineKgPerHour: '1' }));
  t.equal(r2.netGrams, -1n);
});

t.test('factor sets: v1 values, effective date, per-facility overrides, hash', async (t) => {
  t.equal(FACTOR_SETS[0].version, 'v1');
  t.equal(V1.gridKgPerKwh, '0.5366');
  t.equal(V1.gasKgPerM3, '2.162');
  t.equal(V1.version, 'v1');
  t.same(V1.overrides, []);
  t.equal(factorSetAt(0).version, 'v1', 'before the first set: the first set applies');
  // 15.3 tC/TJ * 38.931e-6 TJ/m3 * 0.99 * 44/12 = 2.16218... kgCO2/m3 -> 2.162
  const gas = Decimal.parse('15.3').mul(Decimal.parse('0.000038931')).mul(Decimal.parse('0.99')).mul(Decimal.of(44n)).shift(3);
  t.equal(Decimal.of((gas.mantissa * 1000n) / (12n * 10n ** BigInt(gas.scale)), 3).toString(), '2.162');
  // Same values written differently are not overrides; a different value is.
  t.same(applyFactors(0, { gridFactorKgPerKwh: '0.53660', gasFactorKgPerM3: '2.162' }), V1);
  const o = applyFactors(0, { gridFactorKgPerKwh: '0.6', gasFactorKgPerM3: '2.162' });
  t.equal(o.version, 'v1+facility');
  t.same(o.overrides, ['grid']);
  t.not(o.hash, V1.hash);
  t.match(V1.hash, /^0x[0-9a-f]{64}$/);
  t.equal(sealFactors({ ...V1 }).hash, V1.hash, 'the hash is recomputable from the recorded set');
  // A later set applies from its effective date.
  const sets = [...FACTOR_SETS, { ...FACTOR_SETS[0], version: 'v2', effectiveFrom: Date.UTC(2030, 0, 1), gridKgPerKwh: '0.5' }];
  t.equal(applyFactors(Date.UTC(2029, 11, 31), {}, sets).version, 'v1');
  t.equal(applyFactors(Date.UTC(2030, 0, 1), {}, sets).version, 'v2');
  t.equal(applyFactors(Date.UTC(2030, 0, 1), {}, sets).gridKgPerKwh, '0.5');
});
