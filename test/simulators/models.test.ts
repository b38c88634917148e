/**
 * Device models: determinism (same seed and clock, same bytes), plausible profiles (solar zero at
 * night, shifts, weekends, burner cycles, export only when solar exceeds load), registers that never
 * go backwards except flagged resets, units the platform's own validator accepts, and baselines that
 * make a facility earn or run a deficit in every window.
 */
import t from 'tap';
import { validatePayload } from '../../broker/validate.ts';
import { Decimal } from '../../domain/decimal.ts';
import type { Reading as StoredReading } from '../../domain/reading.ts';
import { DeviceSim, scaled, type DeviceSpec } from '../../simulators/device.ts';
import { parseFaults } from '../../simulators/faults.ts';
import { planFleet } from '../../simulators/plan.ts';
import { Rng, hashSeed, valueNoise } from '../../simulators/prng.ts';
import {
  DEFAULT_GAS_FACTOR,
  DEFAULT_GRID_FACTOR,
  FacilityModel,
  PROFILES,
  countKinds,
  getProfile,
  suggestBaseline,
  type DeviceKind,
  type FacilityProfile,
} from '../../simulators/profiles.ts';

const HOUR = 3_600_000;
/** Monday 2026-11-23 00:00 local (UTC+8) = Sunday 16:00 UTC. */
const MONDAY_LOCAL = Date.UTC(2026, 10, 22, 16, 0, 0);

function specOf(kind: DeviceKind, profile: FacilityProfile = PROFILES.efficient, kinds: DeviceKind[] = ['grid', 'solar', 'gas', 'cems'], index = 0): DeviceSpec {
  return {
    facilityId: 'f1',
    deviceId: `f1-${kind}`,
    kind,
    index,
    profile,
    facilitySeed: hashSeed('seed', 'f1'),
    facilityKinds: countKinds(kinds),
  };
}

function validate(payload: Buffer, deviceId: string, now: number): StoredReading[] {
  const r = validatePayload(payload, { facilityId: 'f1', deviceId, now });
  if (r.rejections.length) throw new Error(`rejected: ${JSON.stringify(r.rejections)}`);
  return r.readings;
}

t.test('prng: reproducible, uniform-ish, noise is a pure function of time', async (t) => {
  const a = new Rng(42);
  const b = new Rng(42);
  const xs = Array.from({ length: 1000 }, () => a.next());
  t.same(xs, Array.from({ length: 1000 }, () => b.next()));
  t.ok(xs.every((x) => x >= 0 && x < 1));
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  t.ok(mean > 0.45 && mean < 0.55, `mean ${mean}`);
  t.not(hashSeed('a'), hashSeed('b'));
  t.equal(valueNoise(7, 123_456, 60_000), valueNoise(7, 123_456, 60_000));
  const n = Array.from({ length: 500 }, (_, i) => valueNoise(7, i * 7_919, 60_000));
  t.ok(n.every((x) => x >= 0 && x < 1));
});

t.test('determinism: same seed and clock give the same bytes; another seed does not', async (t) => {
  const faults = parseFaults('drop=0.05,duplicate=0.05,reorder=0.05,late=0.05,garbage=0.05,reset=0.02,skew=0.05');
  const run = (seed: string) => {
    const sims = (['grid', 'solar', 'gas', 'cems'] as const).map((k, i) => new DeviceSim(specOf(k, PROFILES.efficient, undefined, i), { seed, faults }));
    const out: string[] = [];
    for (let i = 0; i < 400; i++) {
      const now = MONDAY_LOCAL + 10 * HOUR + i * 1000;
      for (const s of sims) for (const m of s.tick(now).messages) out.push(`${m.topic} ${m.payload.toString('base64')}`);
    }
    return out;
  };
  const a = run('s1');
  t.ok(a.length > 1000, `${a.length} messages`);
  const b = run('s1');
  t.equal(b.length, a.length);
  t.ok(b.join('\n') === a.join('\n'), 'byte for byte');
  const c = run('s2');
  t.ok(c.join('\n') !== a.join('\n'), 'another seed, other readings');
});

t.test('solar: zero at night, a bell by day, clouds only reduce it', async (t) => {
  const m = new FacilityModel(PROFILES.efficient, 1);
  for (let h = 0; h < 24; h += 0.25) {
    const s = m.at(MONDAY_LOCAL + h * HOUR);
    if (h <= 6 || h >= 18.5) t.equal(s.solarKw, 0, `night ${h}h`);
    else t.ok(s.solarKw > 0 && s.solarKw <= PROFILES.efficient.solar.peakKw, `day ${h}h: ${s.solarKw}`);
  }
  t.ok(m.at(MONDAY_LOCAL + 12.25 * HOUR, 'high').solarKw === 0 || m.sun(MONDAY_LOCAL + 12.25 * HOUR) > 0.95, 'noon is near the peak');

  // the inverter's register does not move over a night, and moves by day
  const sim = new DeviceSim(specOf('solar'), { seed: 'x' });
  const v0 = sim.tick(MONDAY_LOCAL + 20 * HOUR);
  const v1 = sim.tick(MONDAY_LOCAL + 29 * HOUR); // 05:00 next day
  t.equal(v1.readings[0].value, v0.readings[0].value, 'nothing generated from 20:00 to 05:00');
  const v2 = sim.tick(MONDAY_LOCAL + 37 * HOUR); // 13:00
  t.ok(v2.readings[0].value > v1.readings[0].value, 'generated during the day');
});

