/**
 * The methodology (SPEC "Methodology", docs/METHODOLOGY.md): one facility x one window -> actual and
 * baseline emissions, net grams, coverage, and each device's new register cursors. Pure: the oracle
 * selects the readings (ReadingStore.consume with the window's high-water marks) and passes them in.
 * Exact arithmetic only (Decimal on BigInt); binary floating point never decides a gram.
 */
import { Decimal } from '../domain/decimal.ts';
import { METRICS, type Metric, type Reading } from '../domain/reading.ts';
import type { Window } from '../domain/window.ts';
import type { AppliedFactors } from './factors.ts';

export const METHODOLOGY_VERSION = 'mrv-cursor-1';

export type RegisterMetric = 'electricity_import' | 'electricity_export' | 'renewable_generation' | 'natural_gas';
export const REGISTER_METRICS: readonly RegisterMetric[] = ['electricity_import', 'electricity_export', 'renewable_generation', 'natural_gas'];

/** Where a device's register stood: the reading the previous settlement ended on. */
export interface RegisterCursor {
  metric: RegisterMetric;
  seq: number;
  ts: number;
  /** Canonical decimal text in the metric's normalised unit. */
  value: string;
}

/** What the device's previous settlement consumed (its high-water mark and window end). */
export interface PrevConsumed {
  maxSeq: number;
  before: number;
}

export interface DeviceWindowInput {
  deviceId: string;
  /** High-water mark H: highest stored seq when the window was settled (undefined: no readings yet). */
  highWater?: number;
  /** The device's previous settlement (undefined: never settled), i.e. what `readings` excludes. */
  prev?: PrevConsumed;
  /** Cursors the previous settlement ended on, at most one per register metric. */
  startCursors: RegisterCursor[];
  /** The consumed set (seq <= H, ts < window end, minus `prev`), in any order. */
  readings: Reading[];
  /** Whether the device has a visible reading (seq <= H) with ts < window start. */
  observedBefore: boolean;
}

export interface WindowInput {
  facilityId: string;
  window: Window;
  /** The facility's active devices (a device's readings are consumed only while it is active). */
  devices: DeviceWindowInput[];
  factors: AppliedFactors;
  /** Baseline in force at the window start, kg CO2e per hour (decimal text). */
  baselineKgPerHour: string;
}

/** Per-metric sums over the facility, normalised units, canonical decimal text. */
export interface MetricTotals {
  electricity_import: string;
  electricity_export: string;
  renewable_generation: string;
  natural_gas: string;
  co2_direct: string;
}

export interface ConsumedReading {
  reading: Reading;
  /** ts before the window start: counted here because it arrived (or became visible) late. */
  late: boolean;
  /** Register reading with a seq at or below the start cursor's: already covered, adds nothing. */
  covered: boolean;
}

export interface DeviceWindowResult {
  deviceId: string;
  highWater?: number;
  prev?: PrevConsumed;
  startCursors: RegisterCursor[];
  endCursors: RegisterCursor[];
  /** Consumed readings in seq order with their flags. */
  consumed: ConsumedReading[];
  inWindow: boolean;
  observedBefore: boolean;
}

export interface WindowResult {
  facilityId: string;
  window: Window;
  methodologyVersion: string;
  factors: AppliedFactors;
  baselineKgPerHour: string;
  /** Exact baseline kg when it terminates, else floored to 1e-9 kg (display only: net uses the exact rational). */
  baselineKg: string;
  actualKg: string;
  /** floor((baseline_kg - actual_kg) * 1000) before the coverage cap. */
  rawNetGrams: bigint;
  /** rawNetGrams, capped at 0 when the window is incomplete. */
  netGrams: bigint;
  complete: boolean;
  totals: MetricTotals;
  devices: DeviceWindowResult[];
  /** `${deviceId}:${seq}` of every consumed reading flagged late. */
  lateKeys: string[];
}

const MS_PER_HOUR = 3_600_000n;

/** floor(a / b) for bigints, b > 0 (BigInt division truncates toward zero). */
function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a < 0n && q * b !== a ? q - 1n : q;
}

/** floor(d * 10^digits / divisor) exactly: d is a Decimal, divisor a positive bigint. */
function floorScaledDiv(d: Decimal, digits: number, divisor: bigint): bigint {
  // d = m * 10^-s  ->  d * 10^digits / divisor = m * 10^digits / (divisor * 10^s)
  const num = d.mantissa * 10n ** BigInt(digits);
  return floorDiv(num, divisor * 10n ** BigInt(d.scale));
}

function isRegister(metric: Metric): metric is RegisterMetric {
  return METRICS[metric]?.kind === 'register';
}

