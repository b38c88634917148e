/**
 * `npm run cli -- retire ...`: retire credits from the holder's own key.
 *
 *   retire --rpc URL (--key 0x… | --key-file FILE) --contract 0x… --amount-grams N
 *          --beneficiary TEXT [--reason TEXT] [--relay URL --api-key KEY] [--valid-seconds S]
 *
 * Without --relay the holder's wallet sends `retire` itself (it pays gas). With --relay the CLI reads
 * the holder's nonce, signs the ledger's EIP-712 `Retire` request locally and posts it to the
 * gateway's `POST /v1/retirements`; the key never leaves this machine. Prints one JSON line.
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { ethers } from 'ethers';
import { loadArtifact } from '../contracts/client/artifact.ts';
import { RETIRE_TYPES } from '../contracts/client/ledger.ts';
import type { SignedRetirement } from './deps.ts';

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
): Promise<SignedRetirement> {
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
export async function relayRetirement(baseUrl: string, apiKey: string, signed: SignedRetirement): Promise<{ txHash: string; id?: string }> {
  const res = await fetch(new URL('/v1/retirements', baseUrl), {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
    body: JSON.stringify(signed),
  });
  const body = (await res.json().catch(() => ({}))) as { txHash?: string; id?: string; error?: { code: string; message: string } };
  if (!res.ok) throw Object.assign(new Error(`relay answered ${res.status}: ${body.error?.code ?? ''} ${body.error?.message ?? ''}`.trim()), { status: res.status, code: body.error?.code });
  return { txHash: body.txHash!, ...(body.id ? { id: body.id } : {}) };
}

const USAGE = `usage: npm run cli -- retire --rpc URL (--key 0x… | --key-file FILE) --contract 0x…
                     --amount-grams N --beneficiary TEXT [--reason TEXT]
                     [--relay URL --api-key KEY] [--valid-seconds S]`;

/** Runs the CLI; returns the process exit code. Output goes to the given writers. */
export async function runCli(argv: string[], out: (s: string) => void, err: (s: string) => void): Promise<number> {
  const [command, ...rest] = argv;
  if (command !== 'retire') {
    err(USAGE);
    return 2;
  }
  let values: Record<string, string | undefined>;
  try {
    values = parseArgs({
      args: rest,
      options: {
        rpc: { type: 'string' },
        key: { type: 'string' },
        'key-file': { type: 'string' },
        contract: { type: 'string' },
        'amount-grams': { type: 'string' },
        beneficiary: { type: 'string' },
        reason: { type: 'string', default: '' },
        relay: { type: 'string' },
        'api-key': { type: 'string' },
        'valid-seconds': { type: 'string', default: '3600' },
      },
      strict: true,
    }).values as Record<string, string | undefined>;
  } catch (e) {
    err(`${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  const key = values.key ?? (values['key-file'] ? fs.readFileSync(values['key-file'], 'utf8').trim() : undefined);
  const problems: string[] = [];
  if (!values.rpc) problems.push('--rpc is required');
  if (!key || !/^(0x)?[0-9a-fA-F]{64}$/.test(key)) problems.push('--key (or --key-file) must be a 32-byte hex private key');
  if (!values.contract || !ethers.isAddress(values.contract)) problems.push('--contract must be an address');
  if (!values['amount-grams'] || !/^[1-9][0-9]*$/.test(values['amount-grams'])) problems.push('--amount-grams must be a positive integer');
  if (!values.beneficiary) problems.push('--beneficiary is required');
  if (values.relay && !values['api-key']) problems.push('--relay needs --api-key');
  if (problems.length) {
    err(`${problems.join('\n')}\n${USAGE}`);
    return 2;
  }
  const provider = new ethers.JsonRpcProvider(values.rpc);
  try {
    const wallet = new ethers.Wallet(key!, provider);
    const req = { amountGrams: BigInt(values['amount-grams']!), beneficiary: values.beneficiary!, reason: values.reason ?? '' };
    const result = values.relay
      ? await relayRetirement(values.relay, values['api-key']!, await signRetirement(wallet, values.contract!, req, Number(values['valid-seconds'])))
      : await retireDirect(wallet, values.contract!, req);
    out(JSON.stringify({ ok: true, holder: wallet.address, amountGrams: req.amountGrams.toString(), via: values.relay ? 'relay' : 'direct', ...result }));
    return 0;
  } catch (e) {
    err(`retire failed: ${(e as { shortMessage?: string }).shortMessage ?? (e as Error).message}`);
    return 1;
  } finally {
    provider.destroy();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await runCli(
    process.argv.slice(2),
    (s) => process.stdout.write(s + '\n'),
    (s) => process.stderr.write(s + '\n'),
  );
}
