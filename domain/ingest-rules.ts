/**
 * The stateful ingest rules of SPEC "MQTT interface", written once: a pure function of the incoming
 * (normalised) reading, the device's stored readings around it by seq (served by each store through
 * `DeviceReadings`) and the device's declared limits. The stores (store/sqlite/, store/influx/)
 * only serve the lookup and store what this function accepts.
 *
 * Rules, in this order:
 * 1. Same seq stored: same content -> duplicate; other content -> `duplicate_conflict`.
 * 2. ts never decreases along seq: ts before the stored lower neighbour's (any metric) or after the
 *    stored higher neighbour's -> `ts_out_of_order`.
 * 3. Registers never decrease along seq: a value below the lower neighbour of the same metric without
 *    `reset`, or above the higher neighbour of the same metric when that one is not a reset ->
 *    `register_backwards`.
 * 4. Plausibility: a register increase over its lower neighbour (unless the reading is a reset), or
 *    an interval mass (co2_direct), above 1.2 x capacity x the hours since the lower neighbour of the
 *    same metric -> `implausible`; likewise for the higher neighbour, whose interval the reading
 *    shortens. A first co2_direct reading (no lower neighbour) is bounded by the device's reporting
 *    interval. Exact decimals throughout.
 * Any arrival order is accepted when these hold; there is no "seq must increase" rule.
 */
import { CANONICAL_RE, Decimal, compareDecimalText } from './decimal.ts';
import { METRICS, isMetric, isRegisterMetric, type Metric, type RejectReason } from './reading.ts';

/** Re-exported for the stores, which import the ingest rules' helpers from here. */
export { CANONICAL_RE, compareDecimalText };

/** A stored reading as the rules see it (value canonical decimal text, normalised unit). */
export interface StoredReading {
  seq: number;
  ts: number;
  metric: string;
  value: string;
  unit: string;
  reset: boolean;
  /** The device's signature (base64), when the reading was signed: a redelivery must carry the same one to be a duplicate. */
  sig?: string;
}

/**
 * One device's stored readings (including earlier readings of the batch being checked), as each store
 * serves them. `metric` narrows a neighbour search to that metric.
 */
export interface DeviceReadings {
  /** The stored reading with this seq. */
  at(seq: number): StoredReading | undefined;
  /** The stored reading with the greatest seq below `seq` (of `metric` when given). */
  below(seq: number, metric?: string): StoredReading | undefined;
  /** The stored reading with the least seq above `seq` (of `metric` when given). */
  above(seq: number, metric?: string): StoredReading | undefined;
}

/** Declared capacity (decimal text; absent: the metric's default) and reporting interval. */
export interface IngestLimits {
  capacity?: string;
  reportingIntervalSeconds: number;
}

export type IngestOutcome =
  | { status: 'stored' }
  | { status: 'duplicate' }
  | { status: 'rejected'; reason: RejectReason; detail: string };

/** Default capacity per metric, in the metric's normalised unit per hour (kW, m3/h, kg/h). */
export const DEFAULT_CAPACITY: Record<Metric, string> = {
  electricity_import: '100000',
  electricity_export: '100000',
  renewable_generation: '100000',
  natural_gas: '100000',
  co2_direct: '1000000',
};
export const DEFAULT_INTERVAL_SECONDS = 60;
/**
 * Plausibility: amount > 1.2 x capacity x ms / 3,600,000  <=>  amount x 3,000,000 > capacity x ms
 * (1.2 / 3,600,000 = 1 / 3,000,000), compared exactly on scaled integers.
 */
const MS_PER_HOUR_OVER_TOLERANCE = 3_000_000n;
const POW10: bigint[] = Array.from({ length: 128 }, (_, i) => 10n ** BigInt(i));

/** An exact decimal as mantissa x 10^-scale (the ingest hot path: one BigInt per value, no normalising). */
interface Fixed {
  m: bigint;
  s: number;
}

