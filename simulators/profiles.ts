/**
 * Facility profiles and the physical model behind the simulated devices: electrical load with shift
 * patterns and weekends, a diurnal solar bell curve with cloud noise, gas burners cycling on and off,
 * and a process stack measured by a CEMS. Every quantity is a pure function of (profile, seed, time),
 * so the devices of one facility agree with each other and a run is reproducible.
 *
 * `suggestBaseline` turns a profile into a baseline (kg CO2/h) that makes the facility earn credits
 * or run a deficit, for the demo and the tests.
 */
import { simErrors } from './errors.ts';
import { hashSeed, valueNoise } from './prng.ts';

export type DeviceKind = 'grid' | 'solar' | 'gas' | 'cems';
export const DEVICE_KINDS: readonly DeviceKind[] = ['grid', 'solar', 'gas', 'cems'];

/** A shift in local hours [from, to), wrapping past midnight when from > to; level scales shiftKw. */
export interface Shift {
  from: number;
  to: number;
  level: number;
}

export interface FacilityProfile {
  name: string;
  description: string;
  /** Device kinds in the order a facility's devices are given them; further devices are grid sub-meters. */
  kinds: readonly DeviceKind[];
  /** Local time offset from UTC for shifts and the sun (the default grid factor is China's: UTC+8). */
  tzOffsetHours: number;
  load: { baseKw: number; shiftKw: number; shifts: readonly Shift[]; weekendLevel: number; noise: number };
  solar: { peakKw: number; sunriseHour: number; sunsetHour: number; cloudiness: number };
  gas: { m3PerHour: number; cycleMinutes: number; dutyActive: number; dutyIdle: number; noise: number };
  cems: { kgPerHour: number; idleLevel: number; noise: number };
}

export const PROFILES = {
  efficient: {
    name: 'efficient',
    description: 'light assembly plant: two day shifts, quiet weekends, rooftop solar that exports at noon, small gas boiler',
    kinds: ['grid', 'solar', 'gas', 'cems'],
    tzOffsetHours: 8,
    load: { baseKw: 120, shiftKw: 380, shifts: [{ from: 6, to: 14, level: 1 }, { from: 14, to: 22, level: 0.7 }], weekendLevel: 0.3, noise: 0.08 },
    solar: { peakKw: 450, sunriseHour: 6, sunsetHour: 18.5, cloudiness: 0.6 },
    gas: { m3PerHour: 15, cycleMinutes: 12, dutyActive: 0.4, dutyIdle: 0.1, noise: 0.05 },
    cems: { kgPerHour: 20, idleLevel: 0.3, noise: 0.1 },
  },
  standard: {
    name: 'standard',
    description: 'general manufacturing: two shifts, some weekend work, modest solar, gas-fired process heat',
    kinds: ['grid', 'gas', 'cems', 'solar'],
    tzOffsetHours: 8,
    load: { baseKw: 300, shiftKw: 700, shifts: [{ from: 6, to: 14, level: 1 }, { from: 14, to: 22, level: 0.8 }], weekendLevel: 0.5, noise: 0.07 },
    solar: { peakKw: 150, sunriseHour: 6, sunsetHour: 18.5, cloudiness: 0.6 },
    gas: { m3PerHour: 60, cycleMinutes: 15, dutyActive: 0.6, dutyIdle: 0.2, noise: 0.05 },
    cems: { kgPerHour: 150, idleLevel: 0.4, noise: 0.08 },
  },
  heavy: {
    name: 'heavy',
    description: 'heavy industry: 24/7 in three shifts, large gas burners, a process stack with continuous emissions monitoring',
    kinds: ['grid', 'gas', 'cems', 'solar'],
    tzOffsetHours: 8,
    load: {
      baseKw: 900,
      shiftKw: 1600,
      shifts: [{ from: 6, to: 14, level: 1 }, { from: 14, to: 22, level: 1 }, { from: 22, to: 6, level: 0.75 }],
      weekendLevel: 0.85,
      noise: 0.06,
    },
    solar: { peakKw: 80, sunriseHour: 6, sunsetHour: 18.5, cloudiness: 0.6 },
    gas: { m3PerHour: 180, cycleMinutes: 10, dutyActive: 0.75, dutyIdle: 0.5, noise: 0.05 },
    cems: { kgPerHour: 600, idleLevel: 0.6, noise: 0.08 },
  },
} as const satisfies Record<string, FacilityProfile>;

export type ProfileName = keyof typeof PROFILES;
export const PROFILE_NAMES = Object.keys(PROFILES) as ProfileName[];

export function getProfile(name: string): FacilityProfile {
  if (!Object.prototype.hasOwnProperty.call(PROFILES, name)) {
    throw simErrors.USAGE(`unknown profile ${JSON.stringify(name)} (known: ${PROFILE_NAMES.join(', ')})`);
  }
  return PROFILES[name as ProfileName];
}

