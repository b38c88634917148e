/**
 * `npm run cli -- <command>`: what a credit holder (a factory) does from its own machine with its own
 * key. `npm run cli -- --help` lists the commands, `npm run cli -- <command> --help` their options.
 *
 *   keygen   writes a new private key to an owner-only (0600) file and prints the address to
 *            register as the facility's owner;
 *   balance  the credits an address (or a key's address) holds;
 *   retire   retires credits: without --relay the holder's wallet sends `retire` itself (it pays
 *            gas); with --relay the CLI reads the holder's nonce, signs the ledger's EIP-712 `Retire`
 *            request locally and posts it to the gateway's `POST /v1/retirements` (the gateway pays
 *            gas); the key never leaves this machine. Prints one JSON line.
 *
 * Chain defaults come from the local stack, so on the machine running `npm start` no chain flag is
 * needed: --rpc is CHAIN_RPC_URL or the local anvil (ANVIL_PORT), --contract is CONTRACT_ADDRESS or
 * the address `npm start` remembers in DATA_DIR/chain/deployment.json. Keys are read from a file or
 * the environment; a key given on the command line works but is warned about (`ps` shows it).
 * Every chain failure is said through describeChainError (contracts/client/errors.ts).
 * Exit codes: 0 done, 1 failed (the reason on stderr), 2 usage error.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { ethers } from 'ethers';
import { defaultOf, redactUrl, SETTINGS } from '../domain/config.ts';
import { gramsToTonnes } from '../domain/decimal.ts';
import { loadArtifact } from '../contracts/client/artifact.ts';
import { describeChainError } from '../contracts/client/errors.ts';
import { errors, isError } from '../domain/errors.ts';
import { createKeyFile, KeyFileError, normaliseKey, readKeyFile } from '../contracts/client/keyfile.ts';
import { RETIRE_TYPES } from '../contracts/client/port.ts';
import type { Static } from '@sinclair/typebox';
import type { SignedRetirementBody } from './schemas.ts';

/** A signed retirement as the relay takes it (POST /v1/retirements). */
type SignedRetirementJson = Static<typeof SignedRetirementBody>;

/** The ledger's typed data, defined once with the contracts client. */
export { RETIRE_TYPES };

function ledger(address: string, runner: ethers.ContractRunner): ethers.Contract {
  return new ethers.Contract(address, loadArtifact().abi as ethers.InterfaceAbi, runner);
}

/** The contract's EIP-712 domain, read from the chain (ERC-5267) rather than assumed. */
async function domainOf(contract: ethers.Contract): Promise<ethers.TypedDataDomain> {
  const d = (await contract.getFunction('eip712Domain')()) as [string, string, string, bigint, string];
  return { name: d[1], version: d[2], chainId: d[3], verifyingContract: d[4] };
}

export interface RetireRequest {
  amountGrams: bigint;
  beneficiary: string;
  reason: string;
}

/** Signs a retirement for relaying; nonce from the chain, deadline `validSeconds` from the latest block. */
export async function signRetirement(
  wallet: ethers.Wallet,
  contractAddress: string,
  req: RetireRequest,
  validSeconds = 3600,
): Promise<SignedRetirementJson> {
  const provider = wallet.provider;
  if (!provider) throw new Error('the wallet needs a provider to read the nonce');
  const contract = ledger(contractAddress, provider);
  const [nonce, block, domain] = await Promise.all([
    contract.getFunction('nonces')(wallet.address) as Promise<bigint>,
    provider.getBlock('latest'),
    domainOf(contract),
  ]);
  const deadline = BigInt((block?.timestamp ?? Math.floor(Date.now() / 1000)) + validSeconds);
  const message = { holder: wallet.address, amount: req.amountGrams, beneficiary: req.beneficiary, reason: req.reason, nonce, deadline };
  const signature = await wallet.signTypedData(domain, RETIRE_TYPES, message);
  return {
    holder: wallet.address,
    amountGrams: req.amountGrams.toString(),
    beneficiary: req.beneficiary,
    reason: req.reason,
    nonce: nonce.toString(),
    deadline: deadline.toString(),
    signature,
  };
}

