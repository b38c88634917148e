/**
 * Fleet layout: which facilities, which devices of which kind, which profile. Either planned from a
 * device count (ids `{prefix}-f{n}` and `{prefix}-f{n}-{kind}`) or taken from a credentials list.
 */
import fs from 'node:fs';
import { ID_RE } from '../domain/reading.ts';
import { simErrors } from './errors.ts';
import { Rng, hashSeed } from './prng.ts';
import { DEVICE_KINDS, getProfile, kindsFor, PROFILE_NAMES, type DeviceKind, type ProfileName } from './profiles.ts';

/** One device's MQTT credentials, as in a `--credentials` file. */
export interface SimCredentials {
  facilityId: string;
  deviceId: string;
  password: string;
  kind?: DeviceKind;
}

export interface DevicePlan {
  facilityId: string;
  deviceId: string;
  kind: DeviceKind;
  /** Position in the fleet. */
  index: number;
  password?: string;
}

export interface FacilityPlan {
  facilityId: string;
  name: string;
  profile: ProfileName;
  /** What the suggested baseline aims at. */
  outcome: 'earn' | 'deficit';
  /** Seed of the facility's physical model. */
  seed: number;
  /** EVM address that receives the facility's credits (deterministic from the seed, or of a key file). */
  owner: string;
  /** The key file of `owner` when the simulator keeps one (see owners.ts). */
  ownerKeyFile?: string;
  devices: DevicePlan[];
}

export interface PlanOptions {
  devices: number;
  /** Default: one facility per four devices. */
  facilities?: number;
  seed: string;
  prefix?: string;
  /** Cycled over the facilities (default efficient, heavy, standard). */
  profiles?: ProfileName[];
  /** Owner address for every facility (default: one derived from the seed per facility). */
  owner?: string;
}

export const DEFAULT_PROFILES: ProfileName[] = ['efficient', 'heavy', 'standard'];
/** The outcome each profile is meant to show in the demo. */
export const PROFILE_OUTCOME: Record<ProfileName, 'earn' | 'deficit'> = { efficient: 'earn', standard: 'earn', heavy: 'deficit' };

function ownerFor(seed: string, facilityId: string): string {
  const rng = new Rng(hashSeed(seed, facilityId, 'owner'));
  let hex = '';
  while (hex.length < 40) hex += rng.int(16).toString(16);
  return `0x${hex}`;
}

function facility(index: number, facilityId: string, opts: { seed: string; profiles?: ProfileName[]; owner?: string; prefix?: string }): FacilityPlan {
  const profiles = opts.profiles?.length ? opts.profiles : DEFAULT_PROFILES;
  const profile = profiles[index % profiles.length];
  return {
    facilityId,
    // the prefix tells runs apart on the dashboard (npm start's own fleet, `sim`, keeps the plain name)
    name: `Simulated ${profile} facility ${index + 1}${opts.prefix && opts.prefix !== 'sim' ? ` (${opts.prefix})` : ''}`,
    profile,
    outcome: PROFILE_OUTCOME[profile],
    seed: hashSeed(opts.seed, facilityId),
    owner: opts.owner ?? ownerFor(opts.seed, facilityId),
    devices: [],
  };
}

export function planFleet(opts: PlanOptions): FacilityPlan[] {
  const n = opts.devices;
  if (!Number.isInteger(n) || n < 1) throw simErrors.USAGE('--devices must be a whole number >= 1');
  const prefix = opts.prefix ?? 'sim';
  if (!/^[A-Za-z0-9_-]{1,40}$/.test(prefix)) throw simErrors.USAGE('--prefix must be 1-40 characters of A-Z a-z 0-9 _ -');
  const f = Math.min(n, Math.max(1, opts.facilities ?? Math.ceil(n / 4)));
  const out: FacilityPlan[] = [];
  for (let i = 0; i < f; i++) out.push(facility(i, `${prefix}-f${i + 1}`, { ...opts, prefix }));
  const members: number[][] = out.map(() => []);
  for (let d = 0; d < n; d++) members[Math.floor((d * f) / n)].push(d);
  for (let i = 0; i < f; i++) {
    const kinds = kindsFor(getProfile(out[i].profile), members[i].length);
    const seen: Record<string, number> = {};
    members[i].forEach((index, j) => {
      const kind = kinds[j];
      seen[kind] = (seen[kind] ?? 0) + 1;
      const deviceId = `${out[i].facilityId}-${kind}${seen[kind] > 1 ? `-${seen[kind]}` : ''}`;
      out[i].devices.push({ facilityId: out[i].facilityId, deviceId, kind, index });
    });
  }
  return out;
}

