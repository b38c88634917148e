/**
 * The one composition of the system, written once: every entry point picks its parts from here.
 * `main.ts` (`npm start`) takes them all, chain → stores → ingest → oracle → gateway → schedule → fleet;
 * broker/main.ts takes stores + ingest, oracle/main.ts stores + chain + oracle + schedule,
 * gateway/main.ts stores (+ chain and the oracle's read side with CHAIN_RPC_URL) + gateway.
 *
 * Each `compose*` builds its part from the configuration, starts it when it has something to start, and
 * registers it in the composition's `parts` under the name its "stopped" line carries; the entry point
 * owns `parts` and stops them in reverse on a signal or a failed start. Listen errors name the setting
 * that chose the port (PORT_IN_USE).
 *
 * Decided here and nowhere else: which chain (the local anvil, or CHAIN_RPC_URL with one key per role:
 * the gateway never holds the oracle's key), our broker or a consumer of MQTT_URL, the per-device rate
 * limit (off behind an external broker: see `composeIngest`), the oracle's confirmation depth (0 on the
 * local chain, which never reorganises).
 *
 * Logging: the factories name themselves (`component`); the composition hands them the root logger, so a
 * line carries its component once.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Registry as PromRegistry } from 'prom-client';
import { buildBroker, type Broker, type BrokerLimits, type ListenOptions } from './broker/broker.ts';
import { buildConsumer, type Consumer } from './broker/consumer.ts';
import { buildIngestPipeline, type IngestPipeline, type IngestPipelineDeps } from './broker/pipeline.ts';
import { keySigner, rpcProvider } from './contracts/client/connect.ts';
import { createVerifier, type VerifierOptions } from './broker/verify-pool.ts';
import { Ledger } from './contracts/client/ledger.ts';
import { startLocalChain, type LocalChain } from './contracts/client/local.ts';
import { ingestSettings, mqttListeners, type Config } from './domain/config.ts';
import { explainListenError, type PortSetting } from './domain/instance.ts';
import type { Logger } from './domain/logger.ts';
import { Parts, throwIfFailed, type StopSummary } from './domain/process.ts';
import { buildGateway } from './gateway/app.ts';
import type { GatewayBroker, GatewaySettlements } from './gateway/deps.ts';
import { buildAudit, settlementView, type SettlementAudit } from './oracle/audit.ts';
import { buildCorrector } from './oracle/corrections.ts';
import { buildCorrectionAudit } from './oracle/correction-audit.ts';
import { bootstrapAdminKey, createKeyStore, type AdminKeySource } from './gateway/keys.ts';
import { buildOracle, type OracleService } from './oracle/oracle.ts';
import { startFleet, type Fleet } from './simulators/fleet.ts';
import { openStores, type Stores } from './store/open.ts';

/** What every part is composed with: the validated configuration, the root logger, one metrics registry, the started parts. */
export interface Composition {
  readonly config: Config;
  readonly logger: Logger;
  readonly metrics: PromRegistry;
  /** The started parts; the entry point stops them (reverse start order). */
  readonly parts: Parts;
}

export function composition(config: Config, logger: Logger, metrics: PromRegistry = new PromRegistry()): Composition {
  return { config, logger, metrics, parts: new Parts() };
}

/** A started pick of parts: stops them all in reverse start order. */
export interface Started {
  /** Stops every part once, logging each when given a logger; never rejects. */
  stop(logger?: Logger): Promise<StopSummary>;
  /** Rejects when a part failed to stop. */
  close(): Promise<void>;
}

/**
 * Runs an entry point's pick (`compose` calls the `compose*` it needs); if it fails, stops what it
 * had started and rethrows. The result comes with `stop`/`close` of the whole composition.
 */
