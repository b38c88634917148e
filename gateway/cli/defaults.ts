/**
 * Where the CLI's chain and key come from when not given: the environment of `npm start` and the
 * deployment it wrote under DATA_DIR (contracts/client/local.ts), then the key options in order.
 * Every problem names the option and where its default was looked for. The settings the CLI shares
 * with `npm start` (DATA_DIR, HTTP_PORT, ANVIL_PORT, CHAIN_RPC_URL, CONTRACT_ADDRESS) are read through
 * the one settings table (domain/config.ts `readSettings`): the same defaults and the same
 * CONFIG_INVALID messages as `npm start`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { checksumAddress, isAddress } from '../../contracts/client/crypto.ts';
import { normaliseKey, readKeyFile } from '../../contracts/client/keyfile.ts';
import { isSet, readSettings, SETTINGS } from '../../domain/config.ts';
import type { Io, Values } from './command.ts';

export type Env = Record<string, string | undefined>;

/** A default value and where it came from (said in --help and in errors). */
export interface Default {
  value?: string;
  source: string;
}

/** What `npm start` writes: contracts/client/local.ts. `rpcUrl` is read when a version writes it. */
interface DeploymentFile {
  address?: string;
  chainId?: string;
  rpcUrl?: string;
}

/** The settings of the platform that the CLI reads. */
export const CLI_SETTINGS = ['dataDir', 'httpPort', 'anvilPort', 'chainRpcUrl', 'contractAddress'] as const;

/** CLI_SETTINGS from `env`, as `npm start` reads them; a bad one throws CONFIG_INVALID naming it. */
export function cliSettings(env: Env): ReturnType<typeof readSettings<(typeof CLI_SETTINGS)[number]>> {
  return readSettings(CLI_SETTINGS, env);
}

/** DATA_DIR as `npm start` resolves it (domain/config.ts: default ./data, relative to the working directory). */
export function dataDirOf(env: Env): { dir: string; source: string } {
  const dir = cliSettings(env).dataDir;
  return { dir, source: isSet('dataDir', env) ? `DATA_DIR=${env.DATA_DIR}` : `DATA_DIR unset: ${SETTINGS.dataDir.default}` };
}

export function deploymentFileOf(env: Env): string {
  return path.join(dataDirOf(env).dir, 'chain', 'deployment.json');
}

function readDeployment(file: string): { d?: DeploymentFile; problem?: string } {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    return { problem: (e as NodeJS.ErrnoException).code === 'ENOENT' ? `${file} does not exist (has npm start run with this DATA_DIR?)` : `${file}: ${(e as Error).message}` };
  }
  try {
    const d = JSON.parse(text) as DeploymentFile;
    if (typeof d.address !== 'string' || !isAddress(d.address)) return { problem: `${file} has no ledger address` };
    return { d };
  } catch {
    return { problem: `${file} is not JSON` };
  }
}

export interface ChainDefaults {
  rpc: Default;
  contract: Default;
  /** The chain id the deployment file was written for (checked against the node). */
  chainId?: string;
}

/** --rpc and --contract when not given: the environment of `npm start`, then DATA_DIR's deployment. */
export function chainDefaults(env: Env): ChainDefaults {
  const settings = cliSettings(env);
  const file = deploymentFileOf(env);
  const external = settings.chainRpcUrl;
  const dep = external ? {} : readDeployment(file);
  let rpc: Default;
  if (external) rpc = { value: external, source: 'CHAIN_RPC_URL' };
  else if (dep.d?.rpcUrl) rpc = { value: dep.d.rpcUrl, source: file };
  else {
    const port = settings.anvilPort;
    rpc = { value: `http://127.0.0.1:${port}`, source: `the local chain of npm start, ${isSet('anvilPort', env) ? `ANVIL_PORT=${port}` : `ANVIL_PORT unset: ${SETTINGS.anvilPort.default}`}` };
  }
  let contract: Default;
  if (settings.contractAddress) contract = { value: settings.contractAddress, source: 'CONTRACT_ADDRESS' };
  else if (external) contract = { source: 'CHAIN_RPC_URL is set without CONTRACT_ADDRESS' };
  else if (dep.d) contract = { value: checksumAddress(dep.d.address!), source: `${file}, written by npm start (${dataDirOf(env).source})` };
  else contract = { source: dep.problem! };
  return { rpc, contract, ...(!external && !settings.contractAddress && dep.d?.chainId ? { chainId: dep.d.chainId } : {}) };
}

/**
 * The signing key: --key (warned), --key-file, HOLDER_KEY_FILE, HOLDER_PRIVATE_KEY, in that order.
 * `key` is normalised (0x…) when valid; `invalid` when something was given that is not a key.
 */
export function resolveKey(values: Values, io: Io): { key?: string; problem?: string } {
  const invalid = (from: string) => ({ problem: `${from} does not hold a 32-byte hex private key (64 hex digits)` });
  if (typeof values.key === 'string') {
    io.err('warning: --key puts the private key on the command line, where other users see it (`ps`, shell history); prefer --key-file FILE or HOLDER_PRIVATE_KEY');
    const key = normaliseKey(values.key);
    return key ? { key } : invalid('--key');
  }
  const file = typeof values['key-file'] === 'string' ? values['key-file'] : io.env.HOLDER_KEY_FILE;
  if (file) {
    const from = typeof values['key-file'] === 'string' ? `--key-file ${file}` : `HOLDER_KEY_FILE ${file}`;
    let read: { key?: string; looseMode?: number };
    try {
      read = readKeyFile(file);
    } catch (e) {
      return { problem: `${from}: ${(e as Error).message}${fs.existsSync(file) ? '' : ` (npm run cli -- keygen --out ${file} makes one)`}` };
    }
    if (read.looseMode !== undefined) io.err(`warning: key file ${file} is readable by other users (mode ${read.looseMode.toString(8)}): chmod 600 ${file}`);
    return read.key ? { key: read.key } : invalid(from);
  }
  if (io.env.HOLDER_PRIVATE_KEY) {
    const key = normaliseKey(io.env.HOLDER_PRIVATE_KEY);
    return key ? { key } : invalid('HOLDER_PRIVATE_KEY');
  }
  return {};
}

/** A resolved chain: the node, the ledger address, the chain id the deployment file names (if any). */
export interface ChainChoice {
  rpc?: string;
  contract?: string;
  chainId?: string;
}

/** Resolves --rpc/--contract with their defaults; a problem names the option and where the default was looked for. */
export function resolveChain(values: Values, env: Env): ChainChoice & { problems: string[] } {
  const d = chainDefaults(env);
  const problems: string[] = [];
  const rpc = typeof values.rpc === 'string' ? values.rpc : d.rpc.value;
  const contract = typeof values.contract === 'string' ? values.contract : d.contract.value;
  if (!rpc) problems.push(`--rpc is required (no default: ${d.rpc.source})`);
  if (!contract) problems.push(`--contract is required (no default: ${d.contract.source})`);
  else if (!isAddress(contract)) problems.push(`--contract must be an address (got ${contract}${typeof values.contract === 'string' ? '' : `, from ${d.contract.source}`})`);
  return { ...(rpc ? { rpc } : {}), ...(contract ? { contract } : {}), ...(typeof values.contract !== 'string' && d.chainId ? { chainId: d.chainId } : {}), problems };
}
