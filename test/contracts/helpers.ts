/** Shared set-up for the contract tests: one in-process Hardhat chain per file, a fresh ledger per test. */
import type { Test } from 'tap';
import { ethers } from 'ethers';
import type { Chain } from '../../contracts/client/chain.ts';
import { decodeLedgerError } from '../../contracts/client/errors.ts';
import { Ledger } from '../../contracts/client/ledger.ts';
import { facilityKey } from '../../contracts/client/units.ts';

export const T0 = 1_767_225_600_000; // 2026-01-01T00:00:00Z, ms
export const W = 3_600_000; // one hour, ms
export const S0 = BigInt(T0 / 1000);
export const WS = BigInt(W / 1000);
export const ROOT = ethers.id('evidence');
export const ORACLE_ROLE = ethers.id('ORACLE_ROLE');
export const REGULATOR_ROLE = ethers.id('REGULATOR_ROLE');

export interface Fixture {
  chain: Chain;
  /** admin (deployer) */
  admin: Ledger;
  regulator: Ledger;
  oracle: Ledger;
  accounts: { admin: string; regulator: string; oracle: string; ownerA: string; ownerB: string; outsider: string };
  signers: { ownerA: ethers.Signer; ownerB: ethers.Signer; outsider: ethers.Signer; relayer: ethers.Signer };
}

/** A freshly deployed ledger with distinct admin, regulator and oracle accounts. */
export async function deploy(chain: Chain): Promise<Fixture> {
  const [admin, regulator, oracle, ownerA, ownerB, outsider, relayer] = chain.signers;
  const addresses = await Promise.all([admin, regulator, oracle, ownerA, ownerB, outsider].map((s) => s.getAddress()));
  const ledger = await Ledger.deploy(admin, { windowSeconds: W / 1000, regulator: addresses[1], oracle: addresses[2] });
  return {
    chain,
    admin: ledger,
    regulator: ledger.connect(regulator),
    oracle: ledger.connect(oracle),
    accounts: { admin: addresses[0], regulator: addresses[1], oracle: addresses[2], ownerA: addresses[3], ownerB: addresses[4], outsider: addresses[5] },
    signers: { ownerA, ownerB, outsider, relayer },
  };
}

/** A fixture with facilities A (ownerA) and B (ownerB) registered, first window T0. */
export async function withFacilities(chain: Chain): Promise<Fixture> {
  const f = await deploy(chain);
  await f.regulator.registerFacility('A', f.accounts.ownerA, '3600', T0);
  await f.regulator.registerFacility('B', f.accounts.ownerB, '1200.5', T0);
  return f;
}

export const KEY_A = facilityKey('A');
export const KEY_B = facilityKey('B');

/** Window n of a facility as a client SettlementInput. */
export function win(facilityId: string, n: number, netGrams: bigint, evidenceRoot = ROOT) {
  return { facilityId, windowStart: T0 + n * W, windowEnd: T0 + (n + 1) * W, netGrams, evidenceRoot };
}

/** Window n as the contract's SettlementInput struct. */
export function raw(facilityId: string, n: number, netGrams: bigint, evidenceRoot = ROOT) {
  return { facility: facilityKey(facilityId), windowStart: S0 + BigInt(n) * WS, netGrams, evidenceRoot };
}

export interface DecodedEvent {
  name: string;
  args: Record<string, unknown>;
}

/** The ledger's events in a transaction, in log order, with named arguments. */
export async function eventsOf(ledger: Ledger, txHash: string): Promise<DecodedEvent[]> {
  const receipt = await ledger.provider.getTransactionReceipt(txHash);
  if (!receipt) throw new Error(`no receipt for ${txHash}`);
  const out: DecodedEvent[] = [];
  for (const log of receipt.logs) {
    if (ethers.getAddress(log.address) !== ledger.address) continue;
    const parsed = ledger.contract.interface.parseLog(log);
    if (!parsed) continue;
    const args: Record<string, unknown> = {};
    parsed.fragment.inputs.forEach((input, i) => {
      args[input.name] = parsed.args[i];
    });
    out.push({ name: parsed.name, args });
  }
  return out;
}

/** Asserts that `p` rejects with the ledger custom error `name` and exactly these arguments. */
export async function expectRevert(t: Test, p: Promise<unknown>, name: string, args: unknown[], msg?: string): Promise<void> {
  try {
    await p;
    t.fail(`${msg ?? name}: expected a revert`);
  } catch (e) {
    const decoded = decodeLedgerError(e);
    t.same(decoded, { name, args }, msg ?? `reverts with ${name}`);
  }
}

/** Sends a raw contract call and returns its tx hash once mined. */
export async function send(p: Promise<ethers.ContractTransactionResponse>): Promise<string> {
  const tx = await p;
  await tx.wait();
  return tx.hash;
}
