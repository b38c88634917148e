/**
 * `npm run start:broker`: the ingest service on its own. Picks the stores and the ingest part of
 * compose.ts: our broker (MQTT_PORT; with MQTT_TLS_CERT/KEY the TLS port instead, or both with
 * MQTT_PLAIN=true) or, with MQTT_URL, a consumer of that external broker. Prints one JSON line
 * `{"event":"listening","mqttPort":...}` on stdout once ready (the durability test reads it);
 * SIGINT/SIGTERM close everything in order.
 *
 * `startIngest` is the same pick for tests that run it in-process.
 */
import type { Registry as PromRegistry } from 'prom-client';
import { composeIngest, composeStores, composition, startParts, type IngestPart, type IngestTuning, type Started } from '../compose.ts';
import { loadConfig, requireSettings, type Config } from '../domain/config.ts';
import { createLogger, type Logger } from '../domain/logger.ts';
import { closeOnSignal, isEntryPoint, runMain } from '../domain/process.ts';

export interface StartIngestOptions extends IngestTuning {
  logger: Logger;
  metrics?: PromRegistry;
}

/** Broker (or consumer), ingest pipeline and store; `stop`/`close` stop them in that order. */
export type IngestService = IngestPart & Started;

export async function startIngest(config: Config, opts: StartIngestOptions): Promise<IngestService> {
  requireSettings(config, 'broker');
  const c = composition(config, opts.logger, opts.metrics);
  return startParts(c, async () => composeIngest(c, await composeStores(c), opts));
}

async function main(): Promise<void> {
  const config = loadConfig();
  requireSettings(config, 'broker');
  const logger = createLogger(config.logLevel, undefined, config.logFormat);
  const service = await startIngest(config, { logger });
  process.stdout.write(JSON.stringify({ event: 'listening', mqttPort: service.mqttPort ?? null, tlsPort: service.tlsPort ?? null, pid: process.pid }) + '\n');
  closeOnSignal(logger, 'ingest', () => service.stop(logger));
}

if (isEntryPoint(import.meta.url)) runMain('broker', main);
