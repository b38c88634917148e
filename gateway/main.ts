/**
 * `npm run start:gateway`: the HTTP gateway on its own. Picks from compose.ts the stores, with
 * CHAIN_RPC_URL the chain (the gateway's key, or read-only) and the oracle's read side, then the gateway.
 * Prints one JSON line `{"event":"listening","url":...}` on stdout once ready; SIGINT/SIGTERM close
 * everything in order.
 *
 * `startGatewayService` is the same pick for tests that run it in-process.
 */
import type { Registry as PromRegistry } from 'prom-client';
import { composeChain, composeGateway, composeOracle, composeStores, composition, type GatewayPart } from '../compose.ts';
import { loadConfig, requireSettings, type Config } from '../domain/config.ts';
import { createLogger, type Logger } from '../domain/logger.ts';
import { closeOnSignal, isEntryPoint, runMain, throwIfFailed, type StopSummary } from '../domain/process.ts';

export interface GatewayService extends GatewayPart {
  /** Stops the gateway, then the oracle read side, the chain client and the store, logging each when given a logger. */
  stop(logger?: Logger): Promise<StopSummary>;
  close(): Promise<void>;
}

export interface StartGatewayOptions {
  logger: Logger;
  metrics?: PromRegistry;
}

export async function startGatewayService(config: Config, opts: StartGatewayOptions): Promise<GatewayService> {
  requireSettings(config, 'gateway');
  const c = composition(config, opts.logger, opts.metrics);
  try {
    const stores = await composeStores(c);
    const ledger = config.chainRpcUrl ? (await composeChain(c, { gateway: true })).gateway : undefined;
    // The oracle's read side (records, verify, proof) on the shared file; nothing is scheduled here.
    const oracle = ledger ? composeOracle(c, stores, ledger, { readOnly: true }) : undefined;
    const gateway = await composeGateway(c, stores, { ...(ledger ? { ledger } : {}), ...(oracle ? { oracle } : {}) });
    return {
      ...gateway,
      stop: (logger?: Logger) => c.parts.stop(logger),
      async close() {
        throwIfFailed(await c.parts.stop());
      },
    };
  } catch (err) {
    await c.parts.stop();
    throw err;
  }
}

if (isEntryPoint(import.meta.url)) {
  runMain('gateway', async () => {
    const config = loadConfig();
    requireSettings(config, 'gateway');
    const logger = createLogger(config.logLevel, undefined, config.logFormat);
    const service = await startGatewayService(config, { logger });
    process.stdout.write(JSON.stringify({ event: 'listening', url: service.url, adminKey: service.adminKey }) + '\n');
    closeOnSignal(logger, 'gateway', () => service.stop(logger));
  });
}
