/**
 * Gas per facility of CreditLedger.settleBatch for 1, 16 and 100 facilities, next to the naive way:
 * one transaction per facility calling an owner-only `mint` on a plain OpenZeppelin ERC-20
 * (contracts/bench/NaiveCredit.sol), measured in the same run on the same in-process Hardhat chain.
 * Scenarios: `first` (holders have never held credits: zero -> non-zero balances on both sides) and
 * `steady` (holders already hold credits). `steady-burn` (a negative net burning from the owner)
 * is shown for information against the same naive mint.
 * Target: at 100 facilities, steady <= 0.5x naive gas per facility.
 * Run: `npx tsx bench/gas.ts` or `npm run bench -- gas`. Needs `npm run compile` first.
 */
import { pathToFileURL } from 'node:url';
import { ethers } from 'ethers';
import { loadArtifact } from '../contracts/client/artifact.ts';
import { startHardhatChain } from '../contracts/client/chain.ts';
import { Ledger } from '../contracts/client/ledger.ts';
import type { SettlementEntry } from '../contracts/client/port.ts';

export interface Row {
  facilities: number;
  scenario: 'first' | 'steady' | 'steady-burn';
  /** gasUsed of the batch transaction / facilities (includes the 21k base and calldata) */
  batchGasPerFacility: number;
  /** mean gasUsed of one naive mint transaction */
  naiveGasPerFacility: number;
  ratio: number;
}

const SIZES = [1, 16, 100];
const T0 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const WINDOW = 3_600_000;

function owners(n: number, salt: number): string[] {
  return Array.from({ length: n }, (_, i) => ethers.getAddress(ethers.dataSlice(ethers.id(`owner-${salt}-${i}`), 12)));
}

function root(i: number, w: number): string {
  return ethers.id(`evidence-${i}-${w}`);
}

/** Mean gas of one naive mint per holder, as separate transactions. */
async function naiveMints(token: ethers.Contract, holders: string[]): Promise<number> {
  let total = 0n;
  for (const h of holders) {
    const tx = (await token.mint(h, 7317n)) as ethers.ContractTransactionResponse;
    const r = await tx.wait();
    total += r?.gasUsed ?? 0n;
  }
  return Number(total) / holders.length;
}

export async function benchGas(opts: { log?: (line: string) => void } = {}): Promise<Row[]> {
  const log = opts.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const chain = await startHardhatChain();
  try {
    const [admin] = chain.signers;
    const ledger = await Ledger.deploy(admin, { windowSeconds: WINDOW / 1000 });
    const naive = loadArtifact('NaiveCredit', 'bench/NaiveCredit.sol');
    const factory = new ethers.ContractFactory(naive.abi as ethers.InterfaceAbi, naive.bytecode, admin);
    const token = (await (await factory.deploy()).waitForDeployment()) as ethers.Contract;
    // Warm the naive token's total supply (a fresh token's first mint would also pay zero -> non-zero).
    await (await token.mint(admin, 1n)).wait();

    const rows: Row[] = [];
    for (const n of SIZES) {
      const ids = Array.from({ length: n }, (_, i) => `bench-${n}-${i}`);
      const facilityOwners = owners(n, n);
      for (let i = 0; i < n; i++) await ledger.registerFacility(ids[i], facilityOwners[i], '36000', T0);
      const batch = (w: number, net: (i: number) => bigint): SettlementEntry[] =>
        ids.map((facilityId, i) => ({ facilityId, windowStart: T0 + w * WINDOW, windowEnd: T0 + (w + 1) * WINDOW, netGrams: net(i), evidenceRoot: root(i, w) }));

      const first = await ledger.settleBatch(batch(0, (i) => 7_317_000n + BigInt(i)));
      const steady = await ledger.settleBatch(batch(1, (i) => 7_317_000n + BigInt(i)));
      const burn = await ledger.settleBatch(batch(2, (i) => -1_000n - BigInt(i)));
      const naiveHolders = owners(n, 1000 + n);
      const naiveFirst = await naiveMints(token, naiveHolders);
      const naiveSteady = await naiveMints(token, naiveHolders);

      const row = (scenario: Row['scenario'], gas: bigint, naiveGas: number): Row => {
        const perFacility = Number(gas) / n;
        return { facilities: n, scenario, batchGasPerFacility: Math.round(perFacility), naiveGasPerFacility: Math.round(naiveGas), ratio: perFacility / naiveGas };
      };
      rows.push(row('first', first.gasUsed, naiveFirst), row('steady', steady.gasUsed, naiveSteady), row('steady-burn', burn.gasUsed, naiveSteady));
    }

    log('facilities  scenario      batch gas/facility  naive mint gas/tx  ratio');
    for (const r of rows) {
      log(`${String(r.facilities).padStart(10)}  ${r.scenario.padEnd(12)}  ${String(r.batchGasPerFacility).padStart(18)}  ${String(r.naiveGasPerFacility).padStart(17)}  ${r.ratio.toFixed(3)}x`);
    }
    const target = rows.find((r) => r.facilities === 100 && r.scenario === 'steady');
    if (target) log(`target: 100 facilities steady <= 0.5x naive -> ${target.ratio.toFixed(3)}x ${target.ratio <= 0.5 ? 'MET' : 'NOT MET'}`);
    return rows;
  } finally {
    await chain.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await benchGas();
}
