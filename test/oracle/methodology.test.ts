/**
 * Golden tests of the methodology: every expected value is computed by hand in the comment above its
 * assertion (SPEC "Methodology", docs/METHODOLOGY.md). W = 10 s windows; window k = [10k s, 10(k+1) s).
 */
import t from 'tap';
import { Decimal } from '../../domain/decimal.ts';
import { METRICS, type Metric, type Reading } from '../../domain/reading.ts';
import { applyFactors, factorSetAt, FACTOR_SETS, sealFactors } from '../../oracle/factors.ts';
import { evidenceLeaves } from '../../oracle/evidence.ts';
import { emissionsBySource, settleWindow, type DeviceWindowInput, type RegisterCursor, type WindowInput } from '../../oracle/methodology.ts';
import type { DeviceCoverage } from '../../store/types.ts';

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

/** Coverage computed by input() from the device's readings (see autoCoverage). */
const AUTO: DeviceCoverage = Object.freeze({ after: false, between: -1, interval: false }) as DeviceCoverage;
const observedBeforeOf = new WeakMap<DeviceWindowInput, boolean>();

/**
 * A device whose visible readings are `readings` plus, unless `observedBefore: false`, one reading
 * just before the window (seq one below the lowest given); coverage facts follow from those.
 */
function dev(deviceId: string, readings: Reading[], opts: Partial<DeviceWindowInput> & { observedBefore?: boolean } = {}): DeviceWindowInput {
  const { observedBefore = true, ...rest } = opts;
  const d: DeviceWindowInput = {
    deviceId,
    startCursors: [],
    readings,
    coverage: AUTO,
    reportingIntervalSeconds: 60,
    mark: { maxSeq: Math.max(0, ...readings.map((r) => r.seq)), late: 0 },
    ...rest,
  };
  observedBeforeOf.set(d, observedBefore);
  return d;
}

/** What ReadingStore.coverage would say about window w if the visible readings were the given ones. */
function coverageOf(visible: { seq: number; ts: number; metric: Metric }[], w: { start: number; end: number }): DeviceCoverage {
  const bySeq = [...visible].sort((a, b) => a.seq - b.seq);
  const last = (xs: typeof bySeq) => (xs.length ? { seq: xs[xs.length - 1].seq, ts: xs[xs.length - 1].ts } : undefined);
  const before = last(bySeq.filter((r) => r.ts < w.start));
  const lastIn = last(bySeq.filter((r) => r.ts >= w.start && r.ts < w.end));
  const range = before && lastIn ? bySeq.filter((r) => r.seq > before.seq && r.seq <= lastIn.seq) : [];
  const c: DeviceCoverage = { after: bySeq.some((r) => r.ts >= w.end), between: range.length, interval: range.some((r) => r.metric === 'co2_direct') };
  if (before) c.before = before;
  if (lastIn) c.lastIn = lastIn;
  return c;
}

function autoCoverage(d: DeviceWindowInput, w: { start: number; end: number }): DeviceCoverage {
  const visible: { seq: number; ts: number; metric: Metric }[] = [...d.readings];
  if (observedBeforeOf.get(d) !== false) {
    const lowest = d.readings.length ? Math.min(...d.readings.map((r) => r.seq)) : 1;
    visible.push({ seq: lowest - 1, ts: w.start - 1, metric: 'electricity_import' });
  }
  return coverageOf(visible, w);
}

function input(devices: DeviceWindowInput[], opts: Partial<WindowInput> = {}): WindowInput {
  const w = opts.window ?? win(1);
  const resolved = devices.map((d) => (d.coverage === AUTO ? { ...d, coverage: autoCoverage(d, w) } : d));
  return { facilityId: 'F', window: w, factors: V1, baselineKgPerHour: '3600', ...opts, devices: opts.devices ?? resolved };
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
    // 2 kWh export (register 0 -> 2): actual = -2 * 0.5366 = -1.0732 kg; raw net = floor(11073.2) = 11073,
    // above the window's baseline (10 kg): capped at 10000 g (no export allowance).
    { name: 'export kWh', metric: 'electricity_export', value: '2', unit: 'kWh', totalKey: 'electricity_export', total: '2', actual: '-1.0732', net: 10000n },
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
  // By source (what /windows shows): 1.0732 grid import, 6.486 gas, 0.5 direct, 0.5366 export credit.
  const e = emissionsBySource(mixed.totals, mixed.factors);
  t.same([e.gridImportKg, e.gasKg, e.directKg, e.exportCreditKg, e.actualKg].map(String), ['1.0732', '6.486', '0.5', '0.5366', mixed.actualKg]);
  t.same(mixed.devices[0].totals, mixed.totals, 'one device: its totals are the facility\'s');
});

