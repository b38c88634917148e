/**
 * Property-based test of ingest + methodology (issue 10 "What done means"), with fast-check.
 *
 * Random facilities of 1-3 devices (import, export, gas registers with resets; co2_direct interval
 * meters; sometimes one decommissioned at a window start), each with its own clock skew (ts never decreasing along seq, within the 5-minute future
 * allowance), gaps (readings lost for good), duplicates (redelivered, same content) and any arrival
 * order (per-reading delays), are pushed through the real ingest path (broker/validate.ts
 * validatePayload, then the SQLite store's commit with its ingest rules and arrival numbers) while
 * the real oracle (runOnce, over the in-memory ledger) settles window after window between arrivals.
 * Invariants:
 *  1. every delivered reading is accepted (stored, or duplicate when redelivered): arrival order alone
 *     never loses a reading;
 *  2. each settlement equals an independent recomputation from the SPEC's words (spec-model.ts): net,
 *     completeness, per-metric totals, late flags; and it verifies (recomputed from its recorded marks);
 *  3. a window with missing data never mints (net > 0 only when complete);
 *  4. an import-only facility never nets above its baseline;
 *  5. once everything has arrived and been settled, the per-metric totals over all windows do not
 *     depend on arrival order (the same stream delivered in seq order at emission time gives the same
 *     totals), and every stored co2_direct kilogram is counted exactly once.
 * Arrival order is free except across a device's first reading and its register resets: the first
 * reading arrives before any other, and a reset after every lower seq and before every higher one.
 * The cursor rule counts a register reading at or below the cursor as covered (it adds nothing), so a
 * register reading that arrives after the cursor has walked past a reset beyond it (or below the
 * first reading) would add nothing although its increase was never counted: a known limit
 * (docs/METHODOLOGY.md "Known limits"), outside what this test asserts.
 *
 * PROPERTY_RUNS (default 20), PROPERTY_SEED (a number, or `random`; default fixed so CI is
 * deterministic) and PROPERTY_SHRINK=1 set the number of runs, the seed and whether a failure is
 * shrunk (slow: every step replays a run).
 */
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import fc from 'fast-check';
import { validatePayload } from '../../broker/validate.ts';
import { Decimal } from '../../domain/decimal.ts';
import { silentLogger } from '../../domain/logger.ts';
import type { Metric } from '../../domain/reading.ts';
import { openDatabase } from '../../store/sqlite/db.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import { buildOracle } from '../../oracle/oracle.ts';
import { MemoryLedger } from '../helpers/memory-ledger.ts';
import { SpecModel, type ModelReading } from './spec-model.ts';

const W = 10_000;
const GRACE = 2_000;
const OWNER = '0x1111111111111111111111111111111111111111';
const GRID = '0.5366';
const GAS = '2.162';
const RUNS = Number(process.env.PROPERTY_RUNS ?? 20);
/** A fixed default seed keeps CI deterministic; PROPERTY_SEED=random explores new cases. */
const SEED = process.env.PROPERTY_SEED === 'random' ? undefined : Number(process.env.PROPERTY_SEED ?? 20261201);

type DeviceType = 'import' | 'export' | 'gas' | 'cems';
const METRIC_OF: Record<DeviceType, Metric> = { import: 'electricity_import', export: 'electricity_export', gas: 'natural_gas', cems: 'co2_direct' };
const KIND_OF: Record<DeviceType, string> = { import: 'grid', export: 'grid', gas: 'gas', cems: 'cems' };

// ---------------------------------------------------------------------------------------------------
// Generators

const stepArb = fc.record({
  /** Time since the previous emission, ms. */
  dt: fc.integer({ min: 0, max: 3_000 }),
  /** Register increase / interval mass in thousandths of the unit. */
  amount: fc.integer({ min: 0, max: 5_000 }),
  /** 0: this register reading is a reset (about 1 in 12). */
  reset: fc.integer({ min: 0, max: 11 }),
  /** Arrival delay after emission (ms), 0 three times out of four. */
  delay: fc.oneof(fc.constant(0), fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 25_000 })),
  /** 0: lost for good (about 1 in 12). */
  lost: fc.integer({ min: 0, max: 11 }),
  /** 0: delivered twice (about 1 in 8), the copy `dupDelay` ms later. */
  dup: fc.integer({ min: 0, max: 7 }),
  dupDelay: fc.integer({ min: 0, max: 20_000 }),
});

