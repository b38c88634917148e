/**
 * `npm run start:oracle`: the oracle alone, against an external chain (CHAIN_RPC_URL, ORACLE_PRIVATE_KEY,
 * CONTRACT_ADDRESS) and the stores under DATA_DIR. Picks stores, chain (the oracle's key only) and
 * oracle from compose.ts, as `npm start` does with the local chain, and schedules it on ORACLE_CRON.
 */
import { composeChain, composeOracle, composeStores, composition, scheduleOracle, startParts } from '../compose.ts';
import { describeConfig, loadConfig, requireSettings } from '../domain/config.ts';
import { createLogger } from '../domain/logger.ts';
import { closeOnSignal, isEntryPoint, runMain } from '../domain/process.ts';

async function main(): Promise<void> {
  const config = loadConfig();
  requireSettings(config, 'oracle');
  const logger = createLogger(config.logLevel, undefined, config.logFormat);
  logger.info({ config: describeConfig(config) }, 'oracle starting');
  const c = composition(config, logger);
  const service = await startParts(c, async () => {
    const stores = await composeStores(c);
    const chain = await composeChain(c, { oracle: true });
    scheduleOracle(c, composeOracle(c, stores, chain.oracle!));
    return {};
  });
  closeOnSignal(logger, 'oracle', () => service.stop(logger));
}

if (isEntryPoint(import.meta.url)) runMain('oracle', main);