export async function startParts<T extends object>(c: Composition, compose: () => Promise<T>): Promise<T & Started> {
  try {
    const picked = await compose();
    return {
      ...picked,
      stop: (logger?: Logger) => c.parts.stop(logger),
      async close() {
        throwIfFailed(await c.parts.stop());
      },
    };
  } catch (err) {
    await c.parts.stop(c.logger);
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------------
// Ports

type PortName = 'HTTP_PORT' | 'MQTT_PORT' | 'MQTT_TLS_PORT' | 'ANVIL_PORT';

/** The ports a process composed of `parts` listens on, with the setting that chose each. */
export function listenPorts(config: Config, parts: { chain?: boolean; ingest?: boolean; gateway?: boolean }): PortSetting[] {
  const ports: PortSetting[] = [];
  if (parts.gateway) ports.push(portOf(config, 'HTTP_PORT'));
  if (parts.ingest && !config.mqttUrl) {
    const listeners = mqttListeners(config);
    if (listeners.plain) ports.push(portOf(config, 'MQTT_PORT'));
    if (listeners.tls) ports.push(portOf(config, 'MQTT_TLS_PORT'));
  }
  if (parts.chain && !config.chainRpcUrl) ports.push(portOf(config, 'ANVIL_PORT'));
  return ports;
}

function portOf(config: Config, setting: PortName): PortSetting {
  switch (setting) {
    case 'HTTP_PORT':
      return { setting, host: config.httpHost, port: config.httpPort };
    case 'MQTT_PORT':
      return { setting, host: config.mqttHost, port: config.mqttPort };
    case 'MQTT_TLS_PORT':
      return { setting, host: config.mqttHost, port: config.mqttTlsPort };
    case 'ANVIL_PORT':
      return { setting, host: '127.0.0.1', port: config.anvilPort };
  }
}

// ---------------------------------------------------------------------------------------------------
// 1. chain

export interface ChainPart {
  /** Signed by the oracle's key (ORACLE_PRIVATE_KEY, or the local chain's oracle key); only when asked for. */
  oracle?: Ledger;
  /** Signed by the gateway's key (GATEWAY_PRIVATE_KEY, or the local gateway key); read-only without one. Only when asked for. */
  gateway?: Ledger;
  rpcUrl: string;
  contractAddress: string;
  /** The local chain (no CHAIN_RPC_URL): its role accounts and key files. */
  local?: LocalChain;
}

/**
 * The chain client for the roles asked for: on CHAIN_RPC_URL (CONTRACT_ADDRESS; the oracle role needs
 * ORACLE_PRIVATE_KEY, checked by `requireSettings`), else a local anvil under DATA_DIR (ANVIL_PORT)
 * with the contracts deployed and the role keys generated. Each role signs with its own key (two nonce
 * counters on one key would collide, and the internet-facing gateway must not hold the key that mints).
 */
export async function composeChain(c: Composition, roles: { oracle?: boolean; gateway?: boolean }): Promise<ChainPart> {
  const { config } = c;
  if (config.chainRpcUrl) {
    const address = config.contractAddress!;
    // One provider for both roles (result cache off, see rpcProvider); each role counts its own nonces.
    const provider = rpcProvider(config.chainRpcUrl);
    c.parts.add('chain', () => provider.destroy());
    const opts = { startBlock: config.chainStartBlock };
    const signed = (key: string) => Ledger.attach(address, keySigner(key, provider), opts);
    return {
      ...(roles.oracle && config.oraclePrivateKey ? { oracle: signed(config.oraclePrivateKey) } : {}),
      ...(roles.gateway ? { gateway: config.gatewayPrivateKey ? signed(config.gatewayPrivateKey) : Ledger.readOnlyAt(address, provider, opts) } : {}),
      rpcUrl: config.chainRpcUrl,
      contractAddress: address,
    };
  }
  const local = await startLocalChain({ dataDir: config.dataDir, port: config.anvilPort, windowSeconds: config.windowSeconds, logger: c.logger }).catch((err: unknown) => {
    throw explainListenError(err, portOf(config, 'ANVIL_PORT'));
  });
  c.parts.add('chain', () => local.close());
  return {
    ...(roles.oracle ? { oracle: local.oracleLedger } : {}),
    ...(roles.gateway ? { gateway: local.gatewayLedger } : {}),
    rpcUrl: local.rpcUrl,
    contractAddress: local.address,
    local,
  };
}

// ---------------------------------------------------------------------------------------------------
// 2. stores

/** The stores of store/open.ts (SQLite under DATA_DIR; readings in InfluxDB with INFLUX_URL). */
export async function composeStores(c: Composition): Promise<Stores> {
  const stores = await openStores(c.config, c.logger);
  c.parts.add('store', () => stores.close());
  return stores;
}

// ---------------------------------------------------------------------------------------------------
// 3. ingest

/** Tuning for benchmarks and tests; the product runs on the defaults and the configuration. */
export interface IngestTuning {
  pipeline?: Partial<Pick<IngestPipelineDeps, 'maxBatch' | 'maxDelayMs' | 'maxQueuedBytes' | 'rateLimit'>>;
  limits?: Partial<BrokerLimits>;
  /** The signature verifier's threads and Ed25519 backend (benchmarks compare them). */
  verifier?: Pick<VerifierOptions, 'workers' | 'backend' | 'shareInline'>;
}

export interface IngestPart {
  /** Where devices publish: our broker's listener, or MQTT_URL. */
  mqttUrl: string;
  /** Our broker's plain and TLS ports (undefined when that listener is off or with MQTT_URL). */
  mqttPort?: number;
  tlsPort?: number;
  broker?: Broker;
  consumer?: Consumer;
  pipeline: IngestPipeline;
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

/**
 * The ingest pipeline over `stores` (the caller's: a benchmark may pass a store of its own), fed by
 * our broker (listening on MQTT_PORT / MQTT_TLS_PORT) or, with MQTT_URL, by a consumer of that broker.
 *
 * Behind an external broker there is no per-device rate limit: that broker's own limits apply, and a
 * refusal here fails the message, which drops the consumer connection that many devices share (every
 * device on it would wait for the reconnect and the redelivery because of one).
 */
export async function composeIngest(c: Composition, stores: Pick<Stores, 'readings' | 'registry'>, tuning: IngestTuning = {}): Promise<IngestPart> {
  const { config, logger, metrics } = c;
  const settings = ingestSettings(config);
  // Device signatures are verified in worker threads; the pool is part of ingest and closed after the
  // pipeline has flushed (its last batches still verify). It logs when libsodium did not load.
  const verifier = createVerifier({ logger, ...tuning.verifier });
  let pipeline: IngestPipeline;
  try {
    pipeline = buildIngestPipeline({
      store: stores.readings,
      registry: stores.registry,
      verifier,
      logger,
      metrics,
      rejectionRetentionMs: settings.rejectionRetentionMs,
      ...(config.mqttUrl ? { rateLimit: false as const } : {}),
      ...tuning.pipeline,
    });
  } catch (err) {
    await verifier.close();
    throw err;
  }
  c.parts.add('ingest', async () => {
    try {
      await pipeline.close();
    } finally {
      await verifier.close();
    }
  });
  if (config.mqttUrl) {
    const consumer = buildConsumer({ url: config.mqttUrl, username: config.mqttUsername, password: config.mqttPassword, clientIdPrefix: config.mqttClientId, registry: stores.registry, pipeline, logger, metrics });
    c.parts.add('consumer', () => consumer.close());
    await consumer.start();
    return { mqttUrl: config.mqttUrl, consumer, pipeline };
  }
  const broker = buildBroker({ registry: stores.registry, pipeline, logger, metrics, limits: { ...settings.limits, ...tuning.limits } });
  c.parts.add('broker', () => broker.close());
  const listenOpts = brokerListenOptions(config);
  const { port, tlsPort } = await broker.listen(listenOpts).catch((err: unknown) => {
    const onTls = listenOpts.tls !== undefined && (err as { port?: number }).port === listenOpts.tls.port;
    throw explainListenError(err, portOf(config, onTls ? 'MQTT_TLS_PORT' : 'MQTT_PORT'));
  });
  // TLS only (MQTT_PLAIN off): clients connect over TLS.
  const mqttUrl = port !== undefined ? `mqtt://${config.mqttHost}:${port}` : `mqtts://${config.mqttHost}:${tlsPort}`;
  return { mqttUrl, mqttPort: port, tlsPort, broker, pipeline };
}

// ---------------------------------------------------------------------------------------------------
// 4. oracle

/** The oracle on the stores and `ledger` (built, not scheduled: see `scheduleOracle`). */
export function composeOracle(c: Composition, stores: Stores, ledger: Ledger): OracleService {
  const { config } = c;
  const oracle = buildOracle(
    {
      db: stores.db,
      readings: stores.readings,
      registry: stores.registry,
      ledger,
      logger: c.logger,
      metrics: c.metrics,
      windowMs: config.windowSeconds * 1000,
      graceMs: config.graceSeconds * 1000,
      // The local chain never reorganises (0); an external one needs its depth (CHAIN_CONFIRMATIONS).
      confirmations: config.chainRpcUrl ? config.chainConfirmations : 0,
      // Corrections go to the same ledger on the same key (one nonce counter).
      correctionPort: ledger.corrections(),
    },
    // The stores' records, status, voids and corrections: the SQLite file's, or PostgreSQL's with
    // DATABASE_URL (shared by every oracle and gateway).
    { records: stores.records, status: stores.status, corrections: stores.corrections },
  );
  c.parts.add('oracle', () => oracle.close());
  return oracle;
}

/** Runs the oracle on ORACLE_CRON (validated with the rest of the configuration) and once now. */
export function scheduleOracle(c: Composition, oracle: OracleService): void {
  oracle.start(c.config.oracleCron);
  c.parts.add('oracle-schedule', () => oracle.stop());
}

// ---------------------------------------------------------------------------------------------------
// 5. gateway

export interface GatewayPart {
  url: string;
  adminKey: { source: AdminKeySource; file?: string };
}

/**
 * The HTTP gateway on the stores, listening on HTTP_PORT, with the admin key bootstrapped (ADMIN_API_KEY,
 * or one generated into DATA_DIR). Without a ledger, chain-backed routes (and verify) answer 503. The
 * settlement routes read the oracle's records from the stores (read-only, no signer) unless the caller
 * passes its running oracle as `settlements` and `audit`.
 */
export async function composeGateway(
  c: Composition,
  stores: Stores,
  parts: { ledger?: Ledger; settlements?: GatewaySettlements; audit?: SettlementAudit; broker?: GatewayBroker } = {},
): Promise<GatewayPart> {
  const { config } = c;
  const log = c.logger.child({ component: 'gateway' });
  if (!parts.ledger) log.warn('no CHAIN_RPC_URL: balance, retirements and verification answer 503 (npm start runs a local chain)');
  const view = settlementView(stores.records, stores.status);
  const settlements = parts.settlements ?? view;
  const audit = parts.audit ?? buildAudit({ records: view.records, readings: stores.readings, ...(parts.ledger ? { ledger: parts.ledger } : {}) });
  const app = await buildGateway({
    db: stores.db,
    apiKeys: stores.apiKeys,
    registry: stores.registry,
    readings: stores.readings,
    ...(parts.ledger ? { ledger: parts.ledger } : {}),
    settlements,
    audit,
    // Voids and corrections on the stores; on the ledger (the gateway's key, which holds the regulator
    // role), voids are recorded on chain first and corrections verified against the chain.
    corrections: {
      records: stores.corrections,
      corrector: buildCorrector({ readings: stores.readings, records: view.records, corrections: stores.corrections }),
      audit: buildCorrectionAudit({ corrections: stores.corrections, readings: stores.readings, ...(parts.ledger ? { port: parts.ledger.corrections() } : {}) }),
      ...(parts.ledger ? { port: parts.ledger.corrections() } : {}),
    },
    ...(parts.broker ? { broker: parts.broker } : {}),
    metrics: c.metrics,
    logger: c.logger,
    options: { windowSeconds: config.windowSeconds, graceSeconds: config.graceSeconds },
  });
  c.parts.add('gateway', () => app.close());
  const adminKey = await bootstrapAdminKey(createKeyStore(stores.apiKeys), { configuredKey: config.adminApiKey, dataDir: config.dataDir, logger: log });
  const url = await app.listen({ port: config.httpPort, host: config.httpHost }).catch((err: unknown) => {
    throw explainListenError(err, portOf(config, 'HTTP_PORT'));
  });
  log.info({ url, adminKey: adminKey.source, adminKeyFile: adminKey.file }, 'gateway listening');
  return { url, adminKey };
}

// ---------------------------------------------------------------------------------------------------
// 6. the demo fleet of `npm start`

/**
 * SIMULATED_DEVICES simulated devices publishing to `mqttUrl`, registered through the gateway with the
 * admin key (ADMIN_API_KEY or the generated key file). Undefined (with a warning) without a key.
 */
export async function composeFleet(c: Composition, mqttUrl: string, gateway: GatewayPart): Promise<Fleet | undefined> {
  const { config } = c;
  const file = gateway.adminKey.file;
  const key = config.adminApiKey ?? (file && fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim() : undefined);
  if (!key) {
    c.logger.warn('no admin API key available to register the simulated fleet (set ADMIN_API_KEY); running without it');
    return undefined;
  }
  const fleet = await startFleet({
    url: mqttUrl,
    devices: config.simulatedDevices,
    rate: 1,
    seed: 'demo',
    // every demo device has a key (registered as its publicKey) and signs its readings
    sign: true,
    api: { url: gateway.url, key },
    windowSeconds: config.windowSeconds,
    graceSeconds: config.graceSeconds,
    statePath: path.join(config.dataDir, 'simulator-state.json'),
    // owner keys of the demo facilities, so their credits can be retired (npm run cli -- retire)
    ownerKeyDir: path.join(config.dataDir, 'keys'),
    logger: c.logger,
    progress: false,
  });
  c.parts.add('fleet', () => fleet.stop());
  return fleet;
}
