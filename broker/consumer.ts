/**
 * The ingest pipeline fed from an external broker (MQTT_URL) instead of our own: mqtt.js 5 clients in
 * the shared subscription group `$share/mrv-ingest/...` at QoS 1. A message is acknowledged only after
 * its readings are durable: mqtt.js sends the PUBACK when `handleMessage` calls back, and we call back
 * after `pipeline.submit` resolved. If storage fails, the connection is dropped without PUBACK; the
 * persistent session (clean=false, fixed client id) makes the broker redeliver after the reconnect.
 *
 * Devices authenticate at that broker, so the topic's ids are trusted as far as identity goes, but the
 * device must exist in our registry and belong to the topic's facility (else rejected, 'invalid_topic').
 *
 * mqtt.js handles one incoming packet at a time per connection (the next waits for the callback), so
 * one connection has one message in flight; `connections` clients share the group for parallelism
 * (and group commit across them).
 */
import mqtt, { type MqttClient, type IClientOptions } from 'mqtt';
import type { Registry as PromRegistry } from 'prom-client';
import { parseDeviceTopic, parseStatus } from './acl.ts';
import { feedbackOf, feedbackPayload, feedbackTopic } from './feedback.ts';
import { ingestMetrics } from './metrics.ts';
import type { IngestPipeline } from './pipeline.ts';
import { redactUrl } from '../domain/config.ts';
import type { Logger } from '../domain/logger.ts';
import type { Registry } from '../store/types.ts';

export interface ConsumerDeps {
  url: string;
  username?: string;
  password?: string;
  registry: Pick<Registry, 'getDevice' | 'setOnline' | 'getFacility'>;
  pipeline: IngestPipeline;
  logger: Logger;
  metrics: PromRegistry;
  /** Shared subscription group. Default 'mrv-ingest'. */
  group?: string;
  /** Client connections in the group. Default 4. */
  connections?: number;
  /** Client ids are `${clientIdPrefix}-${i}` (stable, for persistent sessions). Default 'mrv-ingest'. */
  clientIdPrefix?: string;
  /** Extra mqtt.js options (tests: reconnectPeriod). */
  mqttOptions?: IClientOptions;
  clock?: () => number;
}

export interface Consumer {
  /** Connects every client and subscribes; resolves once all have their SUBACK. */
  start(): Promise<void>;
  close(): Promise<void>;
}

export function buildConsumer(deps: ConsumerDeps): Consumer {
  const log = deps.logger.child({ component: 'consumer' });
  const m = ingestMetrics(deps.metrics);
  const clock = deps.clock ?? Date.now;
  const group = deps.group ?? 'mrv-ingest';
  const n = deps.connections ?? 4;
  const prefix = deps.clientIdPrefix ?? 'mrv-ingest';
  const clients: MqttClient[] = [];
  const filters = [`$share/${group}/facilities/+/devices/+/readings`, `$share/${group}/facilities/+/devices/+/status`];

  function handle(client: MqttClient, packet: mqtt.IPublishPacket, cb: (err?: Error) => void): void {
    const t = parseDeviceTopic(packet.topic);
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    if (!t) return cb();
    let known = false;
    try {
      const dev = deps.registry.getDevice(t.deviceId);
      known = dev !== undefined && dev.facilityId === t.facilityId;
    } catch (err) {
      log.error({ err }, 'registry lookup failed: message not acknowledged');
      client.stream.destroy();
      return cb(err as Error);
    }
    if (!known) {
      m.aclDenied.inc({ action: 'publish' });
      if (deps.registry.getFacility(t.facilityId)) {
        deps.pipeline.recordRejection({
          facilityId: t.facilityId,
          deviceId: t.deviceId,
          receivedAt: clock(),
          reason: 'invalid_topic',
          detail: 'device unknown or not registered to this facility',
          payload: payload.subarray(0, 4096).toString('utf8'),
        });
      }
      return cb();
    }
    if (t.kind === 'status') {
      const online = parseStatus(payload);
      try {
        if (online !== undefined) deps.registry.setOnline(t.deviceId, online, clock());
      } catch (err) {
        log.warn({ err }, 'could not record online status');
      }
      return cb();
    }
    deps.pipeline.submit({ facilityId: t.facilityId, deviceId: t.deviceId }, payload).then(
      (res) => {
        cb();
        // The device's feedback topic on the external broker (best effort, QoS 0; the broker's ACL must
        // let this client publish there and the device subscribe to it).
        if (res.rejected.length > 0) client.publish(feedbackTopic(t.facilityId, t.deviceId), feedbackPayload(feedbackOf(res)), { qos: 0 });
      },
      (err: unknown) => {
        log.warn({ err, deviceId: t.deviceId }, 'readings not stored: dropping the connection without PUBACK');
        // A dropped stream reconnects (reconnectPeriod) and the broker redelivers the session's unacked messages.
        client.stream.destroy();
        cb(err instanceof Error ? err : new Error(String(err)));
      },
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
      client.handleMessage = (packet, cb) => handle(client, packet, cb as (err?: Error) => void);
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
    async close() {
      await Promise.all(clients.map((c) => c.endAsync()));
      clients.length = 0;
    },
  };
}
