/**
 * Topic ACL (SPEC "MQTT interface"): a device publishes only to its own readings and status topics and
 * subscribes only inside `facilities/{facilityId}/devices/{deviceId}/#`. Pure functions.
 */
import { ID_RE } from '../domain/reading.ts';

export interface DeviceSession {
  deviceId: string;
  facilityId: string;
}

export type DeviceTopic = 'readings' | 'status';

function prefix(s: DeviceSession): string {
  return `facilities/${s.facilityId}/devices/${s.deviceId}`;
}

/** Which of the device's own topics `topic` is, or undefined when the device may not publish there. */
export function publishTopicKind(s: DeviceSession, topic: string): DeviceTopic | undefined {
  const p = prefix(s);
  if (topic.length !== p.length + 9 && topic.length !== p.length + 7) return undefined;
  if (!topic.startsWith(p)) return undefined;
  const rest = topic.slice(p.length);
  if (rest === '/readings') return 'readings';
  if (rest === '/status') return 'status';
  return undefined;
}

/** Whether the device may subscribe to `filter`: only its own subtree (wildcards inside it are fine). */
export function maySubscribe(s: DeviceSession, filter: string): boolean {
  const p = prefix(s);
  if (filter === p) return true;
  return filter.startsWith(p + '/');
}

/** Parses `facilities/{f}/devices/{d}/{readings|status}` (the external-broker consumer trusts these ids). */
export function parseDeviceTopic(topic: string): (DeviceSession & { kind: DeviceTopic }) | undefined {
  const parts = topic.split('/');
  if (parts.length !== 5 || parts[0] !== 'facilities' || parts[2] !== 'devices') return undefined;
  const [, facilityId, , deviceId, kind] = parts;
  if (!ID_RE.test(facilityId) || !ID_RE.test(deviceId)) return undefined;
  if (kind !== 'readings' && kind !== 'status') return undefined;
  return { facilityId, deviceId, kind };
}

/** A device status payload: `online`/`offline` text or `{"status":"online"}` / `{"online":true}`. */
export function parseStatus(payload: Buffer): boolean | undefined {
  if (payload.length > 1024) return undefined;
  const text = payload.toString('utf8').trim();
  const word = text.toLowerCase();
  if (word === 'online' || word === '1' || word === 'true') return true;
  if (word === 'offline' || word === '0' || word === 'false') return false;
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== 'object' || v === null) return undefined;
    const o = v as Record<string, unknown>;
    if (typeof o.online === 'boolean') return o.online;
    if (o.status === 'online') return true;
    if (o.status === 'offline') return false;
  } catch {
    // not JSON: unknown status
  }
  return undefined;
}
