/**
 * The contracts client (contracts/client/ledger.ts, reads.ts) on the real CreditLedger (Hardhat's
 * in-process network): what the port reports for registrations, settlements (minted, serials, burns
 * itemised from CreditsBurned, the facility's deficit), batches, holdings, retirements over several
 * batches (direct and EIP-712 relayed), certificates, and the client-side checks before a send.
 */
import t from 'tap';
import { ethers } from 'ethers';
import { startHardhatChain } from '../../contracts/client/chain.ts';
import { Ledger } from '../../contracts/client/ledger.ts';
import { vintageOf } from '../../contracts/client/port.ts';
import { expectRevert, KEY_A } from './helpers.ts';

const W = 3_600_000;
// Recent windows: the ledger settles ended windows only, and freezes an owner whose facility lags.
const T = Math.floor(Date.now() / W) * W - 12 * W;
const win = (facilityId: string, n: number, netGrams: bigint, root = ethers.id(`r${facilityId}${n}`)) => ({ facilityId, windowStart: T + n * W, windowEnd: T + (n + 1) * W, netGrams, evidenceRoot: root });

const chain = await startHardhatChain();
t.teardown(() => chain.close());

async function setup() {
  const [admin, ownerA, ownerB, relayer] = chain.signers;
  const ledger = await Ledger.deploy(admin, { windowSeconds: W / 1000 });
  return { ledger, ownerA, ownerB, relayer, a: await ownerA.getAddress(), b: await ownerB.getAddress() };
}

t.test('settlements: minted with serials, burns itemised, the facility deficit, totals over batches', async (t) => {
  const { ledger, a } = await setup();
  await ledger.registerFacility('A', a, '3600', T);
  await ledger.registerFacility('C', a, '3600', T);
  t.match(await ledger.facility('A'), { registered: true, owner: a, nextWindowStart: T, baselineKgPerHour: '3600', capGramsPerWindow: 3_600_000n, mintedGrams: 0n });
  const r = await ledger.settleBatch([win('A', 0, 1_000n), win('C', 0, 7n)]);
  t.same(r.results.map((x) => [x.facilityId, x.status, x.mintedGrams, x.burnedGrams, x.deficitGrams]), [
    ['A', 'settled', 1_000n, 0n, 0n],
    ['C', 'settled', 7n, 0n, 0n],
  ]);
  await ledger.settleBatch([win('A', 1, 500n)]);
  const burn = await ledger.settleBatch([win('A', 2, -1_700n)]);
  t.same(burn.results[0], { facilityId: 'A', windowStart: T + 2 * W, status: 'settled', mintedGrams: 0n, burnedGrams: 1_500n, deficitGrams: 200n }, 'burns what the owner holds, the rest is deficit');
  const s = await ledger.settlementAt('A', T + 2 * W);
  t.match(s, { facilityId: 'A', windowEnd: T + 3 * W, netGrams: -1_700n, mintedGrams: 0n, burnedGrams: 1_500n, deficitGrams: 200n, firstSerial: 0n });
  const second = await ledger.settlementAt('A', T + W);
  t.equal(second?.firstSerial, 1_001n, 'the second mint of the vintage starts after the first');
  const all = await ledger.settlements({ facilityId: 'A' });
  t.same(all.map((x) => x.burnedGrams), [0n, 0n, 1_500n]);
  const paid = await ledger.settleBatch([win('A', 3, 300n)]);
  t.same([paid.results[0].mintedGrams, paid.results[0].deficitGrams], [100n, 0n], 'a gain pays the deficit first');
  const f = await ledger.facility('A');
  t.match(f, { mintedGrams: 1_600n, burnedGrams: 1_500n, retiredGrams: 0n, deficitGrams: 0n, ownerHeldGrams: 100n, nextWindowStart: T + 4 * W });
  const skipped = await ledger.settleBatch([win('A', 3, 300n), win('A', 4, 1n)]);
  t.same(skipped.results.map((x) => x.status), ['skipped', 'settled']);
  t.equal(skipped.results[0].original?.mintedGrams, 100n, 'a skipped entry reports the earlier settlement');

  const batches = await ledger.batches('A');
  t.equal(batches.length >= 1, true);
  t.equal(batches.at(-1)?.vintage, vintageOf(T + 4 * W));
  t.same(
    batches.reduce((x, b) => [x[0] + b.issuedGrams, x[1] + b.burnedGrams], [0n, 0n]),
    [1_601n, 1_500n],
  );
  const holdings = await ledger.holdings(a);
  t.same(holdings.map((h) => h.batch.facilityId).sort(), [...new Set(holdings.map((h) => h.batch.facilityId))].sort(), 'one entry per batch');
  t.equal(holdings.reduce((x, h) => x + h.balanceGrams, 0n), 108n, 'an owner of two facilities holds the batches of both');
});