/** Retires with the holder's own transaction. Resolves with the tx hash and the retirement id. */
export async function retireDirect(wallet: ethers.Wallet, contractAddress: string, req: RetireRequest): Promise<{ txHash: string; id?: string }> {
  const contract = ledger(contractAddress, wallet);
  const tx = (await contract.getFunction('retire')(req.amountGrams, req.beneficiary, req.reason)) as ethers.ContractTransactionResponse;
  const receipt = await tx.wait();
  let id: string | undefined;
  for (const log of receipt?.logs ?? []) {
    try {
      const parsed = contract.interface.parseLog(log);
      if (parsed?.name === 'CreditsRetired') id = String(parsed.args[0]);
    } catch {
      // another contract's log
    }
  }
  return { txHash: tx.hash, ...(id ? { id } : {}) };
}

/** Posts a signed retirement to the gateway relay. Throws with the API's error code on failure. */
export async function relayRetirement(baseUrl: string, apiKey: string, signed: SignedRetirementJson): Promise<{ txHash: string; id?: string }> {
  let res: Response;
  try {
    res = await fetch(new URL('/v1/retirements', baseUrl), {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
      body: JSON.stringify(signed),
    });
  } catch (e) {
    const why = ((e as { cause?: { code?: string } }).cause?.code ?? (e as Error).message) || 'no answer';
    throw errors.RELAY_UNREACHABLE(baseUrl, why);
  }
  const body = (await res.json().catch(() => ({}))) as { txHash?: string; id?: string; error?: { code: string; message: string } };
  if (!res.ok) throw Object.assign(new Error(`relay answered ${res.status}: ${body.error?.code ?? ''} ${body.error?.message ?? ''}`.trim()), { status: res.status, code: body.error?.code });
  return { txHash: body.txHash!, ...(body.id ? { id: body.id } : {}) };
}

// --- defaults from the local stack

type Env = Record<string, string | undefined>;

/** A default value and where it came from (said in --help and in errors). */
interface Default {
  value?: string;
  source: string;
}

/** What `npm start` writes: contracts/client/local.ts. `rpcUrl` is read when a version writes it. */
interface DeploymentFile {
  address?: string;
  chainId?: string;
  rpcUrl?: string;
}

/** DATA_DIR as `npm start` resolves it (domain/config.ts: default ./data, relative to the working directory). */
export function dataDirOf(env: Env): { dir: string; source: string } {
  const raw = env.DATA_DIR;
  return raw ? { dir: path.resolve(raw), source: `DATA_DIR=${raw}` } : { dir: defaultOf('dataDir'), source: `DATA_DIR unset: ${SETTINGS.dataDir.default}` };
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
    if (typeof d.address !== 'string' || !ethers.isAddress(d.address)) return { problem: `${file} has no ledger address` };
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
  const file = deploymentFileOf(env);
  const external = env.CHAIN_RPC_URL;
  const dep = external ? {} : readDeployment(file);
  let rpc: Default;
  if (external) rpc = { value: external, source: 'CHAIN_RPC_URL' };
  else if (dep.d?.rpcUrl) rpc = { value: dep.d.rpcUrl, source: file };
  else {
    const port = env.ANVIL_PORT ?? '8545';
    rpc = { value: `http://127.0.0.1:${port}`, source: `the local chain of npm start, ${env.ANVIL_PORT ? `ANVIL_PORT=${port}` : 'ANVIL_PORT unset: 8545'}` };
  }
  let contract: Default;
  if (env.CONTRACT_ADDRESS) contract = { value: env.CONTRACT_ADDRESS, source: 'CONTRACT_ADDRESS' };
  else if (external) contract = { source: 'CHAIN_RPC_URL is set without CONTRACT_ADDRESS' };
  else if (dep.d) contract = { value: ethers.getAddress(dep.d.address!), source: `${file}, written by npm start (${dataDirOf(env).source})` };
  else contract = { source: dep.problem! };
  return { rpc, contract, ...(!external && !env.CONTRACT_ADDRESS && dep.d?.chainId ? { chainId: dep.d.chainId } : {}) };
}

