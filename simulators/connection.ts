/** MQTT connection helpers of the fleet: URL check, CONNACK refusals, closing, the wrong-password probe. */
import { connect, type MqttClient } from 'mqtt';
import { simErrors } from './errors.ts';
import type { DevicePlan } from './plan.ts';

const PROTOCOLS = new Set(['mqtt:', 'mqtts:', 'tcp:', 'ssl:', 'tls:', 'ws:', 'wss:']);

export function checkBrokerUrl(url: string): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw simErrors.BAD_URL(url, 'expected something like mqtt://127.0.0.1:1883');
  }
  if (!PROTOCOLS.has(u.protocol)) throw simErrors.BAD_URL(url, `protocol ${u.protocol} is not one of mqtt:, mqtts:, ws:, wss:`);
  if (!u.hostname) throw simErrors.BAD_URL(url, 'no host');
  return u;
}

export function isConnackRefusal(err: unknown): err is Error & { code: number } {
  return typeof (err as { code?: unknown }).code === 'number';
}

export function endClient(client: MqttClient): Promise<void> {
  return new Promise((resolve) => client.end(true, {}, () => resolve()));
}

/** One connect with a wrong password: the broker must refuse it (CONNACK 4/5, or 134/135 in MQTT 5). */
export function badAuth(url: string, d: DevicePlan, password: string, timeoutMs: number): Promise<'refused' | 'accepted' | 'failed'> {
  return new Promise((resolve) => {
    const client = connect(url, { clientId: d.deviceId, username: d.deviceId, password, protocolVersion: 4, clean: true, reconnectPeriod: 0, connectTimeout: timeoutMs });
    let settled = false;
    const finish = (outcome: 'refused' | 'accepted' | 'failed') => {
      if (settled) return;
      settled = true;
      client.end(true, {}, () => resolve(outcome));
    };
    client.on('connect', () => finish('accepted'));
    client.on('error', (err) => finish(isConnackRefusal(err) ? 'refused' : 'failed'));
    client.on('close', () => finish('failed'));
  });
}