t.test('shifts, weekends, burners and export behave as the profile says', async (t) => {
  const heavy = new FacilityModel(PROFILES.heavy, 2);
  const eff = new FacilityModel(PROFILES.efficient, 3);
  const at = (m: FacilityModel, h: number) => m.at(MONDAY_LOCAL + h * HOUR, 'expected');
  // efficient: two day shifts, idle at night, quiet on Saturday (day 5)
  t.ok(at(eff, 10).loadKw > 3 * at(eff, 3).loadKw, 'day shift load well above the night');
  t.ok(at(eff, 5 * 24 + 10).loadKw < at(eff, 10).loadKw, 'Saturday below Monday');
  // heavy: 24/7, the night shift is lighter but running
  t.ok(at(heavy, 3).loadKw > 0.7 * at(heavy, 10).loadKw);
  // burners cycle on and off
  let on = 0;
  let off = 0;
  for (let s = 0; s < 3600; s += 10) (heavy.burnerOn(MONDAY_LOCAL + 10 * HOUR + s * 1000) ? on++ : off++);
  t.ok(on > 0 && off > 0, `on ${on}, off ${off}`);
  t.ok(on > off, 'duty follows production (75% on shift)');

  // export only when solar exceeds load: at a weekend noon, not at night
  const grid = new DeviceSim(specOf('grid'), { seed: 'x' });
  t.same(grid.metrics, ['electricity_import', 'electricity_export']);
  const sat = MONDAY_LOCAL + 5 * 24 * HOUR;
  grid.tick(sat + 11 * HOUR);
  const e0 = grid.register('electricity_export');
  grid.tick(sat + 13 * HOUR);
  t.ok(grid.register('electricity_export') > e0, 'exports at a quiet noon');
  grid.tick(sat + 23 * HOUR);
  const e1 = grid.register('electricity_export');
  const i1 = grid.register('electricity_import');
  grid.tick(sat + 28 * HOUR); // 23:00 -> 04:00
  t.equal(grid.register('electricity_export'), e1, 'no export at night');
  t.ok(grid.register('electricity_import') > i1, 'imports at night');

  // a facility without solar has no export register
  const g2 = new DeviceSim(specOf('grid', PROFILES.heavy, ['grid', 'gas']), { seed: 'x' });
  t.same(g2.metrics, ['electricity_import']);
});

t.test('registers never go backwards except flagged resets; every payload validates', async (t) => {
  const faults = parseFaults('reset=0.01');
  const plan = planFleet({ devices: 12, seed: 'u', facilities: 3 });
  const units = new Set<string>();
  let resets = 0;
  let checked = 0;
  for (const f of plan) {
    const profile = getProfile(f.profile);
    const kinds = countKinds(f.devices.map((d) => d.kind));
    for (const d of f.devices) {
      const sim = new DeviceSim({ ...d, profile, facilitySeed: f.seed, facilityKinds: kinds }, { seed: 'u', faults });
      const last = new Map<string, Decimal>();
      const problems: string[] = [];
      for (let i = 0; i < 24 * 30; i++) {
        const now = MONDAY_LOCAL + i * 120_000; // a day, one reading every two minutes
        for (const m of sim.tick(now).messages) {
          const body = JSON.parse(m.payload.toString());
          for (const el of Array.isArray(body) ? body : [body]) units.add(el.unit);
          for (const r of validate(m.payload, d.deviceId, now)) {
            checked++;
            const v = Decimal.parse(r.value);
            if (v.isNegative()) problems.push(`negative ${r.value}`);
            if (r.metric === 'co2_direct') continue;
            const prev = last.get(r.metric);
            if (r.reset) {
              resets++;
              // near 0: what the meter counted since the reset (at most two minutes here) plus < 1 unit
              if (!(prev && v.cmp(Decimal.parse('100')) < 0)) problems.push(`reset not near 0: ${prev} -> ${r.value}`);
            } else if (prev && v.cmp(prev) < 0) {
              problems.push(`${r.metric} went backwards: ${prev} -> ${r.value}`);
            }
            last.set(r.metric, v);
          }
        }
      }
      t.same(problems, [], `${d.deviceId}: no negative value, no unflagged step back`);
    }
  }
  t.ok(checked > 8000, `${checked} readings validated`);
  t.ok(resets > 5, `${resets} resets`);
  for (const u of ['Wh', 'kWh', 'MWh', 'm3', 'g', 'kg', 't']) t.ok(units.has(u), `unit ${u} is used`);
});

