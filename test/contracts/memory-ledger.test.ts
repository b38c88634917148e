/**
 * The in-memory ledger the oracle and gateway tests use (test/helpers/memory-ledger.ts) against the
 * real CreditLedger (Hardhat's in-process network, through the ethers client): the same scenario
 * through the LedgerPort on both, every answer and every revert (name and arguments) or catalogue
 * error recorded, step by step, and the two records compared. The scenario covers the settlement
 * rules (a gain pays the facility's deficit first, then mints into the vintage batch with serials; a
 * loss burns the owner's holdings, the rest becomes deficit; skipped, out-of-order, wrong-length,
 * above-cap windows), the registry rules (several facilities per owner), batches and holdings, device
 * keys (set, rotate, revoke, bad ids), roles, pause and signed retirements over batches (nonce,
 * deadline, signature, suspension, balance, serial ranges).
 */
import t from 'tap';
import { ethers } from 'ethers';
import { startHardhatChain } from '../../contracts/client/chain.ts';
import { decodeLedgerError } from '../../contracts/client/errors.ts';
import { Ledger } from '../../contracts/client/ledger.ts';
import { RETIRE_TYPES, vintageOf, type LedgerAdminPort, type LedgerPort, type SignedRetirement } from '../../contracts/client/port.ts';
import { DomainError } from '../../domain/errors.ts';
import { batchIdOf, MEMORY_DOMAIN, MemoryLedger } from '../helpers/memory-ledger.ts';

const W = 3_600_000;
// Recent windows: the ledger settles ended windows only, and an owner whose facility lags more than
// two windows cannot retire.
const T0 = Math.floor(Date.now() / W) * W - 6 * W;
const win = (facilityId: string, n: number, netGrams: bigint, evidenceRoot = ethers.id('evidence')) => ({ facilityId, windowStart: T0 + n * W, windowEnd: T0 + (n + 1) * W, netGrams, evidenceRoot });
const BATCH_A = batchIdOf('A', vintageOf(T0));

const chain = await startHardhatChain({ accounts: 8 });
t.teardown(() => chain.close());

const wallets = chain.privateKeys.map((k) => new ethers.Wallet(k));
const ownerA = wallets[3];
const ownerB = wallets[4];
const ownerC = wallets[6];
const outsider = wallets[5].address;

interface Side {
  /** Holds every role. */
  ledger: LedgerPort & LedgerAdminPort;
  /** Holds none. */
  outsider: LedgerPort;
  domain: ethers.TypedDataDomain;
}

/** Drops what differs by nature between the chains (hashes, block numbers, gas). */
function normalise(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(normalise);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (!['txHash', 'blockNumber', 'gasUsed'].includes(k)) out[k] = normalise(x);
    return out;
  }
  return v;
}