const deviceArb = fc.record({
  type: fc.constantFrom<DeviceType>('import', 'import', 'export', 'gas', 'cems', 'cems'),
  reportingIntervalSeconds: fc.constantFrom(2, 5, 60, 60),
  /** First emission (true time), ms. */
  start: fc.integer({ min: 5_000, max: 15_000 }),
  /** The device clock's offset from true time, ms: mostly within 3 s; at worst behind 5 s, ahead 30 s. */
  skew: fc.oneof({ arbitrary: fc.integer({ min: -3_000, max: 3_000 }), weight: 3 }, { arbitrary: fc.integer({ min: -5_000, max: 30_000 }), weight: 1 }),
  /** First seq and first register value (thousandths). */
  seq0: fc.constantFrom(0, 1, 1_000),
  value0: fc.constantFrom(0, 1_000_000, 999_999_500),
  /** Send electricity in Wh and co2 in g instead of kWh / kg. */
  smallUnit: fc.boolean(),
  steps: fc.array(stepArb, { minLength: 8, maxLength: 30 }),
});

const scenarioArb = fc.record({
  baselineKgPerHour: fc.constantFrom('0', '36', '360', '3600', '36000', '12.5'),
  devices: fc.array(deviceArb, { minLength: 1, maxLength: 3 }),
  /** A regulator decommissions device `device` (modulo the count) at the start of window `window`. */
  decommission: fc.oneof(
    { arbitrary: fc.constant(null), weight: 3 },
    { arbitrary: fc.record({ device: fc.integer({ min: 0, max: 2 }), window: fc.integer({ min: 1, max: 6 }) }), weight: 1 },
  ),
});

type Scenario = typeof scenarioArb extends fc.Arbitrary<infer T> ? T : never;

interface Emitted {
  deviceId: string;
  seq: number;
  ts: number;
  metric: Metric;
  /** Thousandths of the normalised unit. */
  milli: bigint;
  reset: boolean;
  smallUnit: boolean;
  /** Emission (true) time. */
  emittedAt: number;
  /** Arrival times in the out-of-order delivery (empty: lost). */
  arrivals: number[];
}

/** The device streams of a scenario: what each device emits and when each reading arrives. */
function streams(s: Scenario): Emitted[] {
  const out: Emitted[] = [];
  s.devices.forEach((d, i) => {
    const deviceId = `d${i}`;
    const metric = METRIC_OF[d.type];
    let emittedAt = d.start;
    let value = BigInt(d.value0);
    let floor = Number.MIN_SAFE_INTEGER; // arrivals of later seqs wait for the first reading and resets
    let latest = Number.MIN_SAFE_INTEGER; // latest arrival so far of this device (a reset waits for it)
    d.steps.forEach((step, k) => {
      if (k > 0) emittedAt += step.dt;
      // Within the default capacities (100,000 kW or m3/h: ~27.8 thousandths a ms): nothing in zero time.
      const amount = k > 0 ? BigInt(Math.min(step.amount, 25 * step.dt)) : BigInt(step.amount);
      let reset = false;
      let milli: bigint;
      if (metric === 'co2_direct') milli = amount;
      else if (k > 0 && step.reset === 0) {
        reset = true;
        value = amount % 2_000n;
        milli = value;
      } else {
        if (k > 0) value += amount;
        milli = value;
      }
      const constrained = k === 0 || reset;
      const lost = !constrained && step.lost === 0;
      const first = Math.max(emittedAt + step.delay, floor, reset ? latest + 1 : Number.MIN_SAFE_INTEGER);
      const arrivals = lost ? [] : step.dup === 0 ? [first, first + step.dupDelay] : [first];
      if (constrained) floor = Math.max(floor, first + 1);
      latest = Math.max(latest, first);
      out.push({ deviceId, seq: d.seq0 + k, ts: emittedAt + d.skew, metric, milli, reset, smallUnit: d.smallUnit, emittedAt, arrivals });
    });
  });
  return out;
}

// ---------------------------------------------------------------------------------------------------
// One run: deliver, settle, compare

const decimalText = (milli: bigint, scale = 3) => Decimal.of(milli, scale).toString();

/** The payload a device publishes for one reading (value as a JSON number, in its chosen unit). */
function payload(e: Emitted): Buffer {
  let unit: string;
  let value: string;
  if (e.metric === 'co2_direct') [unit, value] = e.smallUnit ? ['g', decimalText(e.milli, 0)] : ['kg', decimalText(e.milli)];
  else if (e.metric === 'natural_gas') [unit, value] = ['m3', decimalText(e.milli)];
  else [unit, value] = e.smallUnit ? ['Wh', decimalText(e.milli, 0)] : ['kWh', decimalText(e.milli)];
  return Buffer.from(`{"seq":${e.seq},"ts":${e.ts},"metric":"${e.metric}","value":${value},"unit":"${unit}"${e.reset ? ',"reset":true' : ''}}`);
}

