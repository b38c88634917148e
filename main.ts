/**
 * `npm start`: the whole system in one process on embedded defaults, plus a small simulated fleet.
 * Composes the same factories the components' own entry points use, in the order
 * chain → store → broker → gateway → oracle → fleet, and closes them in reverse on Ctrl-C.
 * With no environment set it uses the demo defaults (30 s windows, 5 s grace, oracle every 5 s).
 */
import fs from 'node:fs';
import path from 'node:path';
import { ethers } from 'ethers';
import { Registry as PromRegistry, collectDefaultMetrics } from 'prom-client';
import { buildBroker } from './broker/broker.ts';
import { buildConsumer } from './broker/consumer.ts';
import { buildIngestPipeline } from './broker/pipeline.ts';
import { brokerListenOptions } from './broker/main.ts';
import { Ledger } from './contracts/client/ledger.ts';
import { startLocalChain, type LocalChain } from './contracts/client/local.ts';
import { errors } from './domain/errors.ts';
import { DEMO_DEFAULTS, describeConfig, ingestSettings, loadConfig, mqttListeners, redactUrl, type Config } from './domain/config.ts';
import { createLogger, type Logger } from './domain/logger.ts';
import { acquireInstanceLock, assertPortsFree, explainListenError, type PortSetting } from './domain/instance.ts';
import { closeOnSignal, isEntryPoint, Parts, runMain, type StopSummary } from './domain/process.ts';
import { startGatewayService } from './gateway/main.ts';
import { buildOracle } from './oracle/oracle.ts';
import { startFleet, type Fleet } from './simulators/fleet.ts';
import { ensureDataDir } from './store/sqlite/db.ts';
import { openStores } from './store/open.ts';

export interface Stack {
  config: Config;
  httpUrl: string;
  mqttUrl: string;
  rpcUrl?: string;
  contractAddress: string;
  /** Ledger clients signed by the oracle's and the gateway's accounts. */
  ledgers: { oracle: Ledger; gateway: Ledger };
  /** The local chain's role accounts and key files (when no CHAIN_RPC_URL is configured). */
  localChain?: Pick<LocalChain, 'accounts' | 'files'>;
  adminKeyFile?: string;
  fleet?: Fleet;
  /** The started parts' names in the order they stop (fleet first, chain last). */
  parts: readonly string[];
  /** Stops every part in reverse start order, logging each and a last `stopped: …` line; releases DATA_DIR's lock. */
  stop(): Promise<StopSummary>;
  /** `stop()` for callers that only wait. */
  close(): Promise<void>;
}

/** The ports `npm start` will listen on, with the setting that chose each. */
export function stackPorts(config: Config): PortSetting[] {
  const ports: PortSetting[] = [{ setting: 'HTTP_PORT', host: config.httpHost, port: config.httpPort }];
  if (!config.mqttUrl) {
    const listeners = mqttListeners(config);
    if (listeners.plain) ports.push({ setting: 'MQTT_PORT', host: config.mqttHost, port: config.mqttPort });
    if (listeners.tls) ports.push({ setting: 'MQTT_TLS_PORT', host: config.mqttHost, port: listeners.tls.port });
  }
  if (!config.chainRpcUrl) ports.push({ setting: 'ANVIL_PORT', host: '127.0.0.1', port: config.anvilPort });
  return ports;
}

export interface StartStackOptions {
  logger: Logger;
}

/**
 * Starts every component; on failure stops what was started and rethrows. Refuses to start, before
 * anything runs, when another instance holds DATA_DIR (ALREADY_RUNNING, naming its pid) or a
 * configured port is taken (PORT_IN_USE, naming the setting).
 */
