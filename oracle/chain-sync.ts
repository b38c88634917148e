/**
 * The one writer of on-chain registry state: a facility's registration, owner, suspension, baseline
 * and removal. The registry (store/) is the source of truth; the chain follows it. Two callers use the
 * same rules from here:
 *  - the gateway pushes each change as it is made (best effort: gateway/routes/facilities.ts);
 *  - the oracle reconciles registry and chain every run until they agree (`buildChainSync`), so a push
 *    the gateway could not make (no signer, chain down, missing role) still reaches the chain.
 * Device keys follow one stricter rule (docs/SECURITY.md "Device keys on chain"): the regulator's
 * gateway write (registration with a key, PATCH publicKey) puts the key on chain at once; the oracle's
 * reconcile pushes a device's key only when the chain never recorded a key for that device. A chain
 * key that differs from the registry's (the database changed, or a rotation did not reach the chain)
 * is reported (error log, mrv_oracle_device_key_mismatches), never overwritten from the database.
 * The rules: a facility is registered from the window containing its registration, with the baseline
 * in force then; a suspension mirrors the registry status; a new baseline takes effect from the next
 * window that starts at or after now, never before the chain's next window; the owner can change only
 * while the facility never settled (the contract refuses it otherwise).
 */
import { Decimal } from '../domain/decimal.ts';
import { errors } from '../domain/errors.ts';
import type { Logger } from '../domain/logger.ts';
import { nextWindowStart, windowOf } from '../domain/window.ts';
import type { Device, Facility, FacilityRegistry } from '../store/types.ts';
import { isRevert } from '../contracts/client/errors.ts';
import { toMs, type FacilityView, type LedgerPort } from '../contracts/client/port.ts';
import type { OracleMetrics } from './metrics.ts';

/** Most windows the baseline sync scans back for the registry's last change (see registrySince). */
const MAX_BASELINE_SCAN = 100_000;

/** A facility that cannot be settled safely until someone looks (reason in the message). */
export class Blocked extends Error {}

/** Whether the chain refused a call (a revert), as opposed to being unreachable. */
export function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The part of a chain client that writes registry state (both the oracle's and the gateway's clients fit). */
export type RegistryLedger = Pick<LedgerPort, 'registerFacility' | 'setFacilitySuspended' | 'setBaseline' | 'setFacilityOwner'> & {
  facility(facilityId: string): Promise<{ registered: boolean }>;
  /** Removes a facility that never settled (the contract refuses it otherwise). */
  deregisterFacility?(facilityId: string): Promise<unknown>;
  /** Records (or rotates) a device's public key (a ledger without device keys lacks it). */
  setDeviceKey?(deviceId: string, publicKeyHex: string): Promise<unknown>;
};

/** The part of a chain client that reads device keys (a ledger without device keys lacks it). */
export type DeviceKeyLedger = Partial<Pick<LedgerPort, 'deviceKey' | 'deviceKeys'>>;

/** The first window of a facility on chain: the one containing its registration (every window since is settled). */
export function firstWindowStart(f: Pick<Facility, 'createdAt'>, windowMs: number): number {
  return windowOf(f.createdAt, windowMs).start;
}

/** Where a baseline change takes effect: the next window starting at or after `now`, never before the chain's next window. */
export function baselineEffectiveFrom(now: number, windowMs: number, chainNextWindowStart?: number): number {
  const from = nextWindowStart(now, windowMs);
  return chainNextWindowStart !== undefined && chainNextWindowStart > from ? chainNextWindowStart : from;
}

