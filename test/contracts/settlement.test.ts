/**
 * CarbonLedger settlement on Hardhat's in-process network: mint / burn / deficit arithmetic, the
 * WindowSettled and Transfer events, contiguity (duplicate, gap, empty window), the batch's
 * skip-already-settled rule, range checks and the supply cap.
 */
import t from 'tap';
import { ethers } from 'ethers';
import { startHardhatChain } from '../../contracts/client/chain.ts';
import { decodeLedgerError, LedgerRevertError } from '../../contracts/client/errors.ts';
import { KEY_A, KEY_B, ORACLE_ROLE, ROOT, S0, T0, W, WS, eventsOf, expectRevert, raw, send, win, withFacilities } from './helpers.ts';

const chain = await startHardhatChain({ accounts: 8 });
t.teardown(() => chain.close());

const MAX64 = 2n ** 64n - 1n;

t.test('positive net mints to the owner and emits WindowSettled + Transfer', async (t) => {
  const f = await withFacilities(chain);
  const root = ethers.id('root-0');
  const res = await f.oracle.settleBatch([win('A', 0, 7317n, root)]);
  t.same(res.results, [{ facilityId: 'A', windowStart: T0, status: 'settled', mintedGrams: 7317n, burnedGrams: 0n, deficitGrams: 0n }]);
  t.same(await eventsOf(f.admin, res.txHash), [
    { name: 'Transfer', args: { from: ethers.ZeroAddress, to: f.accounts.ownerA, value: 7317n } },
    { name: 'WindowSettled', args: { facility: KEY_A, windowStart: S0, windowEnd: S0 + WS, netGrams: 7317n, minted: 7317n, burned: 0n, deficitAfter: 0n, evidenceRoot: root } },
  ]);
  t.equal(await f.admin.balanceOf(f.accounts.ownerA), 7317n);
  t.equal(await f.admin.totalSupply(), 7317n);
  const st = await f.admin.facility('A');
  t.match(st, { registered: true, owner: f.accounts.ownerA, nextWindowStart: T0 + W, mintedGrams: 7317n, burnedGrams: 0n, deficitGrams: 0n, retiredGrams: 0n });
});