async function scenario(side: Side): Promise<[string, unknown][]> {
  const { ledger } = side;
  const trace: [string, unknown][] = [];
  const step = async (name: string, p: () => Promise<unknown>) => {
    try {
      trace.push([name, { ok: normalise(await p()) }]);
    } catch (e) {
      const revert = decodeLedgerError(e);
      // The block time is the node's clock, not ours: only its presence is compared.
      if (revert?.name === 'WindowNotEnded') revert.args[2] = 'block time';
      if (revert) trace.push([name, { revert }]);
      else if (e instanceof DomainError) trace.push([name, { error: e.code }]);
      else throw e;
    }
  };
  const sign = async (holder: ethers.Wallet, amount: bigint, nonce: bigint, deadline: number, by: ethers.Wallet = holder): Promise<SignedRetirement> => {
    const req = { holder: holder.address, batchIds: [BATCH_A], amounts: [amount], beneficiary: 'City of X', reason: 'scope 2', nonce, deadline };
    return { ...req, signature: await by.signTypedData(side.domain, RETIRE_TYPES, req) };
  };
  const later = Math.floor(Date.now() / 1000) + 3600;

  // registry
  await step('register A', () => ledger.registerFacility('A', ownerA.address, '3600', T0));
  await step('register B', () => ledger.registerFacility('B', ownerB.address, '1200.5', T0));
  await step('register A again', () => ledger.registerFacility('A', ownerC.address, '1', T0));
  await step('register C with A\'s owner', () => ledger.registerFacility('C', ownerA.address, '1', T0));
  await step('register by an outsider', () => side.outsider.registerFacility('D', ownerC.address, '1', T0));
  await step('register a zero owner', () => ledger.registerFacility('D', ethers.ZeroAddress, '1', T0));
  await step('register a 65-byte id', () => ledger.registerFacility('x'.repeat(65), ownerC.address, '1', T0));

  // settlement: deficit first, burn, deficit
  await step('settle A0 +1000, B0 -500', () => ledger.settleBatch([win('A', 0, 1000n), win('B', 0, -500n)]));
  await step('settle A1 -2500 (burns 1000, deficit 1500)', () => ledger.settleBatch([win('A', 1, -2500n)]));
  await step('settle A2 +1000 (pays deficit)', () => ledger.settleBatch([win('A', 2, 1000n)]));
  await step('settle A3 +800 (pays 500, mints 300)', () => ledger.settleBatch([win('A', 3, 800n)]));
  await step('settle A2 again (skipped), A4 +50', () => ledger.settleBatch([win('A', 2, 7n), win('A', 4, 50n)]));
  await step('settle A6 (a gap)', () => ledger.settleBatch([win('A', 6, 1n)]));
  await step('settle an empty window', () => ledger.settleBatch([{ ...win('A', 5, 1n), windowEnd: T0 + 5 * W }]));
  await step('settle 2^64 g', () => ledger.settleBatch([win('A', 5, 1n << 64n)]));
  await step('settle above the cap', () => ledger.settleBatch([win('A', 5, 3_600_001n)]));
  await step('settle -2^63 g', () => ledger.settleBatch([win('A', 5, -(1n << 63n))]));
  await step('settle a window not ended', () => ledger.settleBatch([win('A', 5, 1n), win('A', 6, 1n), win('A', 7, 1n), win('A', 8, 1n)]));
  await step('settle an unknown facility', () => ledger.settleBatch([win('Z', 0, 1n)]));
  await step('settle by an outsider', () => side.outsider.settleBatch([win('A', 5, 1n)]));
  await step('settle B1 +200 (pays B\'s deficit)', () => ledger.settleBatch([win('B', 1, 200n)]));

  // reads
  await step('facility A', () => ledger.facility('A'));
  await step('facility B', () => ledger.facility('B'));
  await step('facility unknown', () => ledger.facility('Z'));
  await step('batches of A', () => ledger.batches('A'));
  await step('batches of Z', () => ledger.batches('Z'));
  await step('holdings', async () => [await ledger.holdings(ownerA.address), await ledger.holdings(ownerB.address), await ledger.holdings(outsider)]);
  await step('settlement A1', () => ledger.settlementAt('A', T0 + W));
  await step('settlement A9', () => ledger.settlementAt('A', T0 + 9 * W));
  await step('settlements of A', () => ledger.settlements({ facilityId: 'A' }));

  // registry changes
  await step('baseline before the next window', () => ledger.setBaseline('A', '4000', T0 + 4 * W));
  await step('baseline from the next window', () => ledger.setBaseline('A', '4000.125', T0 + 5 * W));
  await step('baseline later', () => ledger.setBaseline('A', '3000', T0 + 7 * W));
  await step('another change at another time', () => ledger.setBaseline('A', '3500', T0 + 8 * W));
  await step('baseline misaligned', () => ledger.setBaseline('B', '1', T0 + 5 * W + 1000));
  await step('facility A with a pending baseline', () => ledger.facility('A'));
  await step('owner change after settling', () => ledger.setFacilityOwner('A', ownerC.address));
  await step('deregister after settling', () => ledger.deregisterFacility('A'));
  await step('register C', () => ledger.registerFacility('C', ownerC.address, '1', T0));
  await step('C owner to B\'s owner', () => ledger.setFacilityOwner('C', ownerB.address));
  await step('C owner to an outsider', () => ledger.setFacilityOwner('C', outsider));
  await step('deregister C', () => ledger.deregisterFacility('C'));
  await step('facility C after removal', () => ledger.facility('C'));

  // retirements
  const first = await sign(ownerA, 100n, 0n, later);
  await step('suspend A', () => ledger.setFacilitySuspended('A', true));
  await step('retire while suspended', () => ledger.retireWithSig(first));
  await step('reinstate A', () => ledger.setFacilitySuspended('A', false));
  await step('request before use', () => ledger.retirementOfRequest(first));
  await step('retire 100 g', () => ledger.retireWithSig(first));
  await step('request after use', () => ledger.retirementOfRequest(first));
  await step('the same request again', () => ledger.retireWithSig(first));
  await step('retire more than the balance', async () => ledger.retireWithSig(await sign(ownerA, 10_000n, 1n, later)));
  await step('retire with an expired request', async () => ledger.retireWithSig(await sign(ownerA, 1n, 1n, 1_000)));
  await step('retire signed by another key', async () => ledger.retireWithSig(await sign(ownerA, 1n, 1n, later, ownerB)));
  await step('retire 0 g', async () => ledger.retireWithSig(await sign(ownerA, 0n, 1n, later)));
  await step('retire without a facility', async () => ledger.retireWithSig(await sign(ownerC, 1n, 0n, later)));
  await step('retirements', async () => (await ledger.retirements()).map(({ retiredAt, ...r }) => ({ ...r, recent: retiredAt > Date.now() - 3_600_000 })));
  await step('retirements of B', () => ledger.retirements({ facilityId: 'B' }));
  await step('retirement 1', async () => {
    const r = await ledger.retirement(1n);
    return r && { ...r, retiredAt: r.retiredAt > Date.now() - 3_600_000 };
  });
  await step('retirement 9', () => ledger.retirement(9n));
  await step('holdings after retiring', () => ledger.holdings(ownerA.address));
  await step('facility A after retiring', () => ledger.facility('A'));

  // device keys
  const k1 = 'ab'.repeat(32);
  const k2 = '0x' + 'CD'.repeat(32);
  await step('key of m1 before any', () => ledger.deviceKey('m1'));
  await step('set m1 key', () => ledger.setDeviceKey('m1', k1));
  await step('set m1 key again (no event)', () => ledger.setDeviceKey('m1', k1));
  await step('rotate m1 key', () => ledger.setDeviceKey('m1', k2));
  await step('set m2 key', () => ledger.setDeviceKey('m2', k1));
  await step('key by an outsider', () => side.outsider.setDeviceKey('m3', k1));
  await step('key of an empty id', () => ledger.setDeviceKey('', k1));
  await step('key of a 65-byte id', () => ledger.setDeviceKey('d'.repeat(65), k1));
  await step('key of m1', () => ledger.deviceKey('m1'));
  await step('keys of m1', () => ledger.deviceKeys('m1'));
  await step('all keys', () => ledger.deviceKeys());
  await step('revoke m2 key', () => ledger.setDeviceKey('m2', '00'.repeat(32)));
  await step('key of m2 after revocation', () => ledger.deviceKey('m2'));

  // roles and pause
  await step('grant oracle to the outsider', () => ledger.grantRole('oracle', outsider));
  await step('outsider settles A5', () => side.outsider.settleBatch([win('A', 5, 5n)]));
  await step('facility A at the end', () => ledger.facility('A'));
  await step('revoke it', () => ledger.revokeRole('oracle', outsider));
  await step('outsider has the oracle role', () => ledger.hasRole('oracle', outsider));
  await step('pause', () => ledger.pause());
  await step('settle while paused', () => ledger.settleBatch([win('A', 6, 1n)]));
  await step('retire while paused', async () => ledger.retireWithSig(await sign(ownerA, 1n, 1n, later)));
  await step('set a key while paused', () => ledger.setDeviceKey('m4', k1));
  await step('paused', () => ledger.paused());
  await step('unpause', () => ledger.unpause());
  await step('unpause again', () => ledger.unpause());
  return trace;
}