/** Groups a credentials list by facility (in order of first appearance) and assigns kinds and profiles. */
export function planFromCredentials(creds: SimCredentials[], opts: { seed: string; profiles?: ProfileName[]; owner?: string; devices?: number }): FacilityPlan[] {
  const list = opts.devices ? creds.slice(0, opts.devices) : creds;
  const byId = new Map<string, FacilityPlan>();
  list.forEach((c, index) => {
    let f = byId.get(c.facilityId);
    if (!f) {
      f = facility(byId.size, c.facilityId, opts);
      byId.set(c.facilityId, f);
    }
    f.devices.push({ facilityId: c.facilityId, deviceId: c.deviceId, kind: c.kind ?? 'grid', index, password: c.password });
  });
  for (const f of byId.values()) {
    const defaults = kindsFor(getProfile(f.profile), f.devices.length);
    f.devices.forEach((d, j) => {
      const given = list[d.index].kind;
      d.kind = given ?? defaults[j];
    });
  }
  return [...byId.values()];
}

/** Validates a credentials list (from a file or the state file). */
export function parseCredentials(data: unknown, source: string): SimCredentials[] {
  if (!Array.isArray(data) || data.length === 0) throw simErrors.USAGE(`${source}: expected a non-empty JSON list of { facilityId, deviceId, password }`);
  const seen = new Set<string>();
  return data.map((c, i) => {
    const e = c as Partial<SimCredentials>;
    if (!e || typeof e.facilityId !== 'string' || !ID_RE.test(e.facilityId)) throw simErrors.USAGE(`${source}[${i}]: facilityId must match [A-Za-z0-9_-]{1,64}`);
    if (typeof e.deviceId !== 'string' || !ID_RE.test(e.deviceId)) throw simErrors.USAGE(`${source}[${i}]: deviceId must match [A-Za-z0-9_-]{1,64}`);
    if (typeof e.password !== 'string') throw simErrors.USAGE(`${source}[${i}]: password must be a string`);
    if (e.kind !== undefined && !DEVICE_KINDS.includes(e.kind)) throw simErrors.USAGE(`${source}[${i}]: kind must be one of ${DEVICE_KINDS.join(', ')}`);
    if (seen.has(e.deviceId)) throw simErrors.USAGE(`${source}[${i}]: device ${e.deviceId} is listed twice`);
    seen.add(e.deviceId);
    return { facilityId: e.facilityId, deviceId: e.deviceId, password: e.password, ...(e.kind ? { kind: e.kind } : {}) };
  });
}

export function readCredentialsFile(file: string): SimCredentials[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw simErrors.USAGE(`--credentials: cannot read ${file}: ${(err as Error).message}`);
  }
  try {
    return parseCredentials(JSON.parse(text), file);
  } catch (err) {
    if (err instanceof SyntaxError) throw simErrors.USAGE(`--credentials: ${file} is not JSON: ${err.message}`);
    throw err;
  }
}

export function parseProfiles(spec: string): ProfileName[] {
  return spec.split(',').map((s) => {
    const name = s.trim();
    if (!(PROFILE_NAMES as string[]).includes(name)) throw simErrors.USAGE(`--profiles: unknown profile ${JSON.stringify(name)} (known: ${PROFILE_NAMES.join(', ')})`);
    return name as ProfileName;
  });
}
