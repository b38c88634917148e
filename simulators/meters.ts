/**
 * What each kind of meter measures and how: its metrics, the units it reports them in, the base unit
 * its registers count in, the fixed-point text of a register and a plausible starting register.
 * Pure tables and functions used by DeviceSim (device.ts).
 */
import type { Metric } from '../domain/reading.ts';
import type { DeviceKind, KindCounts } from './profiles.ts';
import type { Rng } from './prng.ts';

/** Registers are kept as integers of a base unit (Wh, litre, gram) plus a fractional carry. */
export const BASE: Record<Metric, { unit: string; decimals: Record<string, number> }> = {
  electricity_import: { unit: 'Wh', decimals: { Wh: 0, kWh: 3, MWh: 6 } },
  electricity_export: { unit: 'Wh', decimals: { Wh: 0, kWh: 3, MWh: 6 } },
  renewable_generation: { unit: 'Wh', decimals: { Wh: 0, kWh: 3, MWh: 6 } },
  natural_gas: { unit: 'L', decimals: { m3: 3 } },
  co2_direct: { unit: 'g', decimals: { g: 0, kg: 3, t: 6 } },
};
const ENERGY_UNITS = ['kWh', 'Wh', 'MWh'] as const;
const MASS_UNITS = ['kg', 'g', 't'] as const;

/** Fixed-point text of an integer in a unit with `decimals` decimals, as a JSON number. */
export function scaled(n: number, decimals: number): number {
  if (decimals === 0) return n;
  const d = 10 ** decimals;
  const int = Math.floor(n / d);
  const frac = n - int * d;
  return Number(`${int}.${String(frac).padStart(decimals, '0')}`);
}

export function metricsOf(kind: DeviceKind, facilityKinds: KindCounts): Metric[] {
  switch (kind) {
    case 'grid':
      return facilityKinds.solar > 0 ? ['electricity_import', 'electricity_export'] : ['electricity_import'];
    case 'solar':
      return ['renewable_generation'];
    case 'gas':
      return ['natural_gas'];
    case 'cems':
      return ['co2_direct'];
  }
}

/** The unit a device reports `metric` in: by its position in the fleet, so a fleet sends a mix. */
export function unitOf(metric: Metric, index: number, k: number): string {
  if (metric === 'natural_gas') return 'm3';
  // CEMS are about one per facility (every fourth device in a planned fleet): vary by that
  if (metric === 'co2_direct') return MASS_UNITS[Math.floor(index / 4) % MASS_UNITS.length];
  return ENERGY_UNITS[(index + k) % ENERGY_UNITS.length];
}

/** A plausible meter reading for a device that has been installed for a while (base units). */
export function initialRegister(metric: Metric, rng: Rng): number {
  switch (metric) {
    case 'electricity_import':
      return Math.floor(rng.range(1e8, 5e9));
    case 'electricity_export':
      return Math.floor(rng.range(1e6, 1e8));
    case 'renewable_generation':
      return Math.floor(rng.range(1e7, 1e9));
    case 'natural_gas':
      return Math.floor(rng.range(1e6, 1e9));
    case 'co2_direct':
      return 0;
  }
}