export interface RegistryWriter {
  /** Registers `f` on chain from its first window with the baseline in force then; returns that window start. */
  register(f: Facility): Promise<number>;
  /** Sets the chain's owner of a facility that never settled; false when this client cannot. */
  pushOwner(facilityId: string, owner: string): Promise<boolean>;
  /** Mirrors the registry status (suspended or not); false when this client cannot. */
  pushSuspension(f: Facility): Promise<boolean>;
  /** Pushes the registry's current baseline from `effectiveFrom` (see baselineEffectiveFrom); false when this client cannot. */
  pushBaseline(f: Facility, effectiveFrom: number): Promise<boolean>;
  /** Removes a facility from the chain when it is registered there (the caller checked it never settled). */
  remove(facilityId: string): Promise<void>;
  /**
   * Records the device's key on chain (the regulator set or rotated it through the gateway); false
   * when this client cannot. Only the gateway's write of a regulator's change calls this for a
   * rotation: the reconcile never replaces a key the chain holds.
   */
  pushDeviceKey(deviceId: string, publicKey: string): Promise<boolean>;
}

export function registryWriter(ledger: RegistryLedger, registry: Pick<FacilityRegistry, 'baselineAt'>, windowMs: number): RegistryWriter {
  return {
    async register(f) {
      const first = firstWindowStart(f, windowMs);
      await ledger.registerFacility(f.id, f.owner, registry.baselineAt(f.id, first), first);
      return first;
    },
    async pushOwner(facilityId, owner) {
      if (!ledger.setFacilityOwner) return false;
      await ledger.setFacilityOwner(facilityId, owner);
      return true;
    },
    async pushSuspension(f) {
      if (!ledger.setFacilitySuspended) return false;
      await ledger.setFacilitySuspended(f.id, f.status === 'suspended');
      return true;
    },
    async pushBaseline(f, effectiveFrom) {
      if (!ledger.setBaseline) return false;
      await ledger.setBaseline(f.id, f.baselineKgPerHour, effectiveFrom);
      return true;
    },
    async pushDeviceKey(deviceId, publicKey) {
      if (!ledger.setDeviceKey) return false;
      await ledger.setDeviceKey(deviceId, publicKey);
      return true;
    },
    async remove(facilityId) {
      const c = await ledger.facility(facilityId);
      if (!c.registered) return;
      if (!ledger.deregisterFacility) throw errors.CHAIN_UNAVAILABLE('this chain client cannot remove a facility');
      await ledger.deregisterFacility(facilityId);
    },
  };
}

/** Same decimal value ("3600" equals "3600.0"); false when either is not a decimal. */
function sameDecimalText(a: string, b: string): boolean {
  try {
    return Decimal.parse(a).cmp(Decimal.parse(b)) === 0;
  } catch {
    return false;
  }
}

export interface ChainSyncDeps {
  ledger: Pick<LedgerPort, 'facility'> & RegistryLedger & DeviceKeyLedger;
  registry: Pick<FacilityRegistry, 'baselineAt'> & Partial<Pick<FacilityRegistry, 'listDevices'>>;
  windowMs: number;
  clock: () => number;
  logger: Logger;
  metrics: Pick<OracleMetrics, 'transactions' | 'errors'> & Partial<Pick<OracleMetrics, 'deviceKeyMismatches'>>;
}

/** A device whose key on chain is not the registry's: reported, never overwritten by the reconcile. */
export interface KeyMismatch {
  deviceId: string;
  facilityId: string;
  /** 64 hex, or undefined when the registry holds no key. */
  registryKey?: string;
  /** 64 hex, or undefined when the chain's key was revoked. */
  chainKey?: string;
}

/** What a sync did, added to the run's report. */
export interface SyncCounts {
  registered: number;
  synced: number;
}

export interface ChainSync {
  /**
   * Reconciles the facility's chain record with the registry: registers it if the chain lacks it,
   * corrects the owner of a facility that never settled, pushes suspension and baseline. Returns the
   * chain state and whether both now agree (a disagreement is not cached by the caller, so the next
   * run tries again: one failed push by the gateway is repaired here). Throws Blocked when the chain
   * refuses what the registry holds (registration, owner).
   */
  syncFacility(f: Facility, counts: SyncCounts): Promise<{ chain: FacilityView; agreed: boolean }>;
  /**
   * Device keys of the facility, registry -> chain: pushes a key the chain never recorded for its
   * device; reports (and returns) devices whose chain key differs from the registry's, without
   * writing. A device whose registry key was found consistent is not read from the chain again
   * until its registry key changes. Chain failures are logged and retried next run.
   */
  syncDeviceKeys(f: Facility, counts: SyncCounts): Promise<KeyMismatch[]>;
  /** The devices currently reported as mismatched. */
  keyMismatches(): KeyMismatch[];
}

