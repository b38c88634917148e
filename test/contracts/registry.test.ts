/**
 * CarbonLedger registry, roles, pause and the ERC-20 surface on Hardhat's in-process network: every
 * revert path with its custom error and arguments, every event with its arguments.
 */
import t from 'tap';
import { ethers } from 'ethers';
import { startHardhatChain } from '../../contracts/client/chain.ts';
import { Ledger } from '../../contracts/client/ledger.ts';
import { facilityKey } from '../../contracts/client/units.ts';
import { loadArtifact } from '../../contracts/client/artifact.ts';
import { KEY_A, KEY_B, REGULATOR_ROLE, S0, T0, W, WS, deploy, eventsOf, expectRevert, raw, send, win, withFacilities } from './helpers.ts';

const chain = await startHardhatChain({ accounts: 8 });
t.teardown(() => chain.close());

t.test('deployment: roles, token metadata, zero role holders refused', async (t) => {
  const f = await deploy(chain);
  t.equal(await f.admin.hasRole('admin', f.accounts.admin), true);
  t.equal(await f.admin.hasRole('regulator', f.accounts.regulator), true);
  t.equal(await f.admin.hasRole('oracle', f.accounts.oracle), true);
  t.equal(await f.admin.hasRole('oracle', f.accounts.admin), false, 'roles are separate');
  t.equal(await f.admin.contract.decimals(), 6n);
  t.equal(await f.admin.contract.symbol(), 'tCO2e');
  t.equal(await f.admin.contract.name(), 'Carbon Credit');
  t.equal(await f.admin.totalSupply(), 0n);
  const { abi, bytecode } = loadArtifact();
  const factory = new ethers.ContractFactory(abi as ethers.InterfaceAbi, bytecode, chain.signers[0]);
  for (const args of [
    [ethers.ZeroAddress, f.accounts.regulator, f.accounts.oracle],
    [f.accounts.admin, ethers.ZeroAddress, f.accounts.oracle],
    [f.accounts.admin, f.accounts.regulator, ethers.ZeroAddress],
  ]) {
    await expectRevert(t, factory.deploy(...args), 'InvalidRoleHolder', [ethers.ZeroAddress]);
  }
});

t.test('registerFacility: event, state, and every refusal', async (t) => {
  const f = await deploy(chain);
  const tx = await f.regulator.registerFacility('plant-1', f.accounts.ownerA, '3600.25', T0);
  const key = facilityKey('plant-1');
  t.same(await eventsOf(f.admin, tx.txHash), [
    { name: 'FacilityRegistered', args: { facility: key, facilityId: 'plant-1', owner: f.accounts.ownerA, baselineMgPerHour: 3_600_250_000n, firstWindowStart: S0 } },
  ]);
  t.same(await f.admin.facility('plant-1'), {
    registered: true,
    owner: f.accounts.ownerA,
    suspended: false,
    nextWindowStart: T0,
    baselineKgPerHour: '3600.25',
    baselineEffectiveFrom: T0,
    deficitGrams: 0n,
    mintedGrams: 0n,
    burnedGrams: 0n,
    retiredGrams: 0n,
  });
  t.equal(await f.admin.contract.facilityOf(f.accounts.ownerA), key);
  t.match(await f.admin.facility('unknown'), { registered: false, owner: ethers.ZeroAddress });

  const c = f.regulator.contract;
  await expectRevert(t, c.registerFacility('plant-1', f.accounts.ownerB, 1n, S0), 'FacilityAlreadyRegistered', [key]);
  await expectRevert(t, c.registerFacility('plant-2', f.accounts.ownerA, 1n, S0), 'OwnerAlreadyHasFacility', [f.accounts.ownerA, key]);
  await expectRevert(t, c.registerFacility('plant-2', ethers.ZeroAddress, 1n, S0), 'InvalidFacilityOwner', [ethers.ZeroAddress]);
  await expectRevert(t, c.registerFacility('', f.accounts.ownerB, 1n, S0), 'InvalidFacilityId', [0n]);
  await expectRevert(t, c.registerFacility('x'.repeat(65), f.accounts.ownerB, 1n, S0), 'InvalidFacilityId', [65n]);
  await expectRevert(t, c.registerFacility('plant-2', f.accounts.ownerB, 2n ** 192n, S0), 'SafeCastOverflowedUintDowncast', [192n, 2n ** 192n]);
  await expectRevert(t, f.oracle.registerFacility('plant-2', f.accounts.ownerB, '1', T0), 'AccessControlUnauthorizedAccount', [f.accounts.oracle, REGULATOR_ROLE]);
  const ok = await f.regulator.registerFacility('x'.repeat(64), f.accounts.ownerB, '0', T0);
  t.ok(ok.txHash, 'a 64-byte id and a zero baseline are accepted');

  await t.rejects(f.regulator.registerFacility('p', f.accounts.outsider, '1.0000001', T0), { code: 'VALIDATION_FAILED' }, 'more than 6 decimals (sub-mg)');
  await t.rejects(f.regulator.registerFacility('p', f.accounts.outsider, '-1', T0), { code: 'VALIDATION_FAILED' });
  await t.rejects(f.regulator.registerFacility('p', f.accounts.outsider, '1', T0 + 500), { code: 'VALIDATION_FAILED' });
});