t.test('the guards reach the client as catalogue errors', async (t) => {
  const { ledger, a } = await setup();
  await ledger.registerFacility('A', a, '3600', T);
  await expectRevert(t, ledger.settleBatch([win('A', 0, 3_600_001n)]), 'NetAboveCap', [KEY_A, 3_600_001n, 3_600_000n]);
  const future = Math.floor(Date.now() / W) * W + 100 * W;
  await ledger.registerFacility('F', a, '3600', future);
  await t.rejects(ledger.settleBatch([win('F', 0, 1n)].map((x) => ({ ...x, windowStart: future, windowEnd: future + W }))), { code: 'LEDGER_REVERTED', message: /has not ended/ });
  await t.rejects(ledger.settleBatch([{ ...win('A', 0, 1n), windowEnd: T + 2 * W }]), { code: 'CONFIG_INVALID' }, 'a window of another length never reaches the chain');
  await t.rejects(ledger.registerFacility('p', a, '1.0000001', T), { code: 'VALIDATION_FAILED' }, 'more than 6 decimals');
  await expectRevert(t, ledger.registerFacility('bad id', a, '1', T), 'InvalidFacilityId', [6n]);
});

t.test('retirements over several batches: direct, relayed, certificates with serial ranges', async (t) => {
  const { ledger, ownerA, ownerB, relayer, a, b } = await setup();
  await ledger.registerFacility('A', a, '3600', T);
  await ledger.registerFacility('B', b, '3600', T);
  for (let n = 0; n < 10; n++) await ledger.settleBatch([win('A', n, 1_000n), win('B', n, 10n)]);
  const [batchA] = (await ledger.batches('A')).slice(-1);
  const [batchB] = (await ledger.batches('B')).slice(-1);
  const idA = BigInt(batchA.id);
  const idB = BigInt(batchB.id);

  // B's owner buys some of A's batch, then retires from both facilities' batches in one certificate.
  await ledger.transfer(ownerA, b, idA, 300n);
  t.same((await ledger.holdings(b)).map((h) => [h.batch.facilityId, h.balanceGrams]).sort(), [['A', 300n], ['B', batchB.ownerBalanceGrams]].sort());
  const direct = await ledger.connect(ownerB).retire(ownerB, [idA, idB], [120n, 5n], 'City of Shenzhen', 'FY2026');
  t.equal(direct.id, 1n);

  const deadline = Math.floor(Date.now() / 1000) + 3600;
  const req = await ledger.signRetirement(ownerA, [idA], [250n], 'Hospital', 'donation', deadline);
  const relay = ledger.connect(relayer);
  t.equal(await relay.retirementOfRequest(req), undefined, 'not yet submitted');
  const relayed = await relay.retireWithSig(req);
  t.equal(relayed.id, 2n);
  t.same(await relay.retirementOfRequest(req), relayed, 'the request is found once its nonce is used');
  await t.rejects(relay.retireWithSig(req), { code: 'LEDGER_REVERTED', message: /nonce is already used/ });
  await expectRevert(t, relay.retireWithSig({ ...req, nonce: 1n, amounts: [251n] }), 'InvalidRetirementSignature', [a]);

  const one = await ledger.retirement(1n);
  t.match(one, { id: 1n, account: b, facilityIds: ['A', 'B'], amountGrams: 125n, beneficiary: 'City of Shenzhen', reason: 'FY2026', txHash: direct.txHash });
  t.same(one?.parts.map((p) => [p.facilityId, p.amountGrams, p.firstSerial, p.lastSerial]), [
    ['A', 120n, 1n, 120n],
    ['B', 5n, 1n, 5n],
  ]);
  const two = await ledger.retirement(2n);
  t.same(two?.parts.map((p) => [p.facilityId, p.firstSerial, p.lastSerial]), [['A', 121n, 370n]], 'the next unretired serials: none retired twice');
  t.equal(await ledger.retirement(3n), undefined);
  t.same((await ledger.retirements({ facilityId: 'B' })).map((r) => r.id), [1n]);
  t.same((await ledger.retirements({ facilityId: 'A' })).map((r) => r.id), [1n, 2n]);
  t.same((await ledger.retirements({ account: a })).map((r) => r.id), [2n]);
  t.match(await ledger.facility('A'), { retiredGrams: 370n });
});

t.test("a batch's receipt logs are parsed once each, not once per settlement that follows them", async (t) => {
  const { ledger, a } = await setup();
  const ids = Array.from({ length: 12 }, (_, i) => `P${i}`);
  for (const id of ids) await ledger.registerFacility(id, a, '3600', T);
  await ledger.settleBatch(ids.map((id) => win(id, 0, 1_000n)));
  // Window 1 burns (CreditsBurned beside each WindowSettled): each settlement's burns are read from the logs before it.
  const iface = ledger.contract.interface;
  const original = iface.parseLog.bind(iface);
  let calls = 0;
  iface.parseLog = (log) => (calls++, original(log));
  t.teardown(() => {
    iface.parseLog = original;
  });
  const r = await ledger.settleBatch(ids.map((id) => win(id, 1, -400n)));
  t.same(r.results.map((x) => [x.status, x.burnedGrams]), ids.map(() => ['settled', 400n]));
  t.ok(calls <= 8 * ids.length, `${calls} parses for ${ids.length} settlements (linear, not quadratic)`);
});
