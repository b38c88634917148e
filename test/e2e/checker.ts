/**
 * An independent recomputation of settlements for the end-to-end tests, written from the SPEC's
 * words rather than from oracle/methodology.ts: per window, a register's increase is the value of the
 * device's reading with the greatest seq among those with ts < windowEnd (among the readings stored
 * when the window was settled, i.e. visible under the settlement's recorded mark) minus the value the
 * previous settlement ended on (for a device never settled: its lowest seq), never negative.
 * co2_direct readings count once, in the first settlement whose windowEnd is after their ts.
 * Coverage: a reading in the window and one before it, the last in the window within two reporting
 * intervals of its end (or one after it), no seq missing for a co2 device. Resets are not modelled:
 * the end-to-end fleet runs without reset faults.
 */
import { Decimal } from '../../domain/decimal.ts';
import type { Reading } from '../../domain/reading.ts';
import { isVisible, type VisibilityMark } from '../../store/types.ts';

export interface CheckDevice {
  /** What the settlement saw of the device (undefined: nothing stored yet). */
  mark?: VisibilityMark;
  reportingIntervalSeconds: number;
  /** Declared or seen to be a co2_direct device. */
  interval: boolean;
  /** In coverage (not decommissioned before the window). */
  inCoverage: boolean;
}

export interface CheckSettlement {
  id: string;
  windowStart: number;
  windowEnd: number;
  netGrams: string;
  complete: boolean;
  /** Per device of the settlement: what it saw and the device's coverage parameters. */
  devices: Map<string, CheckDevice>;
  baselineKgPerHour: string;
}

export interface Recomputed {
  id: string;
  netGrams: bigint;
  complete: boolean;
}

const REGISTERS = ['electricity_import', 'electricity_export', 'natural_gas', 'renewable_generation'] as const;

export function recompute(
  settlements: CheckSettlement[],
  readings: Reading[],
  factors: { grid: string; gas: string },
): Recomputed[] {
  const grid = Decimal.parse(factors.grid);
  const gas = Decimal.parse(factors.gas);
  const byDevice = new Map<string, Reading[]>();
  for (const r of readings) {
    const list = byDevice.get(r.deviceId) ?? [];
    list.push(r);
    byDevice.set(r.deviceId, list);
  }
  const cursor = new Map<string, { seq: number; value: Decimal }>(); // deviceId/metric -> reading the last settlement ended on
  const counted = new Set<string>(); // co2 readings already counted
  const out: Recomputed[] = [];
  for (const s of [...settlements].sort((a, b) => a.windowStart - b.windowStart)) {
    const totals: Record<string, Decimal> = { electricity_import: Decimal.ZERO, electricity_export: Decimal.ZERO, natural_gas: Decimal.ZERO, co2_direct: Decimal.ZERO };
    let complete = [...s.devices.values()].some((d) => d.inCoverage);
    for (const [deviceId, dev] of s.devices) {
      const visible = (byDevice.get(deviceId) ?? []).filter((r) => dev.mark !== undefined && isVisible(r, dev.mark)).sort((a, b) => a.seq - b.seq);
      const inWindow = visible.filter((r) => r.ts >= s.windowStart && r.ts < s.windowEnd);
      const before = visible.filter((r) => r.ts < s.windowStart);
      if (dev.inCoverage) {
        if (!inWindow.length || !before.length) complete = false;
        else {
          const last = inWindow[inWindow.length - 1];
          if (!visible.some((r) => r.ts >= s.windowEnd) && last.ts < s.windowEnd - 2 * dev.reportingIntervalSeconds * 1000) complete = false;
          const seqs = new Set(visible.map((r) => r.seq));
          if (dev.interval) for (let q = before[before.length - 1].seq + 1; q <= last.seq; q++) if (!seqs.has(q)) complete = false;
        }
      }
      for (const metric of REGISTERS) {
        const mine = visible.filter((r) => r.metric === metric);
        if (!mine.length) continue;
        const key = `${deviceId}/${metric}`;
        if (!cursor.has(key)) cursor.set(key, { seq: mine[0].seq, value: Decimal.parse(mine[0].value) });
        const due = mine.filter((r) => r.ts < s.windowEnd);
        if (!due.length) continue;
        const end = due[due.length - 1];
        const at = cursor.get(key)!;
        if (end.seq <= at.seq) continue;
        const endValue = Decimal.parse(end.value);
        const change = endValue.sub(at.value);
        if (metric in totals && change.cmp(Decimal.ZERO) > 0) totals[metric] = totals[metric].add(change);
        cursor.set(key, { seq: end.seq, value: endValue });
      }
      for (const r of visible) {
        if (r.metric !== 'co2_direct' || r.ts >= s.windowEnd) continue;
        const key = `${r.deviceId}/${r.seq}`;
        if (counted.has(key)) continue;
        counted.add(key);
        totals.co2_direct = totals.co2_direct.add(Decimal.parse(r.value));
      }
    }
    const actual = totals.electricity_import.mul(grid).add(totals.natural_gas.mul(gas)).add(totals.co2_direct).sub(totals.electricity_export.mul(grid));
    // net_g = floor((kg/h * windowMs / 3_600_000 - actual_kg) * 1000) = floor((kg/h * windowMs - actual_kg * 3_600_000) / 3600),
    // done on integers so a baseline that does not divide evenly is still exact.
    const n = Decimal.parse(s.baselineKgPerHour).mul(Decimal.of(BigInt(s.windowEnd - s.windowStart))).sub(actual.mul(Decimal.of(3_600_000n)));
    let net = floorDiv(n.mantissa, 3600n * 10n ** BigInt(n.scale));
    if (!complete && net > 0n) net = 0n;
    // No window earns more than its baseline grams: floor(B * W_ms / 3600) (no export allowance).
    const bound = Decimal.parse(s.baselineKgPerHour).mul(Decimal.of(BigInt(s.windowEnd - s.windowStart)));
    const boundGrams = floorDiv(bound.mantissa, 3600n * 10n ** BigInt(bound.scale));
    if (net > boundGrams) net = boundGrams;
    out.push({ id: s.id, netGrams: net, complete });
  }
  return out;
}

function floorDiv(a: bigint, d: bigint): bigint {
  const q = a / d;
  return a % d !== 0n && a < 0n !== d < 0n ? q - 1n : q;
}