// --- command definitions

interface OptionSpec {
  name: string;
  /** Shown after the option name, e.g. `URL`; absent for flags. */
  value?: string;
  help: string;
  /** For --help: the default and its source, computed from the environment. */
  default?: (env: Env) => string;
}

interface Command {
  name: string;
  summary: string;
  synopsis: string;
  description: string;
  options: OptionSpec[];
  run(values: Record<string, string | boolean | undefined>, io: Io): Promise<number>;
}

interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
  env: Env;
}

/** Said in --help; an RPC URL's credentials (user:password@, API-key path segments) are masked as in the start-up log. */
const describeDefault = (d: Default) => (d.value ? `${redactUrl(d.value)} (from ${d.source})` : `none: ${d.source}`);

const CHAIN_OPTIONS: OptionSpec[] = [
  { name: 'rpc', value: 'URL', help: 'JSON-RPC endpoint of the chain', default: (env) => describeDefault(chainDefaults(env).rpc) },
  { name: 'contract', value: '0x…', help: 'address of the CarbonLedger', default: (env) => describeDefault(chainDefaults(env).contract) },
];

const KEY_OPTIONS: OptionSpec[] = [
  {
    name: 'key-file',
    value: 'FILE',
    help: 'file holding the holder\'s private key (hex; `npm run cli -- keygen` writes one)',
    default: (env) => (env.HOLDER_KEY_FILE ? `${env.HOLDER_KEY_FILE} (from HOLDER_KEY_FILE)` : env.HOLDER_PRIVATE_KEY ? 'none: the key is taken from HOLDER_PRIVATE_KEY' : 'none: HOLDER_KEY_FILE and HOLDER_PRIVATE_KEY unset'),
  },
  { name: 'key', value: '0x…', help: 'the private key itself: other users of this machine see it in `ps`; prefer --key-file or HOLDER_PRIVATE_KEY' },
];

const HELP_OPTION: OptionSpec = { name: 'help', help: 'show this help and exit (also -h)' };

function usageOf(c: Command, env: Env): string {
  const width = Math.max(...c.options.map((o) => `--${o.name}${o.value ? ` ${o.value}` : ''}`.length), 10) + 2;
  const lines = c.options.map((o) => {
    const left = `  --${o.name}${o.value ? ` ${o.value}` : ''}`.padEnd(width + 2);
    const pad = ' '.repeat(width + 2);
    const d = o.default ? `\n${pad}default: ${o.default(env)}` : '';
    return `${left}${o.help}${d}`;
  });
  return `usage: npm run cli -- ${c.name} ${c.synopsis}\n\n${c.description}\n\noptions:\n${lines.join('\n')}`;
}

function topUsage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length)) + 2;
  return [
    'usage: npm run cli -- <command> [options]',
    '',
    'What a credit holder (a facility owner) does with its own key; the key never leaves this machine.',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    '',
    '`npm run cli -- <command> --help` lists a command\'s options and where their defaults come from.',
    'On the machine running `npm start` the chain options default to its local chain (DATA_DIR, ANVIL_PORT).',
  ].join('\n');
}

/**
 * The signing key: --key (warned), --key-file, HOLDER_KEY_FILE, HOLDER_PRIVATE_KEY, in that order.
 * `key` is normalised (0x…) when valid; `invalid` when something was given that is not a key.
 */
