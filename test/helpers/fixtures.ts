/**
 * The registry fixture most tests start from: a facility with a 3600 kg/h baseline and the base
 * emission factors, and devices registered under it. Override what a test is about, nothing else.
 */
import type { SqliteRegistry } from '../../store/sqlite/registry.ts';
import type { FacilityRegistry } from '../../store/types.ts';

export const OWNER = '0x' + '11'.repeat(20);

export type FacilityInput = Parameters<FacilityRegistry['createFacility']>[0];

/** A facility `id` (named after its id), owned by OWNER, baseline 3600 kg/h, grid 0.5366, gas 2.162. */
export function facilityFixture(id = 'F', over: Partial<FacilityInput> = {}): FacilityInput {
  return { id, name: id, owner: OWNER, baselineKgPerHour: '3600', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162', ...over };
}

/**
 * Registers each facility of `fleet` (id -> its device ids, kind `meter`) with facilityFixture and
 * `over`; returns each device's MQTT password.
 */
export function registerFleet(registry: Pick<SqliteRegistry, 'createFacility' | 'createDevice'>, fleet: Record<string, string[]>, over: Partial<FacilityInput> = {}): Record<string, string> {
  const passwords: Record<string, string> = {};
  for (const [facilityId, devices] of Object.entries(fleet)) {
    registry.createFacility(facilityFixture(facilityId, over));
    for (const d of devices) passwords[d] = registry.createDevice(facilityId, d, 'meter').password;
  }
  return passwords;
}