t.test('values are JSON numbers with sane decimals', async (t) => {
  t.equal(scaled(1234567, 3), 1234.567);
  t.equal(scaled(1234500, 3), 1234.5);
  t.equal(scaled(5, 6), 0.000005);
  t.equal(scaled(42, 0), 42);
  const sim = new DeviceSim(specOf('grid', PROFILES.efficient, undefined, 2), { seed: 'x' }); // index 2: MWh + epoch ts
  const m = sim.tick(MONDAY_LOCAL + 10 * HOUR).messages[0];
  const text = m.payload.toString();
  t.match(text, /"unit":"MWh"/);
  t.match(text, /"ts":\d{13},/, 'epoch-ms timestamps for some devices');
  t.notMatch(text, /e[-+]?\d/, 'no exponent notation');
  for (const el of JSON.parse(text)) t.ok((String(el.value).split('.')[1] ?? '').length <= 6);
});

t.test('suggested baselines: earners earn and deficits stay in deficit in every window', async (t) => {
  const windowMs = 60_000;
  const rate = 0.2;
  for (const [profileName, outcome] of [
    ['efficient', 'earn'],
    ['heavy', 'deficit'],
    ['standard', 'earn'],
    ['heavy', 'earn'],
  ] as const) {
    const profile = getProfile(profileName);
    const kinds: DeviceKind[] = [...profile.kinds];
    const from = MONDAY_LOCAL + 4 * 24 * HOUR + 5 * HOUR; // a Friday, from 05:00 local
    const s = suggestBaseline(profile, { kinds, windowSeconds: windowMs / 1000, rate, outcome, from, horizonSeconds: 4 * 3600 });
    const baseline = Number(s.baselineKgPerHour);
    t.match(s.baselineKgPerHour, /^\d+\.\d{3}$/);
    t.ok(s.lowKgPerHour <= s.expectedKgPerHour && s.expectedKgPerHour <= s.highKgPerHour);
    if (outcome === 'earn') t.ok(baseline > s.highKgPerHour, `${profileName} earn`);
    else t.ok(baseline < s.lowKgPerHour && baseline > 0, `${profileName} deficit`);

    // simulate the facility and settle windows the SPEC way: register increase R_end(W) - cursor
    const kc = countKinds(kinds);
    const sims = kinds.map((k, i) => new DeviceSim({ facilityId: 'f', deviceId: `d${i}`, kind: k, index: i, profile, facilitySeed: 99, facilityKinds: kc }, { seed: 'b' }));
    const cursor = new Map<string, number>();
    const endOf = new Map<string, number>();
    let co2 = 0;
    let windowEnd = Math.floor(from / windowMs) * windowMs + windowMs;
    const nets: number[] = [];
    for (let now = from; now < from + 4 * HOUR; now += 1000 / rate) {
      if (now >= windowEnd) {
        let actual = co2;
        for (const [key, end] of endOf) {
          const delta = end - (cursor.get(key) ?? end);
          cursor.set(key, end);
          const metric = key.split('|')[1];
          if (metric === 'electricity_import') actual += (delta / 1000) * DEFAULT_GRID_FACTOR;
          if (metric === 'electricity_export') actual -= (delta / 1000) * DEFAULT_GRID_FACTOR;
          if (metric === 'natural_gas') actual += (delta / 1000) * DEFAULT_GAS_FACTOR;
        }
        if (nets.length > 0 || cursor.size > 0) nets.push((baseline * windowMs) / HOUR - actual);
        co2 = 0;
        windowEnd += windowMs;
      }
      for (const sim of sims) {
        const res = sim.tick(now);
        for (const r of res.readings) {
          if (r.metric === 'co2_direct') co2 += r.value * (r.unit === 'g' ? 0.001 : r.unit === 't' ? 1000 : 1);
        }
        for (const metric of sim.metrics) {
          if (metric === 'co2_direct') continue;
          const key = `${sim.deviceId}|${metric}`;
          if (!cursor.has(key) && !endOf.has(key)) cursor.set(key, sim.register(metric));
          endOf.set(key, sim.register(metric));
        }
      }
    }
    t.ok(nets.length > 230, `${nets.length} windows`);
    const wrong = nets.filter((n) => (outcome === 'earn' ? n <= 0 : n >= 0)).length;
    t.equal(wrong, 0, `${profileName}/${outcome}: every window has the intended sign (min ${Math.min(...nets).toFixed(2)}, max ${Math.max(...nets).toFixed(2)})`);
  }
});