t.test('the memory ledger answers and reverts as the contract does', async (t) => {
  const real = await Ledger.deploy(chain.signers[0], { windowSeconds: W / 1000 });
  const onChain = await scenario({
    ledger: real,
    outsider: real.connect(chain.signers[5]),
    domain: { name: 'CreditLedger', version: '1', chainId: chain.chainId, verifyingContract: real.address },
  });
  const memory = new MemoryLedger({ from: chain.signers[0].address, windowMs: W });
  const inMemory = await scenario({ ledger: memory, outsider: memory.connect(outsider), domain: MEMORY_DOMAIN });

  t.equal(inMemory.length, onChain.length);
  if (process.env.TRACE) for (const x of onChain) console.error(JSON.stringify(x, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)));
  for (let i = 0; i < onChain.length; i++) t.same(inMemory[i], onChain[i], onChain[i][0]);

  // The rules themselves (the comparison alone would pass if both were wrong the same way).
  const at = (name: string) => onChain.find(([n]) => n === name)?.[1] as { ok?: { results?: unknown[] }; revert?: { name: string } };
  t.match(at('settle A1 -2500 (burns 1000, deficit 1500)').ok?.results, [{ status: 'settled', mintedGrams: 0n, burnedGrams: 1000n, deficitGrams: 1500n }]);
  t.match(at('settle A2 +1000 (pays deficit)').ok?.results, [{ status: 'settled', mintedGrams: 0n, burnedGrams: 0n, deficitGrams: 500n }]);
  t.match(at('settle A3 +800 (pays 500, mints 300)').ok?.results, [{ status: 'settled', mintedGrams: 300n, deficitGrams: 0n }]);
  t.match(at('settle A2 again (skipped), A4 +50').ok?.results, [{ status: 'skipped', mintedGrams: 0n, deficitGrams: 500n }, { status: 'settled', mintedGrams: 50n }]);
  t.match(at('register C with A\'s owner').ok, {}, 'an owner may own several facilities');
  t.match(at('settle above the cap').revert, { name: 'NetAboveCap', args: [ethers.id('A'), 3_600_001n, 3_600_000n] });
  t.match(at('settle a window not ended').revert, { name: 'WindowNotEnded' });
  t.same(at('settle an empty window'), { error: 'CONFIG_INVALID' });
  t.match(at('retire while suspended').revert, { name: 'FacilityIsSuspended' });
  t.match(at('retire more than the balance').revert, { name: 'ERC1155InsufficientBalance' });
  t.match(at('retirement 1').ok, { id: 1n, amountGrams: 100n, parts: [{ facilityId: 'A', amountGrams: 100n, firstSerial: 1001n, lastSerial: 1100n }] }, 'serials after the 1000 burned');
  t.match(at('settle A6 (a gap)').revert, { name: 'WindowOutOfOrder' });
  t.match(at('the same request again').revert, { name: 'InvalidAccountNonce' });
  t.match(at('retire signed by another key').revert, { name: 'InvalidRetirementSignature' });
  t.match(at('settle while paused').revert, { name: 'EnforcedPause' });
  t.match(at('set a key while paused').ok, {}, 'the regulator records keys while paused');
  t.match(at('key by an outsider').revert, { name: 'AccessControlUnauthorizedAccount' });
  t.match(at('key of an empty id').revert, { name: 'InvalidDeviceRecord', args: [] });
  t.match(at('key of a 65-byte id').revert, { name: 'InvalidDeviceRecord', args: [] });
  t.same(at('key of m1 before any').ok, undefined);
  t.same(at('keys of m1').ok, [
    { deviceId: 'm1', deviceKey: ethers.id('m1'), publicKey: 'ab'.repeat(32), previousKey: null },
    { deviceId: 'm1', deviceKey: ethers.id('m1'), publicKey: 'cd'.repeat(32), previousKey: 'ab'.repeat(32) },
  ]);
  t.equal((at('all keys').ok as unknown as unknown[]).length, 3, 'setting the current key again records nothing');
  t.same(at('key of m2 after revocation').ok, undefined);
});