t.test("each device's totals, and they add up to the facility's", async (t) => {
  // d1: import 1000 -> 1005 (5 kWh); d2: import 7 -> 8.5 (1.5 kWh) and 0.25 kg co2; d3: nothing in the window.
  const r = settleWindow(
    input([
      dev('d1', [rd('d1', 2, 15_000, 'electricity_import', '1005')], { startCursors: [cur('electricity_import', 1, 5_000, '1000')] }),
      dev('d2', [rd('d2', 2, 12_000, 'electricity_import', '8.5'), rd('d2', 3, 13_000, 'co2_direct', '0.25')], { startCursors: [cur('electricity_import', 1, 5_000, '7')] }),
      dev('d3', []),
    ]),
  );
  const zero = { electricity_import: '0', electricity_export: '0', renewable_generation: '0', natural_gas: '0', co2_direct: '0' };
  t.same(Object.fromEntries(r.devices.map((d) => [d.deviceId, d.totals])), {
    d1: { ...zero, electricity_import: '5' },
    d2: { ...zero, electricity_import: '1.5', co2_direct: '0.25' },
    d3: zero,
  });
  t.same(r.totals, { ...zero, electricity_import: '6.5', co2_direct: '0.25' });
  // 6.5 x 0.5366 + 0.25 = 3.7379 kg
  t.equal(r.actualKg, '3.7379');
  t.equal(emissionsBySource(r.totals, r.factors).actualKg.toString(), r.actualKg);
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
  // Net exporter, baseline 0: import 0, export 10 kWh -> actual -5.366 kg -> raw net = floor(5366) = 5366,
  // capped at the baseline's 0 g: exports never earn above the baseline.
  const exporter = settleWindow(
    input([dev('d1', [rd('d1', 2, 15_000, 'electricity_export', '10')], { startCursors: [cur('electricity_export', 1, 5_000, '0')] })], { baselineKgPerHour: '0' }),
  );
  t.equal(exporter.actualKg, '-5.366');
  t.equal(exporter.rawNetGrams, 5366n);
  t.equal(exporter.netGrams, 0n);
  t.equal(exporter.capped, true);
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
    input([dev('d1', [rd('d1', 3, 25_000, 'natural_gas', '111')], { startCursors: w1.devices[0].endCursors, prev: { mark: { maxSeq: 2, late: 0 }, before: 20_000 } })], { window: win(2) }),
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
  const d2 = dev('d2', [], { startCursors: [cur('electricity_import', 7, 4_000, '50')], mark: { maxSeq: 7, late: 0 } });
  const r = settleWindow(input([d1, d2]));
  t.equal(r.complete, false);
  t.equal(r.rawNetGrams, 7317n, 'the uncapped net is still computed and recorded');
  t.equal(r.netGrams, 0n, 'capped at 0: missing data never earns credits');
  t.same(r.devices.map((d) => [d.deviceId, d.status]), [['d1', 'ok'], ['d2', 'no_reading_in_window']]);
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
  t.equal(r.devices[0].status, 'ok');
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
          prev: { mark: { maxSeq: 2, late: 0 }, before: 20_000 },
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
  const r = settleWindow(input([], { baselineKgPerHour: '1' }));
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

// ---------------------------------------------------------------------------------------------------
// Issue 10: cursor rule by seq, coverage of suspended/silent/gapped/decommissioned devices.

const H = 3_600_000;
const hour = (k: number) => ({ start: k * H, end: (k + 1) * H });

t.test('a negative change is never counted (the one-device mint of issue 10 item 1)', async (t) => {
  // Cursor at 1,000,001 kWh. The device sent seq 8 {reset, 0, ts beyond the window end} then seq 9 {10, ts in
  // the window}: only seq 9 is due; 10 - 1,000,001 is negative and adds nothing (it used to add -1,000,001 kWh,
  // i.e. +536,605,170 g). Baseline 3600 kg/h over 10 s = 10 kg; actual 0 -> net 10000, no more.
  const r = settleWindow(
    input([dev('d1', [rd('d1', 9, 15_000, 'electricity_import', '10')], { startCursors: [cur('electricity_import', 7, 5_000, '1000001')] })]),
  );
  t.equal(r.totals.electricity_import, '0');
  t.equal(r.netGrams, 10_000n);
  t.same(r.devices[0].endCursors, [cur('electricity_import', 9, 15_000, '10')], 'the cursor moves to R_end by seq');
  // Next window: seq 8 (the reset, ts 21 s) is below the cursor's seq: covered, adds nothing; seq 10 adds 10 -> 12.
  const r2 = settleWindow(
    input([dev('d1', [rd('d1', 8, 21_000, 'electricity_import', '0', 'kWh', true), rd('d1', 10, 22_000, 'electricity_import', '12')], { startCursors: r.devices[0].endCursors })], {
      window: win(2),
    }),
  );
  t.equal(r2.totals.electricity_import, '2');
  t.same(r2.devices[0].consumed.map((c) => [c.reading.seq, c.covered]), [[8, true], [10, false]]);
  // A decrease inside a window (only possible if a store let one through) counts nothing; each step is walked:
  // 100 -> 90 (0) -> 110 (+20): 20 kWh.
  const r3 = settleWindow(
    input([dev('d1', [rd('d1', 2, 12_000, 'electricity_import', '90'), rd('d1', 3, 13_000, 'electricity_import', '110')], { startCursors: [cur('electricity_import', 1, 5_000, '100')] })]),
  );
  t.equal(r3.totals.electricity_import, '20');
  // An export register that goes backwards never earns an export credit.
  const r4 = settleWindow(
    input([dev('d1', [rd('d1', 2, 12_000, 'electricity_export', '5')], { startCursors: [cur('electricity_export', 1, 5_000, '50')] })], { baselineKgPerHour: '0' }),
  );
  t.equal(r4.totals.electricity_export, '0');
  t.equal(r4.netGrams, 0n);
});

t.test("a never-settled device's first cursor is its visible reading with the lowest seq, whatever the order", async (t) => {
  // Readings handed over in arrival order 5, 3, 4: the walk is by seq: 100 (cursor) -> 105 -> 110 = 10 kWh.
  const r = settleWindow(
    input([dev('d1', [rd('d1', 5, 14_000, 'electricity_import', '110'), rd('d1', 3, 12_000, 'electricity_import', '100'), rd('d1', 4, 13_000, 'electricity_import', '105')])]),
  );
  t.equal(r.totals.electricity_import, '10');
  t.same(r.devices[0].endCursors, [cur('electricity_import', 5, 14_000, '110')]);
  t.same(r.devices[0].consumed.map((c) => c.reading.seq), [3, 4, 5]);
});

t.test('resets: segments add up, each walked in seq order', async (t) => {
  // cursor 50; seq 2 = 60 (+10); seq 3 reset to 1; seq 4 = 4 (+3); seq 5 reset to 0; seq 6 = 2 (+2): 15 kWh.
  const r = settleWindow(
    input([
      dev(
        'd1',
        [
          rd('d1', 6, 16_000, 'electricity_import', '2'),
          rd('d1', 3, 13_000, 'electricity_import', '1', 'kWh', true),
          rd('d1', 5, 15_000, 'electricity_import', '0', 'kWh', true),
          rd('d1', 2, 12_000, 'electricity_import', '60'),
          rd('d1', 4, 14_000, 'electricity_import', '4'),
        ],
        { startCursors: [cur('electricity_import', 1, 5_000, '50')] },
      ),
    ]),
  );
  t.equal(r.totals.electricity_import, '15');
});

t.test('a suspended device is just a device: its co2 counts and it is in coverage', async (t) => {
  // The methodology has no notion of suspension: every device the oracle passes is in coverage unless
  // decommissioned before the window. A CO2 meter's 300 kg turn a +30,000 g window (meter left out) into -270,000 g.
  const grid = dev('grid', [rd('grid', 2, 15_000, 'electricity_import', '100')], { startCursors: [cur('electricity_import', 1, 5_000, '100')] });
  const cems = dev('cems', [rd('cems', 2, 15_000, 'co2_direct', '300')]);
  const both = settleWindow(input([grid, cems], { baselineKgPerHour: '10800' })); // 30 kg a window
  t.equal(both.complete, true);
  t.equal(both.netGrams, -270_000n);
  t.same(both.devices.map((d) => [d.deviceId, d.inCoverage, d.status, d.intervalDevice]), [['cems', true, 'ok', true], ['grid', true, 'ok', false]]);
  // A CO2 meter with no reading in the window (as a suspended, disconnected one would be) makes it incomplete.
  const silentCems = dev('cems', [], { startCursors: [], mark: { maxSeq: 1, late: 0 } });
  const r = settleWindow(input([grid, silentCems], { baselineKgPerHour: '10800' }));
  t.equal(r.complete, false);
  t.equal(r.rawNetGrams, 30_000n);
  t.equal(r.netGrams, 0n, 'never mints');
});

t.test('a device silent after the first third of a window leaves it incomplete (issue 10 item 4)', async (t) => {
  // W = 1 h, reporting every 60 s. The device reads each minute for the first 20 minutes, then nothing:
  // last reading in the window at 20 min < 60 min - 2 min: 'silent'. Import 0.1 kWh a minute: 2 kWh over
  // 20 readings (the 21st, at minute 0, is the cursor) = 1.0732 kg; baseline 100 kg/h: raw +98,926 g, capped at 0.
  const readings = Array.from({ length: 21 }, (_, i) => rd('d1', 100 + i, H + i * 60_000, 'electricity_import', Decimal.parse('0.1').mul(Decimal.of(BigInt(i))).toString()));
  const at = (rs: Reading[], extra: { seq: number; ts: number; metric: Metric }[] = []) =>
    dev('d1', rs, { startCursors: [cur('electricity_import', 99, H - 60_000, '0')], coverage: coverageOf([{ seq: 99, ts: H - 60_000, metric: 'electricity_import' }, ...rs, ...extra], hour(1)) });
  const r = settleWindow(input([at(readings)], { window: hour(1), baselineKgPerHour: '100' }));
  t.equal(r.devices[0].status, 'silent');
  t.equal(r.complete, false);
  t.equal(r.rawNetGrams, 98_926n);
  t.equal(r.netGrams, 0n);
  // A reading at or after the window end, once visible, rescues it (it shows the device was not cut off).
  const rescued = settleWindow(input([at(readings, [{ seq: 121, ts: 2 * H, metric: 'electricity_import' }])], { window: hour(1), baselineKgPerHour: '100' }));
  t.equal(rescued.devices[0].status, 'ok');
  t.equal(rescued.netGrams, 98_926n);
  // The boundary: a last reading exactly 2 intervals before the end is fine, 1 ms earlier is not.
  const edge = (ts: number) => settleWindow(input([at([rd('d1', 100, ts, 'electricity_import', '1')])], { window: hour(1), baselineKgPerHour: '100' })).devices[0].status;
  t.equal(edge(2 * H - 120_000), 'ok');
  t.equal(edge(2 * H - 120_001), 'silent');
  // The rule scales with the declared interval: reporting every 30 min, a last reading at 20 min is recent enough.
  const slow = settleWindow(input([{ ...at(readings), reportingIntervalSeconds: 1800 }], { window: hour(1), baselineKgPerHour: '100' }));
  t.equal(slow.devices[0].status, 'ok', 'last reading at 20 min >= 60 min - 2 x 30 min');
});

t.test('an interval (co2_direct) device with a seq missing in the window: incomplete', async (t) => {
  // before: seq 5; in window: 6 and 8 (7 not stored): between = 2 != 8 - 5 = 3 -> seq_gap.
  const rs = [rd('c', 6, 12_000, 'co2_direct', '1'), rd('c', 8, 14_000, 'co2_direct', '1')];
  const gap = coverageOf([{ seq: 5, ts: 9_000, metric: 'co2_direct' }, ...rs], win(1));
  t.same(gap, { before: { seq: 5, ts: 9_000 }, lastIn: { seq: 8, ts: 14_000 }, after: false, between: 2, interval: true });
  const r = settleWindow(input([dev('c', rs, { coverage: gap })]));
  t.equal(r.devices[0].status, 'seq_gap');
  t.equal(r.complete, false);
  t.equal(r.rawNetGrams, 8_000n, '2 kg counted, the missing interval is unmeasured');
  t.equal(r.netGrams, 0n);
  // Seq 7 arrives: no gap.
  const full = [...rs, rd('c', 7, 13_000, 'co2_direct', '1')];
  t.equal(settleWindow(input([dev('c', full, { coverage: coverageOf([{ seq: 5, ts: 9_000, metric: 'co2_direct' }, ...full], win(1)) })])).complete, true);
  // A register device with the same gap is complete (a cumulative register loses nothing to a gap)...
  const regs = [rd('m', 6, 12_000, 'electricity_import', '1'), rd('m', 8, 14_000, 'electricity_import', '2')];
  const regCov = coverageOf([{ seq: 5, ts: 9_000, metric: 'electricity_import' }, ...regs], win(1));
  t.equal(settleWindow(input([dev('m', regs, { coverage: regCov, startCursors: [cur('electricity_import', 5, 9_000, '0')] })])).complete, true);
  // ...unless it is declared an interval device (kind 'cems'), whatever its visible readings show.
  t.equal(settleWindow(input([dev('m', regs, { coverage: regCov, intervalDevice: true, startCursors: [cur('electricity_import', 5, 9_000, '0')] })])).devices[0].status, 'seq_gap');
});

t.test('decommissioned: out of coverage for windows starting at or after its time, readings still counted', async (t) => {
  const decommissioned = { at: 10_000, reason: 'meter removed' };
  const grid = dev('grid', [rd('grid', 2, 15_000, 'electricity_import', '105')], { startCursors: [cur('electricity_import', 1, 5_000, '100')] });
  // The old CO2 meter is silent in window 1, but it was decommissioned at the window start: out of coverage.
  // Its late reading (seq 9, 2 kg, ts 9 s) still counts: 5 kWh * 0.5366 + 2 = 4.683 kg -> net 5317 g.
  const old = dev('old', [rd('old', 9, 9_000, 'co2_direct', '2')], { decommissioned, coverage: coverageOf([{ seq: 9, ts: 9_000, metric: 'co2_direct' }], win(1)) });
  const r = settleWindow(input([grid, old]));
  t.equal(r.complete, true);
  t.equal(r.netGrams, 5317n);
  t.same(r.devices.map((d) => [d.deviceId, d.inCoverage, d.status]), [['grid', true, 'ok'], ['old', false, 'out_of_coverage']]);
  t.same(r.decommissioned, [{ deviceId: 'old', at: 10_000, reason: 'meter removed' }]);
  t.same(r.lateKeys, ['old:9']);
  // Decommissioned during the window (at 10 s + 1 ms): still in coverage for this window, which is incomplete.
  const during = settleWindow(input([grid, { ...old, decommissioned: { at: 10_001, reason: 'meter removed' } }]));
  t.equal(during.devices[1].status, 'no_reading_in_window');
  t.equal(during.complete, false);
  t.same(during.decommissioned, []);
  // A facility whose only device is decommissioned has no device in coverage: incomplete.
  const alone = settleWindow(input([old], { baselineKgPerHour: '3600' }));
  t.equal(alone.complete, false);
  t.equal(alone.netGrams, 0n);
});

t.test('coverage: no reading before the window; bad reporting interval refused', async (t) => {
  const r = settleWindow(input([dev('d1', [rd('d1', 1, 12_000, 'co2_direct', '1')], { observedBefore: false })]));
  t.equal(r.devices[0].status, 'no_reading_before');
  t.throws(() => settleWindow(input([dev('d1', [], { reportingIntervalSeconds: 0 })])), /reporting interval/);
});

t.test('no window earns more than its baseline: an export meter above it is capped, and the evidence says so', async (t) => {
  // export 100 kWh in the window: actual = -100 * 0.5366 = -53.66 kg; baseline = 10 kg;
  // raw net = floor((10 + 53.66) * 1000) = 63660 g; bound = floor(10 kg) = 10000 g -> capped at 10000.
  const r = settleWindow(input([dev('x1', [rd('x1', 2, 15_000, 'electricity_export', '1100')], { startCursors: [cur('electricity_export', 1, 5_000, '1000')] })]));
  t.equal(r.rawNetGrams, 63_660n);
  t.equal(r.netBoundGrams, 10_000n);
  t.equal(r.netGrams, 10_000n);
  t.equal(r.capped, true);
  const leaf = evidenceLeaves(r).find((l) => l[0] === 'result');
  t.equal(leaf?.[7], true, 'the result leaf flags the cap');
  // Imports above the exports: the net stays below the bound, not capped.
  // import 5 kWh, export 1 kWh: actual = 4 * 0.5366 = 2.1464 kg; net = floor(7853.6) = 7853.
  const ok = settleWindow(
    input([
      dev('x1', [rd('x1', 3, 15_000, 'electricity_import', '105'), rd('x1', 4, 15_000, 'electricity_export', '1001')], {
        startCursors: [cur('electricity_import', 1, 5_000, '100'), cur('electricity_export', 2, 5_000, '1000')],
      }),
    ]),
  );
  t.equal(ok.netGrams, 7_853n);
  t.equal(ok.capped, false);
  t.equal(evidenceLeaves(ok).find((l) => l[0] === 'result')?.[7], false);
});