t.test('negative net burns from the balance; what it cannot cover becomes deficit; positive nets pay it down first', async (t) => {
  const f = await withFacilities(chain);
  await f.oracle.settleBatch([win('A', 0, 1000n)]);

  // Burn larger than the balance: 1000 burned, 1500 to the deficit.
  const burn = await f.oracle.settleBatch([win('A', 1, -2500n)]);
  t.same(burn.results[0], { facilityId: 'A', windowStart: T0 + W, status: 'settled', mintedGrams: 0n, burnedGrams: 1000n, deficitGrams: 1500n });
  t.same(await eventsOf(f.admin, burn.txHash), [
    { name: 'Transfer', args: { from: f.accounts.ownerA, to: ethers.ZeroAddress, value: 1000n } },
    { name: 'WindowSettled', args: { facility: KEY_A, windowStart: S0 + WS, windowEnd: S0 + 2n * WS, netGrams: -2500n, minted: 0n, burned: 1000n, deficitAfter: 1500n, evidenceRoot: ROOT } },
  ]);
  t.equal(await f.admin.balanceOf(f.accounts.ownerA), 0n);

  // A negative net with an empty balance: no Transfer, all to the deficit.
  const more = await f.oracle.settleBatch([win('A', 2, -500n)]);
  t.same((await eventsOf(f.admin, more.txHash)).map((e) => e.name), ['WindowSettled'], 'nothing to burn: no Transfer');
  t.equal(more.results[0].deficitGrams, 2000n);

  // Positive net smaller than the deficit: all of it pays down, nothing minted, no Transfer.
  const part = await f.oracle.settleBatch([win('A', 3, 1200n)]);
  t.same(part.results[0], { facilityId: 'A', windowStart: T0 + 3 * W, status: 'settled', mintedGrams: 0n, burnedGrams: 0n, deficitGrams: 800n });
  t.same((await eventsOf(f.admin, part.txHash)).map((e) => e.name), ['WindowSettled']);

  // Positive net larger than the deficit: 800 pays it off, 200 minted.
  const rest = await f.oracle.settleBatch([win('A', 4, 1000n)]);
  t.same(rest.results[0], { facilityId: 'A', windowStart: T0 + 4 * W, status: 'settled', mintedGrams: 200n, burnedGrams: 0n, deficitGrams: 0n });
  t.same(await eventsOf(f.admin, rest.txHash), [
    { name: 'Transfer', args: { from: ethers.ZeroAddress, to: f.accounts.ownerA, value: 200n } },
    { name: 'WindowSettled', args: { facility: KEY_A, windowStart: S0 + 4n * WS, windowEnd: S0 + 5n * WS, netGrams: 1000n, minted: 200n, burned: 0n, deficitAfter: 0n, evidenceRoot: ROOT } },
  ]);

  // Zero net: an event, no movement.
  const zero = await f.oracle.settleBatch([win('A', 5, 0n)]);
  t.same(zero.results[0], { facilityId: 'A', windowStart: T0 + 5 * W, status: 'settled', mintedGrams: 0n, burnedGrams: 0n, deficitGrams: 0n });

  const st = await f.admin.facility('A');
  t.match(st, { mintedGrams: 1200n, burnedGrams: 1000n, deficitGrams: 0n, nextWindowStart: T0 + 6 * W });
  t.equal(await f.admin.balanceOf(f.accounts.ownerA), 200n);
  t.equal(await f.admin.totalSupply(), 200n, 'supply = minted - burned');
  // Facility B untouched.
  t.match(await f.admin.facility('B'), { mintedGrams: 0n, burnedGrams: 0n, deficitGrams: 0n, nextWindowStart: T0 });
});

t.test('settle: duplicate, gap, empty window, unknown facility, out-of-range net', async (t) => {
  const f = await withFacilities(chain);
  const c = f.oracle.contract;
  await send(c.settle(raw('A', 0, 10n)));
  await expectRevert(t, c.settle(raw('A', 0, 10n)), 'WindowAlreadySettled', [KEY_A, S0]);
  await expectRevert(t, c.settle(raw('A', 2, 10n)), 'WindowOutOfOrder', [KEY_A, S0 + WS, S0 + 2n * WS]);
  await expectRevert(t, c.settle({ ...raw('A', 1, 10n), windowEnd: S0 + WS }), 'InvalidWindow', [KEY_A, S0 + WS, S0 + WS]);
  await expectRevert(t, c.settle({ ...raw('A', 1, 10n), windowEnd: S0 }), 'InvalidWindow', [KEY_A, S0 + WS, S0]);
  const ghost = ethers.id('ghost');
  await expectRevert(t, c.settle({ ...raw('A', 1, 10n), facility: ghost }), 'FacilityNotRegistered', [ghost]);
  await expectRevert(t, c.settle(raw('A', 1, MAX64 + 1n)), 'NetOutOfRange', [KEY_A, MAX64 + 1n]);
  await expectRevert(t, c.settle(raw('A', 1, -(MAX64 + 1n))), 'NetOutOfRange', [KEY_A, -(MAX64 + 1n)]);
  t.equal((await f.admin.facility('A')).nextWindowStart, T0 + W, 'nothing moved');

  // The same errors through the client, as the oracle sees them.
  const err = await f.oracle.settleBatch([win('A', 3, 1n)]).catch((e: unknown) => e);
  t.type(err, LedgerRevertError);
  t.same(decodeLedgerError(err), { name: 'WindowOutOfOrder', args: [KEY_A, S0 + WS, S0 + 3n * WS] });
  t.match((err as Error).message, /WindowOutOfOrder/);
});

