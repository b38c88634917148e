/**
 * The local chain `npm start` runs when no CHAIN_RPC_URL is configured: anvil with its state file
 * under DATA_DIR/chain, the ledger deployed once and its address remembered in
 * DATA_DIR/chain/deployment.json.
 *
 * anvil unlocks every account it derives from its mnemonic for `eth_sendTransaction` by any client
 * that reaches its port, so none of them may hold a role:
 * - anvil runs without CORS headers (a web page cannot read its answers, and JSON bodies need a
 *   preflight it refuses) and with a random mnemonic made once and kept in DATA_DIR/chain/mnemonic
 *   (0600), reused on restart so the saved state keeps its dev accounts;
 * - the roles are held by keys anvil does not know, made once and kept 0600 in DATA_DIR/chain/keys/:
 *   `admin` (DEFAULT_ADMIN_ROLE: pause, roles; no process of `npm start` signs with it), `gateway`
 *   (REGULATOR_ROLE: the gateway's registry pushes; also relays signed retirements) and `oracle`
 *   (ORACLE_ROLE for settlement, and REGULATOR_ROLE for the registry state it reconciles), each
 *   funded from a dev account;
 * - every start checks the roles: any other holder (an unlocked dev account, a key of the public
 *   test mnemonic that older versions used) is revoked, and what the keys lack is granted.
 * Separate keys per signer, so their nonces never collide. Several processes doing the same job (the
 * cluster's two oracles and two gateways) each get their own key with the same roles (`extraKeys`).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ethers } from 'ethers';
import type { Logger } from '../../domain/logger.ts';
import { classifyChainError } from './errors.ts';
import { startAnvil, testPrivateKeys, type Chain } from './chain.ts';
import { keySigner } from './connect.ts';
import { Ledger } from './ledger.ts';
import type { LedgerRole } from './port.ts';

export interface LocalChain {
  chain: Chain;
  address: string;
  rpcUrl: string;
  /** Ledger signed by the oracle key (ORACLE_ROLE, REGULATOR_ROLE). */
  oracleLedger: Ledger;
  /** Ledger signed by the gateway key (REGULATOR_ROLE, relays retirements). */
  gatewayLedger: Ledger;
  /** Addresses of the keys that hold the roles. */
  accounts: Record<LocalKey, string>;
  /** Files of the mnemonic and the role keys (0600); `extra`: the files of `extraKeys`, by name. */
  files: { mnemonic: string; keys: Record<LocalKey, string>; extra: Record<string, string> };
  /** Whether this start deployed the contracts (first start on this DATA_DIR). */
  deployed: boolean;
  close(): Promise<void>;
}

export type LocalKey = 'admin' | 'gateway' | 'oracle';

/** Which roles each key holds; nobody else holds any. */
export const LOCAL_ROLES: Record<LocalKey, LedgerRole[]> = {
  admin: ['admin'],
  gateway: ['regulator'],
  oracle: ['oracle', 'regulator'],
};

interface Deployment {
  address: string;
  chainId: string;
  deployedAt: string;
  /** The deployment block: log queries start there (older files lack it: 0). */
  blockNumber?: number;
}

/** A key under 10 ETH gets 100 ETH from a dev account (they start with 10,000 each). */
const LOW_BALANCE = ethers.parseEther('10');
const TOP_UP = ethers.parseEther('100');

/** Another key holding the roles of `as` (e.g. the second oracle process's own key), kept in keys/<name>.key. */
export interface ExtraKey {
  name: string;
  as: Exclude<LocalKey, 'admin'>;
}

const EXTRA_KEY_NAME = /^[a-z][a-z0-9-]{0,31}$/;