export async function startStack(config: Config, opts: StartStackOptions): Promise<Stack> {
  const { logger } = opts;
  // DATA_DIR owner-only before anything (the lock, the chain's state) is written into it.
  ensureDataDir(config.dataDir);
  const lock = acquireInstanceLock(config.dataDir, { logger });
  const parts = new Parts();
  let stopping: Promise<StopSummary> | undefined;
  const stop = () => (stopping ??= parts.stop(logger).finally(() => lock.release()));
  const ports = stackPorts(config);
  const portOf = (setting: string) => ports.find((p) => p.setting === setting);
  try {
    await assertPortsFree(ports);
    const metrics = new PromRegistry();
    collectDefaultMetrics({ register: metrics });

    // 1. chain
    let oracleLedger: Ledger;
    let gatewayLedger: Ledger;
    let rpcUrl: string | undefined;
    let contractAddress: string;
    let localChain: LocalChain | undefined;
    if (config.chainRpcUrl) {
      if (!config.oraclePrivateKey) throw errors.CONFIG_INVALID('CHAIN_RPC_URL needs ORACLE_PRIVATE_KEY (the oracle signs settlements) and CONTRACT_ADDRESS');
      const provider = new ethers.JsonRpcProvider(config.chainRpcUrl, undefined, { cacheTimeout: -1 });
      parts.add('chain', () => provider.destroy());
      const oracleSigner = new ethers.NonceManager(new ethers.Wallet(config.oraclePrivateKey, provider));
      const chainOpts = { startBlock: config.chainStartBlock };
      oracleLedger = Ledger.attach(config.contractAddress!, oracleSigner, chainOpts);
      // Each role its own key: without GATEWAY_PRIVATE_KEY the gateway only reads (relays answer 503).
      gatewayLedger = config.gatewayPrivateKey
        ? Ledger.attach(config.contractAddress!, new ethers.NonceManager(new ethers.Wallet(config.gatewayPrivateKey, provider)), chainOpts)
        : Ledger.readOnlyAt(config.contractAddress!, provider, chainOpts);
      rpcUrl = config.chainRpcUrl;
      contractAddress = config.contractAddress!;
    } else {
      const local = await startLocalChain({ dataDir: config.dataDir, port: config.anvilPort, logger: logger.child({ component: 'chain' }) }).catch((err: unknown) => {
        throw explainListenError(err, portOf('ANVIL_PORT'));
      });
      parts.add('chain', () => local.close());
      ({ oracleLedger, gatewayLedger, rpcUrl } = local);
      contractAddress = local.address;
      localChain = local;
    }

    // 2. stores
    const stores = await openStores(config, logger);
    parts.add('store', () => stores.close());

    // 3. ingestion: our broker, or a consumer of an external one
    const settings = ingestSettings(config);
    const pipeline = buildIngestPipeline({
      store: stores.readings,
      registry: stores.registry,
      logger: logger.child({ component: 'ingest' }),
      metrics,
      rejectionRetentionMs: settings.rejectionRetentionMs,
      // Behind an external broker its own limits apply: a refusal would drop the shared consumer connection.
      ...(config.mqttUrl ? { rateLimit: false as const } : {}),
    });
    parts.add('ingest', () => pipeline.close());
    let mqttUrl: string;
    let broker: ReturnType<typeof buildBroker> | undefined;
    if (config.mqttUrl) {
      const consumer = buildConsumer({ url: config.mqttUrl, username: config.mqttUsername, password: config.mqttPassword, registry: stores.registry, pipeline, logger, metrics });
      await consumer.start();
      parts.add('consumer', () => consumer.close());
      mqttUrl = config.mqttUrl;
    } else {
      broker = buildBroker({ registry: stores.registry, pipeline, logger: logger.child({ component: 'broker' }), metrics, limits: settings.limits });
      const b = broker;
      const listenOpts = brokerListenOptions(config);
      const listening = await b.listen(listenOpts).catch(async (err: unknown) => {
        await b.close();
        const onTls = listenOpts.tls !== undefined && (err as { port?: number }).port === listenOpts.tls.port;
        throw explainListenError(err, portOf(onTls ? 'MQTT_TLS_PORT' : 'MQTT_PORT'));
      });
      parts.add('broker', () => b.close());
      // TLS only (MQTT_PLAIN off): the demo fleet connects over TLS and must trust the certificate.
      mqttUrl = listening.port !== undefined ? `mqtt://${config.mqttHost}:${listening.port}` : `mqtts://${config.mqttHost}:${listening.tlsPort}`;
    }

    // 4. oracle (built before the gateway, which serves its records; scheduled last)
    const oracle = buildOracle({
      db: stores.db,
      readings: stores.readings,
      registry: stores.registry,
      ledger: oracleLedger,
      logger: logger.child({ component: 'oracle' }),
      metrics,
      windowMs: config.windowSeconds * 1000,
      graceMs: config.graceSeconds * 1000,
      // The local chain never reorganises (0); an external one needs its depth (CHAIN_CONFIRMATIONS).
      confirmations: config.chainRpcUrl ? config.chainConfirmations : 0,
    });
    parts.add('oracle', () => oracle.close());

    // 5. gateway
    const gateway = await startGatewayService(config, { logger, metrics, stores, ledger: gatewayLedger, settlements: oracle, audit: oracle, ...(broker ? { broker } : {}) }).catch((err: unknown) => {
      throw explainListenError(err, portOf('HTTP_PORT'));
    });
    parts.add('gateway', () => gateway.close());

    // 6. schedule the oracle
    oracle.start(config.oracleCron);
    parts.add('oracle-schedule', () => oracle.stop());

    // 7. demo fleet
    let fleet: Fleet | undefined;
    if (config.simulatedDevices > 0) {
      const key = config.adminApiKey ?? (gateway.adminKey.file && fs.existsSync(gateway.adminKey.file) ? fs.readFileSync(gateway.adminKey.file, 'utf8').trim() : undefined);
      if (!key) {
        logger.warn('no admin API key available to register the simulated fleet (set ADMIN_API_KEY); running without it');
      } else {
        fleet = await startFleet({
          url: mqttUrl,
          devices: config.simulatedDevices,
          rate: 1,
          seed: 'demo',
          api: { url: gateway.url, key },
          windowSeconds: config.windowSeconds,
          graceSeconds: config.graceSeconds,
          statePath: path.join(config.dataDir, 'simulator-state.json'),
          // owner keys of the demo facilities, so their credits can be retired (npm run cli -- retire)
          ownerKeyDir: path.join(config.dataDir, 'keys'),
          logger: logger.child({ component: 'fleet' }),
          progress: false,
        });
        const f = fleet;
        parts.add('fleet', () => f.stop());
      }
    }

    return {
      config,
      httpUrl: gateway.url,
      mqttUrl,
      rpcUrl,
      contractAddress,
      ledgers: { oracle: oracleLedger, gateway: gatewayLedger },
      ...(localChain ? { localChain: { accounts: localChain.accounts, files: localChain.files } } : {}),
      adminKeyFile: gateway.adminKey.file,
      fleet,
      parts: parts.names,
      stop,
      close: async () => {
        await stop();
      },
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** A path as short as it can be said from the current directory. */
function shown(p: string): string {
  const rel = path.relative(process.cwd(), p);
  return rel && !rel.startsWith('..') ? rel : p;
}

function banner(stack: Stack): string {
  const c = stack.config;
  const keyFile = shown(path.join(c.dataDir, 'admin-api-key'));
  const key = c.adminApiKey ? 'the ADMIN_API_KEY you configured' : stack.adminKeyFile ? `cat ${shown(stack.adminKeyFile)}` : 'the admin key you saved earlier';
  return [
    '',
    'carbon-mrv is running',
    `  dashboard      ${stack.httpUrl}/        (paste the admin key when asked)`,
    `  admin API key  ${key}`,
    `  API docs       ${stack.httpUrl}/docs`,
    `  metrics        ${stack.httpUrl}/metrics`,
    `  MQTT           ${redactUrl(stack.mqttUrl)}   (devices: username = device id, password from device registration)`,
    `  chain          ${stack.rpcUrl ? redactUrl(stack.rpcUrl) : '(external)'}   ledger ${stack.contractAddress}`,
    `  windows        ${c.windowSeconds} s, settled ${c.graceSeconds} s after they close (oracle: "${c.oracleCron}")`,
    `  fleet          ${stack.fleet ? `${c.simulatedDevices} simulated devices in ${stack.fleet.facilities.length} facilities` : 'none (SIMULATED_DEVICES=0)'}`,
    `  data           ${c.dataDir}`,
    '',
    'Try next:',
    `  curl -s -H "Authorization: Bearer $(cat ${keyFile})" ${stack.httpUrl}/v1/settlements | head -c 600`,
    `  npm run simulate -- --url ${redactUrl(stack.mqttUrl)} --api ${stack.httpUrl} --devices 4 --rate 2 --faults duplicate=0.05,garbage=0.02   (admin key read from DATA_DIR)`,
    'Ctrl-C stops everything; starting again keeps readings, registry and balances.',
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const config = loadConfig(process.env, {}, DEMO_DEFAULTS);
  const logger = createLogger(config.logLevel, undefined, config.logFormat);
  logger.info({ config: describeConfig(config) }, 'starting carbon-mrv');
  const stack = await startStack(config, { logger });
  process.stderr.write(banner(stack));
  closeOnSignal(logger, 'carbon-mrv', () => stack.stop(), (signal) => process.stderr.write(`\n${signal}: stopping ${stack.parts.join(', ')}...\n`));
}

if (isEntryPoint(import.meta.url)) runMain('carbon-mrv', main);