t.test('settleBatch skips an already-settled entry (and reports it) but settles the rest', async (t) => {
  const f = await withFacilities(chain);
  const first = await f.oracle.settleBatch([win('A', 0, 500n, ethers.id('a0')), win('B', 0, -10n)]);
  // A retry after a crash: A0 and B0 again, plus the new windows A1 and B1.
  const retry = await f.oracle.settleBatch([win('A', 0, 999n), win('B', 0, -10n), win('A', 1, 300n), win('B', 1, 40n)]);
  t.same(
    retry.results.map((r) => [r.facilityId, r.windowStart, r.status, r.mintedGrams, r.burnedGrams, r.deficitGrams]),
    [
      ['A', T0, 'skipped', 500n, 0n, 0n],
      ['B', T0, 'skipped', 0n, 0n, 10n],
      ['A', T0 + W, 'settled', 300n, 0n, 0n],
      ['B', T0 + W, 'settled', 30n, 0n, 0n],
    ],
  );
  t.equal(retry.results[0].original?.txHash, first.txHash, 'a skipped entry points at the settlement that happened');
  t.equal(retry.results[0].original?.evidenceRoot, ethers.id('a0'));
  const ev = await eventsOf(f.admin, retry.txHash);
  t.same(
    ev.filter((e) => e.name === 'SettlementSkipped'),
    [
      { name: 'SettlementSkipped', args: { facility: KEY_A, windowStart: S0 } },
      { name: 'SettlementSkipped', args: { facility: KEY_B, windowStart: S0 } },
    ],
  );
  t.equal(ev.filter((e) => e.name === 'WindowSettled').length, 2);
  t.equal(await f.admin.balanceOf(f.accounts.ownerA), 800n, 'the skipped 999 was not minted');

  // Two consecutive windows of one facility in one batch.
  const two = await f.oracle.settleBatch([win('A', 2, 1n), win('A', 3, 2n)]);
  t.same(two.results.map((r) => r.status), ['settled', 'settled']);
  t.equal((await f.admin.facility('A')).nextWindowStart, T0 + 4 * W);

  // settle (single) does not skip: it reverts.
  await expectRevert(t, f.oracle.contract.settle(raw('A', 0, 1n)), 'WindowAlreadySettled', [KEY_A, S0]);
});

t.test('a gap anywhere in a batch reverts the whole batch', async (t) => {
  const f = await withFacilities(chain);
  await expectRevert(t, f.oracle.settleBatch([win('A', 0, 100n), win('B', 1, 100n)]), 'WindowOutOfOrder', [KEY_B, S0, S0 + WS]);
  await expectRevert(t, f.oracle.settleBatch([win('A', 0, 100n), win('A', 2, 100n)]), 'WindowOutOfOrder', [KEY_A, S0 + WS, S0 + 2n * WS]);
  await expectRevert(t, f.oracle.settleBatch([win('A', 0, 100n), win('nope', 0, 1n)]), 'FacilityNotRegistered', [ethers.id('nope')]);
  t.equal((await f.admin.facility('A')).nextWindowStart, T0, 'A0 was rolled back with the batch');
  t.equal(await f.admin.balanceOf(f.accounts.ownerA), 0n);
  t.same(await f.admin.settlements(), [], 'no WindowSettled');
});

t.test('only the oracle settles; a granted oracle can', async (t) => {
  const f = await withFacilities(chain);
  await expectRevert(t, f.regulator.settleBatch([win('A', 0, 1n)]), 'AccessControlUnauthorizedAccount', [f.accounts.regulator, ORACLE_ROLE]);
  await expectRevert(t, f.admin.contract.settle(raw('A', 0, 1n)), 'AccessControlUnauthorizedAccount', [f.accounts.admin, ORACLE_ROLE]);
  const g = await f.admin.grantRole('oracle', f.accounts.admin);
  t.same(await eventsOf(f.admin, g.txHash), [{ name: 'RoleGranted', args: { role: ORACLE_ROLE, account: f.accounts.admin, sender: f.accounts.admin } }]);
  const res = await f.admin.settleBatch([win('A', 0, 1n)]);
  t.equal(res.results[0].status, 'settled');
});