export async function startLocalChain(opts: { dataDir: string; port: number; windowSeconds: number; logger: Logger; extraKeys?: ExtraKey[] }): Promise<LocalChain> {
  const extraKeys = opts.extraKeys ?? [];
  for (const k of extraKeys) {
    if (!EXTRA_KEY_NAME.test(k.name) || k.name in LOCAL_ROLES) throw new Error(`extra key name ${JSON.stringify(k.name)}: lowercase letters, digits and '-', not admin, gateway or oracle`);
  }
  const dir = path.join(opts.dataDir, 'chain');
  // Its own lines as `chain`; anvil's process names itself (`anvil`).
  const log = opts.logger.child({ component: 'chain' });
  privateDir(opts.dataDir);
  privateDir(dir);
  privateDir(path.join(dir, 'keys'));
  const mnemonicFile = path.join(dir, 'mnemonic');
  const mnemonic = readOrCreate(mnemonicFile, () => ethers.Mnemonic.entropyToPhrase(crypto.randomBytes(16)));
  const keyFiles = {
    admin: path.join(dir, 'keys', 'admin.key'),
    gateway: path.join(dir, 'keys', 'gateway.key'),
    oracle: path.join(dir, 'keys', 'oracle.key'),
  } satisfies Record<LocalKey, string>;
  const keys = Object.fromEntries(
    Object.entries(keyFiles).map(([name, file]) => [name, readOrCreate(file, () => ethers.hexlify(crypto.randomBytes(32)))]),
  ) as Record<LocalKey, string>;
  const extraFiles = Object.fromEntries(extraKeys.map((k) => [k.name, path.join(dir, 'keys', `${k.name}.key`)]));
  const extra = extraKeys.map((k) => {
    const key = readOrCreate(extraFiles[k.name], () => ethers.hexlify(crypto.randomBytes(32)));
    return { roles: LOCAL_ROLES[k.as], address: ethers.computeAddress(key) };
  });

  const file = path.join(dir, 'deployment.json');
  const chain = await startAnvil({ stateFile: path.join(dir, 'anvil-state.json'), port: opts.port, mnemonic, logger: opts.logger });
  try {
    const wallets = {
      admin: keySigner(keys.admin, chain.provider),
      gateway: keySigner(keys.gateway, chain.provider),
      oracle: keySigner(keys.oracle, chain.provider),
    } satisfies Record<LocalKey, ethers.Signer>;
    const accounts = {
      admin: ethers.computeAddress(keys.admin),
      gateway: ethers.computeAddress(keys.gateway),
      oracle: ethers.computeAddress(keys.oracle),
    } satisfies Record<LocalKey, string>;
    await fund(chain, [...Object.values(accounts), ...extra.map((e) => e.address)]);

    let address: string | undefined;
    let startBlock = 0;
    // The state is saved after every mined transaction (not only every few seconds): a crash of
    // anvil then never loses a settlement the oracle has recorded as confirmed.
    const afterMined = chain.saveState;
    if (fs.existsSync(file)) {
      const d = JSON.parse(fs.readFileSync(file, 'utf8')) as Deployment;
      startBlock = d.blockNumber ?? 0;
      if ((await chain.provider.getCode(d.address)) === '0x') {
        log.warn({ file, address: d.address }, 'no contract at the remembered address (chain state lost?): deploying again');
      } else {
        const found = await ledgerWindowSeconds(Ledger.readOnlyAt(d.address, chain.provider));
        if (found === opts.windowSeconds) address = d.address;
        else if (found === undefined) {
          log.warn(
            { file, address: d.address },
            'the remembered contract is not a CreditLedger (a DATA_DIR from an older version, whose ledger was the ERC-20 CarbonLedger): deploying a CreditLedger; the old contract and its credits stay on this chain, unused',
          );
        } else {
          log.warn({ file, address: d.address, ledgerWindowSeconds: found, windowSeconds: opts.windowSeconds }, `the remembered ledger has ${found} s windows but WINDOW_SECONDS is ${opts.windowSeconds}: deploying a new ledger for ${opts.windowSeconds} s windows`);
        }
      }
    }
    let deployed = false;
    if (!address) {
      // Deployed by the admin key, the roles given to the keys in the constructor: no dev account ever holds one.
      const ledger = await Ledger.deploy(wallets.admin, { windowSeconds: opts.windowSeconds, admin: accounts.admin, regulator: accounts.gateway, oracle: accounts.oracle, afterMined });
      address = ledger.address;
      startBlock = ledger.startBlock;
      deployed = true;
      await afterMined?.();
      const d: Deployment = { address, chainId: chain.chainId.toString(), deployedAt: new Date().toISOString(), blockNumber: startBlock };
      fs.writeFileSync(file, `${JSON.stringify(d, null, 2)}\n`, { mode: 0o600 });
      log.info({ address }, 'ledger deployed');
    }
    await settleRoles(chain, address, wallets, accounts, extra, log);
    await afterMined?.();
    return {
      chain,
      address,
      rpcUrl: chain.rpcUrl!,
      oracleLedger: Ledger.attach(address, wallets.oracle, { startBlock, ...(afterMined ? { afterMined } : {}) }),
      gatewayLedger: Ledger.attach(address, wallets.gateway, { startBlock, ...(afterMined ? { afterMined } : {}) }),
      accounts,
      files: { mnemonic: mnemonicFile, keys: keyFiles, extra: extraFiles },
      deployed,
      close: () => chain.close(),
    };
  } catch (err) {
    await chain.close();
    throw err;
  }
}

