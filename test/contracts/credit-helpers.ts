/**
 * Set-up for the CreditLedger tests (the next ledger, contracts/CreditLedger.sol): a fresh ledger per
 * test on one in-process Hardhat chain per file, raw ethers contracts (the TypeScript client is wired
 * to CarbonLedger today), custom errors decoded from the CreditLedger ABI.
 */
import { revertDataCandidates } from '../../contracts/client/errors.ts';
import type { Test } from 'tap';
import { ethers } from 'ethers';
import { loadArtifact } from '../../contracts/client/artifact.ts';
import type { Chain } from '../../contracts/client/chain.ts';

export const W = 3600n;
/** 2027-01-31T22:00:00Z: window 0 of the test facilities; windows 0-1 are vintage 2027-01, 2.. 2027-02. */
export const F0 = BigInt(Date.UTC(2027, 0, 31, 22) / 1000);
/** The chain's clock is set to 2027-02-01T12:00:30Z: windows 0..13 have ended. */
export const NOW0 = BigInt(Date.UTC(2027, 1, 1, 12, 0, 30) / 1000);
export const JAN = 202701;
export const FEB = 202702;
export const ROOT = ethers.id('evidence');

const OZ_ERRORS = [
  'error ERC1155InsufficientBalance(address sender, uint256 balance, uint256 needed, uint256 tokenId)',
  'error ERC1155MissingApprovalForAll(address operator, address owner)',
  'error InvalidAccountNonce(address account, uint256 currentNonce)',
  'error AccessControlUnauthorizedAccount(address account, bytes32 neededRole)',
  'error EnforcedPause()',
  'error ERC1155InvalidReceiver(address receiver)',
  'error SafeCastOverflowedUintDowncast(uint8 bits, uint256 value)',
];

export interface CreditFixture {
  chain: Chain;
  address: string;
  admin: ethers.Contract;
  regulator: ethers.Contract;
  oracle: ethers.Contract;
  ownerA: ethers.Contract;
  ownerB: ethers.Contract;
  outsider: ethers.Contract;
  relayer: ethers.Contract;
  accounts: { admin: string; regulator: string; oracle: string; ownerA: string; ownerB: string; outsider: string; relayer: string };
  wallets: { ownerA: ethers.Wallet; outsider: ethers.Wallet };
}

/** Moves the chain's clock to NOW0 (once per chain: the clock only goes forward). */
export async function setClock(chain: Chain, at = NOW0): Promise<void> {
  await chain.provider.send('evm_setNextBlockTimestamp', [Number(at)]);
  await chain.provider.send('evm_mine', []);
}

export async function now(chain: Chain): Promise<bigint> {
  const b = await chain.provider.getBlock('latest');
  return BigInt(b!.timestamp);
}

/** A fresh CreditLedger with distinct admin, regulator and oracle accounts. */
export async function deployCredit(chain: Chain, windowSeconds = W): Promise<CreditFixture> {
  const [admin, regulator, oracle, ownerA, ownerB, outsider, relayer] = chain.signers;
  const names = ['admin', 'regulator', 'oracle', 'ownerA', 'ownerB', 'outsider', 'relayer'] as const;
  const addrs = await Promise.all([admin, regulator, oracle, ownerA, ownerB, outsider, relayer].map((s) => s.getAddress()));
  const art = loadArtifact('CreditLedger');
  const factory = new ethers.ContractFactory(art.abi as ethers.InterfaceAbi, art.bytecode, admin);
  const c = (await (await factory.deploy(addrs[0], addrs[1], addrs[2], windowSeconds)).waitForDeployment()) as ethers.Contract;
  const address = await c.getAddress();
  const at = (s: ethers.Signer) => c.connect(s) as ethers.Contract;
  const accounts = Object.fromEntries(names.map((n, i) => [n, addrs[i]])) as CreditFixture['accounts'];
  return {
    chain,
    address,
    admin: c,
    regulator: at(regulator),
    oracle: at(oracle),
    ownerA: at(ownerA),
    ownerB: at(ownerB),
    outsider: at(outsider),
    relayer: at(relayer),
    accounts,
    wallets: { ownerA: new ethers.Wallet(chain.privateKeys[3]), outsider: new ethers.Wallet(chain.privateKeys[5]) },
  };
}