t.test('setFacilitySuspended: events, idempotence, refusals', async (t) => {
  const f = await withFacilities(chain);
  const s = await f.regulator.setFacilitySuspended('A', true);
  t.same(await eventsOf(f.admin, s.txHash), [{ name: 'FacilitySuspended', args: { facility: KEY_A } }]);
  t.equal((await f.admin.facility('A')).suspended, true);
  const again = await f.regulator.setFacilitySuspended('A', true);
  t.same(await eventsOf(f.admin, again.txHash), [], 'no change, no event');
  const r = await f.regulator.setFacilitySuspended('A', false);
  t.same(await eventsOf(f.admin, r.txHash), [{ name: 'FacilityReinstated', args: { facility: KEY_A } }]);
  t.equal((await f.admin.facility('A')).suspended, false);
  await expectRevert(t, f.regulator.setFacilitySuspended('nope', true), 'FacilityNotRegistered', [facilityKey('nope')]);
  await expectRevert(t, f.oracle.setFacilitySuspended('A', true), 'AccessControlUnauthorizedAccount', [f.accounts.oracle, REGULATOR_ROLE]);
});

t.test('setBaseline: event, state, not before the next unsettled window', async (t) => {
  const f = await withFacilities(chain);
  await f.oracle.settleBatch([win('A', 0, 1n), win('A', 1, 1n)]);
  const b = await f.regulator.setBaseline('A', '4000.5', T0 + 2 * W);
  t.same(await eventsOf(f.admin, b.txHash), [{ name: 'BaselineChanged', args: { facility: KEY_A, baselineMgPerHour: 4_000_500_000n, effectiveFrom: S0 + 2n * WS } }]);
  t.match(await f.admin.facility('A'), { baselineKgPerHour: '4000.5', baselineEffectiveFrom: T0 + 2 * W });
  await expectRevert(t, f.regulator.setBaseline('A', '1', T0 + W), 'BaselineEffectiveTooEarly', [KEY_A, S0 + WS, S0 + 2n * WS]);
  await expectRevert(t, f.regulator.setBaseline('nope', '1', T0), 'FacilityNotRegistered', [facilityKey('nope')]);
  await expectRevert(t, f.admin.setBaseline('A', '1', T0 + 5 * W), 'AccessControlUnauthorizedAccount', [f.accounts.admin, REGULATOR_ROLE]);
});

