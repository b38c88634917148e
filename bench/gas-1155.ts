/**
 * Gas of the ledger, CreditLedger (ERC-1155 batches per facility per vintage), measured in one
 * run on one in-process Hardhat chain against the same naive baselines as bench/gas.ts:
 * - settleBatch of 1, 16 and 100 facilities, gas per facility, in four scenarios:
 *   `first-ever` (a facility's very first window), `steady` (the owner already holds the window's
 *   vintage), `new-vintage` (first window of a new month: a new token id), `steady-burn` (a negative
 *   net burning from the owner's current batch);
 *   against one naive OpenZeppelin ERC-20 `mint` per facility (contracts/bench/NaiveCredit.sol) to a
 *   holder that already holds (`naive steady`) or holds nothing (`naive first`).
 *   Targets at 100 facilities: steady <= 0.5x naive steady; new-vintage <= 0.75x naive first.
 * - Retirement of one batch (direct, with a certificate) against a holder's plain OpenZeppelin
 *   ERC-1155 burn (contracts/bench/NaiveBatches.sol); printed, no target.
 * Gas is deterministic (not a timing benchmark). Run: `npx tsx bench/gas-1155.ts` or
 * `npm run bench -- gas-1155`, after `npm run compile`.
 */
import { pathToFileURL } from 'node:url';
import { ethers } from 'ethers';
import { loadArtifact } from '../contracts/client/artifact.ts';
import { startHardhatChain } from '../contracts/client/chain.ts';

export interface Row1155 {
  facilities: number;
  scenario: 'first-ever' | 'steady' | 'new-vintage' | 'steady-burn';
  batchGasPerFacility: number;
  naiveGasPerFacility: number;
  naive: 'steady' | 'first';
  ratio: number;
}

const SIZES = [1, 16, 100];
const W = 3600n;
/** Window 0 = 2027-01-31T22:00Z: windows 0-1 are vintage 2027-01, windows 2.. vintage 2027-02. */
const F0 = BigInt(Date.UTC(2027, 0, 31, 22) / 1000);
const START = new Date(Date.UTC(2027, 1, 1, 12, 0, 30));

function addresses(n: number, salt: string): string[] {
  return Array.from({ length: n }, (_, i) => ethers.getAddress(ethers.dataSlice(ethers.id(`${salt}-${i}`), 12)));
}

async function deploy(name: string, source: string, signer: ethers.Signer, args: unknown[] = []): Promise<ethers.Contract> {
  const a = loadArtifact(name, source);
  const f = new ethers.ContractFactory(a.abi as ethers.InterfaceAbi, a.bytecode, signer);
  return (await (await f.deploy(...args)).waitForDeployment()) as ethers.Contract;
}

async function gasOf(p: Promise<ethers.ContractTransactionResponse>): Promise<bigint> {
  const r = await (await p).wait();
  return r!.gasUsed;
}

