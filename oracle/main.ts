/**
 * `npm run start:oracle`: the oracle alone, against an external chain (CHAIN_RPC_URL, ORACLE_PRIVATE_KEY,
 * CONTRACT_ADDRESS) and the SQLite file under DATA_DIR. `npm start` composes the same factory with the
 * local chain; this entry point only wires configuration to buildOracle and schedules it.
 */
import { ethers } from 'ethers';
import { Ledger } from '../contracts/client/index.ts';
import { describeConfig, loadConfig } from '../domain/config.ts';
import { errors } from '../domain/errors.ts';
import { createLogger } from '../domain/logger.ts';
import { closeOnSignal, Parts } from '../domain/process.ts';
import { openStores } from '../store/open.ts';
import { buildOracle } from './oracle.ts';

const config = loadConfig();
const logger = createLogger(config.logLevel, undefined, config.logFormat);
if (!config.chainRpcUrl || !config.oraclePrivateKey || !config.contractAddress) {
  throw errors.CONFIG_INVALID('start:oracle needs CHAIN_RPC_URL, ORACLE_PRIVATE_KEY and CONTRACT_ADDRESS (`npm start` runs a local chain instead)');
}
const parts = new Parts();
const stores = await openStores(config, logger);
parts.add('store', () => stores.close());
// cacheTimeout -1: ethers' short result cache would hand the nonce manager a stale pending nonce.
const provider = new ethers.JsonRpcProvider(config.chainRpcUrl, undefined, { cacheTimeout: -1 });
parts.add('chain', () => provider.destroy());
const ledger = Ledger.attach(config.contractAddress, new ethers.NonceManager(new ethers.Wallet(config.oraclePrivateKey, provider)), { startBlock: config.chainStartBlock });
const oracle = buildOracle({
  db: stores.db,
  readings: stores.readings,
  registry: stores.registry,
  ledger,
  logger,
  windowMs: config.windowSeconds * 1000,
  graceMs: config.graceSeconds * 1000,
  confirmations: config.chainConfirmations,
});
logger.info({ config: describeConfig(config) }, 'oracle starting');
parts.add('oracle', () => oracle.close());
oracle.start(config.oracleCron);

closeOnSignal(logger, 'oracle', () => parts.stop(logger));