function resolveKey(values: Record<string, string | boolean | undefined>, io: Io): { key?: string; problem?: string } {
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

/** Resolves --rpc/--contract with their defaults; a problem names the option and where the default was looked for. */
function resolveChain(values: Record<string, string | boolean | undefined>, env: Env): { rpc?: string; contract?: string; chainId?: string; problems: string[] } {
  const d = chainDefaults(env);
  const problems: string[] = [];
  const rpc = typeof values.rpc === 'string' ? values.rpc : d.rpc.value;
  const contract = typeof values.contract === 'string' ? values.contract : d.contract.value;
  if (!rpc) problems.push(`--rpc is required (no default: ${d.rpc.source})`);
  if (!contract) problems.push(`--contract is required (no default: ${d.contract.source})`);
  else if (!ethers.isAddress(contract)) problems.push(`--contract must be an address (got ${contract}${typeof values.contract === 'string' ? '' : `, from ${d.contract.source}`})`);
  return { ...(rpc ? { rpc } : {}), ...(contract ? { contract } : {}), ...(typeof values.contract !== 'string' && d.chainId ? { chainId: d.chainId } : {}), problems };
}

/**
 * A provider for `rpc` once the node has answered its chain id (within 10 s): ethers alone would
 * retry an unreachable URL forever. Throws a NETWORK_ERROR that describeChainError words.
 */
async function connect(rpc: string): Promise<ethers.JsonRpcProvider> {
  const req = new ethers.FetchRequest(rpc);
  req.timeout = 10_000;
  req.setHeader('content-type', 'application/json');
  req.body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] });
  let chainId: bigint;
  try {
    const res = await req.send();
    res.assertOk();
    chainId = BigInt((res.bodyJson as { result: string }).result);
  } catch (e) {
    throw Object.assign(new Error(`no chain id from ${redactUrl(rpc)}: ${(e as Error).message}`), { code: 'NETWORK_ERROR', cause: e });
  }
  const network = ethers.Network.from(chainId);
  return new ethers.JsonRpcProvider(rpc, network, { staticNetwork: network });
}

/** Before sending anything: the node answers, the address holds a contract, the chain is the one the deployment file names. */
async function checkChain(provider: ethers.JsonRpcProvider, chain: { rpc?: string; contract?: string; chainId?: string }): Promise<string | undefined> {
  const network = await provider.getNetwork();
  if (chain.chainId && network.chainId.toString() !== chain.chainId) {
    return `the node at ${redactUrl(chain.rpc!)} is chain ${network.chainId}, but the ledger address was deployed on chain ${chain.chainId}: pass --rpc and --contract of the same chain`;
  }
  if ((await provider.getCode(chain.contract!)) === '0x') {
    return `there is no contract at ${chain.contract} on the chain at ${redactUrl(chain.rpc!)} (chain ${network.chainId}): check --contract and --rpc (or DATA_DIR)`;
  }
  return undefined;
}

