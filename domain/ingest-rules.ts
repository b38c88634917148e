/**
 * The stateful ingest rules of SPEC "MQTT interface", written once: a pure function of the incoming
 * (normalised) reading, the device's stored readings around it by seq (served by each store through
 * `DeviceReadings`) and the device's declared limits. The stores (store/sqlite.ts, store/influx.ts)
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
import { Decimal } from './decimal.ts';
import { METRICS, isMetric, type Metric, type RejectReason } from './reading.ts';

/** A stored reading as the rules see it (value canonical decimal text, normalised unit). */
export interface StoredReading {
  seq: number;
  ts: number;
  metric: string;
  value: string;
  unit: string;
  reset: boolean;
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
/** Plausibility tolerance: 20% above capacity, as 12/10. */
const TOLERANCE_NUM = 12n;
const TOLERANCE_DEN = 10n;
const MS_PER_HOUR = 3_600_000n;

const STORED: IngestOutcome = Object.freeze({ status: 'stored' });
const DUPLICATE: IngestOutcome = Object.freeze({ status: 'duplicate' });

function reject(reason: RejectReason, detail: string): IngestOutcome {
  return { status: 'rejected', reason, detail };
}

export function sameContent(a: StoredReading, b: StoredReading): boolean {
  return a.ts === b.ts && a.metric === b.metric && a.value === b.value && a.unit === b.unit && a.reset === b.reset;
}

/** The capacity the rules apply to a metric: the declared one, else the metric's default. */
export function capacityOf(metric: string, limits: IngestLimits | undefined): Decimal {
  if (limits?.capacity !== undefined) {
    try {
      return Decimal.parse(limits.capacity);
    } catch {
      // A stored capacity is validated at registration; anything else falls back to the default.
    }
  }
  return Decimal.parse(isMetric(metric) ? DEFAULT_CAPACITY[metric] : '0');
}

/**
 * Whether `amount` (in the metric's unit) is more than 1.2 x capacity (per hour) x `ms`: exactly,
 * amount * 3,600,000 * 10 > 12 * capacity * ms.
 */
export function exceedsCapacity(amount: Decimal, capacity: Decimal, ms: number): boolean {
  const lhs = amount.mul(Decimal.of(MS_PER_HOUR * TOLERANCE_DEN));
  const rhs = capacity.mul(Decimal.of(TOLERANCE_NUM * BigInt(Math.max(0, ms))));
  return lhs.cmp(rhs) > 0;
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

  if (!isMetric(r.metric)) return STORED; // validation refuses unknown metrics before they get here
  const kind = METRICS[r.metric].kind;
  // Neighbours of the same metric: the device's previous and next reading of this quantity.
  const lowerSame = lower === undefined ? undefined : lower.metric === r.metric ? lower : stored.below(r.seq, r.metric);
  const higherSame = higher === undefined ? undefined : higher.metric === r.metric ? higher : stored.above(r.seq, r.metric);
  const value = Decimal.parse(r.value);
  const capacity = capacityOf(r.metric, limits);
  const unit = METRICS[r.metric].unit;

  if (kind === 'register') {
    if (lowerSame && !r.reset && value.cmp(Decimal.parse(lowerSame.value)) < 0) {
      return reject('register_backwards', `${r.metric} ${r.value} is below ${lowerSame.value} of the stored lower seq ${lowerSame.seq} without reset`);
    }
    if (higherSame && !higherSame.reset && value.cmp(Decimal.parse(higherSame.value)) > 0) {
      return reject('register_backwards', `${r.metric} ${r.value} is above ${higherSame.value} of the stored higher seq ${higherSame.seq}, which is not a reset`);
    }
    if (lowerSame && !r.reset) {
      const increase = value.sub(Decimal.parse(lowerSame.value));
      if (exceedsCapacity(increase, capacity, r.ts - lowerSame.ts)) {
        return reject('implausible', `${r.metric} rose ${increase.toString()} ${unit} in ${r.ts - lowerSame.ts} ms since seq ${lowerSame.seq}: more than 1.2 x capacity ${capacity.toString()} ${unit}/h`);
      }
    }
    if (higherSame && !higherSame.reset) {
      const increase = Decimal.parse(higherSame.value).sub(value);
      if (exceedsCapacity(increase, capacity, higherSame.ts - r.ts)) {
        return reject('implausible', `the stored higher seq ${higherSame.seq} would rise ${increase.toString()} ${unit} in ${higherSame.ts - r.ts} ms over this reading: more than 1.2 x capacity ${capacity.toString()} ${unit}/h`);
      }
    }
    return STORED;
  }

  // Interval mass: emitted since the device's previous reading of the metric.
  if (value.isNegative()) return reject('invalid_value', `${r.metric} must not be negative`);
  const sinceMs = lowerSame ? r.ts - lowerSame.ts : (limits?.reportingIntervalSeconds ?? DEFAULT_INTERVAL_SECONDS) * 1000;
  if (exceedsCapacity(value, capacity, sinceMs)) {
    const since = lowerSame ? `in ${sinceMs} ms since seq ${lowerSame.seq}` : `as a first reading (bounded by the reporting interval, ${sinceMs} ms)`;
    return reject('implausible', `${r.metric} ${r.value} ${unit} ${since}: more than 1.2 x capacity ${capacity.toString()} ${unit}/h`);
  }
  if (higherSame && exceedsCapacity(Decimal.parse(higherSame.value), capacity, higherSame.ts - r.ts)) {
    return reject('implausible', `the stored higher seq ${higherSame.seq} (${higherSame.value} ${unit}) would span only ${higherSame.ts - r.ts} ms after this reading: more than 1.2 x capacity ${capacity.toString()} ${unit}/h`);
  }
  return STORED;
}

function iso(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? String(ms) : d.toISOString();
}