/**
 * The window length of the CreditLedger at the client's address, undefined when the contract there
 * is not one (an older ledger without `windowSeconds()`). A node that does not answer throws.
 */
export async function ledgerWindowSeconds(ledger: Ledger): Promise<number | undefined> {
  try {
    return (await ledger.windowMs()) / 1000;
  } catch (e) {
    if (classifyChainError(e) === 'unavailable') throw e;
    return undefined;
  }
}

/** Creates `dir` 0700, or tightens it to 0700 when it exists. */
function privateDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.chmodSync(dir, 0o700);
}

/** The secret kept in `file` (0600), made by `make` the first time. */
function readOrCreate(file: string, make: () => string): string {
  try {
    const v = fs.readFileSync(file, 'utf8').trim();
    fs.chmodSync(file, 0o600);
    if (v) return v;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const v = make();
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${v}\n`, { mode: 0o600, flag: 'w' });
  fs.renameSync(tmp, file);
  return v;
}

/** Tops up the role keys from the first dev account (unlocked: sent through the node). */
async function fund(chain: Chain, addresses: string[]): Promise<void> {
  const from = chain.signers[0];
  for (const a of addresses) {
    if ((await chain.provider.getBalance(a)) >= LOW_BALANCE) continue;
    const tx = await from.sendTransaction({ to: a, value: TOP_UP });
    await tx.wait();
  }
}

/**
 * Makes the role holders exactly LOCAL_ROLES (and the extra keys the roles of theirs): grants what the keys lack and revokes every other
 * holder among the accounts anyone could sign for (the node's unlocked accounts, the public test
 * mnemonic's keys). A ledger deployed by an older version (roles on test-mnemonic accounts) is moved
 * over with the test admin key, which is public knowledge and so must lose its role.
 */
async function settleRoles(
  chain: Chain,
  address: string,
  wallets: Record<LocalKey, ethers.Signer>,
  accounts: Record<LocalKey, string>,
  extra: { roles: LedgerRole[]; address: string }[],
  logger: Logger,
): Promise<void> {
  const admin = Ledger.attach(address, wallets.admin);
  const view = admin;
  if (!(await view.hasRole('admin', accounts.admin))) {
    // Legacy: the admin role sits on a key of the public test mnemonic; hand it to our admin key.
    let moved = false;
    for (const k of testPrivateKeys(10)) {
      if (!(await view.hasRole('admin', ethers.computeAddress(k)))) continue;
      const legacyAdmin = Ledger.attach(address, new ethers.Wallet(k, chain.provider));
      await legacyAdmin.grantRole('admin', accounts.admin);
      moved = true;
      break;
    }
    if (!moved) throw new Error(`the ledger at ${address} has no admin this node can sign for: cannot settle its roles`);
    logger.warn({ address }, 'ledger admin moved from a public test key to the local admin key');
  }
  const unlocked = ((await chain.provider.send('eth_accounts', [])) as string[]).map((a) => ethers.getAddress(a));
  const exposed = [...new Set([...unlocked, ...testPrivateKeys(10).map((k) => ethers.computeAddress(k))])];
  const holders = [...(Object.entries(LOCAL_ROLES) as [LocalKey, LedgerRole[]][]).map(([key, roles]) => ({ roles, address: accounts[key] })), ...extra];
  const ours = new Set(holders.map((h) => h.address));
  for (const h of holders) {
    for (const role of h.roles) if (!(await admin.hasRole(role, h.address))) await admin.grantRole(role, h.address);
  }
  for (const role of ['admin', 'regulator', 'oracle'] as LedgerRole[]) {
    for (const a of exposed) {
      if (ours.has(a) || !(await admin.hasRole(role, a))) continue;
      await admin.revokeRole(role, a);
      logger.warn({ address: a, role }, 'role revoked from an account anyone on this machine can sign for');
    }
  }
}
