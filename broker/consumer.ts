/**
 * The ingest pipeline fed from an external broker (MQTT_URL) instead of our own: mqtt.js 5 clients in
 * the shared subscription group `$share/mrv-ingest/...` at QoS 1. A message is acknowledged only after
 * its readings are durable, yet many messages are in flight on each connection (broker/consumer-acks.ts:
 * mqtt.js is told not to PUBACK, the window PUBACKs in arrival order once `pipeline.submit` resolved),
 * so a burst reaches the pipeline together and is committed in groups, as behind our own broker. If
 * storage fails, the connection is dropped without PUBACK; the persistent session (clean=false, fixed
 * client id) makes the broker redeliver every unacknowledged message after the reconnect.
 *
 * Client ids are `${clientIdPrefix}-${i}` (MQTT_CLIENT_ID): each consumer process needs its own prefix,
 * stable across restarts. A broker keeps a stopped consumer's session, its unacknowledged messages and
 * (Mosquitto 2.0) its share of new messages until a client with the same id connects again: a consumer
 * that dies is replaced by one with the same prefix (docs/DEPLOY.md), which resumes its sessions.
 *
 * Devices authenticate at that broker, so the topic's ids are trusted as far as identity goes, but that
 * broker may admit anyone it likes: each message is checked against our registry as our own broker
 * checks a CONNECT. The device must exist ('unknown_device'), belong to the topic's facility
 * ('invalid_topic'), be active ('device_not_active') and its facility active ('facility_not_active');
 * else the message is rejected (logged, counted, feedback published) and acknowledged. The registry
 * row is cached per device for `registryTtlMs` (1 s), so a suspension applies within about a second
 * and a message costs no registry read in the common case.
 */
import mqtt, { type MqttClient, type IClientOptions } from 'mqtt';
import type { Registry as PromRegistry } from 'prom-client';
import { parseDeviceTopic, parseStatus } from './acl.ts';
import { AckWindow, DEFAULT_ACK_WINDOW, NO_AUTO_ACK, type AckTicket, type AckWindowLimits } from './consumer-acks.ts';
import { feedbackOf, feedbackPayload, feedbackTopic } from './feedback.ts';
import { ingestMetrics } from './metrics.ts';
import type { IngestPipeline } from './pipeline.ts';
import { redactUrl } from '../domain/config.ts';
import { errors } from '../domain/errors.ts';
import type { Logger } from '../domain/logger.ts';
import { MAX_REJECTION_PAYLOAD_BYTES } from '../domain/limits.ts';
import type { RejectReason } from '../domain/reading.ts';
import type { DeviceCredentials, FacilityRegistry } from '../store/types.ts';

/** How long a device's registry row is trusted (ms): a suspension takes effect within this. */
export const DEFAULT_REGISTRY_TTL_MS = 1000;
/** Cached rows at most (unknown ids included); the cache is emptied when full. */
const MAX_CACHED_DEVICES = 100_000;

type DeviceRow = Pick<DeviceCredentials, 'facilityId' | 'status' | 'facilityStatus'>;

export interface ConsumerDeps {
  url: string;
  username?: string;
  password?: string;
  registry: Pick<FacilityRegistry, 'credentials' | 'setOnline' | 'getFacility'>;
  pipeline: IngestPipeline;
  logger: Logger;
  metrics: PromRegistry;
  /** Shared subscription group. Default 'mrv-ingest'. */
  group?: string;
  /** Client connections in the group. Default 4. */
  connections?: number;
  /** Client ids are `${clientIdPrefix}-${i}` (stable, for persistent sessions). Default 'mrv-ingest'. */
  clientIdPrefix?: string;
  /** Per connection: unacknowledged messages and payload bytes being processed at most. Default DEFAULT_ACK_WINDOW. */
  window?: Partial<AckWindowLimits>;
  /** Extra mqtt.js options (tests: reconnectPeriod). */
  mqttOptions?: IClientOptions;
  /** How long (ms) a device's registry row is cached. Default DEFAULT_REGISTRY_TTL_MS. */
  registryTtlMs?: number;
  clock?: () => number;
}

/** How long close() waits for the messages in flight to be committed and acknowledged (ms). */
export const DEFAULT_DRAIN_MS = 10_000;

export interface Consumer {
  /** Connects every client and subscribes; resolves once all have their SUBACK. */
  start(): Promise<void>;
  /** Stops taking messages, acknowledges those in flight once committed (bounded wait), disconnects. */
  close(drainMs?: number): Promise<void>;
}