const retire: Command = {
  name: 'retire',
  summary: 'retire credits from the holder\'s key, directly or through the gateway\'s relay',
  synopsis: '--amount-grams N --beneficiary TEXT [--reason TEXT] [--key-file FILE] [--rpc URL] [--contract 0x…]\n                         [--relay URL (--api-key-file FILE | API_KEY)] [--valid-seconds S]',
  description: [
    'Retires credits (1 credit = 1 g CO2e) held by the key\'s address, for a beneficiary; prints one JSON line.',
    'Without --relay the holder\'s own transaction retires (its address needs ether for gas). With --relay the',
    'request is signed here (EIP-712) and the gateway submits it and pays the gas: the key never leaves this machine.',
    'The key comes from --key-file, else HOLDER_KEY_FILE, else HOLDER_PRIVATE_KEY. Exit 0 done, 1 refused or failed, 2 usage.',
  ].join('\n'),
  options: [
    { name: 'amount-grams', value: 'N', help: 'grams of credit to retire (positive integer); required' },
    { name: 'beneficiary', value: 'TEXT', help: 'on whose behalf the credits are retired; required' },
    { name: 'reason', value: 'TEXT', help: 'why (e.g. "scope 2 2026")', default: () => 'empty' },
    ...KEY_OPTIONS,
    ...CHAIN_OPTIONS,
    { name: 'relay', value: 'URL', help: 'gateway to relay through, e.g. http://127.0.0.1:3000 (it pays the gas)', default: () => 'none: retire with the holder\'s own transaction' },
    {
      name: 'api-key-file',
      value: 'FILE',
      help: 'file holding the API key for --relay (the facility\'s key, or an admin key)',
      default: (env) => (env.API_KEY_FILE ? `${env.API_KEY_FILE} (from API_KEY_FILE)` : env.API_KEY ? 'none: the key is taken from API_KEY' : 'none: API_KEY_FILE and API_KEY unset'),
    },
    { name: 'api-key', value: 'KEY', help: 'the API key itself: visible in `ps`; prefer --api-key-file or API_KEY' },
    { name: 'valid-seconds', value: 'S', help: 'how long a relayed signature stays valid', default: () => '3600' },
    HELP_OPTION,
  ],
  async run(values, io) {
    const { key, problem: keyProblem } = resolveKey(values, io);
    const chain = resolveChain(values, io.env);
    const problems = [...chain.problems];
    if (keyProblem) problems.push(keyProblem);
    else if (!key) problems.push('a key is required: --key-file FILE (npm run cli -- keygen writes one), HOLDER_KEY_FILE or HOLDER_PRIVATE_KEY');
    const amount = values['amount-grams'];
    if (typeof amount !== 'string' || !/^[1-9][0-9]*$/.test(amount)) problems.push('--amount-grams must be a positive integer');
    if (typeof values.beneficiary !== 'string' || !values.beneficiary) problems.push('--beneficiary is required');
    const validSeconds = String(values['valid-seconds'] ?? '3600');
    if (!/^[1-9][0-9]{0,8}$/.test(validSeconds)) problems.push('--valid-seconds must be a positive integer');
    let apiKey: string | undefined;
    if (typeof values.relay === 'string') {
      if (typeof values['api-key'] === 'string') {
        io.err('warning: --api-key puts the API key on the command line, where other users see it (`ps`, shell history); prefer --api-key-file FILE or API_KEY');
        apiKey = values['api-key'];
      } else {
        const file = typeof values['api-key-file'] === 'string' ? values['api-key-file'] : io.env.API_KEY_FILE;
        if (file) {
          try {
            apiKey = fs.readFileSync(file, 'utf8').trim();
          } catch {
            problems.push(`API key file ${file} cannot be read`);
          }
        } else apiKey = io.env.API_KEY;
        if (!apiKey && !problems.some((p) => p.startsWith('API key file'))) problems.push('--relay needs --api-key (or --api-key-file FILE, or API_KEY)');
      }
      try {
        new URL(values.relay);
      } catch {
        problems.push(`--relay must be a URL (got ${values.relay})`);
      }
    }
    if (problems.length) return usageError(io, retire, problems);

    const signer = new ethers.Wallet(key!);
    const req = { amountGrams: BigInt(amount as string), beneficiary: values.beneficiary as string, reason: typeof values.reason === 'string' ? values.reason : '' };
    const ctx = { you: signer.address, action: 'retire', rpc: redactUrl(chain.rpc!) };
    let provider: ethers.JsonRpcProvider | undefined;
    try {
      provider = await connect(chain.rpc!);
      const wallet = signer.connect(provider);
      const wrong = await checkChain(provider, chain);
      if (wrong) {
        io.err(`retire failed: ${wrong}`);
        return 1;
      }
      const result =
        typeof values.relay === 'string'
          ? await relayRetirement(values.relay, apiKey!, await signRetirement(wallet, chain.contract!, req, Number(validSeconds)))
          : await retireDirect(wallet, chain.contract!, req);
      io.out(JSON.stringify({ ok: true, holder: wallet.address, amountGrams: req.amountGrams.toString(), via: typeof values.relay === 'string' ? 'relay' : 'direct', ...result }));
      return 0;
    } catch (e) {
      // The gateway's own answers (and its absence) are said as they are; the chain's through the decoder.
      const relayFailure = (e as { status?: number }).status !== undefined || isError(e, errors.RELAY_UNREACHABLE);
      io.err(`retire failed: ${relayFailure ? (e as Error).message : describeChainError(e, ctx)}`);
      return 1;
    } finally {
      provider?.destroy();
    }
  },
};

