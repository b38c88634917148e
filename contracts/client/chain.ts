/**
 * Local chains for tests and `npm start`:
 * - `startHardhatChain()`: Hardhat's EDR network in this process (no port, no child process; the fastest
 *   option for tests), wrapped in an ethers BrowserProvider.
 * - `startAnvil()`: the anvil binary from `@foundry-rs/anvil` as a child process, with an optional state
 *   file that it loads at start and dumps on exit (and every `stateIntervalSeconds`), so the chain
 *   survives a restart.
 * Both use the well-known test mnemonic by default, so accounts and keys are the same on either chain;
 * anvil takes another (`npm start` keeps a random one under DATA_DIR) and never sends CORS headers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import zlib from 'node:zlib';
import { ethers } from 'ethers';
import { errors } from '../../domain/errors.ts';
import type { Logger } from '../../domain/logger.ts';
import { rpcProvider } from './connect.ts';

const require = createRequire(import.meta.url);

export const TEST_MNEMONIC = 'test test test test test test test test test test test junk';
const DERIVATION_PATH = "m/44'/60'/0'/0";

export interface Chain {
  provider: ethers.JsonRpcApiProvider;
  /** Unlocked signers of the node's accounts (account 0 first). */
  signers: ethers.JsonRpcSigner[];
  /** The private keys of those accounts (well-known test keys: never use them on a real network). */
  privateKeys: string[];
  /** JSON-RPC URL, for a chain reachable over HTTP (anvil). */
  rpcUrl?: string;
  chainId: bigint;
  close(): Promise<void>;
  /** anvil with a state file: writes the current state to it now (atomically). */
  saveState?(): Promise<void>;
  /** anvil: SIGKILL, no state dump (a crash), for tests. */
  kill?(): Promise<void>;
}

const keyCache = new Map<string, string[]>();

/** The first `count` private keys of a mnemonic (default the test mnemonic: what hardhat and anvil fund by default). */
export function testPrivateKeys(count: number, mnemonic = TEST_MNEMONIC): string[] {
  const hit = keyCache.get(`${count}:${mnemonic}`);
  if (hit) return hit;
  const root = ethers.HDNodeWallet.fromPhrase(mnemonic, '', DERIVATION_PATH);
  const keys = Array.from({ length: count }, (_, i) => root.deriveChild(i).privateKey);
  keyCache.set(`${count}:${mnemonic}`, keys);
  return keys;
}

export interface HardhatChainOptions {
  /** Funded accounts (default 10). */
  accounts?: number;
  /** EVM hardfork (default hardhat's default, `osaka`). */
  hardfork?: string;
  /** Genesis block time (default now). */
  initialDate?: Date;
  chainId?: number;
}

/** Minimal shape of the EIP-1193 provider that hardhat's EDR network returns. */
interface Eip1193 {
  request(args: { method: string; params?: unknown[] | Record<string, unknown> }): Promise<unknown>;
}

/**
 * A fresh in-process Hardhat network (EDR), automining, each call an independent chain.
 * Uses hardhat's `createHardhatNetworkProvider` (what `hre.network.provider` is built with) so no
 * hardhat config or working directory is involved; hardhat is pinned to 2.28.x in package.json.
 */
export async function startHardhatChain(opts: HardhatChainOptions = {}): Promise<Chain> {
  const { createHardhatNetworkProvider } = require('hardhat/internal/hardhat-network/provider/provider') as {
    createHardhatNetworkProvider(config: Record<string, unknown>, logger: { enabled: boolean }): Promise<Eip1193>;
  };
  const { defaultHardhatNetworkParams } = require('hardhat/internal/core/config/default-config') as {
    defaultHardhatNetworkParams: { hardfork: string; chains: Map<number, unknown>; blockGasLimit: number };
  };
  const count = opts.accounts ?? 10;
  const privateKeys = testPrivateKeys(count);
  const chainId = opts.chainId ?? 31337;
  const eip1193 = await createHardhatNetworkProvider(
    {
      chainId,
      networkId: chainId,
      hardfork: opts.hardfork ?? defaultHardhatNetworkParams.hardfork,
      blockGasLimit: defaultHardhatNetworkParams.blockGasLimit,
      initialBaseFeePerGas: undefined,
      minGasPrice: 0n,
      throwOnTransactionFailures: true,
      throwOnCallFailures: true,
      automine: true,
      intervalMining: 0,
      mempoolOrder: 'priority',
      chains: defaultHardhatNetworkParams.chains,
      genesisAccounts: privateKeys.map((privateKey) => ({ privateKey, balance: '10000000000000000000000' })),
      allowUnlimitedContractSize: false,
      allowBlocksWithSameTimestamp: false,
      initialDate: opts.initialDate,
      enableTransientStorage: false,
      enableRip7212: false,
    },
    { enabled: false },
  );
  const provider = new ethers.BrowserProvider(eip1193, { chainId, name: 'hardhat' }, { cacheTimeout: -1 });
  const signers = privateKeys.map((k) => new ethers.JsonRpcSigner(provider, ethers.computeAddress(k)));
  return {
    provider,
    signers,
    privateKeys,
    chainId: BigInt(chainId),
    async close() {
      provider.destroy();
    },
  };
}