t.test('settlement is allowed while a facility is suspended (windows are never skipped)', async (t) => {
  const f = await withFacilities(chain);
  await f.regulator.setFacilitySuspended('A', true);
  const res = await f.oracle.settleBatch([win('A', 0, 50n), win('A', 1, -80n)]);
  t.same(res.results.map((r) => [r.mintedGrams, r.burnedGrams, r.deficitGrams]), [
    [50n, 0n, 0n],
    [0n, 50n, 30n],
  ]);
});

t.test('settlements() and settlementAt() read the WindowSettled logs back', async (t) => {
  const f = await withFacilities(chain);
  const a = await f.oracle.settleBatch([win('A', 0, 5n, ethers.id('r0')), win('B', 0, 6n)]);
  await f.oracle.settleBatch([win('A', 1, -2n, ethers.id('r1'))]);
  const all = await f.admin.settlements();
  t.equal(all.length, 3);
  const onlyA = await f.admin.settlements({ facilityId: 'A' });
  t.same(onlyA.map((s) => [s.facilityId, s.windowStart, s.windowEnd, s.netGrams, s.mintedGrams, s.burnedGrams, s.deficitGrams, s.evidenceRoot]), [
    ['A', T0, T0 + W, 5n, 5n, 0n, 0n, ethers.id('r0')],
    ['A', T0 + W, T0 + 2 * W, -2n, 0n, 2n, 0n, ethers.id('r1')],
  ]);
  const at = await f.admin.settlementAt('A', T0);
  t.equal(at?.txHash, a.txHash);
  t.equal(at?.facilityKey, KEY_A);
  t.type(at?.blockNumber, 'number');
  t.equal(await f.admin.settlementAt('A', T0 + 5 * W), undefined, 'unsettled window');
  // A fresh client (no local id cache) still names facilities, from FacilityRegistered logs.
  const fresh = (await import('../../contracts/client/ledger.ts')).Ledger.attach(f.admin.address, chain.signers[7]);
  t.same((await fresh.settlements()).map((s) => s.facilityId), ['A', 'B', 'A']);
});

t.test('supply cap and 64-bit totals', async (t) => {
  const f = await withFacilities(chain);
  const c = f.oracle.contract;
  await send(c.settle(raw('A', 0, MAX64)));
  t.equal(await f.admin.totalSupply(), MAX64, 'the cap itself is reachable');
  await expectRevert(t, c.settle(raw('B', 0, 1n)), 'SupplyCapExceeded', [MAX64 + 1n]);
  // Retire everything, then mint again: A's cumulative minted total would pass 2^64 - 1.
  await f.admin.retire(f.signers.ownerA, MAX64, 'Someone', 'cap test');
  await expectRevert(t, c.settle(raw('A', 1, 1n)), 'TotalOutOfRange', [KEY_A]);
  // Deficit past 2^64 - 1.
  await send(c.settle(raw('B', 0, -MAX64)));
  await expectRevert(t, c.settle(raw('B', 1, -1n)), 'TotalOutOfRange', [KEY_B]);
});

t.test('client input validation', async (t) => {
  const f = await withFacilities(chain);
  await t.rejects(f.oracle.settleBatch([]), { code: 'VALIDATION_FAILED' });
  await t.rejects(f.oracle.settleBatch([{ ...win('A', 0, 1n), windowStart: T0 + 1 }]), { code: 'VALIDATION_FAILED', message: /whole second/ });
  await t.rejects(f.oracle.settleBatch(Array.from({ length: 251 }, (_, i) => win('A', i, 1n))), { code: 'VALIDATION_FAILED', message: /at most 250/ });
});