t.test('setFacilityOwner and deregisterFacility: only before the first settlement, regulator only', async (t) => {
  const f = await withFacilities(chain);
  const outsider = f.accounts.outsider;
  // A wrong owner corrected: events, state, the owner index moved (the old owner may register again).
  const c = await f.regulator.setFacilityOwner('A', outsider);
  t.same(await eventsOf(f.admin, c.txHash), [{ name: 'FacilityOwnerChanged', args: { facility: KEY_A, previousOwner: f.accounts.ownerA, newOwner: outsider } }]);
  t.match(await f.admin.facility('A'), { registered: true, owner: outsider, nextWindowStart: T0, baselineKgPerHour: '3600' });
  t.same(await eventsOf(f.admin, (await f.regulator.setFacilityOwner('A', outsider)).txHash), [], 'same owner: no change, no event');
  await expectRevert(t, f.regulator.setFacilityOwner('A', f.accounts.ownerB), 'OwnerAlreadyHasFacility', [f.accounts.ownerB, KEY_B]);
  await expectRevert(t, f.regulator.setFacilityOwner('A', ethers.ZeroAddress), 'InvalidFacilityOwner', [ethers.ZeroAddress]);
  await expectRevert(t, f.regulator.setFacilityOwner('nope', outsider), 'FacilityNotRegistered', [facilityKey('nope')]);
  await expectRevert(t, f.oracle.setFacilityOwner('A', f.accounts.ownerA), 'AccessControlUnauthorizedAccount', [f.accounts.oracle, REGULATOR_ROLE]);
  await f.regulator.registerFacility('A2', f.accounts.ownerA, '1', T0);
  // Removed: events, state cleared, the id and the owner free again.
  await expectRevert(t, f.admin.deregisterFacility('A2'), 'AccessControlUnauthorizedAccount', [f.accounts.admin, REGULATOR_ROLE]);
  const d = await f.regulator.deregisterFacility('A2');
  t.same(await eventsOf(f.admin, d.txHash), [{ name: 'FacilityDeregistered', args: { facility: facilityKey('A2') } }]);
  t.match(await f.admin.facility('A2'), { registered: false, baselineKgPerHour: '0' });
  await expectRevert(t, f.regulator.deregisterFacility('A2'), 'FacilityNotRegistered', [facilityKey('A2')]);
  await f.regulator.registerFacility('A2', f.accounts.ownerA, '2', T0 + W);
  t.match(await f.admin.facility('A2'), { registered: true, owner: f.accounts.ownerA, nextWindowStart: T0 + W, baselineKgPerHour: '2' });
  // Once a window is settled (even a zero net), neither is possible.
  await f.oracle.settleBatch([win('B', 0, 0n)]);
  await expectRevert(t, f.regulator.setFacilityOwner('B', f.accounts.ownerA), 'FacilityHasSettlements', [KEY_B, S0 + WS]);
  await expectRevert(t, f.regulator.deregisterFacility('B'), 'FacilityHasSettlements', [KEY_B, S0 + WS]);
  // A baseline change does not make a settled facility look unsettled.
  await f.regulator.setBaseline('B', '5', T0 + W);
  await expectRevert(t, f.regulator.deregisterFacility('B'), 'FacilityHasSettlements', [KEY_B, S0 + WS]);
});

t.test('roles: only the admin grants and revokes', async (t) => {
  const f = await deploy(chain);
  await expectRevert(t, f.regulator.grantRole('regulator', f.accounts.outsider), 'AccessControlUnauthorizedAccount', [f.accounts.regulator, ethers.ZeroHash]);
  const g = await f.admin.grantRole('regulator', f.accounts.outsider);
  t.same(await eventsOf(f.admin, g.txHash), [{ name: 'RoleGranted', args: { role: REGULATOR_ROLE, account: f.accounts.outsider, sender: f.accounts.admin } }]);
  const outsider = f.admin.connect(f.signers.outsider);
  await outsider.registerFacility('by-new-regulator', f.accounts.ownerB, '1', T0);
  const r = await f.admin.revokeRole('regulator', f.accounts.outsider);
  t.same(await eventsOf(f.admin, r.txHash), [{ name: 'RoleRevoked', args: { role: REGULATOR_ROLE, account: f.accounts.outsider, sender: f.accounts.admin } }]);
  await expectRevert(t, outsider.registerFacility('again', f.accounts.ownerA, '1', T0), 'AccessControlUnauthorizedAccount', [f.accounts.outsider, REGULATOR_ROLE]);
});