export function buildChainSync(deps: ChainSyncDeps): ChainSync {
  const { ledger, windowMs, clock, logger, metrics } = deps;
  const writer = registryWriter(ledger, deps.registry, windowMs);

  async function syncFacility(f: Facility, counts: SyncCounts): Promise<{ chain: FacilityView; agreed: boolean }> {
    let chain = await ledger.facility(f.id);
    let agreed = true;
    if (!chain.registered) {
      let failure: unknown;
      try {
        const first = await writer.register(f);
        metrics.transactions.inc({ kind: 'register' });
        counts.registered++;
        logger.info({ facilityId: f.id, firstWindowStart: first }, 'facility registered on chain');
      } catch (e) {
        // Someone else (the gateway, another oracle) may have registered it meanwhile: re-read below.
        failure = e;
        logger.warn({ err: e, facilityId: f.id }, 'registerFacility failed; re-reading the chain');
      }
      chain = await ledger.facility(f.id);
      if (!chain.registered) {
        if (failure !== undefined && !isRevert(failure)) throw failure;
        throw new Blocked(`not registered on chain: ${failure === undefined ? 'the registration did not take effect' : message(failure)}`);
      }
    }
    if (chain.owner.toLowerCase() !== f.owner.toLowerCase()) {
      // Credits are minted to the chain's owner: never settle for an owner the registry does not name.
      const differs = `the chain's owner ${chain.owner} differs from the registry's ${f.owner}`;
      let pushed: boolean;
      try {
        pushed = await writer.pushOwner(f.id, f.owner);
      } catch (e) {
        if (!isRevert(e)) throw e;
        throw new Blocked(`${differs} and the chain refuses the correction: ${message(e)}`);
      }
      if (!pushed) throw new Blocked(differs);
      chain = { ...chain, owner: f.owner };
      metrics.transactions.inc({ kind: 'sync' });
      counts.synced++;
      logger.info({ facilityId: f.id, owner: f.owner }, 'facility owner synced to chain');
    }
    // Suspension and baseline never block settlement (the evidence header carries the baseline
    // actually applied); a failed push is retried next run.
    const wantSuspended = f.status === 'suspended';
    if (chain.suspended !== wantSuspended) {
      try {
        if (await writer.pushSuspension(f)) {
          chain = { ...chain, suspended: wantSuspended };
          metrics.transactions.inc({ kind: 'sync' });
          counts.synced++;
          logger.info({ facilityId: f.id, suspended: wantSuspended }, 'facility suspension synced to chain');
        }
      } catch (e) {
        agreed = false;
        metrics.errors.inc({ kind: 'sync' });
        logger.warn({ err: e, facilityId: f.id }, 'could not sync suspension to the chain; retrying next run');
      }
    }
    if (chain.baselineKgPerHour !== undefined && !sameDecimalText(f.baselineKgPerHour, chain.baselineKgPerHour)) {
      // The registry's current baseline from the window the registry applies it from (never before the
      // chain's next window): the chain caps each window's net at the baseline it holds for it, so
      // its schedule must be the registry's, or a window the oracle computes with the new baseline
      // could be refused for ever.
      const from = registrySince(f, toMs(chain.nextWindowStart));
      try {
        if (await writer.pushBaseline(f, from)) {
          chain = { ...chain, baselineKgPerHour: f.baselineKgPerHour };
          metrics.transactions.inc({ kind: 'sync' });
          counts.synced++;
          logger.info({ facilityId: f.id, baselineKgPerHour: f.baselineKgPerHour, effectiveFrom: from }, 'facility baseline synced to chain');
        }
      } catch (e) {
        agreed = false;
        metrics.errors.inc({ kind: 'sync' });
        logger.warn({ err: e, facilityId: f.id }, 'could not sync the baseline to the chain; retrying next run');
      }
    }
    return { chain, agreed };
  }

  /**
   * The first window start, at or after `chainNext`, from which the registry's current baseline holds
   * for every later window: a backward scan from the next window after now (where a push made now
   * would start) down to the registry's last change. Bounded; past the bound, the next window after now.
   */
  function registrySince(f: Facility, chainNext: number): number {
    const upper = baselineEffectiveFrom(clock(), windowMs, chainNext);
    let from = upper;
    for (let i = 0; i < MAX_BASELINE_SCAN && from - windowMs >= chainNext; i++) {
      if (!sameDecimalText(deps.registry.baselineAt(f.id, from - windowMs), f.baselineKgPerHour)) return from;
      from -= windowMs;
    }
    return from - windowMs >= chainNext ? upper : from;
  }

  /** Registry key (or '' for none) per device last found consistent with the chain (this process). */
  const consistent = new Map<string, string>();
  const mismatches = new Map<string, KeyMismatch>();

  async function syncDeviceKey(f: Facility, d: Device, counts: SyncCounts): Promise<void> {
    const want = d.publicKey ?? '';
    if (consistent.get(d.deviceId) === want) return;
    const have = (await ledger.deviceKey!(d.deviceId)) ?? '';
    if (have === want) {
      consistent.set(d.deviceId, want);
      if (mismatches.delete(d.deviceId)) logger.info({ deviceId: d.deviceId, facilityId: f.id }, 'device key agrees with the chain again');
      return;
    }
    // The chain has no current key: push the registry's only when the chain never recorded one for
    // this device (a revoked key is the regulator's decision, not a gap to fill).
    if (have === '' && want !== '' && (await ledger.deviceKeys!(d.deviceId)).length === 0 && ledger.setDeviceKey) {
      await ledger.setDeviceKey(d.deviceId, want);
      metrics.transactions.inc({ kind: 'device_key' });
      counts.synced++;
      consistent.set(d.deviceId, want);
      mismatches.delete(d.deviceId);
      logger.info({ deviceId: d.deviceId, facilityId: f.id, publicKey: want }, 'device key recorded on chain');
      return;
    }
    if (have === '' && want === '') return;
    const m: KeyMismatch = { deviceId: d.deviceId, facilityId: f.id, ...(want ? { registryKey: want } : {}), ...(have ? { chainKey: have } : {}) };
    const seen = mismatches.get(d.deviceId);
    mismatches.set(d.deviceId, m);
    if (!seen || seen.registryKey !== m.registryKey || seen.chainKey !== m.chainKey) {
      metrics.errors.inc({ kind: 'device_key' });
      logger.error(
        { deviceId: d.deviceId, facilityId: f.id, registryKey: m.registryKey ?? null, chainKey: m.chainKey ?? null },
        "device key differs from the key the regulator recorded on chain: not overwritten (a rotation goes on chain through the gateway's PATCH; a key changed in the database only is tampering)",
      );
    }
  }

  async function syncDeviceKeys(f: Facility, counts: SyncCounts): Promise<KeyMismatch[]> {
    if (!ledger.deviceKey || !ledger.deviceKeys || !deps.registry.listDevices) return [];
    for (const d of deps.registry.listDevices(f.id)) {
      try {
        await syncDeviceKey(f, d, counts);
      } catch (e) {
        metrics.errors.inc({ kind: 'sync' });
        logger.warn({ err: e, deviceId: d.deviceId, facilityId: f.id }, 'could not sync the device key with the chain; retrying next run');
      }
    }
    metrics.deviceKeyMismatches?.set(mismatches.size);
    return [...mismatches.values()].filter((m) => m.facilityId === f.id);
  }

  return { syncFacility, syncDeviceKeys, keyMismatches: () => [...mismatches.values()] };
}