export interface AnvilOptions {
  /** State file: loaded at start when it exists, dumped on exit (default: no persistence). */
  stateFile?: string;
  /** Also dump the state every N seconds (default 5 when stateFile is set), so a crash loses little. */
  stateIntervalSeconds?: number;
  /** Port (default 0: a free port, read back from anvil's output). */
  port?: number;
  host?: string;
  accounts?: number;
  chainId?: number;
  /** Mnemonic of the dev accounts (default the public test mnemonic; `npm start` uses a random one). */
  mnemonic?: string;
  /** How long to wait for the RPC to come up (default 20 s). */
  startTimeoutMs?: number;
  logger?: Logger;
}

/**
 * Path of the anvil binary, or undefined when not installed here. package.json depends on the
 * platform package `@foundry-rs/anvil-linux-amd64` directly (optional): the `@foundry-rs/anvil`
 * wrapper lists every platform package, and the ones this registry lacks make `npm ci` refuse the lock.
 */
export function anvilBinary(): string | undefined {
  const arch = process.arch === 'x64' ? 'amd64' : process.arch;
  const exe = process.platform === 'win32' ? 'anvil.exe' : 'anvil';
  try {
    const p = require.resolve(`@foundry-rs/anvil-${process.platform}-${arch}/bin/${exe}`);
    return fs.existsSync(p) ? p : undefined;
  } catch {
    return undefined;
  }
}

/** Starts anvil and resolves once its RPC answers. `close()` stops it (SIGTERM) and lets it dump state. */
export async function startAnvil(opts: AnvilOptions = {}): Promise<Chain> {
  const bin = anvilBinary();
  if (!bin) throw errors.ANVIL_NOT_FOUND(`@foundry-rs/anvil-${process.platform}-${process.arch === 'x64' ? 'amd64' : process.arch}`);
  const host = opts.host ?? '127.0.0.1';
  const count = opts.accounts ?? 10;
  const chainId = opts.chainId ?? 31337;
  const args = ['--host', host, '--port', String(opts.port ?? 0), '--accounts', String(count), '--chain-id', String(chainId), '--mnemonic', opts.mnemonic ?? TEST_MNEMONIC];
  // No CORS headers: a web page must not be able to talk to the node (it answers `*` by default).
  args.push('--no-cors');
  if (opts.stateFile) {
    fs.mkdirSync(path.dirname(opts.stateFile), { recursive: true });
    args.push('--state', opts.stateFile, '--state-interval', String(opts.stateIntervalSeconds ?? 5));
  }
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  // If this process exits without close() (a crash, process.exit), do not leave anvil running.
  const killOnExit = () => child.kill('SIGTERM');
  process.once('exit', killOnExit);
  child.once('exit', () => process.off('exit', killOnExit));
  const log = opts.logger?.child({ component: 'anvil' });
  let port: number;
  try {
    port = await waitForListening(child, opts.startTimeoutMs ?? 20_000);
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  log?.info({ pid: child.pid, port, stateFile: opts.stateFile }, 'anvil started');
  const rpcUrl = `http://${host}:${port}`;
  const provider = rpcProvider(rpcUrl, { chainId, pollingInterval: 250 });
  const privateKeys = testPrivateKeys(count, opts.mnemonic);
  const signers = privateKeys.map((k) => new ethers.JsonRpcSigner(provider, ethers.computeAddress(k)));
  let closed: Promise<void> | undefined;
  let saving: Promise<void> = Promise.resolve();
  const stateFile = opts.stateFile;
  return {
    provider,
    signers,
    privateKeys,
    rpcUrl,
    chainId: BigInt(chainId),
    // anvil_dumpState answers the state gzipped, in the format of the --state file; a temp file and a
    // rename keep the file whole if we crash while writing. Saves run one after the other.
    saveState: stateFile
      ? () => {
          saving = saving
            .catch(() => undefined)
            .then(async () => {
              const hex = (await provider.send('anvil_dumpState', [])) as string;
              const tmp = `${stateFile}.${process.pid}.tmp`;
              fs.writeFileSync(tmp, zlib.gunzipSync(Buffer.from(hex.slice(2), 'hex')));
              fs.renameSync(tmp, stateFile);
            });
          return saving;
        }
      : undefined,
    async kill() {
      provider.destroy();
      if (child.exitCode !== null || child.signalCode !== null) return;
      await new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      });
    },
    close() {
      closed ??= (async () => {
        provider.destroy();
        await stopChild(child, 10_000);
        log?.info({ stateFile: opts.stateFile }, 'anvil stopped');
      })();
      return closed;
    },
  };
}

/** Resolves with the port once anvil prints `Listening on host:port`; rejects on exit or timeout. */
function waitForListening(child: ChildProcess, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => finish(new Error(`anvil did not start within ${timeoutMs} ms: ${out.slice(-500)}`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      out += chunk.toString('utf8');
      const m = /Listening on [^\s:]+:(\d+)/.exec(out);
      if (m) finish(undefined, Number(m[1]));
    };
    const onExit = (code: number | null) => finish(new Error(`anvil exited (${code}) before listening: ${out.slice(-500)}`));
    const finish = (err?: Error, port?: number) => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
      // Keep draining output so anvil never blocks on a full pipe.
      child.stdout?.resume();
      child.stderr?.resume();
      if (err) reject(err);
      else resolve(port as number);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', onExit);
  });
}

/** SIGTERM (anvil dumps its state), then SIGKILL if it has not exited after `graceMs`. */
function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