interface RunResult {
  totals: Record<string, Decimal>;
  settled: number;
}

/** What the runs exercised (reported, so a generator that stops producing a case is noticed). */
const stats = { windows: 0, complete: 0, minted: 0, late: 0, silent: 0, seq_gap: 0, no_reading_before: 0, no_reading_in_window: 0, duplicates: 0, resets: 0, decommissioned: 0, out_of_coverage: 0, chain_broken: 0, voided: 0 };

async function run(dir: string, s: Scenario, emitted: Emitted[], inOrder: boolean): Promise<RunResult> {
  fs.mkdirSync(dir, { recursive: true });
  const db = openDatabase(dir);
  const clock = { now: 0 };
  const { readings, registry } = openSqliteStores(db, { clock: () => clock.now });
  const ledger = new MemoryLedger();
  const oracle = buildOracle({ db, readings, registry, ledger, logger: silentLogger, windowMs: W, graceMs: GRACE, lease: false });
  try {
    registry.createFacility({ id: 'F', name: 'F', owner: OWNER, baselineKgPerHour: s.baselineKgPerHour, gridFactorKgPerKwh: GRID, gasFactorKgPerM3: GAS, createdAt: 0 });
    s.devices.forEach((d, i) => registry.createDevice('F', `d${i}`, KIND_OF[d.type], { reportingIntervalSeconds: d.reportingIntervalSeconds }));
    const gone = s.decommission ? { deviceId: `d${s.decommission.device % s.devices.length}`, at: s.decommission.window * W } : undefined;
    const model = new SpecModel(
      s.devices.map((d, i) => ({
        deviceId: `d${i}`,
        interval: d.type === 'cems',
        reportingIntervalSeconds: d.reportingIntervalSeconds,
        ...(gone?.deviceId === `d${i}` ? { decommissionedAt: gone.at } : {}),
      })),
      { grid: GRID, gas: GAS },
    );
    // Deliveries in arrival order (ties: by device, then seq, so a device's batch is in seq order).
    const deliveries = emitted
      .flatMap((e) => (inOrder ? (e.arrivals.length ? [{ at: e.emittedAt, e, copy: false }] : []) : e.arrivals.map((at, n) => ({ at, e, copy: n > 0 }))))
      .sort((a, b) => a.at - b.at || (a.e.deviceId < b.e.deviceId ? -1 : a.e.deviceId > b.e.deviceId ? 1 : 0) || a.e.seq - b.e.seq);
    const stored: ModelReading[] = [];
    const maxTs = Math.max(...emitted.map((e) => e.ts));
    const lastArrival = Math.max(0, ...deliveries.map((d) => d.at));
    const lastWindow = Math.max(Math.ceil(maxTs / W), Math.ceil(lastArrival / W)) + 1;
    const totals: Record<string, Decimal> = {};
    let next = 0;
    const importOnly = s.devices.every((d) => d.type !== 'export');
    // baseline grams of a window = B kg/h * W ms / 3600 (non-negative: floor is truncation).
    const bw = Decimal.parse(s.baselineKgPerHour).mul(Decimal.of(BigInt(W)));
    const baselineGrams = bw.mantissa / (3600n * 10n ** BigInt(bw.scale));
    for (let k = 0; k <= lastWindow; k++) {
      const now = (k + 1) * W + GRACE;
      // Arrivals before this settlement run, through validation and the store's ingest rules.
      while (next < deliveries.length && deliveries[next].at < now) {
        const { at, e, copy } = deliveries[next++];
        const v = validatePayload(payload(e), { facilityId: 'F', deviceId: e.deviceId, now: at });
        if (v.rejections.length) throw new Error(`validation refused ${e.deviceId}:${e.seq}: ${v.rejections[0].reason} ${v.rejections[0].detail}`);
        const [outcome] = await readings.commit(v.readings);
        const want = copy ? 'duplicate' : 'stored';
        if (outcome.status !== want) {
          throw new Error(`invariant 1: ${e.deviceId}:${e.seq} (${e.metric}, ts ${e.ts}) arrived at ${at}: ${outcome.status} ${'reason' in outcome ? `${outcome.reason} ${outcome.detail}` : ''}, expected ${want}`);
        }
        if (copy) stats.duplicates++;
        else if (e.reset) stats.resets++;
        if (!copy) stored.push({ deviceId: e.deviceId, seq: e.seq, ts: e.ts, metric: e.metric, value: decimalText(e.milli), reset: e.reset });
      }
      if (gone && gone.at === k * W) {
        clock.now = gone.at;
        registry.updateDevice(gone.deviceId, { status: 'decommissioned', reason: 'property test' });
        stats.decommissioned++;
      }
      const report = await oracle.runOnce(now);
      if (report.errors.length || report.blocked.length) throw new Error(`oracle run at ${now}: ${JSON.stringify(report.errors)} ${JSON.stringify(report.blocked)}`);
      const s1 = oracle.getSettlement(`F-${k * W}`);
      if (!s1) throw new Error(`window ${k} not settled at ${now}`);
      const want = model.settle(k * W, (k + 1) * W, s.baselineKgPerHour, stored);
      const got = { complete: s1.complete, netGrams: s1.netGrams, totals: s1.inputs.totals, lateKeys: [...s1.inputs.lateKeys].sort() };
      const expected = { complete: want.complete, netGrams: want.netGrams.toString(), totals: want.totals, lateKeys: want.lateKeys };
      if (JSON.stringify(got) !== JSON.stringify(expected)) {
        throw new Error(`invariant 2: window ${k} (${inOrder ? 'in order' : 'any order'}): settled ${JSON.stringify(got)}, SPEC model ${JSON.stringify(expected)}; devices ${JSON.stringify(s1.inputs.devices.map((d) => [d.deviceId, d.status, d.coverage]))}`);
      }
      const net = BigInt(s1.netGrams);
      if (net > 0n && !s1.complete) throw new Error(`invariant 3: window ${k} is incomplete and minted ${net}`);
      if (importOnly && net > baselineGrams) throw new Error(`invariant 4: window ${k} nets ${net} g above the baseline ${baselineGrams} g`);
      const v = await oracle.verify(s1.id);
      if (!v.match) throw new Error(`window ${k} does not verify: ${JSON.stringify(v)}`);
      for (const [m, x] of Object.entries(s1.inputs.totals)) totals[m] = (totals[m] ?? Decimal.ZERO).add(Decimal.parse(x));
      stats.windows++;
      if (s1.complete) stats.complete++;
      if (net > 0n) stats.minted++;
      stats.late += s1.inputs.lateKeys.length;
      for (const d of s1.inputs.devices) if (d.status !== 'ok') stats[d.status]++;
    }
    if (next !== deliveries.length) throw new Error(`${deliveries.length - next} deliveries left after the last settlement`);
    // Every stored co2 kilogram counted exactly once.
    const co2 = stored.filter((r) => r.metric === 'co2_direct').reduce((a, r) => a.add(Decimal.parse(r.value)), Decimal.ZERO);
    if ((totals.co2_direct ?? Decimal.ZERO).cmp(co2) !== 0) throw new Error(`invariant 5: counted ${totals.co2_direct} kg co2, stored ${co2}`);
    return { totals, settled: lastWindow + 1 };
  } finally {
    await oracle.close();
    db.close();
  }
}