/** Default emission factors (SPEC): kg CO2 per kWh of grid electricity and per m3 of natural gas. */
export const DEFAULT_GRID_FACTOR = 0.5366;
export const DEFAULT_GAS_FACTOR = 2.162;

/**
 * How the noise is resolved: `actual` is what devices measure; `expected` the noise-free mean;
 * `low` and `high` bound every actual value (used to pick baselines that hold whatever the weather).
 */
export type Scenario = 'actual' | 'expected' | 'low' | 'high';

export interface FacilityState {
  /** Electrical load (kW). */
  loadKw: number;
  /** Solar output (kW); 0 at night. */
  solarKw: number;
  /** Gas flow (m3/h); 0 while the burner is off. */
  gasM3h: number;
  /** Process stack emissions (kg/h). */
  cemsKgH: number;
}

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

/** The physical model of one facility: pure functions of time. */
export class FacilityModel {
  readonly profile: FacilityProfile;
  private readonly seeds: { load: number; cloud: number; gas: number; cems: number; phase: number };

  constructor(profile: FacilityProfile, seed: number) {
    this.profile = profile;
    this.seeds = {
      load: hashSeed(seed, 'load'),
      cloud: hashSeed(seed, 'cloud'),
      gas: hashSeed(seed, 'gas'),
      cems: hashSeed(seed, 'cems'),
      phase: (hashSeed(seed, 'phase') / 4294967296) * profile.gas.cycleMinutes * 60_000,
    };
  }

  /** Local hour of day in [0, 24) and whether it is Saturday or Sunday locally. */
  localTime(t: number): { hour: number; weekend: boolean } {
    const local = t + this.profile.tzOffsetHours * HOUR_MS;
    const hour = (((local % DAY_MS) + DAY_MS) % DAY_MS) / HOUR_MS;
    const day = (((Math.floor(local / DAY_MS) + 4) % 7) + 7) % 7; // 1970-01-01 was a Thursday (4)
    return { hour, weekend: day === 0 || day === 6 };
  }

  /** Share of shift production running at t, in [0, 1]. */
  activity(t: number): number {
    const { hour, weekend } = this.localTime(t);
    let level = 0;
    for (const s of this.profile.load.shifts) {
      const inShift = s.from <= s.to ? hour >= s.from && hour < s.to : hour >= s.from || hour < s.to;
      if (inShift) level = Math.max(level, s.level);
    }
    return weekend ? level * this.profile.load.weekendLevel : level;
  }

  /** Clear-sky bell curve in [0, 1]: 0 from sunset to sunrise. */
  sun(t: number): number {
    const { hour } = this.localTime(t);
    const { sunriseHour, sunsetHour } = this.profile.solar;
    if (hour <= sunriseHour || hour >= sunsetHour) return 0;
    return Math.sin((Math.PI * (hour - sunriseHour)) / (sunsetHour - sunriseHour)) ** 1.5;
  }

  /** Whether the burner is firing at t (deterministic on/off cycles whose duty follows production). */
  burnerOn(t: number, activity = this.activity(t)): boolean {
    const { cycleMinutes, dutyActive, dutyIdle } = this.profile.gas;
    const duty = dutyIdle + (dutyActive - dutyIdle) * activity;
    const cycle = cycleMinutes * 60_000;
    const pos = (((t + this.seeds.phase) % cycle) + cycle) % cycle;
    return pos < duty * cycle;
  }

  at(t: number, scenario: Scenario = 'actual'): FacilityState {
    const p = this.profile;
    const act = this.activity(t);
    // noise in [-1, 1): smooth over a minute (load), five minutes (clouds), half a minute (stack)
    const n = (seed: number, period: number) => 2 * valueNoise(seed, t, period) - 1;
    const pick = (actual: () => number, expected: number, low: number, high: number) =>
      scenario === 'actual' ? actual() : scenario === 'expected' ? expected : scenario === 'low' ? low : high;

    const load0 = p.load.baseKw + p.load.shiftKw * act;
    const loadKw = load0 * pick(() => 1 + p.load.noise * n(this.seeds.load, 60_000), 1, 1 - p.load.noise, 1 + p.load.noise);

    const sun = this.sun(t);
    const clouds = pick(() => valueNoise(this.seeds.cloud, t, 300_000), 0.5, 0, 1);
    const solarKw = sun === 0 ? 0 : p.solar.peakKw * sun * (1 - p.solar.cloudiness * clouds);

    const duty = p.gas.dutyIdle + (p.gas.dutyActive - p.gas.dutyIdle) * act;
    const gasM3h = pick(
      () => (this.burnerOn(t, act) ? p.gas.m3PerHour * (1 + p.gas.noise * n(this.seeds.gas, 20_000)) : 0),
      p.gas.m3PerHour * duty,
      duty >= 1 ? p.gas.m3PerHour * (1 - p.gas.noise) : 0,
      duty > 0 ? p.gas.m3PerHour * (1 + p.gas.noise) : 0,
    );

    const cems0 = p.cems.kgPerHour * (p.cems.idleLevel + (1 - p.cems.idleLevel) * act);
    const cemsKgH = cems0 * pick(() => 1 + p.cems.noise * n(this.seeds.cems, 30_000), 1, 1 - p.cems.noise, 1 + p.cems.noise);

    return { loadKw, solarKw, gasM3h, cemsKgH };
  }
}