export function buildConsumer(deps: ConsumerDeps): Consumer {
  // The acknowledgement window writes PUBACKs through mqtt.js' private writer: refuse to start on an
  // mqtt.js without it rather than never acknowledge (test/broker/consumer-inflight.test.ts pins the rest).
  if (typeof (mqtt.MqttClient.prototype as unknown as { _sendPacket?: unknown })._sendPacket !== 'function') {
    throw errors.MQTT_CLIENT_UNSUPPORTED('MqttClient._sendPacket is gone (written for mqtt.js 5)');
  }
  const log = deps.logger.child({ component: 'consumer' });
  const m = ingestMetrics(deps.metrics);
  const clock = deps.clock ?? Date.now;
  const group = deps.group ?? 'mrv-ingest';
  const n = deps.connections ?? 4;
  const prefix = deps.clientIdPrefix ?? 'mrv-ingest';
  const clients: MqttClient[] = [];
  const windows: AckWindow[] = [];
  /** Set by close(): messages arriving now are left unacknowledged (redelivered to the next session). */
  let closing = false;
  const filters = [`$share/${group}/facilities/+/devices/+/readings`, `$share/${group}/facilities/+/devices/+/status`];

  const limits: AckWindowLimits = { ...DEFAULT_ACK_WINDOW, ...deps.window };
  const ttl = deps.registryTtlMs ?? DEFAULT_REGISTRY_TTL_MS;
  /** deviceId -> its registry row (undefined: not registered) and when it was read. */
  const cache = new Map<string, { row: DeviceRow | undefined; at: number }>();

  /** The device's registry row, read at most once per `ttl`. Throws if the registry does. */
  function deviceRow(deviceId: string, now: number): DeviceRow | undefined {
    const hit = cache.get(deviceId);
    if (hit && now - hit.at < ttl && now >= hit.at) return hit.row;
    const c = deps.registry.credentials(deviceId);
    const row = c && { facilityId: c.facilityId, status: c.status, facilityStatus: c.facilityStatus };
    if (cache.size >= MAX_CACHED_DEVICES) cache.clear();
    cache.set(deviceId, { row, at: now });
    return row;
  }

  /** Why this device may not publish under this topic's facility, or undefined when it may. */
  function refusal(row: DeviceRow | undefined, facilityId: string): { reason: RejectReason; detail: string } | undefined {
    if (!row) return { reason: 'unknown_device', detail: 'device is not registered' };
    if (row.facilityId !== facilityId) return { reason: 'invalid_topic', detail: `device is not registered to facility ${facilityId}` };
    if (row.status !== 'active') return { reason: 'device_not_active', detail: `device is ${row.status}` };
    if (row.facilityStatus !== 'active') return { reason: 'facility_not_active', detail: `facility is ${row.facilityStatus}` };
    return undefined;
  }

  /**
   * A refused message: counted, logged in the topic's facility's rejections log when that facility
   * exists (an unknown facility id has no log to write to; rows for it would only fill the disk), and
   * the reason published to the device's feedback topic (QoS 0, best effort).
   */
  function refuse(client: MqttClient, t: { facilityId: string; deviceId: string }, why: { reason: RejectReason; detail: string }, payload: Buffer): void {
    // The device's own facility (a status refusal) exists; otherwise ask the registry.
    let facilityKnown = why.reason === 'device_not_active' || why.reason === 'facility_not_active';
    try {
      facilityKnown ||= deps.registry.getFacility(t.facilityId) !== undefined;
    } catch (err) {
      log.warn({ err }, 'registry lookup failed: rejection counted, not logged');
    }
    if (facilityKnown) {
      deps.pipeline.recordRejection({
        facilityId: t.facilityId,
        deviceId: t.deviceId,
        receivedAt: clock(),
        reason: why.reason,
        detail: why.detail,
        payload: payload.subarray(0, MAX_REJECTION_PAYLOAD_BYTES).toString('utf8'),
      });
    } else {
      m.rejected.inc({ reason: why.reason });
    }
    log.debug({ facilityId: t.facilityId, deviceId: t.deviceId, reason: why.reason }, 'message refused by the registry check');
    client.publish(feedbackTopic(t.facilityId, t.deviceId), feedbackPayload([{ seq: null, ...why }]), { qos: 0 });
  }

  /** The connection is dropped without PUBACK: the broker redelivers its unacknowledged messages after the reconnect. */
  function drop(client: MqttClient, ticket: AckTicket): void {
    ticket.fail();
    client.stream.destroy();
  }

  /** One admitted message; `ticket.done()` once it may be acknowledged, `drop` when it may not. */
  function process(client: MqttClient, packet: mqtt.IPublishPacket, ticket: AckTicket): void {
    const t = parseDeviceTopic(packet.topic);
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    if (!t) return ticket.done();
    let why: { reason: RejectReason; detail: string } | undefined;
    try {
      why = refusal(deviceRow(t.deviceId, clock()), t.facilityId);
    } catch (err) {
      log.error({ err }, 'registry lookup failed: message not acknowledged');
      return drop(client, ticket);
    }
    if (why) {
      if (why.reason === 'unknown_device' || why.reason === 'invalid_topic') m.aclDenied.inc({ action: 'publish' });
      ticket.done();
      // A status message is not a reading: refused (no online flag written) without a rejection row.
      if (t.kind === 'readings') refuse(client, t, why, payload);
      return;
    }
    if (t.kind === 'status') {
      const online = parseStatus(payload);
      try {
        const done = online !== undefined ? deps.registry.setOnline(t.deviceId, online, clock()) : undefined;
        if (done) done.catch((err: unknown) => log.warn({ err }, 'could not record online status'));
      } catch (err) {
        log.warn({ err }, 'could not record online status');
      }
      return ticket.done();
    }
    deps.pipeline.submit({ facilityId: t.facilityId, deviceId: t.deviceId }, payload).then(
      (res) => {
        ticket.done();
        // The device's feedback topic on the external broker (best effort, QoS 0; the broker's ACL must
        // let this client publish there and the device subscribe to it).
        if (res.rejected.length > 0) client.publish(feedbackTopic(t.facilityId, t.deviceId), feedbackPayload(feedbackOf(res)), { qos: 0 });
      },
      (err: unknown) => {
        log.warn({ err, deviceId: t.deviceId }, 'readings not stored: dropping the connection without PUBACK');
        drop(client, ticket);
      },
    );
  }

  /**
   * mqtt.js' hook for every incoming PUBLISH. The callback is held only until the message fits the
   * connection's window (back-pressure), then called with NO_AUTO_ACK: mqtt.js reads the next packet
   * and sends no PUBACK; the window sends it after the commit.
   */
  function handleMessage(client: MqttClient, window: AckWindow, packet: mqtt.IPublishPacket, cb: (err?: Error) => void): void {
    const stream = client.stream;
    // A packet parsed before the connection was dropped, or arriving while we stop: the broker
    // redelivers it on the next connection of this session.
    if (stream.destroyed || closing) return cb(NO_AUTO_ACK);
    const bytes = typeof packet.payload === 'string' ? Buffer.byteLength(packet.payload) : packet.payload.length;
    const messageId = packet.qos > 0 ? packet.messageId : undefined;
    window.admit(
      messageId,
      bytes,
      (ticket) => {
        cb(NO_AUTO_ACK);
        if (stream.destroyed) return ticket.fail();
        process(client, packet, ticket);
      },
      () => cb(NO_AUTO_ACK),
    );
  }

  function connectOne(i: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const client = mqtt.connect(deps.url, {
        clientId: `${prefix}-${i}`,
        clean: false,
        username: deps.username,
        password: deps.password,
        protocolVersion: 4,
        reconnectPeriod: 1000,
        ...deps.mqttOptions,
      });
      clients.push(client);
      const window = new AckWindow((messageId) => {
        // mqtt.js' own packet writer (private: it has no public call for a PUBACK); only on the
        // connection the message came in on, which `reset` on 'close' guarantees.
        if (client.connected && !client.stream.destroyed) sendPacket(client, { cmd: 'puback', messageId });
      }, limits);
      windows.push(window);
      client.on('close', () => window.reset());
      client.handleMessage = (packet, cb) => handleMessage(client, window, packet, cb as (err?: Error) => void);
      let first = true;
      client.on('connect', (connack) => {
        // A persistent session keeps its subscriptions; subscribe again anyway (idempotent) if it was lost.
        if (!connack.sessionPresent || first) {
          client.subscribe(filters, { qos: 1 }, (err, granted) => {
            const refused = granted?.some((g) => g.qos === 128);
            if (first) {
              first = false;
              if (err || refused) reject(err ?? new Error('shared subscription refused'));
              else resolve();
            } else if (err || refused) log.error({ err }, 'resubscribe failed');
          });
        }
        log.info({ clientId: `${prefix}-${i}` }, 'consumer connected');
      });
      client.on('error', (err) => {
        log.warn({ err: err.message }, 'consumer connection error');
        if (first) {
          first = false;
          reject(err);
        }
      });
    });
  }

  return {
    async start() {
      await Promise.all(Array.from({ length: n }, (_, i) => connectOne(i)));
      log.info({ url: redactUrl(deps.url), group, connections: n }, 'consuming readings from the external broker');
    },
    /**
     * Takes no new message, waits (at most `drainMs`) until the messages in flight are committed and
     * acknowledged, then disconnects: a stop leaves no redelivery behind unless storage hangs.
     */
    async close(drainMs = DEFAULT_DRAIN_MS) {
      closing = true;
      let timer: NodeJS.Timeout | undefined;
      const bound = new Promise<void>((resolve) => (timer = setTimeout(resolve, drainMs)));
      await Promise.race([Promise.all(windows.map((w) => w.idle())), bound]);
      clearTimeout(timer);
      await Promise.all(clients.map((c) => c.endAsync()));
      clients.length = 0;
      windows.length = 0;
    },
  };
}

/** mqtt.js 5's packet writer (`MqttClient._sendPacket`, private). */
function sendPacket(client: MqttClient, packet: { cmd: 'puback'; messageId: number }): void {
  (client as unknown as { _sendPacket(p: typeof packet): void })._sendPacket(packet);
}
