/**
 * The broker's public shape: its limits (defaults in DEFAULT_LIMITS, docs/INGESTION.md), dependencies,
 * listener options and the Broker interface that broker.ts implements.
 */
import type { Duplex } from 'node:stream';
import type { Aedes } from 'aedes';
import type { Registry as PromRegistry } from 'prom-client';
import type { IngestPipeline } from './pipeline.ts';
import { MAX_PAYLOAD_BYTES } from '../domain/limits.ts';
import type { Logger } from '../domain/logger.ts';
import type { FacilityRegistry } from '../store/types.ts';
import { defaultOf } from '../domain/config.ts';

export interface BrokerLimits {
  /** Largest MQTT packet (declared remaining length) accepted; bigger ones drop the connection. */
  maxPacketBytes: number;
  /** Longest topic in a PUBLISH (bytes); longer drops the connection. */
  maxTopicBytes: number;
  /** aedes `maxTopicLevels`: deeper topics (publish or subscribe) close the connection. */
  maxTopicLevels: number;
  /** Client ids longer than this are refused (CONNACK 2). Device ids are at most 64. */
  maxClientIdLength: number;
  /** A connection that sends no CONNECT within this time is closed (aedes `connectTimeout`). */
  connectTimeoutMs: number;
  /** Keepalive is clamped to [min, max] seconds; 0 (disabled) becomes max. */
  keepaliveMinSeconds: number;
  keepaliveMaxSeconds: number;
  /**
   * Unauthenticated CONNECT attempts per source address (IPv6: per /64): each CONNECT takes a token, a successful
   * login gives it back. Over the limit: CONNACK 3 (server unavailable) at once, nothing checked.
   */
  connectRatePerSecond: number;
  connectBurst: number;
  /**
   * Slow secret checks (legacy scrypt records, see store/secrets.ts) running at once; a CONNECT that
   * would need one beyond this gets CONNACK 3 at once (counted as `busy`). Current records are checked
   * in microseconds and never wait.
   */
  maxPendingLogins: number;
  /**
   * How often (ms) the broker re-reads the registry rows of the devices with a live session and closes
   * the sessions whose device or facility is no longer active or whose secret changed (a gateway in
   * another process changed them). 0 disables.
   */
  registryPollMs: number;
}

export const DEFAULT_LIMITS: BrokerLimits = {
  maxPacketBytes: MAX_PAYLOAD_BYTES + 1024,
  maxTopicBytes: 256,
  maxTopicLevels: 16,
  maxClientIdLength: 64,
  connectTimeoutMs: 10_000,
  keepaliveMinSeconds: 5,
  keepaliveMaxSeconds: 600,
  // The configurable ones take the settings table's defaults (MQTT_CONNECT_RATE/BURST, MQTT_REGISTRY_POLL_MS).
  connectRatePerSecond: defaultOf('mqttConnectRate'),
  connectBurst: defaultOf('mqttConnectBurst'),
  maxPendingLogins: 16,
  registryPollMs: defaultOf('mqttRegistryPollMs'),
};

export interface BrokerDeps {
  registry: FacilityRegistry;
  pipeline: IngestPipeline;
  logger: Logger;
  metrics: PromRegistry;
  limits?: Partial<BrokerLimits>;
  clock?: () => number;
}

export interface ListenOptions {
  /** Port of the plain TCP listener (0: any free port). */
  port: number;
  host?: string;
  /** Open the plain TCP listener. Default true; false needs `tls` (there would be no listener). */
  plain?: boolean;
  tls?: { cert: string | Buffer; key: string | Buffer; port: number };
}

export interface Broker {
  readonly aedes: Aedes;
  /** Readies the broker without opening a listener (connections then come through `handle`); `listen` does it too. */
  start(): Promise<void>;
  /** Opens the listeners; `port` is undefined when the plain one is off. */
  listen(opts: ListenOptions): Promise<{ port?: number; tlsPort?: number }>;
  /**
   * Serves one MQTT connection over a duplex stream, as the listeners do with each TCP/TLS socket
   * (packet guard, write coalescing, aedes). A stream without a remote address (an in-memory pair)
   * counts its CONNECT attempts under the address "unknown". Needs `start` or `listen` first.
   */
  handle(conn: Duplex): void;
  /** Closes every session (connected or still connecting) of the device. Returns how many. */
  disconnectDevice(deviceId: string): number;
  /** Closes every session of the facility's devices. Returns how many. */
  disconnectFacility(facilityId: string): number;
  /** One registry poll now (see `registryPollMs`): closes sessions whose credentials changed. Returns how many. */
  checkSessions(force?: boolean): number;
  ping(): boolean;
  close(): Promise<void>;
}