function fixedOf(text: string): Fixed {
  if (CANONICAL_RE.test(text)) {
    const dot = text.indexOf('.');
    return dot < 0 ? { m: BigInt(text), s: 0 } : { m: BigInt(text.slice(0, dot) + text.slice(dot + 1)), s: text.length - dot - 1 };
  }
  const d = Decimal.parse(text);
  return { m: d.mantissa, s: d.scale };
}

function pow10(k: number): bigint {
  return k < POW10.length ? POW10[k] : 10n ** BigInt(k);
}

/** a - b, exactly. */
function subFixed(a: Fixed, b: Fixed): Fixed {
  if (a.s === b.s) return { m: a.m - b.m, s: a.s };
  return a.s > b.s ? { m: a.m - b.m * pow10(a.s - b.s), s: a.s } : { m: a.m * pow10(b.s - a.s) - b.m, s: b.s };
}

function fixedText(f: Fixed): string {
  return Decimal.of(f.m, f.s).toString();
}

const STORED: IngestOutcome = Object.freeze({ status: 'stored' });
const DUPLICATE: IngestOutcome = Object.freeze({ status: 'duplicate' });

function reject(reason: RejectReason, detail: string): IngestOutcome {
  return { status: 'rejected', reason, detail };
}

export function sameContent(a: StoredReading, b: StoredReading): boolean {
  return a.ts === b.ts && a.metric === b.metric && a.value === b.value && a.unit === b.unit && a.reset === b.reset && a.sig === b.sig;
}

const DEFAULT_CAPACITY_FIXED = Object.fromEntries(Object.entries(DEFAULT_CAPACITY).map(([m, c]) => [m, fixedOf(c)])) as Record<Metric, Fixed>;

/** The capacity the rules apply to a metric (decimal text): the declared one, else the metric's default. */
export function capacityOf(metric: string, limits: IngestLimits | undefined): string {
  if (limits?.capacity !== undefined) {
    try {
      fixedOf(limits.capacity);
      return limits.capacity;
    } catch {
      // A stored capacity is validated at registration; anything else falls back to the default.
    }
  }
  return isMetric(metric) ? DEFAULT_CAPACITY[metric] : '0';
}

function capacityFixed(metric: string, limits: IngestLimits | undefined): Fixed {
  if (limits?.capacity === undefined && isMetric(metric)) return DEFAULT_CAPACITY_FIXED[metric];
  return fixedOf(capacityOf(metric, limits));
}

/**
 * Whether `amount` (in the metric's unit) is more than 1.2 x capacity (per hour) x `ms`, exactly:
 * amount x 3,000,000 > capacity x ms, on integers scaled to a common scale.
 */
function exceeds(amount: Fixed, capacity: Fixed, ms: number): boolean {
  const lhs = amount.m * MS_PER_HOUR_OVER_TOLERANCE * pow10(capacity.s);
  const rhs = capacity.m * BigInt(Math.max(0, ms)) * pow10(amount.s);
  return lhs > rhs;
}

/** `exceeds` on decimal texts (tests, other callers). */
export function exceedsCapacity(amount: string, capacity: string, ms: number): boolean {
  return exceeds(fixedOf(amount), fixedOf(capacity), ms);
}

/**
 * Decides one reading (its value canonical text) against the device's stored readings. Pure: reads
 * only through `stored`, writes nothing; the caller stores the reading when the outcome is 'stored'.
 */
