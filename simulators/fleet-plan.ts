/**
 * Which facilities and devices a fleet runs, and with which credentials and keys: given credentials
 * > a credentials file > registered through the gateway (--api) > saved in the state file > planned
 * without passwords. Each device's signing key is made once and kept in the state.
 */
import type { Logger } from '../domain/logger.ts';
import { generateDeviceKey, publicKeyOf } from '../domain/signature.ts';
import type { FleetOptions } from './fleet.ts';
import { facilityOwnerKey } from './owners.ts';
import { planFleet, planFromCredentials, readCredentialsFile, type FacilityPlan, type SimCredentials } from './plan.ts';
import { registerFleet } from './register.ts';
import type { SimState } from './state.ts';

/**
 * Each planned device's key, made once and kept in the state (saved with it): returns the public
 * keys (hex) by device id, for registration.
 */
export function deviceKeys(state: SimState, plan: FacilityPlan[]): Record<string, string> {
  state.keys ??= {};
  const out: Record<string, string> = {};
  for (const f of plan) {
    for (const d of f.devices) {
      state.keys[d.deviceId] ??= generateDeviceKey().privateKey;
      out[d.deviceId] = publicKeyOf(state.keys[d.deviceId]);
    }
  }
  return out;
}

export interface PlanContext {
  seed: string;
  rate: number;
  windowSeconds: number;
  now: () => number;
  statePath: string | null;
  log: Logger;
}

/**
 * The fleet's plan. Registering through the API stores the credentials in `state`; with signing
 * on, every planned device has its key in `state` afterwards.
 */
export async function resolvePlan(opts: FleetOptions, state: SimState, ctx: PlanContext): Promise<FacilityPlan[]> {
  const { seed, log } = ctx;
  let plan: FacilityPlan[];
  let creds: SimCredentials[] | undefined = opts.credentials ?? (opts.credentialsFile ? readCredentialsFile(opts.credentialsFile) : undefined);
  const planOpts = { seed, profiles: opts.profiles, owner: opts.owner };
  if (creds) {
    plan = planFromCredentials(creds, { ...planOpts, devices: opts.devices });
  } else if (opts.api) {
    plan = planFleet({ ...planOpts, devices: opts.devices ?? 4, facilities: opts.facilities, prefix: opts.prefix });
    if (opts.ownerKeyDir && !opts.owner) {
      for (const f of plan) {
        const k = facilityOwnerKey(opts.ownerKeyDir, f.facilityId);
        f.owner = k.address;
        f.ownerKeyFile = k.file;
        if (k.created) log.info({ facilityId: f.facilityId, owner: k.address, keyFile: k.file }, 'owner key created');
      }
    }
    const publicKeys = opts.sign ? deviceKeys(state, plan) : undefined;
    creds = await registerFleet(opts.api, plan, { windowSeconds: ctx.windowSeconds, rate: ctx.rate, margin: opts.baselineMargin, now: ctx.now(), log, fetch: opts.fetch, publicKeys });
    state.credentials = creds;
  } else if (state.credentials?.length) {
    creds = state.credentials;
    plan = planFromCredentials(creds, { ...planOpts, devices: opts.devices });
    log.info({ devices: creds.length, statePath: ctx.statePath }, 'using the credentials saved in the state file');
  } else {
    plan = planFleet({ ...planOpts, devices: opts.devices ?? 4, facilities: opts.facilities, prefix: opts.prefix });
    log.warn('no credentials (--credentials or --api): connecting without passwords; a broker with authentication will refuse');
  }
  if (opts.sign) deviceKeys(state, plan);
  return plan;
}
