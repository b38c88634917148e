/**
 * Emission factor sets: versioned, each with the date from which it applies and its sources. A
 * facility may override a factor in the registry (`gridFactorKgPerKwh`, `gasFactorKgPerM3`); the set
 * actually applied to a window (version, values, what was overridden) is hashed and goes into the
 * settlement's evidence, so a later change of factors never changes a settled window.
 */
import { Decimal, compareDecimalText } from '../domain/decimal.ts';
import { canonicalHash } from './canonical.ts';

export interface FactorSet {
  /** Stable version label, e.g. "v1". */
  version: string;
  /** First window start (epoch ms) the set applies to. */
  effectiveFrom: number;
  /** kg CO2 per kWh of grid electricity (decimal text). */
  gridKgPerKwh: string;
  /** kg CO2 per m3 of natural gas (decimal text). */
  gasKgPerM3: string;
  sources: { grid: string; gas: string };
}

/** The set applied to one facility's window: a base set plus the facility's overrides. */
export interface AppliedFactors {
  /** `v1`, or `v1+facility` when the facility overrides a value. */
  version: string;
  base: string;
  gridKgPerKwh: string;
  gasKgPerM3: string;
  /** Which values come from the facility's registry entry instead of the base set. */
  overrides: ('grid' | 'gas')[];
  /** `0x` + sha256 of the canonical JSON of the other fields (see oracle/canonical.ts). */
  hash: string;
}

/**
 * v1 sources:
 * - Grid: 0.5366 kgCO2/kWh, China national average grid emission factor for 2022, published by the
 *   Ministry of Ecology and Environment (MEE) in December 2024.
 * - Natural gas: 2.162 kgCO2/m3, IPCC-style default computed from carbon content 15.3 tC/TJ,
 *   oxidation 99 % and net calorific value 38.931 MJ/m3:
 *   38.931 MJ/m3 = 3.8931e-5 TJ/m3; 15.3 tC/TJ * 3.8931e-5 TJ/m3 = 0.5956443 kgC/m3;
 *   * 0.99 oxidised = 0.58968786 kgC/m3; * 44/12 (CO2/C) = 2.16218882 kgCO2/m3, rounded to 2.162.
 * effectiveFrom is 2022-01-01 (the year the grid factor describes); windows before the first set's
 * date use the first set, since no older factors are defined.
 */
export const FACTOR_SETS: readonly FactorSet[] = Object.freeze([
  Object.freeze({
    version: 'v1',
    effectiveFrom: Date.UTC(2022, 0, 1),
    gridKgPerKwh: '0.5366',
    gasKgPerM3: '2.162',
    sources: Object.freeze({
      grid: 'China national average grid emission factor 2022, Ministry of Ecology and Environment (MEE), published December 2024',
      gas: 'IPCC-style default: carbon content 15.3 tC/TJ, oxidation 99%, NCV 38.931 MJ/m3 (15.3e-3 * 38.931 * 0.99 * 44/12 = 2.162 kgCO2/m3)',
    }),
  }),
]);

export const DEFAULT_FACTORS = FACTOR_SETS[0];

/** The base set in force at `at` (epoch ms): the latest with effectiveFrom <= at, else the first. */
export function factorSetAt(at: number, sets: readonly FactorSet[] = FACTOR_SETS): FactorSet {
  let chosen = sets[0];
  for (const s of sets) if (s.effectiveFrom <= at && s.effectiveFrom >= chosen.effectiveFrom) chosen = s;
  if (chosen.effectiveFrom > at) {
    // Nothing in force yet: the earliest set.
    chosen = sets.reduce((a, b) => (b.effectiveFrom < a.effectiveFrom ? b : a));
  }
  return chosen;
}


/**
 * The factors applied to a facility's window starting at `windowStart`: the base set in force then,
 * with the facility's registry values where they differ from it.
 */
export function applyFactors(
  windowStart: number,
  facility: { gridFactorKgPerKwh?: string; gasFactorKgPerM3?: string },
  sets: readonly FactorSet[] = FACTOR_SETS,
): AppliedFactors {
  const base = factorSetAt(windowStart, sets);
  const overrides: ('grid' | 'gas')[] = [];
  let grid = Decimal.parse(base.gridKgPerKwh).toString();
  let gas = Decimal.parse(base.gasKgPerM3).toString();
  if (facility.gridFactorKgPerKwh !== undefined && facility.gridFactorKgPerKwh !== '' && compareDecimalText(facility.gridFactorKgPerKwh, grid) !== 0) {
    grid = Decimal.parse(facility.gridFactorKgPerKwh).toString();
    overrides.push('grid');
  }
  if (facility.gasFactorKgPerM3 !== undefined && facility.gasFactorKgPerM3 !== '' && compareDecimalText(facility.gasFactorKgPerM3, gas) !== 0) {
    gas = Decimal.parse(facility.gasFactorKgPerM3).toString();
    overrides.push('gas');
  }
  return sealFactors({ version: overrides.length ? `${base.version}+facility` : base.version, base: base.version, gridKgPerKwh: grid, gasKgPerM3: gas, overrides });
}

/** Adds (or recomputes) the hash of an applied set. */
export function sealFactors(f: Omit<AppliedFactors, 'hash'> & { hash?: string }): AppliedFactors {
  const body = { version: f.version, base: f.base, gridKgPerKwh: f.gridKgPerKwh, gasKgPerM3: f.gasKgPerM3, overrides: [...f.overrides] };
  return { ...body, hash: canonicalHash(body) };
}