export const key = (facilityId: string): string => ethers.id(facilityId);
export const batchId = (facilityId: string, vintage: number): bigint =>
  ((BigInt(key(facilityId)) >> 32n) << 32n) | BigInt(vintage);
export const ws = (n: number): bigint => F0 + BigInt(n) * W;

/** Facilities A (ownerA, 3600 kg/h: cap 3,600,000 g per window), B (ownerB), C (ownerA again). */
export async function withFacilities(chain: Chain): Promise<CreditFixture> {
  const f = await deployCredit(chain);
  await send(f.regulator.registerFacility('A', f.accounts.ownerA, 3_600_000_000n, F0));
  await send(f.regulator.registerFacility('B', f.accounts.ownerB, 1_000_000_000n, F0));
  await send(f.regulator.registerFacility('C', f.accounts.ownerA, 1_000_000_000n, F0));
  return f;
}

/** Settlement inputs for windows from..from+nets.length-1 of one facility. */
export function wins(facilityId: string, from: number, nets: bigint[], root = ROOT) {
  return nets.map((netGrams, i) => ({ facility: key(facilityId), windowStart: ws(from + i), netGrams, evidenceRoot: root }));
}

/** Nets for windows 0..11 (so the facility is not lagging at NOW0), with some set. */
export function twelve(set: Record<number, bigint> = {}): bigint[] {
  return Array.from({ length: 12 }, (_, i) => set[i] ?? 0n);
}

export async function send(p: Promise<ethers.ContractTransactionResponse>): Promise<ethers.TransactionReceipt> {
  const tx = await p;
  const r = await tx.wait();
  return r!;
}

export interface Ev {
  name: string;
  args: Record<string, unknown>;
}

/** The ledger's events in a receipt, in log order, with named arguments. */
export function events(c: ethers.Contract, r: ethers.TransactionReceipt): Ev[] {
  const out: Ev[] = [];
  for (const log of r.logs) {
    const parsed = c.interface.parseLog(log);
    if (!parsed) continue;
    const args: Record<string, unknown> = {};
    parsed.fragment.inputs.forEach((input, i) => {
      const v = parsed.args[i];
      args[input.name] = v instanceof ethers.Result ? v.toArray(true) : v;
    });
    out.push({ name: parsed.name, args });
  }
  return out;
}

let ifaces: ethers.Interface[] | undefined;

export function decode(e: unknown): { name: string; args: unknown[] } | undefined {
  ifaces ??= [new ethers.Interface(loadArtifact('CreditLedger').abi as ethers.InterfaceAbi), new ethers.Interface(OZ_ERRORS)];
  for (const data of revertDataCandidates(e)) {
    for (const i of ifaces) {
      try {
        const p = i.parseError(data);
        if (p) return { name: p.name, args: [...p.args] };
      } catch {
        // next
      }
    }
  }
  return undefined;
}

/** Asserts that `p` reverts with custom error `name` (and these arguments when given). */
export async function reverts(t: Test, p: Promise<unknown>, name: string, args?: unknown[], msg?: string): Promise<void> {
  try {
    await p;
    t.fail(`${msg ?? name}: expected a revert`);
  } catch (e) {
    const d = decode(e);
    if (args === undefined) t.equal(d?.name, name, msg ?? `reverts with ${name}`);
    else t.same(d, { name, args }, msg ?? `reverts with ${name}`);
  }
}

/** EIP-712 signature of a Retire request by `wallet` for ledger `f`. */
export async function signRetire(
  f: CreditFixture,
  wallet: ethers.Wallet,
  req: { holder: string; batchIds: bigint[]; amounts: bigint[]; beneficiary: string; reason: string; nonce: bigint; deadline: bigint },
): Promise<string> {
  const domain = { name: 'CreditLedger', version: '1', chainId: f.chain.chainId, verifyingContract: f.address };
  const types = {
    Retire: [
      { name: 'holder', type: 'address' },
      { name: 'batchIds', type: 'uint256[]' },
      { name: 'amounts', type: 'uint256[]' },
      { name: 'beneficiary', type: 'string' },
      { name: 'reason', type: 'string' },
      { name: 'nonce', type: 'uint256' },
      { name: 'deadline', type: 'uint256' },
    ],
  };
  return wallet.signTypedData(domain, types, req);
}
