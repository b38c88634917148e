/**
 * Retirements on Hardhat's in-process network: direct retirement (event, numbered record by id and by
 * account, facility total), its refusals, and the EIP-712 signed form relayed by a third party with a
 * wrong signer, a replayed signature, an expired deadline and a tampered request.
 */
import t from 'tap';
import { ethers } from 'ethers';
import { startHardhatChain } from '../../contracts/client/chain.ts';
import { KEY_A, eventsOf, expectRevert, win, withFacilities, type Fixture } from './helpers.ts';

const chain = await startHardhatChain({ accounts: 8 });
t.teardown(() => chain.close());

async function funded(): Promise<Fixture> {
  const f = await withFacilities(chain);
  await f.oracle.settleBatch([win('A', 0, 10_000n), win('B', 0, 5_000n)]);
  // The outsider holds credits but owns no facility.
  await f.admin.transfer(f.signers.ownerB, f.accounts.outsider, 1_000n);
  return f;
}

async function now(): Promise<number> {
  const block = await chain.provider.getBlock('latest');
  return Number(block?.timestamp);
}

t.test('retire burns, numbers the record, and is readable by id and by account', async (t) => {
  const f = await funded();
  const supply = await f.admin.totalSupply();
  const r1 = await f.admin.retire(f.signers.ownerA, 2_500n, 'City of Shenzhen', 'FY2026 offset');
  t.equal(r1.id, 1n);
  t.same(await eventsOf(f.admin, r1.txHash), [
    { name: 'Transfer', args: { from: f.accounts.ownerA, to: ethers.ZeroAddress, value: 2_500n } },
    { name: 'CreditsRetired', args: { id: 1n, account: f.accounts.ownerA, facility: KEY_A, amount: 2_500n, beneficiary: 'City of Shenzhen', reason: 'FY2026 offset' } },
  ]);
  const r2 = await f.admin.retire(f.signers.outsider, 400n, 'ACME Ltd', '');
  t.equal(r2.id, 2n);
  const r3 = await f.admin.retire(f.signers.ownerA, 100n, 'Someone else', 'second');
  t.equal(r3.id, 3n);

  t.equal(await f.admin.balanceOf(f.accounts.ownerA), 7_400n);
  t.equal(await f.admin.totalSupply(), supply - 3_000n);
  t.match(await f.admin.facility('A'), { retiredGrams: 2_600n, mintedGrams: 10_000n, burnedGrams: 0n });
  t.match(await f.admin.facility('B'), { retiredGrams: 0n }, 'credits retired by a non-owner are not attributed to the facility they came from');

  const c = f.admin.contract;
  t.equal(await c.retirementCount(), 3n);
  t.same([...(await c.retirementsOf(f.accounts.ownerA))], [1n, 3n]);
  t.same([...(await c.retirementsOf(f.accounts.outsider))], [2n]);
  t.same([...(await c.retirementsOf(f.accounts.ownerB))], []);
  const rec = await c.retirement(2n);
  t.equal(rec.id, 2n);
  t.equal(rec.account, f.accounts.outsider);
  t.equal(rec.facility, ethers.ZeroHash);
  t.equal(rec.amount, 400n);
  t.equal(rec.beneficiary, 'ACME Ltd');
  t.equal(rec.reason, '');
  const block = await chain.provider.getBlock((await chain.provider.getTransactionReceipt(r2.txHash))!.blockNumber);
  t.equal(rec.retiredAt, BigInt(block!.timestamp));
  await expectRevert(t, c.retirement(4n), 'RetirementNotFound', [4n]);
  await expectRevert(t, c.retirement(0n), 'RetirementNotFound', [0n]);

  // Client views.
  const all = await f.admin.retirements();
  t.same(all.map((r) => [r.id, r.account, r.facilityId, r.amountGrams]), [
    [1n, f.accounts.ownerA, 'A', 2_500n],
    [2n, f.accounts.outsider, undefined, 400n],
    [3n, f.accounts.ownerA, 'A', 100n],
  ]);
  t.equal(all[0].txHash, r1.txHash);
  t.equal(all[1].retiredAt, block!.timestamp * 1000);
  t.same((await f.admin.retirements({ account: f.accounts.outsider })).map((r) => r.id), [2n]);
  t.same((await f.admin.retirements({ facilityId: 'A' })).map((r) => r.id), [1n, 3n]);
  t.same(await f.admin.retirements({ facilityId: 'B' }), []);
});

