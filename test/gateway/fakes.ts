/**
 * A small in-memory stand-in for the broker's session control, used where the real broker is not the
 * point of the test. (The chain's stand-in is the one in-memory ledger, test/helpers/memory-ledger.ts.)
 */
import type { GatewayBroker } from '../../gateway/deps.ts';

export function fakeBroker(): GatewayBroker & { disconnected: string[] } {
  const disconnected: string[] = [];
  return {
    disconnected,
    disconnectDevice(deviceId) {
      disconnected.push(`device:${deviceId}`);
    },
    disconnectFacility(facilityId) {
      disconnected.push(`facility:${facilityId}`);
    },
    ping: () => true,
  };
}