t.test('pause blocks settle, settleBatch, transfer, transferFrom and retire; only the admin pauses', async (t) => {
  const f = await withFacilities(chain);
  await f.oracle.settleBatch([win('A', 0, 1000n)]);
  await expectRevert(t, f.oracle.pause(), 'AccessControlUnauthorizedAccount', [f.accounts.oracle, ethers.ZeroHash]);
  const p = await f.admin.pause();
  t.same(await eventsOf(f.admin, p.txHash), [{ name: 'Paused', args: { account: f.accounts.admin } }]);
  t.equal(await f.admin.paused(), true);
  const ownerA = f.admin.contract.connect(f.signers.ownerA) as typeof f.admin.contract;
  await send(ownerA.approve(f.accounts.outsider, 10n)); // approvals are not blocked
  await expectRevert(t, f.oracle.settleBatch([win('A', 1, 1n)]), 'EnforcedPause', []);
  await expectRevert(t, f.oracle.contract.settle(raw('A', 1, 1n)), 'EnforcedPause', []);
  await expectRevert(t, f.admin.transfer(f.signers.ownerA, f.accounts.ownerB, 1n), 'EnforcedPause', []);
  await expectRevert(t, (f.admin.contract.connect(f.signers.outsider) as typeof f.admin.contract).transferFrom(f.accounts.ownerA, f.accounts.outsider, 1n), 'EnforcedPause', []);
  await expectRevert(t, f.admin.retire(f.signers.ownerA, 1n, 'b', 'r'), 'EnforcedPause', []);
  await expectRevert(t, f.admin.pause(), 'EnforcedPause', [], 'pausing twice');
  await expectRevert(t, f.regulator.unpause(), 'AccessControlUnauthorizedAccount', [f.accounts.regulator, ethers.ZeroHash]);
  const u = await f.admin.unpause();
  t.same(await eventsOf(f.admin, u.txHash), [{ name: 'Unpaused', args: { account: f.accounts.admin } }]);
  await expectRevert(t, f.admin.unpause(), 'ExpectedPause', []);
  await f.oracle.settleBatch([win('A', 1, 1n)]);
  await f.admin.transfer(f.signers.ownerA, f.accounts.ownerB, 1n);
  t.equal(await f.admin.balanceOf(f.accounts.ownerB), 1n);
});

t.test('a suspended facility cannot send or receive credits', async (t) => {
  const f = await withFacilities(chain);
  await f.oracle.settleBatch([win('A', 0, 1000n), win('B', 0, 1000n)]);
  await f.regulator.setFacilitySuspended('A', true);
  await expectRevert(t, f.admin.transfer(f.signers.ownerA, f.accounts.outsider, 1n), 'FacilityIsSuspended', [KEY_A, f.accounts.ownerA]);
  await expectRevert(t, f.admin.transfer(f.signers.ownerB, f.accounts.ownerA, 1n), 'FacilityIsSuspended', [KEY_A, f.accounts.ownerA]);
  await send((f.admin.contract.connect(f.signers.ownerA) as typeof f.admin.contract).approve(f.accounts.outsider, 5n));
  await expectRevert(t, (f.admin.contract.connect(f.signers.outsider) as typeof f.admin.contract).transferFrom(f.accounts.ownerA, f.accounts.outsider, 1n), 'FacilityIsSuspended', [KEY_A, f.accounts.ownerA]);
  await expectRevert(t, f.admin.retire(f.signers.ownerA, 1n, 'b', 'r'), 'FacilityIsSuspended', [KEY_A, f.accounts.ownerA]);
  // B and third parties are unaffected.
  await f.admin.transfer(f.signers.ownerB, f.accounts.outsider, 10n);
  await f.regulator.setFacilitySuspended('A', false);
  const tx = await f.admin.transfer(f.signers.ownerA, f.accounts.ownerB, 7n);
  t.same(await eventsOf(f.admin, tx.txHash), [{ name: 'Transfer', args: { from: f.accounts.ownerA, to: f.accounts.ownerB, value: 7n } }]);
  t.equal(await f.admin.balanceOf(f.accounts.ownerA), 993n);
  t.equal(await f.admin.balanceOf(f.accounts.ownerB), 997n);
  // Received credits do not change B's facility totals.
  t.match(await f.admin.facility('B'), { mintedGrams: 1000n, burnedGrams: 0n });
  t.ok(KEY_B);
});

