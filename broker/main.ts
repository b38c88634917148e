/**
 * `npm run start:broker`: the ingest service on its own. Loads the configuration, opens the stores
 * (store/open.ts: SQLite, readings in InfluxDB when INFLUX_URL is set),
 * then either runs our broker (MQTT_PORT; with MQTT_TLS_CERT/KEY the TLS port instead, or both with
 * MQTT_PLAIN=true) or, with MQTT_URL,
 * consumes from that external broker. Prints one JSON line `{"event":"listening","mqttPort":...}` on
 * stdout once ready (the durability test reads it); SIGINT/SIGTERM close everything in order.
 *
 * `startIngest` is exported for scripts that need the same composition with a twist (bench/ wraps the
 * store to inject a stall); `npm start` composes the factories itself.
 */
import fs from 'node:fs';
import { Registry as PromRegistry } from 'prom-client';
import { buildBroker, type Broker, type BrokerLimits, type ListenOptions } from './broker.ts';
import { buildConsumer, type Consumer } from './consumer.ts';
import { buildIngestPipeline, type IngestPipelineDeps } from './pipeline.ts';
import { ingestSettings, loadConfig, mqttListeners, type Config } from '../domain/config.ts';
import { createLogger, type Logger } from '../domain/logger.ts';
import { closeOnSignal, isEntryPoint, Parts, runMain, throwIfFailed, type StopSummary } from '../domain/process.ts';
import { openStores } from '../store/open.ts';
import type { ReadingStore } from '../store/types.ts';

export interface StartIngestOptions {
  logger: Logger;
  metrics?: PromRegistry;
  /** Wraps the reading store (bench: inject a stall). */
  wrapStore?: (store: ReadingStore) => ReadingStore;
  pipeline?: Partial<Pick<IngestPipelineDeps, 'maxBatch' | 'maxDelayMs' | 'maxQueuedBytes' | 'rateLimit'>>;
  limits?: Partial<BrokerLimits>;
}

export interface IngestService {
  mqttPort?: number;
  tlsPort?: number;
  broker?: Broker;
  consumer?: Consumer;
  /** Stops broker (or consumer), ingest pipeline and store in that order, logging each when given a logger. */
  stop(logger?: Logger): Promise<StopSummary>;
  close(): Promise<void>;
}

/**
 * Our broker's listeners from the configuration (domain/config.ts `mqttListeners`): TLS when
 * MQTT_TLS_CERT/KEY are set (files read here), the plain port unless TLS is on and MQTT_PLAIN is not true.
 */
export function brokerListenOptions(config: Config): ListenOptions {
  const l = mqttListeners(config);
  return {
    port: config.mqttPort,
    host: config.mqttHost,
    plain: l.plain,
    ...(l.tls ? { tls: { cert: fs.readFileSync(l.tls.certFile), key: fs.readFileSync(l.tls.keyFile), port: l.tls.port } } : {}),
  };
}

export async function startIngest(config: Config, opts: StartIngestOptions): Promise<IngestService> {
  const { logger } = opts;
  const metrics = opts.metrics ?? new PromRegistry();
  const stores = await openStores(config, logger);
  const sqlite = stores;
  const store: ReadingStore = opts.wrapStore ? opts.wrapStore(stores.readings) : stores.readings;
  // Behind an external broker the rate limit is that broker's job: refusing one device's message there
  // would drop the consumer connection shared by many devices.
  const settings = ingestSettings(config);
  const pipeline = buildIngestPipeline({
    store,
    registry: sqlite.registry,
    logger,
    metrics,
    rejectionRetentionMs: settings.rejectionRetentionMs,
    ...(config.mqttUrl ? { rateLimit: false as const } : {}),
    ...opts.pipeline,
  });

  const parts = new Parts();
  parts.add('store', () => stores.close());
  parts.add('ingest', () => pipeline.close());
  let broker: Broker | undefined;
  let consumer: Consumer | undefined;
  let ports: { port?: number; tlsPort?: number } = {};
  try {
    if (config.mqttUrl) {
      const c = (consumer = buildConsumer({ url: config.mqttUrl, username: config.mqttUsername, password: config.mqttPassword, registry: sqlite.registry, pipeline, logger, metrics }));
      parts.add('consumer', () => c.close());
      await c.start();
    } else {
      const b = (broker = buildBroker({ registry: sqlite.registry, pipeline, logger, metrics, limits: { ...settings.limits, ...opts.limits } }));
      parts.add('broker', () => b.close());
      ports = await b.listen(brokerListenOptions(config));
    }
  } catch (err) {
    await parts.stop();
    throw err;
  }
  return {
    mqttPort: ports.port,
    tlsPort: ports.tlsPort,
    broker,
    consumer,
    stop: (logger?: Logger) => parts.stop(logger),
    async close() {
      throwIfFailed(await parts.stop());
    },
  };
}

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel, undefined, config.logFormat);
  const service = await startIngest(config, { logger });
  process.stdout.write(JSON.stringify({ event: 'listening', mqttPort: service.mqttPort ?? null, tlsPort: service.tlsPort ?? null, pid: process.pid }) + '\n');
  closeOnSignal(logger, 'ingest', () => service.stop(logger));
}

if (isEntryPoint(import.meta.url)) runMain('broker', main);
