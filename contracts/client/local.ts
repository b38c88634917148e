/**
 * The local chain `npm start` runs when no CHAIN_RPC_URL is configured: anvil with its state file
 * under DATA_DIR/chain, the ledger deployed once and its address remembered in
 * DATA_DIR/chain/deployment.json. Separate well-known dev accounts sign for the admin (deployer),
 * the oracle and the gateway (regulator + relayer), so their nonces never collide.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ethers } from 'ethers';
import type { Logger } from '../../domain/logger.ts';
import { startAnvil, type Chain } from './chain.ts';
import { Ledger } from './ledger.ts';

export interface LocalChain {
  chain: Chain;
  address: string;
  rpcUrl: string;
  /** Ledger signed by the oracle account (ORACLE_ROLE). */
  oracleLedger: Ledger;
  /** Ledger signed by the gateway account (REGULATOR_ROLE, relays retirements). */
  gatewayLedger: Ledger;
  /** Whether this start deployed the contracts (first start on this DATA_DIR). */
  deployed: boolean;
  close(): Promise<void>;
}

interface Deployment {
  address: string;
  chainId: string;
  deployedAt: string;
  /** The deployment block: log queries start there (older files lack it: 0). */
  blockNumber?: number;
}

export async function startLocalChain(opts: { dataDir: string; port: number; logger: Logger }): Promise<LocalChain> {
  const dir = path.join(opts.dataDir, 'chain');
  const file = path.join(dir, 'deployment.json');
  const chain = await startAnvil({ stateFile: path.join(dir, 'anvil-state.json'), port: opts.port, logger: opts.logger });
  try {
    const wallet = (i: number) => new ethers.NonceManager(new ethers.Wallet(chain.privateKeys[i], chain.provider));
    const [admin, oracle, gateway] = [wallet(0), wallet(1), wallet(2)];
    let address: string | undefined;
    let startBlock = 0;
    // The state is saved after every mined transaction (not only every few seconds): a crash of
    // anvil then never loses a settlement the oracle has recorded as confirmed.
    const afterMined = chain.saveState;
    if (fs.existsSync(file)) {
      const d = JSON.parse(fs.readFileSync(file, 'utf8')) as Deployment;
      startBlock = d.blockNumber ?? 0;
      if ((await chain.provider.getCode(d.address)) !== '0x') address = d.address;
      else opts.logger.warn({ file, address: d.address }, 'no contract at the remembered address (chain state lost?): deploying again');
    }
    let deployed = false;
    if (!address) {
      const ledger = await Ledger.deploy(admin, { regulator: await gateway.getAddress(), oracle: await oracle.getAddress(), afterMined });
      address = ledger.address;
      startBlock = ledger.startBlock;
      deployed = true;
      await afterMined?.();
      fs.mkdirSync(dir, { recursive: true });
      const d: Deployment = { address, chainId: chain.chainId.toString(), deployedAt: new Date().toISOString(), blockNumber: startBlock };
      fs.writeFileSync(file, `${JSON.stringify(d, null, 2)}\n`);
      opts.logger.info({ address }, 'ledger deployed');
    }
    return {
      chain,
      address,
      rpcUrl: chain.rpcUrl!,
      oracleLedger: Ledger.attach(address, oracle, { startBlock, ...(afterMined ? { afterMined } : {}) }),
      gatewayLedger: Ledger.attach(address, gateway, { startBlock, ...(afterMined ? { afterMined } : {}) }),
      deployed,
      close: () => chain.close(),
    };
  } catch (err) {
    await chain.close();
    throw err;
  }
}
