/**
 * What a credit holder's own tools (`npm run cli`) need from the chain besides the Ledger: a wallet
 * for its key, a provider that gives up on a node that does not answer, and what the node serves at
 * an address. Signing and sending retirements are the Ledger's (ledger.ts).
 */
import { ethers } from 'ethers';
import { redactUrl } from '../../domain/config.ts';

/** Whoever signs: a holder's wallet, a relayer's nonce-counting signer. */
export type HolderSigner = ethers.Signer;

/** A wallet for `privateKey` (0x and 64 hex digits), on `provider` when given. */
export function holderWallet(privateKey: string, provider?: ethers.Provider): ethers.Wallet {
  return new ethers.Wallet(privateKey, provider ?? null);
}

/**
 * A provider for `rpc` once the node has answered its chain id (within `timeoutMs`): ethers alone
 * would retry an unreachable URL forever. Throws a NETWORK_ERROR that describeChainError words.
 */
export async function probeProvider(rpc: string, timeoutMs = 10_000): Promise<ethers.JsonRpcProvider> {
  const req = new ethers.FetchRequest(rpc);
  req.timeout = timeoutMs;
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

/** The chain id the node serves and whether `address` holds contract code there. */
export async function contractAt(provider: ethers.Provider, address: string): Promise<{ chainId: bigint; hasCode: boolean }> {
  const network = await provider.getNetwork();
  return { chainId: network.chainId, hasCode: (await provider.getCode(address)) !== '0x' };
}