t.test('ingest + methodology: random streams, any arrival order, settlements in between', { timeout: 60_000 + RUNS * 6_000 }, async (t) => {
  const base = t.testdir();
  let n = 0;
  let windows = 0;
  await fc.assert(
    fc.asyncProperty(scenarioArb, async (s) => {
      const emitted = streams(s);
      const id = n++;
      const anyOrder = await run(path.join(base, `run-${id}-any`), s, emitted, false);
      const inOrder = await run(path.join(base, `run-${id}-seq`), s, emitted, true);
      windows += anyOrder.settled + inOrder.settled;
      for (const m of new Set([...Object.keys(anyOrder.totals), ...Object.keys(inOrder.totals)])) {
        const a = anyOrder.totals[m] ?? Decimal.ZERO;
        const b = inOrder.totals[m] ?? Decimal.ZERO;
        if (a.cmp(b) !== 0) throw new Error(`invariant 5: ${m} totals ${a} (any order) != ${b} (in order)`);
      }
      fs.rmSync(path.join(base, `run-${id}-any`), { recursive: true, force: true });
      fs.rmSync(path.join(base, `run-${id}-seq`), { recursive: true, force: true });
    }),
    // A run costs about a second (two SQLite files, a settlement and a verification per window), so a
    // failure is reported as found unless PROPERTY_SHRINK=1 asks fast-check to shrink it.
    { numRuns: RUNS, includeErrorInReport: true, endOnFailure: process.env.PROPERTY_SHRINK !== '1', ...(SEED !== undefined ? { seed: SEED } : {}) },
  );
  t.ok(windows > 0, `${n} scenarios, ${windows} windows settled and checked`);
  t.comment(JSON.stringify(stats));
  // The generator must keep producing the cases the invariants are about.
  t.ok(
    stats.complete > 0 && stats.minted > 0 && stats.late > 0 && stats.seq_gap > 0 && stats.silent > 0 && stats.duplicates > 0 && stats.resets > 0 && stats.out_of_coverage > 0,
    'every case occurred',
  );
});
