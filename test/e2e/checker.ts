/**
 * An independent recomputation of settlements for the end-to-end tests, written from the SPEC's
 * words rather than from oracle/methodology.ts: per window, a register's increase is the value of the
 * device's reading with the greatest ts < windowEnd (among the readings stored when the window was
 * settled, i.e. seq <= the settlement's recorded high-water mark) minus the value the previous
 * settlement ended on (for a device never settled: its first reading). co2_direct readings count
 * once, in the first settlement whose windowEnd is after their ts. Resets are not modelled: the
 * end-to-end fleet runs without reset, late and skew faults.
 */
import { Decimal } from '../../domain/decimal.ts';
import type { Reading } from '../../domain/reading.ts';

export interface CheckSettlement {
  id: string;
  windowStart: number;
  windowEnd: number;
  netGrams: string;
  complete: boolean;
  /** Per device: the highest seq stored when the window was settled (undefined: none yet). */
  highWater: Map<string, number | undefined>;
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
  const cursor = new Map<string, Decimal>(); // deviceId/metric -> value the last settlement ended on
  const counted = new Set<string>(); // co2 readings already counted
  const out: Recomputed[] = [];
  for (const s of [...settlements].sort((a, b) => a.windowStart - b.windowStart)) {
    const totals: Record<string, Decimal> = { electricity_import: Decimal.ZERO, electricity_export: Decimal.ZERO, natural_gas: Decimal.ZERO, co2_direct: Decimal.ZERO };
    let complete = s.highWater.size > 0;
    for (const [deviceId, hw] of s.highWater) {
      const visible = (byDevice.get(deviceId) ?? []).filter((r) => hw !== undefined && r.seq <= hw);
      const inWindow = visible.some((r) => r.ts >= s.windowStart && r.ts < s.windowEnd);
      const before = visible.some((r) => r.ts < s.windowStart);
      if (!inWindow || !before) complete = false;
      for (const metric of REGISTERS) {
        const mine = visible.filter((r) => r.metric === metric);
        if (!mine.length) continue;
        const key = `${deviceId}/${metric}`;
        if (!cursor.has(key)) cursor.set(key, Decimal.parse([...mine].sort((a, b) => a.seq - b.seq)[0].value));
        const due = mine.filter((r) => r.ts < s.windowEnd);
        if (!due.length) continue;
        const end = due.reduce((a, b) => (b.ts > a.ts || (b.ts === a.ts && b.seq > a.seq) ? b : a));
        const endValue = Decimal.parse(end.value);
        if (metric in totals) totals[metric] = totals[metric].add(endValue.sub(cursor.get(key)!));
        cursor.set(key, endValue);
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
    out.push({ id: s.id, netGrams: net, complete });
  }
  return out;
}

function floorDiv(a: bigint, d: bigint): bigint {
  const q = a / d;
  return a % d !== 0n && a < 0n !== d < 0n ? q - 1n : q;
}