const balance: Command = {
  name: 'balance',
  summary: 'show the credits an address holds',
  synopsis: '[--address 0x… | --key-file FILE] [--rpc URL] [--contract 0x…]',
  description: 'Prints one JSON line: the address, its balance in grams and tonnes CO2e. The address is --address, else the key\'s (as for retire).',
  options: [
    { name: 'address', value: '0x…', help: 'the holder\'s address', default: () => 'the address of the key (--key-file, HOLDER_KEY_FILE, HOLDER_PRIVATE_KEY)' },
    ...KEY_OPTIONS,
    ...CHAIN_OPTIONS,
    HELP_OPTION,
  ],
  async run(values, io) {
    const chain = resolveChain(values, io.env);
    const problems = [...chain.problems];
    let address: string | undefined;
    if (typeof values.address === 'string') {
      if (ethers.isAddress(values.address)) address = ethers.getAddress(values.address);
      else problems.push('--address must be an address');
    } else {
      const { key, problem } = resolveKey(values, io);
      if (problem) problems.push(problem);
      else if (!key) problems.push('--address or a key (--key-file FILE, HOLDER_KEY_FILE, HOLDER_PRIVATE_KEY) is required');
      else address = ethers.computeAddress(key);
    }
    if (problems.length) return usageError(io, balance, problems);
    let provider: ethers.JsonRpcProvider | undefined;
    try {
      provider = await connect(chain.rpc!);
      const wrong = await checkChain(provider, chain);
      if (wrong) {
        io.err(`balance failed: ${wrong}`);
        return 1;
      }
      const grams = (await ledger(chain.contract!, provider).getFunction('balanceOf')(address)) as bigint;
      io.out(JSON.stringify({ address, balanceGrams: grams.toString(), balanceTonnes: gramsToTonnes(grams) }));
      return 0;
    } catch (e) {
      io.err(`balance failed: ${describeChainError(e, { rpc: redactUrl(chain.rpc!) })}`);
      return 1;
    } finally {
      provider?.destroy();
    }
  },
};

const keygen: Command = {
  name: 'keygen',
  summary: 'write a new private key to an owner-only file and print the address to register',
  synopsis: '[--out FILE] [--json]',
  description: [
    'Makes a new private key, writes it to FILE readable by you only (0600), never overwriting an existing',
    'file, and prints its address: register the facility with that address as its owner; its credits are',
    'minted to it and only this key can retire them. Keep the file secret and backed up: it cannot be recovered.',
  ].join('\n'),
  options: [
    { name: 'out', value: 'FILE', help: 'where to write the key (refused if it exists)', default: () => './facility.key' },
    { name: 'json', help: 'print one JSON line { address, keyFile } instead of the instructions' },
    HELP_OPTION,
  ],
  async run(values, io) {
    const file = path.resolve(typeof values.out === 'string' ? values.out : './facility.key');
    let made: { address: string };
    try {
      made = createKeyFile(file);
    } catch (e) {
      io.err(
        e instanceof KeyFileError && e.reason === 'exists'
          ? `keygen refused: ${file} already exists; it may hold the only copy of a key. Choose another --out FILE`
          : `keygen failed: ${(e as Error).message}`,
      );
      return 1;
    }
    const wallet = { address: made.address };
    if (values.json) {
      io.out(JSON.stringify({ address: wallet.address, keyFile: file }));
      return 0;
    }
    const api = `http://127.0.0.1:${io.env.HTTP_PORT ?? defaultOf('httpPort')}`;
    const rel = path.relative(process.cwd(), file) || file;
    io.out(
      [
        `Wrote a new private key to ${file} (owner-only, 0600).`,
        'Keep it secret and backed up: whoever holds it can retire the facility\'s credits, and it cannot be recovered.',
        '',
        `Facility owner address: ${wallet.address}`,
        '',
        'Register the facility with this owner (admin API key):',
        `  curl -s -H "Authorization: Bearer $KEY" -H 'content-type: application/json' ${api}/v1/facilities \\`,
        `    -d '{"id":"plant-7","name":"Plant 7","owner":"${wallet.address}","baselineKgPerHour":"3600"}'`,
        'Once windows are settled, see and retire its credits:',
        `  npm run cli -- balance --key-file ${rel}`,
        `  API_KEY=… npm run cli -- retire --key-file ${rel} --relay ${api} --amount-grams 1000 --beneficiary "…"`,
        '(--relay: the gateway pays the gas; without it this address needs ether of its own.)',
      ].join('\n'),
    );
    return 0;
  },
};