export async function benchGas1155(opts: { log?: (line: string) => void } = {}): Promise<{ rows: Row1155[]; retire: number; plainBurn: number }> {
  const log = opts.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const chain = await startHardhatChain({ initialDate: START });
  try {
    const [admin, holder] = chain.signers;
    const adminAddress = await admin.getAddress();
    const ledger = await deploy('CreditLedger', 'CreditLedger.sol', admin, [adminAddress, adminAddress, adminAddress, W]);
    const naive = await deploy('NaiveCredit', 'bench/NaiveCredit.sol', admin);
    await (await naive.mint(adminAddress, 1n)).wait(); // warm the naive total supply

    const naiveMints = async (holders: string[]): Promise<number> => {
      let total = 0n;
      for (const h of holders) total += await gasOf(naive.mint(h, 7_317n));
      return Number(total) / holders.length;
    };

    const rows: Row1155[] = [];
    for (const n of SIZES) {
      const ids = Array.from({ length: n }, (_, i) => `bench-${n}-${i}`);
      const owners = addresses(n, `owner-${n}`);
      for (let i = 0; i < n; i++) await (await ledger.registerFacility(ids[i], owners[i], 3_600_000_000n, F0)).wait();
      const batch = (w: number, net: (i: number) => bigint) =>
        ids.map((id, i) => ({ facility: ethers.id(id), windowStart: F0 + BigInt(w) * W, netGrams: net(i), evidenceRoot: ethers.id(`evidence-${id}-${w}`) }));
      const first = await gasOf(ledger.settleBatch(batch(0, (i) => 7_317n + BigInt(i))));
      const steady = await gasOf(ledger.settleBatch(batch(1, (i) => 7_317n + BigInt(i))));
      const vintage = await gasOf(ledger.settleBatch(batch(2, (i) => 7_317n + BigInt(i))));
      const burn = await gasOf(ledger.settleBatch(batch(3, (i) => -1_000n - BigInt(i))));
      const naiveHolders = addresses(n, `naive-${n}`);
      const naiveFirst = await naiveMints(naiveHolders);
      const naiveSteady = await naiveMints(naiveHolders);
      const row = (scenario: Row1155['scenario'], gas: bigint, base: 'steady' | 'first'): Row1155 => {
        const per = Number(gas) / n;
        const naiveGas = base === 'steady' ? naiveSteady : naiveFirst;
        return { facilities: n, scenario, batchGasPerFacility: Math.round(per), naiveGasPerFacility: Math.round(naiveGas), naive: base, ratio: per / naiveGas };
      };
      rows.push(
        row('first-ever', first, 'first'),
        row('steady', steady, 'steady'),
        row('new-vintage', vintage, 'first'),
        row('new-vintage', vintage, 'steady'),
        row('steady-burn', burn, 'steady'),
      );
    }

    // Retirement of one batch vs a plain ERC-1155 burn by its holder (both: balance stays non-zero).
    const holderAddress = await holder.getAddress();
    await (await ledger.registerFacility('retire', holderAddress, 3_600_000_000n, F0)).wait();
    const windows = Array.from({ length: 12 }, (_, w) => ({ facility: ethers.id('retire'), windowStart: F0 + BigInt(w) * W, netGrams: 10_000n, evidenceRoot: ethers.ZeroHash }));
    await (await ledger.settleBatch(windows)).wait();
    const febId = ((BigInt(ethers.id('retire')) >> 32n) << 32n) | 202702n;
    const asHolder = ledger.connect(holder) as ethers.Contract;
    await (await asHolder.retire([febId], [1n], 'warm-up', '')).wait(); // the first certificate also creates the counter
    const retire = Number(await gasOf(asHolder.retire([febId], [1_000n], 'City of Shenzhen', 'FY2026 offset')));
    const plain = await deploy('NaiveBatches', 'bench/NaiveBatches.sol', admin);
    await (await plain.mint(holderAddress, 1n, 100_000n)).wait();
    const plainBurn = Number(await gasOf((plain.connect(holder) as ethers.Contract).burn(holderAddress, 1n, 1_000n)));

    log('facilities  scenario      batch gas/facility  naive mint gas/tx  ratio');
    for (const r of rows) {
      log(`${String(r.facilities).padStart(10)}  ${r.scenario.padEnd(12)}  ${String(r.batchGasPerFacility).padStart(18)}  ${`${r.naiveGasPerFacility} (${r.naive})`.padStart(17)}  ${r.ratio.toFixed(3)}x`);
    }
    const at100 = (s: Row1155['scenario'], base: 'steady' | 'first') => rows.find((r) => r.facilities === 100 && r.scenario === s && r.naive === base)!;
    const steady = at100('steady', 'steady');
    const vintage = at100('new-vintage', 'first');
    log(`target: 100 facilities steady <= 0.5x naive steady mint -> ${steady.ratio.toFixed(3)}x ${steady.ratio <= 0.5 ? 'MET' : 'NOT MET'}`);
    log(`target: 100 facilities new vintage <= 0.75x naive first mint -> ${vintage.ratio.toFixed(3)}x ${vintage.ratio <= 0.75 ? 'MET' : 'NOT MET'} (vs naive steady: ${at100('new-vintage', 'steady').ratio.toFixed(3)}x)`);
    log(`retirement of one batch (certificate, 2 short texts): ${retire} gas; plain ERC-1155 burn: ${plainBurn} gas (${(retire / plainBurn).toFixed(2)}x)`);
    return { rows, retire, plainBurn };
  } finally {
    await chain.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await benchGas1155();
}