t.test('ERC-20: approve, transferFrom, allowance and the standard errors', async (t) => {
  const f = await withFacilities(chain);
  await f.oracle.settleBatch([win('A', 0, 100n)]);
  const asA = f.admin.contract.connect(f.signers.ownerA) as typeof f.admin.contract;
  const asOut = f.admin.contract.connect(f.signers.outsider) as typeof f.admin.contract;
  const ap = await send(asA.approve(f.accounts.outsider, 30n));
  t.same(await eventsOf(f.admin, ap), [{ name: 'Approval', args: { owner: f.accounts.ownerA, spender: f.accounts.outsider, value: 30n } }]);
  t.equal(await f.admin.contract.allowance(f.accounts.ownerA, f.accounts.outsider), 30n);
  const tf = await send(asOut.transferFrom(f.accounts.ownerA, f.accounts.outsider, 20n));
  t.same(await eventsOf(f.admin, tf), [{ name: 'Transfer', args: { from: f.accounts.ownerA, to: f.accounts.outsider, value: 20n } }], 'spending an allowance emits no Approval');
  t.equal(await f.admin.contract.allowance(f.accounts.ownerA, f.accounts.outsider), 10n);
  await expectRevert(t, asOut.transferFrom(f.accounts.ownerA, f.accounts.outsider, 11n), 'ERC20InsufficientAllowance', [f.accounts.outsider, 10n, 11n]);
  await expectRevert(t, f.admin.transfer(f.signers.ownerA, f.accounts.ownerB, 81n), 'ERC20InsufficientBalance', [f.accounts.ownerA, 80n, 81n]);
  await expectRevert(t, f.admin.transfer(f.signers.ownerA, ethers.ZeroAddress, 1n), 'ERC20InvalidReceiver', [ethers.ZeroAddress]);
  await expectRevert(t, asA.approve(ethers.ZeroAddress, 1n), 'ERC20InvalidSpender', [ethers.ZeroAddress]);
  await send(asA.approve(f.accounts.outsider, ethers.MaxUint256));
  await send(asOut.transferFrom(f.accounts.ownerA, f.accounts.outsider, 5n));
  t.equal(await f.admin.contract.allowance(f.accounts.ownerA, f.accounts.outsider), ethers.MaxUint256, 'an unlimited allowance is not decreased');
  await f.admin.transfer(f.signers.ownerA, f.accounts.ownerA, 5n);
  t.equal(await f.admin.balanceOf(f.accounts.ownerA), 75n, 'a self-transfer changes nothing');
  t.equal(await f.admin.balanceOf(f.accounts.outsider), 25n);
  t.equal(await f.admin.totalSupply(), 100n);
  t.match(await f.admin.facility('A'), { mintedGrams: 100n, burnedGrams: 0n, deficitGrams: 0n }, 'transfers leave facility totals alone');
  t.ok(Ledger);
});
