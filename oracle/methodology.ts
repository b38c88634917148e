/**
 * The methodology (SPEC "Methodology", docs/METHODOLOGY.md): one facility x one window -> actual and
 * baseline emissions, net grams, coverage, and each device's new register cursors. Pure: the oracle
 * selects the readings and coverage facts (ReadingStore.consume/coverage under the visibility marks
 * it records) and passes them in.
 * Exact arithmetic only (Decimal on BigInt); binary floating point never decides a gram.
 */
import { Decimal } from '../domain/decimal.ts';
import { REGISTER_METRICS, isMetric, isRegisterMetric, readingKeyText, type Metric, type Reading, type RegisterMetric } from '../domain/reading.ts';
import { checkChain, readingLine, type ChainBreak, type ChainReading } from '../domain/signature.ts';
import type { Window } from '../domain/window.ts';
import type { CorrectionRef, DeviceCoverage, RecordedVoid, VisibilityMark } from '../store/types.ts';
import type { AppliedFactors } from './factors.ts';

/**
 * mrv-signed-3: evidence reading leaves carry the device signature, each signed device's hash chain
 * is checked over the readings used (a `chain` leaf), and a signed interval device with a broken
 * chain makes its window incomplete. Settlements recorded under an earlier supported version are
 * recomputed by that version's rules and leaf encoding (SUPPORTED_VERSIONS).
 */
export const METHODOLOGY_VERSION = 'mrv-signed-3';
/** The version before signatures entered the evidence (8-field leaves, no chain rule). */
export const METHODOLOGY_V2 = 'mrv-cursor-2';
/** Versions this code recomputes (verify, proof, audit of older settlements). */
export const SUPPORTED_VERSIONS: readonly string[] = [METHODOLOGY_V2, METHODOLOGY_VERSION];

export { REGISTER_METRICS, type RegisterMetric } from '../domain/reading.ts';

/** Where a device's register stood: the reading the previous settlement ended on. */
export interface RegisterCursor {
  metric: RegisterMetric;
  seq: number;
  ts: number;
  /** Canonical decimal text in the metric's normalised unit. */
  value: string;
}

/** What the device's previous settlement consumed: what it saw (its mark) and its window end. */
export interface PrevConsumed {
  mark: VisibilityMark;
  before: number;
}

/** A regulator's decommissioning of a device: out of coverage for windows starting at or after `at`. */
export interface Decommissioning {
  at: number;
  reason: string;
}

/** Why a device makes a window incomplete ('ok': it does not; 'out_of_coverage': decommissioned). */
export type CoverageStatus = 'ok' | 'no_reading_in_window' | 'no_reading_before' | 'silent' | 'seq_gap' | 'chain_broken' | 'voided' | 'out_of_coverage';

/** Coverage facts of a device that has no visible reading (or no mark yet). */
export const NO_COVERAGE: DeviceCoverage = Object.freeze({ after: false, between: 0, interval: false }) as DeviceCoverage;

export interface DeviceWindowInput {
  deviceId: string;
  /** What this settlement sees of the device (undefined: no readings stored yet). */
  mark?: VisibilityMark;
  /** The device's previous settlement (undefined: never settled), i.e. what `readings` excludes. */
  prev?: PrevConsumed;
  /** Cursors the previous settlement ended on, at most one per register metric. */
  startCursors: RegisterCursor[];
  /** The consumed set (visible under mark, ts < window end, minus `prev`), in any order. */
  readings: Reading[];
  /** What the visible readings say about this window (ReadingStore.coverage under `mark`). */
  coverage: DeviceCoverage;
  /** Declared reporting interval (seconds). */
  reportingIntervalSeconds: number;
  /** Declared an interval (co2_direct) device by its registration. */
  intervalDevice?: boolean;
  /** Set once a regulator decommissioned the device. */
  decommissioned?: Decommissioning;
  /**
   * Signed readings the device's hash chain needs that this settlement does not count: each signed
   * used reading's predecessor by seq among the readings visible under `mark` (audit/bundle.ts
   * `chainContext`). Only read from mrv-signed-3 on.
   */
  chainContext?: Reading[];
  /**
   * Readings a regulator voided that this settlement would otherwise have consumed (oracle/voids.ts):
   * never counted. A voided register reading is skipped (the step over it is counted from the last
   * reading before it to the first after it), except a voided reset, which moves the cursor to 0 at
   * its seq (the restart value is not trusted; 0 is the least it can be, so nothing is dropped); a
   * voided interval reading (co2_direct) is unmeasured emissions: the device is 'voided' (incomplete).
   */
  excluded?: Reading[];
}