const COMMANDS: Command[] = [keygen, balance, retire];

/** Exit 2: the problems, the command's synopsis (or the command list) and where the full help is. */
function usageError(io: Io, c: Command | undefined, problems: string[]): number {
  const usage = c
    ? `usage: npm run cli -- ${c.name} ${c.synopsis}\n\n\`npm run cli -- ${c.name} --help\` lists every option and where its default comes from.`
    : topUsage();
  io.err(`${problems.join('\n')}\n\n${usage}`);
  return 2;
}

/** parseArgs' messages are long and name no command: say it in one line. */
function argumentProblem(e: unknown, c: Command): string {
  const err = e as { code?: string; message?: string };
  const quoted = /'([^']+)'/.exec(err.message ?? '')?.[1];
  if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return `unknown option '${quoted}' for ${c.name}`;
  if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') return `option ${quoted?.split(' ')[0] ?? ''} of ${c.name} needs a value`.replace(/ +/g, ' ');
  if (err.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') return `unexpected argument '${quoted}' for ${c.name} (quote values with spaces)`;
  return err.message ?? String(e);
}

/** Runs the CLI; returns the process exit code. Output goes to the given writers; `env` defaults to process.env. */
export async function runCli(argv: string[], out: (s: string) => void, err: (s: string) => void, env: Env = process.env): Promise<number> {
  const io: Io = { out, err, env };
  const [name, ...rest] = argv;
  if (name === '--help' || name === '-h' || name === 'help') {
    const sub = name === 'help' && rest[0] !== undefined ? COMMANDS.find((c) => c.name === rest[0]) : undefined;
    if (name === 'help' && rest[0] !== undefined && !sub) return usageError(io, undefined, [`unknown command '${rest[0]}'`]);
    out(sub ? usageOf(sub, env) : topUsage());
    return 0;
  }
  if (name === undefined) {
    err(`a command is required\n\n${topUsage()}`);
    return 2;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) return usageError(io, undefined, [name.startsWith('-') ? `unknown option '${name}' (options follow a command)` : `unknown command '${name}'`]);
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args: rest,
      options: Object.fromEntries(command.options.map((o) => [o.name, { type: o.value ? 'string' : 'boolean', ...(o.name === 'help' ? { short: 'h' } : {}) }])) as Record<string, { type: 'string' | 'boolean'; short?: string }>,
      strict: true,
      allowPositionals: false,
    }).values as Record<string, string | boolean | undefined>;
  } catch (e) {
    // --help anywhere wins over other mistakes.
    if (rest.includes('--help') || rest.includes('-h')) {
      out(usageOf(command, env));
      return 0;
    }
    return usageError(io, command, [argumentProblem(e, command)]);
  }
  if (values.help) {
    out(usageOf(command, env));
    return 0;
  }
  return command.run(values, io);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await runCli(
    process.argv.slice(2),
    (s) => process.stdout.write(s + '\n'),
    (s) => process.stderr.write(s + '\n'),
  );
}