/** Walks one device's consumed readings; returns its increases per metric and its end cursors. */
function walkDevice(input: DeviceWindowInput, window: Window): { increases: Map<Metric, Decimal>; result: DeviceWindowResult } {
  const increases = new Map<Metric, Decimal>();
  const add = (m: Metric, d: Decimal) => increases.set(m, (increases.get(m) ?? Decimal.ZERO).add(d));
  const cursors = new Map<RegisterMetric, RegisterCursor>();
  for (const c of input.startCursors) cursors.set(c.metric, c);
  const sorted = [...input.readings].sort((a, b) => a.seq - b.seq);
  const consumed: ConsumedReading[] = [];
  let inWindow = false;
  for (const r of sorted) {
    if (r.deviceId !== input.deviceId) throw new TypeError(`reading ${r.deviceId}:${r.seq} passed for device ${input.deviceId}`);
    if (r.ts >= window.end) throw new TypeError(`reading ${r.deviceId}:${r.seq} is not due in window ending ${window.end}`);
    const late = r.ts < window.start;
    if (!late) inWindow = true;
    let covered = false;
    if (isRegister(r.metric)) {
      const cur = cursors.get(r.metric);
      if (cur && r.seq <= cur.seq) {
        // The register is cumulative in seq order: a cursor at a higher seq already includes it.
        covered = true;
      } else {
        // A reset starts a new segment: the gap across it is unobserved and adds nothing. A device's
        // first reading of a metric (no cursor) is its starting point and adds nothing either.
        if (cur && !r.reset) add(r.metric, Decimal.parse(r.value).sub(Decimal.parse(cur.value)));
        cursors.set(r.metric, { metric: r.metric, seq: r.seq, ts: r.ts, value: Decimal.parse(r.value).toString() });
      }
    } else if (METRICS[r.metric]?.kind === 'interval') {
      add(r.metric, Decimal.parse(r.value));
    }
    consumed.push({ reading: r, late, covered });
  }
  const endCursors = REGISTER_METRICS.filter((m) => cursors.has(m)).map((m) => cursors.get(m) as RegisterCursor);
  const startCursors = REGISTER_METRICS.filter((m) => input.startCursors.some((c) => c.metric === m)).map(
    (m) => input.startCursors.find((c) => c.metric === m) as RegisterCursor,
  );
  const result: DeviceWindowResult = {
    deviceId: input.deviceId,
    startCursors,
    endCursors,
    consumed,
    inWindow,
    observedBefore: input.observedBefore,
  };
  if (input.highWater !== undefined) result.highWater = input.highWater;
  if (input.prev !== undefined) result.prev = input.prev;
  return { increases, result };
}

/** Settles one facility x one window. Devices are processed in deviceId order. */
export function settleWindow(input: WindowInput): WindowResult {
  const { window } = input;
  const windowMs = window.end - window.start;
  if (!Number.isSafeInteger(windowMs) || windowMs <= 0) throw new TypeError(`invalid window ${window.start}..${window.end}`);
  const devices = [...input.devices].sort((a, b) => (a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : 0));
  const ids = new Set<string>();
  const sums = new Map<Metric, Decimal>();
  const results: DeviceWindowResult[] = [];
  const lateKeys: string[] = [];
  for (const d of devices) {
    if (ids.has(d.deviceId)) throw new TypeError(`device ${d.deviceId} passed twice`);
    ids.add(d.deviceId);
    const { increases, result } = walkDevice(d, window);
    for (const [m, v] of increases) sums.set(m, (sums.get(m) ?? Decimal.ZERO).add(v));
    for (const c of result.consumed) if (c.late) lateKeys.push(`${d.deviceId}:${c.reading.seq}`);
    results.push(result);
  }
  const total = (m: Metric) => sums.get(m) ?? Decimal.ZERO;
  const grid = Decimal.parse(input.factors.gridKgPerKwh);
  const gas = Decimal.parse(input.factors.gasKgPerM3);
  // actual_kg = import*EF_grid + gas*EF_gas + co2_direct_kg - export*EF_grid (renewables reported only)
  const actualKg = total('electricity_import')
    .mul(grid)
    .add(total('natural_gas').mul(gas))
    .add(total('co2_direct'))
    .sub(total('electricity_export').mul(grid));
  // baseline_kg = B * windowMs / 3,600,000; net_g = floor((baseline_kg - actual_kg) * 1000)
  //   = floor((B * windowMs - actual_kg * 3,600,000) * 1000 / 3,600,000), computed exactly.
  const baseline = Decimal.parse(input.baselineKgPerHour);
  const windowMsD = Decimal.of(BigInt(windowMs));
  const scaledDiff = baseline.mul(windowMsD).sub(actualKg.mul(Decimal.of(MS_PER_HOUR)));
  const rawNetGrams = floorScaledDiv(scaledDiff, 3, MS_PER_HOUR);
  const complete = results.length > 0 && results.every((r) => r.inWindow && r.observedBefore);
  const netGrams = complete || rawNetGrams < 0n ? rawNetGrams : 0n;
  return {
    facilityId: input.facilityId,
    window: { start: window.start, end: window.end },
    methodologyVersion: METHODOLOGY_VERSION,
    factors: input.factors,
    baselineKgPerHour: baseline.toString(),
    baselineKg: baselineKgText(baseline, windowMs),
    actualKg: actualKg.toString(),
    rawNetGrams,
    netGrams,
    complete,
    totals: {
      electricity_import: total('electricity_import').toString(),
      electricity_export: total('electricity_export').toString(),
      renewable_generation: total('renewable_generation').toString(),
      natural_gas: total('natural_gas').toString(),
      co2_direct: total('co2_direct').toString(),
    },
    devices: results,
    lateKeys,
  };
}

/** B * windowMs / 3.6e6 as text, floored to 9 decimals (exact whenever it terminates within them). */
export function baselineKgText(baselineKgPerHour: Decimal, windowMs: number): string {
  const num = baselineKgPerHour.mul(Decimal.of(BigInt(windowMs)));
  return Decimal.of(floorScaledDiv(num, 9, MS_PER_HOUR), 9).toString();
}
