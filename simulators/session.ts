/**
 * One device's MQTT session inside the fleet: its mqtt.js client (clientId = username = deviceId,
 * QoS 1, last will `offline` on the status topic, `online` on connect), the publishes it keeps
 * pending until acknowledged, and the network faults played with the devices' sessions (wrong
 * credentials, topic spoofing). fleet.ts orchestrates the sessions, their timers and the stats.
 */
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import { badAuth, isConnackRefusal } from './connection.ts';
import type { Logger } from '../domain/logger.ts';
import { readingsTopic, statusTopic, type RejectReason } from '../domain/reading.ts';
import type { DeviceSim, Outgoing } from './device.ts';
import { expectRejection, type FaultCounts, type FaultRates } from './faults.ts';
import type { DevicePlan } from './plan.ts';
import type { PendingMessage } from './state.ts';

export interface PendingEntry extends PendingMessage {
  kind: Outgoing['kind'];
}

export interface Runner {
  sim: DeviceSim;
  plan: DevicePlan;
  client: MqttClient;
  pending: Map<number, PendingEntry>;
  nextId: number;
  connected: boolean;
  refused?: Error;
  lastError?: Error;
  errors: number;
  readingsAcked: number;
  ackedSeqs?: number[];
  timer?: NodeJS.Timeout;
}

/** The fleet's counters the sessions add to. */
export interface FleetCounters {
  sent: number;
  acked: number;
  readings: number;
  reconnects: number;
  connectionErrors: number;
  bufferFull: number;
  redelivered: number;
}

/** What the sessions share with the fleet that runs them. */
export interface SessionContext {
  url: string;
  log: Logger;
  counters: FleetCounters;
  stopping(): boolean;
  reconnectPeriodMs?: number;
  connectTimeoutMs?: number;
  /** Every client error, after the session's own bookkeeping (the fleet keeps the last one). */
  onError(err: Error): void;
  onMessage?: (m: Outgoing) => void;
}

export interface SessionMessage {
  kind: Outgoing['kind'];
  topic: string;
  payload: Buffer;
  seqs: number[];
  expect?: RejectReason;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function waitUntil(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() >= deadline) return false;
    await sleep(20);
  }
  return true;
}

/** Publishes at QoS 1; the message stays pending (and goes to the state file) until its PUBACK. */
export function publish(ctx: SessionContext, r: Runner, m: SessionMessage, outgoing?: Outgoing): void {
  const id = ++r.nextId;
  r.pending.set(id, { kind: m.kind, topic: m.topic, seqs: m.seqs, payload: m.payload.toString('utf8'), ...(m.expect ? { expect: m.expect } : {}) });
  ctx.counters.sent++;
  if (outgoing) ctx.onMessage?.(outgoing);
  r.client.publish(m.topic, m.payload, { qos: 1 }, (err) => {
    if (err) {
      // only when the client is ended: the message stays pending and goes to the state file
      ctx.log.debug({ deviceId: r.plan.deviceId, err: err.message }, 'publish not acknowledged');
      return;
    }
    r.pending.delete(id);
    ctx.counters.acked++;
    // the readings the platform is expected to store (a fault-refused message is acked all the same)
    if (m.kind === 'reading' && !m.expect) {
      r.readingsAcked += m.seqs.length;
      r.ackedSeqs?.push(...m.seqs);
    }
  });
}

/** Connects the device's client; mqtt.js queues QoS 1 publishes while offline and resends them in order. */
export function connectRunner(ctx: SessionContext, r: Runner): void {
  const d = r.plan;
  const options: IClientOptions = {
    clientId: d.deviceId,
    username: d.deviceId,
    ...(d.password !== undefined ? { password: d.password } : {}),
    protocolVersion: 4,
    clean: true,
    keepalive: 30,
    reconnectPeriod: ctx.reconnectPeriodMs ?? 1000,
    connectTimeout: ctx.connectTimeoutMs ?? 10_000,
    queueQoSZero: false,
    will: { topic: statusTopic(d.facilityId, d.deviceId), payload: Buffer.from('offline'), qos: 1, retain: true },
  };
  const client = connect(ctx.url, options);
  r.client = client;
  client.on('connect', () => {
    r.connected = true;
    client.publish(statusTopic(d.facilityId, d.deviceId), 'online', { qos: 1, retain: true });
  });
  client.on('reconnect', () => {
    ctx.counters.reconnects++;
  });
  client.on('close', () => {
    r.connected = false;
  });
  client.on('error', (err) => {
    ctx.counters.connectionErrors++;
    r.errors++;
    r.lastError = err;
    ctx.onError(err);
    if (isConnackRefusal(err)) {
      if (err.code === 3 && !ctx.stopping()) {
        // server unavailable: transient, try again
        setTimeout(() => !ctx.stopping() && client.reconnect(), ctx.reconnectPeriodMs ?? 1000).unref();
        return;
      }
      r.refused = err;
      ctx.log.error({ deviceId: d.deviceId, code: err.code }, `broker refused the device: ${err.message}`);
    } else {
      ctx.log.debug({ deviceId: d.deviceId, err: err.message }, 'connection error');
    }
  });
}

/** The network faults, in the background: wrong passwords, then publishes to other devices' topics. */
export async function runNetFaults(ctx: SessionContext, runners: Runner[], faults: FaultRates, netFaults: FaultCounts, seed: string, now: () => number): Promise<void> {
  for (let k = 0; k < faults.badauth && !ctx.stopping(); k++) {
    const r = runners[k % runners.length];
    netFaults.badauth.attempted++;
    const outcome = await badAuth(ctx.url, r.plan, `wrong-${k}-${seed}`, ctx.connectTimeoutMs ?? 5000);
    netFaults.badauth[outcome]++;
    if (outcome === 'accepted') ctx.log.error({ deviceId: r.plan.deviceId }, 'SECURITY: the broker accepted a wrong password');
  }
  for (let k = 0; k < faults.spoof && !ctx.stopping(); k++) {
    const attacker = runners[k % runners.length];
    const victim = runners.length > 1 ? runners[(k + 1) % runners.length].plan : { facilityId: `${attacker.plan.facilityId}-x`, deviceId: `${attacker.plan.deviceId}-x` };
    netFaults.spoof.attempted++;
    if (!(await waitUntil(() => attacker.connected || ctx.stopping(), 3000)) || !attacker.connected) {
      netFaults.spoof.failed++;
      continue;
    }
    const payload = JSON.stringify({ seq: 0, ts: new Date(now()).toISOString(), metric: 'co2_direct', value: 1, unit: 'kg' });
    const ok = await new Promise<boolean>((resolve) =>
      attacker.client.publish(readingsTopic(victim.facilityId, victim.deviceId), payload, { qos: 0 }, (err) => resolve(!err)),
    );
    netFaults.spoof[ok ? 'sent' : 'failed']++;
    if (ok) expectRejection(netFaults, 'invalid_topic'); // logged against the attacker, which stays connected or reconnects
    await sleep(20);
  }
}