/** A signed device's hash chain over the readings a settlement used (mrv-signed-3). */
export interface DeviceChain {
  /** Used readings that carry a signature. */
  signed: number;
  unbroken: boolean;
  breaks: ChainBreak[];
  /** Used seqs with prev '' (a chain start: first reading after a key was set). */
  starts: number[];
  /** Seqs of the context readings (predecessors not used here) the check relied on. */
  context: number[];
}

export interface WindowInput {
  facilityId: string;
  window: Window;
  /**
   * Every device of the facility created before the window end, whatever its status: suspended
   * devices stay in coverage; decommissioned ones leave coverage but their readings are still counted.
   */
  devices: DeviceWindowInput[];
  factors: AppliedFactors;
  /** Baseline in force at the window start, kg CO2e per hour (decimal text). */
  baselineKgPerHour: string;
  /** The methodology version to apply (a SUPPORTED_VERSIONS entry; default METHODOLOGY_VERSION). */
  methodologyVersion?: string;
  /** Voids that excluded readings (evidence `void` leaves). */
  voids?: RecordedVoid[];
  /** Set when this computation is a correction of a settled window (evidence `correction` leaf). */
  correction?: CorrectionRef;
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
  mark?: VisibilityMark;
  prev?: PrevConsumed;
  startCursors: RegisterCursor[];
  endCursors: RegisterCursor[];
  /** Consumed readings in seq order with their flags. */
  consumed: ConsumedReading[];
  coverage: DeviceCoverage;
  reportingIntervalSeconds: number;
  /** Whether the seq-gap rule applied (declared, or a co2_direct reading seen). */
  intervalDevice: boolean;
  /** False for a device decommissioned at or before the window start. */
  inCoverage: boolean;
  status: CoverageStatus;
  decommissioned?: Decommissioning;
  /** mrv-signed-3, a device with a signed used reading: its hash chain over them. */
  chain?: DeviceChain;
  /** What this device's consumed readings add up to per metric (the facility totals are their sum). */
  totals: MetricTotals;
  /** Voided readings left out (seq order), each with its late flag. */
  voided?: ConsumedReading[];
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
  /** rawNetGrams, capped at 0 when the window is incomplete, and at `netBoundGrams` always. */
  netGrams: bigint;
  /**
   * The most a window may earn: floor(baseline grams of the window). A net above it can only come from
   * exports (actual below zero); the contract refuses such a net, so the oracle caps it and says so.
   */
  netBoundGrams: bigint;
  /** Whether the net was cut down to netBoundGrams. */
  capped: boolean;
  complete: boolean;
  totals: MetricTotals;
  devices: DeviceWindowResult[];
  /** `${deviceId}:${seq}` of every consumed reading flagged late. */
  lateKeys: string[];
  /** Devices out of coverage in this window because they were decommissioned before it. */
  decommissioned: ({ deviceId: string } & Decommissioning)[];
  voids?: RecordedVoid[];
  correction?: CorrectionRef;
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

/**
 * The coverage rule (SPEC "Coverage") for one device in coverage: a visible reading before the window
 * and one in it; the last in the window no earlier than two reporting intervals before its end unless
 * a reading at or after the end is visible; for an interval device, no seq missing between them.
 */
export function coverageStatus(c: DeviceCoverage, window: Window, reportingIntervalSeconds: number, intervalDevice: boolean): CoverageStatus {
  if (!c.lastIn) return 'no_reading_in_window';
  if (!c.before) return 'no_reading_before';
  if (!c.after && c.lastIn.ts < window.end - 2 * reportingIntervalSeconds * 1000) return 'silent';
  if (intervalDevice && c.between !== c.lastIn.seq - c.before.seq) return 'seq_gap';
  return 'ok';
}

/** Walks one device's consumed readings; returns its increases per metric and its end cursors. */
function walkDevice(input: DeviceWindowInput, window: Window, version: string): { increases: Map<Metric, Decimal>; result: DeviceWindowResult } {
  const increases = new Map<Metric, Decimal>();
  const add = (m: Metric, d: Decimal) => increases.set(m, (increases.get(m) ?? Decimal.ZERO).add(d));
  const cursors = new Map<RegisterMetric, RegisterCursor>();
  for (const c of input.startCursors) cursors.set(c.metric, c);
  const sorted = [...input.readings].sort((a, b) => a.seq - b.seq);
  const consumed: ConsumedReading[] = [];
  const voided: ConsumedReading[] = [];
  let sawInterval = false;
  let voidedInterval = false;
  const excluded = new Set((input.excluded ?? []).map((r) => r.seq));
  const walk = [...sorted, ...(input.excluded ?? [])].sort((a, b) => a.seq - b.seq);
  for (const r of walk) {
    if (excluded.has(r.seq)) {
      if (r.deviceId !== input.deviceId) throw new TypeError(`reading ${r.deviceId}:${r.seq} passed for device ${input.deviceId}`);
      voided.push({ reading: r, late: r.ts < window.start, covered: false });
      if (isRegisterMetric(r.metric)) {
        const cur = cursors.get(r.metric);
        // A voided reset: the register restarted at an untrusted value; count the next step from 0.
        if (r.reset && (!cur || r.seq > cur.seq)) cursors.set(r.metric, { metric: r.metric, seq: r.seq, ts: r.ts, value: '0' });
      } else if (isMetric(r.metric)) {
        voidedInterval = true;
      }
      continue;
    }
    if (r.deviceId !== input.deviceId) throw new TypeError(`reading ${r.deviceId}:${r.seq} passed for device ${input.deviceId}`);
    if (r.ts >= window.end) throw new TypeError(`reading ${r.deviceId}:${r.seq} is not due in window ending ${window.end}`);
    const late = r.ts < window.start;
    let covered = false;
    if (isRegisterMetric(r.metric)) {
      const cur = cursors.get(r.metric);
      if (cur && r.seq <= cur.seq) {
        // The register is cumulative in seq order: a cursor at a higher seq already includes it.
        covered = true;
      } else {
        // A reset starts a new segment: the gap across it is unobserved and adds nothing. A device's
        // first reading of a metric (no cursor: its visible reading with the lowest seq) is its
        // starting point and adds nothing either. A negative change is never counted (the ingest
        // rules refuse one; this holds even for a store that let one through).
        if (cur && !r.reset) {
          const step = Decimal.parse(r.value).sub(Decimal.parse(cur.value));
          if (step.cmp(Decimal.ZERO) > 0) add(r.metric, step);
        }
        cursors.set(r.metric, { metric: r.metric, seq: r.seq, ts: r.ts, value: Decimal.parse(r.value).toString() });
      }
    } else if (isMetric(r.metric)) {
      // An interval metric: each reading is the quantity itself.
      sawInterval = true;
      add(r.metric, Decimal.parse(r.value));
    }
    consumed.push({ reading: r, late, covered });
  }
  const endCursors = REGISTER_METRICS.filter((m) => cursors.has(m)).map((m) => cursors.get(m) as RegisterCursor);
  const startCursors = REGISTER_METRICS.filter((m) => input.startCursors.some((c) => c.metric === m)).map(
    (m) => input.startCursors.find((c) => c.metric === m) as RegisterCursor,
  );
  const coverage = input.coverage;
  const intervalDevice = input.intervalDevice === true || coverage.interval || sawInterval;
  const inCoverage = !(input.decommissioned && window.start >= input.decommissioned.at);
  const interval = input.reportingIntervalSeconds;
  if (!Number.isSafeInteger(interval) || interval <= 0) throw new TypeError(`device ${input.deviceId}: invalid reporting interval ${interval}`);
  const result: DeviceWindowResult = {
    deviceId: input.deviceId,
    startCursors,
    endCursors,
    consumed,
    coverage: copyCoverage(coverage),
    reportingIntervalSeconds: interval,
    intervalDevice,
    inCoverage,
    status: inCoverage ? coverageStatus(coverage, window, interval, intervalDevice) : 'out_of_coverage',
    totals: metricTotals((m) => increases.get(m) ?? Decimal.ZERO),
  };
  if (version !== METHODOLOGY_V2) {
    const chain = deviceChain(sorted, input.chainContext ?? []);
    if (chain) {
      result.chain = chain;
      // An omitted interval reading is unmeasured emissions: a broken chain leaves the window incomplete.
      if (!chain.unbroken && intervalDevice && result.status === 'ok') result.status = 'chain_broken';
    }
  }
  if (voided.length) {
    result.voided = voided;
    // A voided interval reading is emissions nobody measured: missing data never earns.
    if (voidedInterval && result.status === 'ok') result.status = 'voided';
  }
  if (input.mark !== undefined) result.mark = { maxSeq: input.mark.maxSeq, late: input.mark.late };
  if (input.prev !== undefined) result.prev = { mark: { maxSeq: input.prev.mark.maxSeq, late: input.prev.mark.late }, before: input.prev.before };
  if (input.decommissioned !== undefined) result.decommissioned = { at: input.decommissioned.at, reason: input.decommissioned.reason };
  return { increases, result };
}

/** The hash chain of a device's signed used readings with their context; undefined when none is signed. */
export function deviceChain(used: readonly Reading[], context: readonly Reading[]): DeviceChain | undefined {
  const link = (r: Reading): ChainReading | undefined => {
    const line = readingLine(r);
    return line === undefined ? undefined : { seq: r.seq, line, prev: r.prev ?? '' };
  };
  const signed = used.map(link).filter((c): c is ChainReading => c !== undefined);
  if (signed.length === 0) return undefined;
  const usedSeqs = new Set(used.map((r) => r.seq));
  const ctx = context.filter((r) => !usedSeqs.has(r.seq)).map(link).filter((c): c is ChainReading => c !== undefined);
  const check = checkChain(signed, ctx);
  return { signed: signed.length, unbroken: check.unbroken, breaks: check.breaks, starts: check.starts, context: ctx.map((c) => c.seq).sort((a, b) => a - b) };
}

/** The coverage facts with only the documented fields (a store may return more). */
function copyCoverage(c: DeviceCoverage): DeviceCoverage {
  const out: DeviceCoverage = { after: c.after, between: c.between, interval: c.interval };
  if (c.before) out.before = { seq: c.before.seq, ts: c.before.ts };
  if (c.lastIn) out.lastIn = { seq: c.lastIn.seq, ts: c.lastIn.ts };
  return out;
}

/** Settles one facility x one window. Devices are processed in deviceId order. */
export function settleWindow(input: WindowInput): WindowResult {
  const { window } = input;
  const version = input.methodologyVersion ?? METHODOLOGY_VERSION;
  if (!SUPPORTED_VERSIONS.includes(version)) throw new TypeError(`methodology ${version} is not one this code implements (${SUPPORTED_VERSIONS.join(', ')})`);
  const windowMs = window.end - window.start;
  if (!Number.isSafeInteger(windowMs) || windowMs <= 0) throw new TypeError(`invalid window ${window.start}..${window.end}`);
  const devices = [...input.devices].sort((a, b) => (a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : 0));
  const ids = new Set<string>();
  const sums = new Map<Metric, Decimal>();
  const results: DeviceWindowResult[] = [];
  const lateKeys: string[] = [];
  const decommissioned: WindowResult['decommissioned'] = [];
  for (const d of devices) {
    if (ids.has(d.deviceId)) throw new TypeError(`device ${d.deviceId} passed twice`);
    ids.add(d.deviceId);
    const { increases, result } = walkDevice(d, window, version);
    for (const [m, v] of increases) sums.set(m, (sums.get(m) ?? Decimal.ZERO).add(v));
    for (const c of result.consumed) if (c.late) lateKeys.push(readingKeyText(c.reading));
    if (!result.inCoverage && result.decommissioned) decommissioned.push({ deviceId: d.deviceId, ...result.decommissioned });
    results.push(result);
  }
  const total = (m: Metric) => sums.get(m) ?? Decimal.ZERO;
  const totals = metricTotals(total);
  const actualKg = sourcesOf(total, input.factors).actualKg;
  // baseline_kg = B * windowMs / 3,600,000; net_g = floor((baseline_kg - actual_kg) * 1000)
  //   = floor((B * windowMs - actual_kg * 3,600,000) * 1000 / 3,600,000), computed exactly.
  const baseline = Decimal.parse(input.baselineKgPerHour);
  const windowMsD = Decimal.of(BigInt(windowMs));
  const scaledDiff = baseline.mul(windowMsD).sub(actualKg.mul(Decimal.of(MS_PER_HOUR)));
  const rawNetGrams = floorScaledDiv(scaledDiff, 3, MS_PER_HOUR);
  // Complete: at least one device in coverage, and every device in coverage satisfies the rule.
  const inCoverage = results.filter((r) => r.inCoverage);
  const complete = inCoverage.length > 0 && inCoverage.every((r) => r.status === 'ok');
  // No window earns more than its baseline (an export allowance would raise this bound; none is set).
  const netBoundGrams = floorScaledDiv(baseline.mul(windowMsD), 3, MS_PER_HOUR);
  const covered = complete || rawNetGrams < 0n ? rawNetGrams : 0n;
  const capped = covered > netBoundGrams;
  const netGrams = capped ? netBoundGrams : covered;
  return {
    facilityId: input.facilityId,
    window: { start: window.start, end: window.end },
    methodologyVersion: version,
    factors: input.factors,
    baselineKgPerHour: baseline.toString(),
    baselineKg: baselineKgText(baseline, windowMs),
    actualKg: actualKg.toString(),
    rawNetGrams,
    netGrams,
    netBoundGrams,
    capped,
    complete,
    totals,
    devices: results,
    lateKeys,
    decommissioned,
    ...(input.voids?.length ? { voids: input.voids } : {}),
    ...(input.correction ? { correction: input.correction } : {}),
  };
}

/** The per-metric totals as canonical decimal text. */
function metricTotals(total: (m: Metric) => Decimal): MetricTotals {
  return {
    electricity_import: total('electricity_import').toString(),
    electricity_export: total('electricity_export').toString(),
    renewable_generation: total('renewable_generation').toString(),
    natural_gas: total('natural_gas').toString(),
    co2_direct: total('co2_direct').toString(),
  };
}

/** A window's emissions by source, kg CO2e, exact; `actualKg` is the methodology's actual_kg. */
export interface EmissionsBySource {
  /** electricity_import x EF_grid */
  gridImportKg: Decimal;
  /** natural_gas x EF_gas */
  gasKg: Decimal;
  /** co2_direct as measured */
  directKg: Decimal;
  /** electricity_export x EF_grid: subtracted (a credit for what the facility exported) */
  exportCreditKg: Decimal;
  /** gridImportKg + gasKg + directKg - exportCreditKg */
  actualKg: Decimal;
}

/**
 * actual_kg = import*EF_grid + gas*EF_gas + co2_direct_kg - export*EF_grid, term by term (renewable
 * generation is reported only). The one place the formula is written: settleWindow and the gateway's
 * per-window figures both call it.
 */
export function emissionsBySource(totals: MetricTotals, factors: Pick<AppliedFactors, 'gridKgPerKwh' | 'gasKgPerM3'>): EmissionsBySource {
  return sourcesOf((m) => Decimal.parse(totals[m]), factors);
}

/** emissionsBySource over exact sums (settleWindow's, never re-parsed from text). */
function sourcesOf(total: (m: Metric) => Decimal, factors: Pick<AppliedFactors, 'gridKgPerKwh' | 'gasKgPerM3'>): EmissionsBySource {
  const grid = Decimal.parse(factors.gridKgPerKwh);
  const gas = Decimal.parse(factors.gasKgPerM3);
  const gridImportKg = total('electricity_import').mul(grid);
  const gasKg = total('natural_gas').mul(gas);
  const directKg = total('co2_direct');
  const exportCreditKg = total('electricity_export').mul(grid);
  return { gridImportKg, gasKg, directKg, exportCreditKg, actualKg: gridImportKg.add(gasKg).add(directKg).sub(exportCreditKg) };
}

/** B * windowMs / 3.6e6 as text, floored to 9 decimals (exact whenever it terminates within them). */
export function baselineKgText(baselineKgPerHour: Decimal, windowMs: number): string {
  const num = baselineKgPerHour.mul(Decimal.of(BigInt(windowMs)));
  return Decimal.of(floorScaledDiv(num, 9, MS_PER_HOUR), 9).toString();
}
