/**
 * `npm start`: the whole system in one process on embedded defaults, plus a small simulated fleet.
 * Picks every part of compose.ts (the composition the components' own entry points pick from), in the
 * order chain → store → ingest → oracle → gateway → fleet, and closes them in reverse on Ctrl-C.
 * With no environment set it uses the demo defaults (30 s windows, 5 s grace, oracle every 5 s).
 */
import path from 'node:path';
import { collectDefaultMetrics } from 'prom-client';
import { composeChain, composeFleet, composeGateway, composeIngest, composeOracle, composeStores, composition, listenPorts, scheduleOracle } from './compose.ts';
import type { Ledger } from './contracts/client/ledger.ts';
import type { LocalChain } from './contracts/client/local.ts';
import { DEMO_DEFAULTS, describeConfig, loadConfig, redactUrl, requireSettings, type Config } from './domain/config.ts';
import { createLogger, type Logger } from './domain/logger.ts';
import { acquireInstanceLock, assertPortsFree, type PortSetting } from './domain/instance.ts';
import { closeOnSignal, isEntryPoint, runMain, type StopSummary } from './domain/process.ts';
import type { Fleet } from './simulators/fleet.ts';
import { ensureDataDir } from './store/sqlite/db.ts';

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
  return listenPorts(config, { chain: true, ingest: true, gateway: true });
}

export interface StartStackOptions {
  logger: Logger;
}

/**
 * Starts every part (compose.ts) in the order chain → stores → ingest → oracle → gateway → oracle
 * schedule → demo fleet; on failure stops what was started and rethrows. Refuses to start, before
 * anything runs, when a setting is missing for `npm start` (CONFIG_INVALID), another instance holds
 * DATA_DIR (ALREADY_RUNNING, naming its pid) or a configured port is taken (PORT_IN_USE, naming the setting).
 */
export async function startStack(config: Config, opts: StartStackOptions): Promise<Stack> {
  const { logger } = opts;
  requireSettings(config, 'stack');
  // DATA_DIR owner-only before anything (the lock, the chain's state) is written into it.
  ensureDataDir(config.dataDir);
  const lock = acquireInstanceLock(config.dataDir, { logger });
  const c = composition(config, logger);
  let stopping: Promise<StopSummary> | undefined;
  const stop = () => (stopping ??= c.parts.stop(logger).finally(() => lock.release()));
  try {
    await assertPortsFree(stackPorts(config));
    collectDefaultMetrics({ register: c.metrics });
    const chain = await composeChain(c, { oracle: true, gateway: true });
    const stores = await composeStores(c);
    const ingest = await composeIngest(c, stores);
    // Built before the gateway, which serves its records; scheduled once everything listens.
    const oracle = composeOracle(c, stores, chain.oracle!);
    const gateway = await composeGateway(c, stores, { ledger: chain.gateway, settlements: oracle, audit: oracle, ...(ingest.broker ? { broker: ingest.broker } : {}) });
    scheduleOracle(c, oracle);
    const fleet = config.simulatedDevices > 0 ? await composeFleet(c, ingest.mqttUrl, gateway) : undefined;
    return {
      config,
      httpUrl: gateway.url,
      mqttUrl: ingest.mqttUrl,
      rpcUrl: chain.rpcUrl,
      contractAddress: chain.contractAddress,
      ledgers: { oracle: chain.oracle!, gateway: chain.gateway! },
      ...(chain.local ? { localChain: { accounts: chain.local.accounts, files: chain.local.files } } : {}),
      adminKeyFile: gateway.adminKey.file,
      fleet,
      parts: c.parts.names,
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
  requireSettings(config, 'stack');
  const logger = createLogger(config.logLevel, undefined, config.logFormat);
  logger.info({ config: describeConfig(config) }, 'starting carbon-mrv');
  const stack = await startStack(config, { logger });
  process.stderr.write(banner(stack));
  closeOnSignal(logger, 'carbon-mrv', () => stack.stop(), (signal) => process.stderr.write(`\n${signal}: stopping ${stack.parts.join(', ')}...\n`));
}

if (isEntryPoint(import.meta.url)) runMain('carbon-mrv', main);