export function checkReading(r: StoredReading, stored: DeviceReadings, limits?: IngestLimits): IngestOutcome {
  const same = stored.at(r.seq);
  if (same) {
    return sameContent(same, r) ? DUPLICATE : reject('duplicate_conflict', `seq ${r.seq} already stored with different content`);
  }

  const lower = stored.below(r.seq);
  if (lower && r.ts < lower.ts) {
    return reject('ts_out_of_order', `ts ${iso(r.ts)} is before ${iso(lower.ts)} of the stored lower seq ${lower.seq}`);
  }
  const higher = stored.above(r.seq);
  if (higher && r.ts > higher.ts) {
    return reject('ts_out_of_order', `ts ${iso(r.ts)} is after ${iso(higher.ts)} of the stored higher seq ${higher.seq}`);
  }

  // Validation refuses unknown metrics before they get here; a caller that skipped it gets the same answer.
  if (!isMetric(r.metric)) return reject('unknown_metric', `unknown metric ${String(r.metric).slice(0, 64)}`);
  // Neighbours of the same metric: the device's previous and next reading of this quantity.
  const lowerSame = lower === undefined ? undefined : lower.metric === r.metric ? lower : stored.below(r.seq, r.metric);
  const higherSame = higher === undefined ? undefined : higher.metric === r.metric ? higher : stored.above(r.seq, r.metric);
  const capacity = capacityFixed(r.metric, limits);
  const unit = METRICS[r.metric].unit;

  if (isRegisterMetric(r.metric)) {
    if (lowerSame && !r.reset && compareDecimalText(r.value, lowerSame.value) < 0) {
      return reject('register_backwards', `${r.metric} ${r.value} is below ${lowerSame.value} of the stored lower seq ${lowerSame.seq} without reset`);
    }
    if (higherSame && !higherSame.reset && compareDecimalText(r.value, higherSame.value) > 0) {
      return reject('register_backwards', `${r.metric} ${r.value} is above ${higherSame.value} of the stored higher seq ${higherSame.seq}, which is not a reset`);
    }
    const value = lowerSame || higherSame ? fixedOf(r.value) : undefined;
    if (lowerSame && !r.reset) {
      const increase = subFixed(value as Fixed, fixedOf(lowerSame.value));
      if (exceeds(increase, capacity, r.ts - lowerSame.ts)) {
        return reject('implausible', `${r.metric} rose ${fixedText(increase)} ${unit} in ${r.ts - lowerSame.ts} ms since seq ${lowerSame.seq}: more than 1.2 x capacity ${fixedText(capacity)} ${unit}/h`);
      }
    }
    if (higherSame && !higherSame.reset) {
      const increase = subFixed(fixedOf(higherSame.value), value as Fixed);
      if (exceeds(increase, capacity, higherSame.ts - r.ts)) {
        return reject('implausible', `the stored higher seq ${higherSame.seq} would rise ${fixedText(increase)} ${unit} in ${higherSame.ts - r.ts} ms over this reading: more than 1.2 x capacity ${fixedText(capacity)} ${unit}/h`);
      }
    }
    return STORED;
  }

  // Interval mass: emitted since the device's previous reading of the metric.
  const value = fixedOf(r.value);
  if (value.m < 0n) return reject('invalid_value', `${r.metric} must not be negative`);
  const sinceMs = lowerSame ? r.ts - lowerSame.ts : (limits?.reportingIntervalSeconds ?? DEFAULT_INTERVAL_SECONDS) * 1000;
  if (exceeds(value, capacity, sinceMs)) {
    const since = lowerSame ? `in ${sinceMs} ms since seq ${lowerSame.seq}` : `as a first reading (bounded by the reporting interval, ${sinceMs} ms)`;
    return reject('implausible', `${r.metric} ${r.value} ${unit} ${since}: more than 1.2 x capacity ${fixedText(capacity)} ${unit}/h`);
  }
  if (higherSame && exceeds(fixedOf(higherSame.value), capacity, higherSame.ts - r.ts)) {
    return reject('implausible', `the stored higher seq ${higherSame.seq} (${higherSame.value} ${unit}) would span only ${higherSame.ts - r.ts} ms after this reading: more than 1.2 x capacity ${fixedText(capacity)} ${unit}/h`);
  }
  return STORED;
}

function iso(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? String(ms) : d.toISOString();
}
