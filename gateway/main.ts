/**
 * `npm run start:gateway`: the HTTP gateway on its own. Config → stores → chain client (with
 * CHAIN_RPC_URL) → oracle read side → buildGateway → initial admin key → listen. Prints one JSON line
 * `{"event":"listening","url":...}` on stdout once ready; SIGINT/SIGTERM close everything in order.
 *
 * `startGatewayService` is the same composition for callers that already hold some of the parts
 * (`npm start` passes its stores, ledger, oracle, broker and metrics registry).
 */
import type { FastifyInstance } from 'fastify';
import { ethers } from 'ethers';
import { Registry as PromRegistry } from 'prom-client';
import { loadConfig, type Config } from '../domain/config.ts';
import { createLogger, type Logger } from '../domain/logger.ts';
import { closeOnSignal, isEntryPoint, Parts, runMain, throwIfFailed, type StopSummary } from '../domain/process.ts';
import { openStores, type Stores } from '../store/open.ts';
import { Ledger } from '../contracts/client/ledger.ts';
import { buildOracle } from '../oracle/oracle.ts';
import { buildGateway } from './app.ts';
import { bootstrapAdminKey, createKeyStore, type AdminKeySource } from './keys.ts';
import type { LedgerPort } from '../contracts/client/port.ts';
import type { GatewayBroker, GatewayOracle } from './deps.ts';

export interface GatewayService {
  app: FastifyInstance;
  url: string;
  adminKey: { source: AdminKeySource; file?: string };
  /** Stops the gateway, then what it opened itself (oracle read side, chain client, store), logging each when given a logger. */
  stop(logger?: Logger): Promise<StopSummary>;
  close(): Promise<void>;
}

export interface StartGatewayOptions {
  logger: Logger;
  metrics?: PromRegistry;
  /** Parts the caller already opened (not closed by this service). */
  stores?: Stores;
  ledger?: LedgerPort;
  oracle?: GatewayOracle;
  broker?: GatewayBroker;
}

/**
 * The gateway's chain client on CHAIN_RPC_URL, signed by GATEWAY_PRIVATE_KEY. Without that key it
 * only reads: it never falls back to the oracle's key (two nonce counters on one key, and the
 * internet-facing process holding the key that mints); relayed retirements then answer 503.
 */
function externalLedger(config: Config): { ledger: Ledger; close(): void } | undefined {
  if (!config.chainRpcUrl || !config.contractAddress) return undefined;
  const provider = new ethers.JsonRpcProvider(config.chainRpcUrl, undefined, { cacheTimeout: -1 });
  const opts = { startBlock: config.chainStartBlock };
  const ledger = config.gatewayPrivateKey
    ? Ledger.attach(config.contractAddress, new ethers.NonceManager(new ethers.Wallet(config.gatewayPrivateKey, provider)), opts)
    : Ledger.readOnlyAt(config.contractAddress, provider, opts);
  return { ledger, close: () => provider.destroy() };
}

export async function startGatewayService(config: Config, opts: StartGatewayOptions): Promise<GatewayService> {
  const log = opts.logger.child({ component: 'gateway-main' });
  const parts = new Parts();
  try {
    const stores = opts.stores ?? (await openStores(config, opts.logger));
    if (!opts.stores) parts.add('store', () => stores.close());
    let ledger = opts.ledger;
    let chainLedger: Ledger | undefined;
    if (!ledger) {
      const ext = externalLedger(config);
      if (ext) {
        parts.add('chain', ext.close);
        ledger = chainLedger = ext.ledger;
      } else {
        log.warn('no CHAIN_RPC_URL: balance, retirements and verification answer 503 (npm start runs a local chain)');
      }
    }
    let oracle = opts.oracle;
    if (!oracle && chainLedger) {
      // The oracle's read side (records, verify, proof) on the shared file; nothing is scheduled here.
      const o = buildOracle({
        db: stores.db,
        readings: stores.readings,
        registry: stores.registry,
        ledger: chainLedger,
        logger: opts.logger,
        windowMs: config.windowSeconds * 1000,
        graceMs: config.graceSeconds * 1000,
        lease: false,
      });
      parts.add('oracle', () => o.close());
      oracle = o;
    }
    const app = await buildGateway({
      db: stores.db,
      registry: stores.registry,
      readings: stores.readings,
      ...(ledger ? { ledger } : {}),
      ...(oracle ? { oracle } : {}),
      ...(opts.broker ? { broker: opts.broker } : {}),
      metrics: opts.metrics ?? new PromRegistry(),
      logger: opts.logger,
      options: { windowSeconds: config.windowSeconds, graceSeconds: config.graceSeconds },
    });
    parts.add('gateway', () => app.close());
    const adminKey = bootstrapAdminKey(createKeyStore(stores.db), { configuredKey: config.adminApiKey, dataDir: config.dataDir, logger: log });
    const url = await app.listen({ port: config.httpPort, host: config.httpHost });
    log.info({ url, adminKey: adminKey.source, adminKeyFile: adminKey.file }, 'gateway listening');
    return {
      app,
      url,
      adminKey,
      stop: (logger?: Logger) => parts.stop(logger),
      async close() {
        throwIfFailed(await parts.stop());
      },
    };
  } catch (err) {
    await parts.stop();
    throw err;
  }
}

if (isEntryPoint(import.meta.url)) {
  runMain('gateway', async () => {
    const config = loadConfig();
    const logger = createLogger(config.logLevel, undefined, config.logFormat);
    const service = await startGatewayService(config, { logger });
    process.stdout.write(JSON.stringify({ event: 'listening', url: service.url, adminKey: service.adminKey }) + '\n');
    closeOnSignal(logger, 'gateway', () => service.stop(logger));
  });
}
