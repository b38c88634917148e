/**
 * `npm run start:gateway`: the HTTP gateway on its own. Picks from compose.ts the stores, with
 * CHAIN_RPC_URL the chain (the gateway's key, or read-only), then the gateway, which reads the
 * oracle's records from the stores (no oracle is built, no signer needed).
 * Prints one JSON line `{"event":"listening","url":...}` on stdout once ready; SIGINT/SIGTERM close
 * everything in order.
 *
 * `startGatewayService` is the same pick for tests that run it in-process.
 */
import type { Registry as PromRegistry } from 'prom-client';
import { composeChain, composeGateway, composeStores, composition, startParts, type GatewayPart, type Started } from '../compose.ts';
import { loadConfig, requireSettings, type Config } from '../domain/config.ts';
import { createLogger, type Logger } from '../domain/logger.ts';
import { closeOnSignal, isEntryPoint, runMain } from '../domain/process.ts';

/** The gateway, then the oracle read side, the chain client and the store, stopped in that order. */
export type GatewayService = GatewayPart & Started;

export interface StartGatewayOptions {
  logger: Logger;
  metrics?: PromRegistry;
}

export async function startGatewayService(config: Config, opts: StartGatewayOptions): Promise<GatewayService> {
  requireSettings(config, 'gateway');
  const c = composition(config, opts.logger, opts.metrics);
  return startParts(c, async () => {
    const stores = await composeStores(c);
    const ledger = config.chainRpcUrl ? (await composeChain(c, { gateway: true })).gateway : undefined;
    // The settlement routes read the oracle's records on the shared file (read-only, no signer).
    return composeGateway(c, stores, ledger ? { ledger } : {});
  });
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