t.test('retire refusals', async (t) => {
  const f = await funded();
  await expectRevert(t, f.admin.retire(f.signers.ownerA, 0n, 'b', 'r'), 'InvalidRetirementAmount', [0n]);
  await expectRevert(t, f.admin.retire(f.signers.ownerA, 1n, '', 'r'), 'MissingBeneficiary', []);
  await expectRevert(t, f.admin.retire(f.signers.ownerA, 1n, 'b'.repeat(257), 'r'), 'RetirementTextTooLong', [257n, 256n]);
  await expectRevert(t, f.admin.retire(f.signers.ownerA, 1n, 'b', 'r'.repeat(300)), 'RetirementTextTooLong', [300n, 256n]);
  await expectRevert(t, f.admin.retire(f.signers.ownerA, 10_001n, 'b', 'r'), 'ERC20InsufficientBalance', [f.accounts.ownerA, 10_000n, 10_001n]);
  const ok = await f.admin.retire(f.signers.ownerA, 1n, 'b'.repeat(256), 'r'.repeat(256));
  t.equal(ok.id, 1n, 'texts of exactly 256 bytes are accepted');
  t.equal(await f.admin.contract.retirementCount(), 1n, 'refused retirements consumed no id');
});

t.test('retireWithSig: relayed by anyone; wrong signer, replay, expired deadline and tampering refused', async (t) => {
  const f = await funded();
  const relayer = f.admin.connect(f.signers.relayer);
  const relayerAddress = await f.signers.relayer.getAddress();
  const deadline = (await now()) + 3600;
  const req = await f.admin.signRetirement(f.signers.ownerA, 1_234n, 'Hospital', 'donation', deadline);
  t.equal(req.nonce, 0n);
  t.equal(req.holder, f.accounts.ownerA);

  // Wrong signer: the outsider signs a request in ownerA's name.
  const forged = await f.admin.signRetirement(f.signers.outsider, 1_234n, 'Hospital', 'donation', deadline);
  await expectRevert(t, relayer.retireWithSig({ ...forged, holder: f.accounts.ownerA }), 'InvalidRetirementSignature', [f.accounts.ownerA]);
  // Tampered amount / beneficiary.
  await expectRevert(t, relayer.retireWithSig({ ...req, amount: 9_999n }), 'InvalidRetirementSignature', [f.accounts.ownerA]);
  await expectRevert(t, relayer.retireWithSig({ ...req, beneficiary: 'Me' }), 'InvalidRetirementSignature', [f.accounts.ownerA]);
  // Wrong nonce (a future one).
  await expectRevert(t, relayer.retireWithSig({ ...req, nonce: 5n }), 'InvalidAccountNonce', [f.accounts.ownerA, 0n]);

  const done = await relayer.retireWithSig(req);
  t.equal(done.id, 1n);
  const tx = await chain.provider.getTransaction(done.txHash);
  t.equal(tx?.from, relayerAddress, 'the relayer sent (and paid for) the transaction');
  t.same((await eventsOf(f.admin, done.txHash)).at(-1), {
    name: 'CreditsRetired',
    args: { id: 1n, account: f.accounts.ownerA, facility: KEY_A, amount: 1_234n, beneficiary: 'Hospital', reason: 'donation' },
  });
  t.equal(await f.admin.balanceOf(f.accounts.ownerA), 10_000n - 1_234n);
  t.equal(await f.admin.contract.nonces(f.accounts.ownerA), 1n);

  // Replay of the same signed request.
  await expectRevert(t, relayer.retireWithSig(req), 'InvalidAccountNonce', [f.accounts.ownerA, 1n]);

  // Expired deadline (a fresh, otherwise valid request).
  const late = await f.admin.signRetirement(f.signers.ownerA, 1n, 'Hospital', 'late', (await now()) - 1);
  await expectRevert(t, relayer.retireWithSig(late), 'RetirementSignatureExpired', [BigInt(late.deadline)]);

  // Paused: refused too.
  const next = await f.admin.signRetirement(f.signers.ownerA, 1n, 'Hospital', 'paused', deadline);
  await f.admin.pause();
  await expectRevert(t, relayer.retireWithSig(next), 'EnforcedPause', []);
  await f.admin.unpause();
  t.equal((await relayer.retireWithSig(next)).id, 2n);

  // The record is the holder's, not the relayer's.
  t.same([...(await f.admin.contract.retirementsOf(f.accounts.ownerA))], [1n, 2n]);
  t.same([...(await f.admin.contract.retirementsOf(relayerAddress))], []);
  // The domain is readable on chain (ERC-5267), as a wallet would show it.
  const domain = await f.admin.contract.eip712Domain();
  t.equal(domain[1], 'CarbonLedger');
  t.equal(domain[2], '1');
  t.equal(domain[4], f.admin.address);
});
