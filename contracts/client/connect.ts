/**
 * Reaching the chain, in one place: the JSON-RPC provider, the signing key with its local nonce
 * count (ethers NonceManager), and sending a contract call so that a failure never leaves a nonce gap
 * or a caller waiting forever.
 */
import { ethers } from 'ethers';
import { errors } from '../../domain/errors.ts';
import { toChainError } from './errors.ts';

export interface ProviderOptions {
  /** Known chain id: no eth_chainId probe at start (staticNetwork). */
  chainId?: number;
  /** How often to poll for new blocks, ms (ethers' default 4000). */
  pollingInterval?: number;
  /** JSON-RPC requests per HTTP batch (ethers' default 100). */
  batchMaxCount?: number;
}

/**
 * A JSON-RPC provider for `url`. Its result cache is off (cacheTimeout -1): ethers' short cache would
 * hand the nonce manager a stale pending nonce.
 */
export function rpcProvider(url: string, opts: ProviderOptions = {}): ethers.JsonRpcProvider {
  const network = opts.chainId === undefined ? undefined : { chainId: opts.chainId, name: `chain-${opts.chainId}` };
  return new ethers.JsonRpcProvider(url, network, {
    cacheTimeout: -1,
    ...(network ? { staticNetwork: true } : {}),
    ...(opts.pollingInterval !== undefined ? { pollingInterval: opts.pollingInterval } : {}),
    ...(opts.batchMaxCount !== undefined ? { batchMaxCount: opts.batchMaxCount } : {}),
  });
}

/**
 * A signer for a private key that counts its nonces locally (so concurrent sends do not reuse one);
 * `resetNonce` makes it ask the chain again.
 */
export function keySigner(privateKey: string, provider: ethers.Provider): ethers.NonceManager {
  return new ethers.NonceManager(new ethers.Wallet(privateKey, provider));
}

/** A signer that holds no key: reads work, every send fails before reaching the chain. */
export function voidSigner(provider: ethers.Provider): ethers.Signer {
  return new ethers.VoidSigner(ethers.ZeroAddress, provider);
}

/** Forgets the local nonce count of a nonce-counting signer (no-op for any other runner). */
export function resetNonce(runner: unknown): void {
  const r = runner as { reset?: unknown } | null;
  if (r && typeof r.reset === 'function') (r as { reset(): void }).reset();
}

export interface SendOptions {
  /** How long to wait for the transaction to be mined before CHAIN_UNAVAILABLE (default 120 s). */
  confirmTimeoutMs?: number;
  /** Called once the transaction is mined, before the caller hears of it. */
  afterMined?: () => Promise<void>;
}

/**
 * Calls `method` on `contract` as a transaction and waits for its receipt. Estimates first, then
 * sends with that gas limit (+20%): a revert thus surfaces before the signer sends anything, so a
 * nonce-counting signer never counts a nonce for a transaction that was not sent, and the caller
 * gets the decoded custom error. Failures leave as catalogue errors (toChainError).
 */
export async function sendCall(contract: ethers.Contract, method: string, args: unknown[], opts: SendOptions = {}): Promise<ethers.ContractTransactionReceipt> {
  let sending = false;
  try {
    const fn = contract.getFunction(method);
    const gas = await fn.estimateGas(...args);
    sending = true;
    const tx = (await fn.send(...args, { gasLimit: (gas * 12n) / 10n })) as ethers.ContractTransactionResponse;
    const receipt = await waitMined(tx, opts.confirmTimeoutMs ?? 120_000);
    if (!receipt) throw errors.CHAIN_UNAVAILABLE(`no receipt for ${tx.hash}`);
    if (opts.afterMined) {
      sending = false; // mined: the nonce is used, whatever happens to the hook
      await opts.afterMined();
    }
    return receipt;
  } catch (e) {
    // A nonce-counting signer counted a nonce for this send whatever happened to it (refused by the
    // node, lost on the way, never mined): forget the count, so the next send asks the chain for
    // its pending nonce instead of leaving a gap that stalls every later transaction.
    if (sending) resetNonce(contract.runner);
    throw toChainError(e);
  }
}

/** Runs a read against the chain; failures leave as catalogue errors (toChainError). */
export async function readCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw toChainError(e);
  }
}

/**
 * tx.wait(1) in slices until `timeoutMs`. ethers checks for the receipt once, then waits for a NEW
 * block: on an automining chain (anvil, Hardhat) a transaction mined between that check and the start
 * of its block polling is followed by no block at all, and a single wait would hang to its timeout
 * (seen on a loaded machine). Each slice checks the receipt again.
 */
async function waitMined(tx: ethers.ContractTransactionResponse, timeoutMs: number): Promise<ethers.ContractTransactionReceipt | null> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const slice = Math.max(1, Math.min(2_000, deadline - Date.now()));
    try {
      return await tx.wait(1, slice);
    } catch (e) {
      if (!ethers.isError(e, 'TIMEOUT')) throw e;
      if (Date.now() >= deadline) throw errors.CHAIN_UNAVAILABLE(`transaction ${tx.hash} not mined within ${timeoutMs} ms`);
    }
  }
}
