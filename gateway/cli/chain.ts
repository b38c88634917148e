/**
 * The holder's chain actions, through the contracts client (the only importer of ethers): check the
 * node and the ledger address before sending, sign a retirement for the relay, retire directly, post
 * a signed retirement to the gateway.
 */
import type { Static } from '@sinclair/typebox';
import { contractAt, type HolderSigner } from '../../contracts/client/holder.ts';
import { Ledger } from '../../contracts/client/ledger.ts';
import { redactUrl } from '../../domain/config.ts';
import { errors } from '../../domain/errors.ts';
import type { SignedRetirementBody } from '../schemas.ts';
import type { ChainChoice } from './defaults.ts';

/** A signed retirement as the relay takes it (POST /v1/retirements). */
export type SignedRetirementJson = Static<typeof SignedRetirementBody>;

export interface RetireRequest {
  /** Token ids of the batches and the grams of each (same length). */
  batchIds: bigint[];
  amounts: bigint[];
  beneficiary: string;
  reason: string;
}

/**
 * Signs a retirement for relaying with the Ledger's signRetirement (nonce and EIP-712 domain read
 * from the chain); the deadline is `validSeconds` after the latest block.
 */
export async function signRetirement(holder: HolderSigner, contractAddress: string, req: RetireRequest, validSeconds = 3600): Promise<SignedRetirementJson> {
  const provider = holder.provider;
  if (!provider) throw new Error('the wallet needs a provider to read the nonce');
  const ledger = Ledger.readOnlyAt(contractAddress, provider);
  const deadline = (await ledger.latestBlockTime()) + validSeconds;
  const s = await ledger.signRetirement(holder, req.batchIds, req.amounts, req.beneficiary, req.reason, deadline);
  return {
    holder: s.holder,
    batchIds: s.batchIds.map(String),
    amounts: s.amounts.map(String),
    beneficiary: s.beneficiary,
    reason: s.reason,
    nonce: s.nonce.toString(),
    deadline: s.deadline.toString(),
    signature: s.signature,
  };
}

/** Retires with the holder's own transaction (the Ledger's retire). Resolves with the tx hash and the retirement id. */
export async function retireDirect(holder: HolderSigner, contractAddress: string, req: RetireRequest): Promise<{ txHash: string; id: string }> {
  const receipt = await Ledger.attach(contractAddress, holder).retire(holder, req.batchIds, req.amounts, req.beneficiary, req.reason);
  return { txHash: receipt.txHash, id: receipt.id.toString() };
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

/** Before sending anything: the node answers, the address holds a contract, the chain is the one the deployment file names. */
export async function checkChain(provider: Parameters<typeof contractAt>[0], chain: ChainChoice): Promise<string | undefined> {
  const { chainId, hasCode } = await contractAt(provider, chain.contract!);
  if (chain.chainId && chainId.toString() !== chain.chainId) {
    return `the node at ${redactUrl(chain.rpc!)} is chain ${chainId}, but the ledger address was deployed on chain ${chain.chainId}: pass --rpc and --contract of the same chain`;
  }
  if (!hasCode) {
    return `there is no contract at ${chain.contract} on the chain at ${redactUrl(chain.rpc!)} (chain ${chainId}): check --contract and --rpc (or DATA_DIR)`;
  }
  return undefined;
}