/** How many devices of each kind a facility has (solar and export only exist with a solar device). */
export type KindCounts = Record<DeviceKind, number>;

export function countKinds(kinds: readonly DeviceKind[]): KindCounts {
  const c: KindCounts = { grid: 0, solar: 0, gas: 0, cems: 0 };
  for (const k of kinds) c[k]++;
  return c;
}

/** The kinds of a facility with n devices of this profile. */
export function kindsFor(profile: FacilityProfile, n: number): DeviceKind[] {
  return Array.from({ length: n }, (_, i) => (i < profile.kinds.length ? profile.kinds[i] : 'grid'));
}

export interface EmissionFactors {
  gridKgPerKwh: number;
  gasKgPerM3: number;
}

/** Emissions the methodology will count (kg/h): (import - export) * EF_grid + gas * EF_gas + stack. */
export function emissionRate(s: FacilityState, kinds: KindCounts, f: EmissionFactors): number {
  const netKw = kinds.grid > 0 ? s.loadKw - (kinds.solar > 0 ? s.solarKw : 0) : 0;
  return netKw * f.gridKgPerKwh + (kinds.gas > 0 ? s.gasM3h * f.gasKgPerM3 : 0) + (kinds.cems > 0 ? s.cemsKgH : 0);
}

export interface BaselineOptions {
  /** Device kinds of the facility (default: the profile's four kinds). */
  kinds?: readonly DeviceKind[];
  /** Settlement window length (s). */
  windowSeconds: number;
  /** Readings per second per device (the register read before a window end lags by up to 1/rate). */
  rate?: number;
  /** `earn`: the baseline lies above every window's emissions; `deficit`: below every window's. */
  outcome: 'earn' | 'deficit';
  /** Safety margin on top of the noise bounds (default 0.3: x1.3 for an earner, x0.7 for a deficit). */
  margin?: number;
  /** Start of the period to cover (epoch ms, default now) and its length (default one day). */
  from?: number;
  horizonSeconds?: number;
  factors?: Partial<EmissionFactors>;
}

export interface BaselineSuggestion {
  /** Decimal text for `POST /v1/facilities` `baselineKgPerHour`. */
  baselineKgPerHour: string;
  /** Mean noise-free emissions over the horizon (kg/h). */
  expectedKgPerHour: number;
  /** Lowest and highest possible instantaneous emissions over the horizon (kg/h). */
  lowKgPerHour: number;
  highKgPerHour: number;
}

/**
 * A baseline (kg/h) that makes a facility of this profile earn credits (`earn`: baseline =
 * highest possible emission rate x (1 + margin)) or run a deficit (`deficit`: lowest possible rate x
 * (1 - margin)) in every window of the horizon, noise, burner cycles and the reading lag at the
 * window edges included. The seed does not matter: the bounds hold for any.
 */
export function suggestBaseline(profile: FacilityProfile, opts: BaselineOptions): BaselineSuggestion {
  const kinds = countKinds(opts.kinds ?? profile.kinds);
  const factors: EmissionFactors = {
    gridKgPerKwh: opts.factors?.gridKgPerKwh ?? DEFAULT_GRID_FACTOR,
    gasKgPerM3: opts.factors?.gasKgPerM3 ?? DEFAULT_GAS_FACTOR,
  };
  const margin = opts.margin ?? 0.3;
  const from = opts.from ?? Date.now();
  const horizonMs = (opts.horizonSeconds ?? 86_400) * 1000;
  const model = new FacilityModel(profile, 0);
  const step = 60_000;
  let sum = 0;
  let count = 0;
  let low = Infinity;
  let high = -Infinity;
  for (let t = from; t <= from + horizonMs; t += step) {
    sum += emissionRate(model.at(t, 'expected'), kinds, factors);
    count++;
    low = Math.min(low, emissionRate(model.at(t, 'low'), kinds, factors));
    high = Math.max(high, emissionRate(model.at(t, 'high'), kinds, factors));
  }
  const w = opts.windowSeconds;
  const lag = 1 / (opts.rate ?? 1);
  const baseline =
    opts.outcome === 'earn'
      ? Math.max(0, high) * ((w + lag) / w) * (1 + margin)
      : Math.max(0, low * (Math.max(0, w - lag) / w) * (1 - margin));
  return { baselineKgPerHour: baseline.toFixed(3), expectedKgPerHour: sum / count, lowKgPerHour: low, highKgPerHour: high };
}
