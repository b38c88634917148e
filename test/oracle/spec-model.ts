/**
 * An independent model of SPEC "Methodology", written from its words for the property test, not from
 * oracle/methodology.ts and without the store's visibility marks: a settlement sees exactly the
 * readings that had arrived when it ran, and the model remembers which readings earlier settlements
 * counted.
 *
 * - Registers: per device and metric a cursor, the reading the previous settlement ended on (never
 *   settled: the visible reading with the lowest seq). R_end is the visible reading with the greatest
 *   seq and ts < windowEnd. From the cursor to R_end the readings are walked in seq order; a reset
 *   starts a new segment (adds nothing); within a segment each step adds its change, never a negative
 *   one. The cursor moves to R_end.
 * - co2_direct: counted once, in the first settlement whose windowEnd is after its ts (and that sees it).
 * - A reading is late in the settlement that first consumes it when its ts is before that window.
 * - Coverage: every device (not decommissioned before the window) has a visible reading in the window
 *   and one before it; its last in the window is no earlier than windowEnd - 2 reporting intervals
 *   unless a visible reading at or after windowEnd exists; a co2 device misses no seq between its last
 *   reading before the window and its last in it. At least one device in coverage.
 * - net_g = floor((baseline_kg - actual_kg) * 1000), capped at 0 when incomplete and at the
 *   baseline grams of the window always (exports never earn above the baseline).
 */
import { Decimal } from '../../domain/decimal.ts';
import type { Metric } from '../../domain/reading.ts';

export interface ModelReading {
  deviceId: string;
  seq: number;
  ts: number;
  metric: Metric;
  /** Normalised unit, decimal text. */
  value: string;
  reset: boolean;
}

export interface ModelDevice {
  deviceId: string;
  /** A co2_direct (CEMS) device: the seq-gap rule applies. */
  interval: boolean;
  reportingIntervalSeconds: number;
  /** Out of coverage for windows starting at or after this time. */
  decommissionedAt?: number;
}

export interface ModelSettlement {
  windowStart: number;
  windowEnd: number;
  complete: boolean;
  netGrams: bigint;
  totals: Record<Metric, string>;
  lateKeys: string[];
}

const METRICS: Metric[] = ['electricity_import', 'electricity_export', 'renewable_generation', 'natural_gas', 'co2_direct'];

export class SpecModel {
  private readonly counted = new Set<string>(); // `${deviceId}:${seq}` consumed by an earlier settlement
  private readonly cursor = new Map<string, ModelReading>(); // `${deviceId}/${metric}` -> reading it ended on

  constructor(
    private readonly devices: ModelDevice[],
    private readonly factors: { grid: string; gas: string },
  ) {}

  /** Settles [start, end) seeing `visible` (every reading stored so far, any order). */
  settle(start: number, end: number, baselineKgPerHour: string, visible: ModelReading[]): ModelSettlement {
    const totals = Object.fromEntries(METRICS.map((m) => [m, Decimal.ZERO])) as Record<Metric, Decimal>;
    const lateKeys: string[] = [];
    let complete = false;
    let incomplete = false;
    for (const d of this.devices) {
      const mine = visible.filter((r) => r.deviceId === d.deviceId).sort((a, b) => a.seq - b.seq);
      // Counting.
      for (const metric of METRICS) {
        const ofMetric = mine.filter((r) => r.metric === metric);
        if (metric === 'co2_direct') {
          for (const r of ofMetric) if (r.ts < end && !this.counted.has(key(r))) totals.co2_direct = totals.co2_direct.add(Decimal.parse(r.value));
          continue;
        }
        const due = ofMetric.filter((r) => r.ts < end);
        if (due.length === 0) continue;
        const ck = `${d.deviceId}/${metric}`;
        let at = this.cursor.get(ck) ?? due[0];
        const rEnd = due[due.length - 1];
        if (rEnd.seq <= at.seq) continue;
        for (const r of due.filter((x) => x.seq > at.seq)) {
          if (!r.reset) {
            const change = Decimal.parse(r.value).sub(Decimal.parse(at.value));
            if (change.cmp(Decimal.ZERO) > 0) totals[metric] = totals[metric].add(change);
          }
          at = r;
        }
        this.cursor.set(ck, rEnd);
      }
      for (const r of mine) {
        if (r.ts < end && !this.counted.has(key(r))) {
          this.counted.add(key(r));
          if (r.ts < start) lateKeys.push(key(r));
        }
      }
      // Coverage.
      if (d.decommissionedAt !== undefined && start >= d.decommissionedAt) continue;
      complete = true;
      const before = mine.filter((r) => r.ts < start);
      const inWindow = mine.filter((r) => r.ts >= start && r.ts < end);
      if (before.length === 0 || inWindow.length === 0) {
        incomplete = true;
        continue;
      }
      const last = inWindow[inWindow.length - 1];
      const afterEnd = mine.some((r) => r.ts >= end);
      if (!afterEnd && last.ts < end - 2 * d.reportingIntervalSeconds * 1000) incomplete = true;
      if (d.interval) {
        const from = before[before.length - 1].seq;
        const seqs = new Set(mine.map((r) => r.seq));
        for (let s = from + 1; s <= last.seq; s++) if (!seqs.has(s)) incomplete = true;
      }
    }
    complete = complete && !incomplete;
    const grid = Decimal.parse(this.factors.grid);
    const gas = Decimal.parse(this.factors.gas);
    const actual = totals.electricity_import.mul(grid).add(totals.natural_gas.mul(gas)).add(totals.co2_direct).sub(totals.electricity_export.mul(grid));
    // (B * W_ms / 3,600,000 - actual) * 1000 = (B * W_ms - actual * 3,600,000) / 3600
    const n = Decimal.parse(baselineKgPerHour).mul(Decimal.of(BigInt(end - start))).sub(actual.mul(Decimal.of(3_600_000n)));
    let net = floorDiv(n.mantissa, 3600n * 10n ** BigInt(n.scale));
    if (!complete && net > 0n) net = 0n;
    // No window earns more than its baseline grams: floor(B * W_ms / 3600) (no export allowance).
    const bound = Decimal.parse(baselineKgPerHour).mul(Decimal.of(BigInt(end - start)));
    const boundGrams = floorDiv(bound.mantissa, 3600n * 10n ** BigInt(bound.scale));
    if (net > boundGrams) net = boundGrams;
    return {
      windowStart: start,
      windowEnd: end,
      complete,
      netGrams: net,
      totals: Object.fromEntries(METRICS.map((m) => [m, totals[m].toString()])) as Record<Metric, string>,
      lateKeys: lateKeys.sort(),
    };
  }
}

const key = (r: ModelReading) => `${r.deviceId}:${r.seq}`;

function floorDiv(a: bigint, d: bigint): bigint {
  const q = a / d;
  return a % d !== 0n && a < 0n !== d < 0n ? q - 1n : q;
}
