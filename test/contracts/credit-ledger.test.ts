/**
 * CreditLedger (the next ledger: ERC-1155 batches with provenance) on Hardhat's in-process network.
 * Covers: batches per facility per vintage with on-chain metadata and uri; serial ranges for mints,
 * retirements and burns, and certificates rebuilt from logs; owners of several facilities; suspension
 * freezing batches wherever held; burns oldest vintage first then deficit (carried across vintages);
 * deficit and lag freezing the owner's credits; the guards (fixed window, ended window, cap with
 * export allowance, scheduled baselines); idempotent batched settlement; retirements from several
 * batches, direct and EIP-712 relayed, with the bad-input list (more than held, frozen batch, used
 * nonce, expired deadline, someone else's credits: custom errors, nothing moves); corrections
 * (append-only, exactly once, bounded); device keys and voids as regulator events; pause.
 */
import t from 'tap';
import { ethers } from 'ethers';
import { startHardhatChain } from '../../contracts/client/chain.ts';
import {
  F0, FEB, JAN, NOW0, ROOT, W, batchId, decode, deployCredit, events, key, now, reverts, send, setClock, signRetire, twelve,
  wins, withFacilities, ws, type CreditFixture,
} from './credit-helpers.ts';

const chain = await startHardhatChain({ accounts: 8 });
t.teardown(() => chain.close());
await setClock(chain);

const A_JAN = batchId('A', JAN);
const A_FEB = batchId('A', FEB);
const CAP_A = 3_600_000n;

/** Everything that must not change when a call is refused. */
async function snapshot(f: CreditFixture) {
  const holders = [f.accounts.ownerA, f.accounts.ownerB, f.accounts.outsider];
  const ids = [A_JAN, A_FEB, batchId('B', JAN), batchId('B', FEB)];
  const balances = await Promise.all(holders.flatMap((h) => ids.map((id) => f.admin.balanceOf(h, id) as Promise<bigint>)));
  const batches = await Promise.all([A_JAN, A_FEB].map(async (id) => (await f.admin.batch(id).catch(() => null))?.toArray(true) ?? null));
  return { balances, batches, supply: await f.admin['totalSupply()'](), count: await f.admin.retirementCount() };
}

t.test('vintage arithmetic: UTC calendar months, leap years, token ids', async (t) => {
  const f = await deployCredit(chain);
  const v = (iso: string) => f.admin.vintageOf(BigInt(Date.parse(iso) / 1000));
  t.equal(await v('2027-01-31T23:59:59Z'), 202701n);
  t.equal(await v('2027-02-01T00:00:00Z'), 202702n);
  t.equal(await v('2024-02-29T12:00:00Z'), 202402n);
  t.equal(await v('2024-03-01T00:00:00Z'), 202403n);
  t.equal(await v('2000-12-31T23:59:59Z'), 200012n);
  t.equal(await v('2100-01-01T00:00:00Z'), 210001n);
  t.equal(await v('1970-01-01T00:00:00Z'), 197001n);
  t.equal(await f.admin.batchId(key('A'), JAN), A_JAN);
  t.equal(await f.admin.windowSeconds(), W);
});

t.test('registry: several facilities per owner, id rules, aligned first window', async (t) => {
  const f = await withFacilities(chain);
  t.same([...(await f.admin.facilitiesOf(f.accounts.ownerA))], [key('A'), key('C')]);
  t.same([...(await f.admin.facilitiesOf(f.accounts.ownerB))], [key('B')]);
  const info = await f.admin.facility(key('A'));
  t.equal(info.facilityId, 'A');
  t.equal(info.owner, f.accounts.ownerA);
  t.equal(info.nextWindowStart, F0);
  t.equal(info.capGramsPerWindow, CAP_A);
  t.equal(info.exportAllowanceGPerHour, 0n, 'export allowance defaults to 0');
  await reverts(t, f.regulator.registerFacility('A', f.accounts.ownerB, 1n, F0), 'FacilityAlreadyRegistered', [key('A')]);
  await reverts(t, f.regulator.registerFacility('bad id', f.accounts.ownerB, 1n, F0), 'InvalidFacilityId', [6n]);
  await reverts(t, f.regulator.registerFacility('q"', f.accounts.ownerB, 1n, F0), 'InvalidFacilityId', [2n]);
  await reverts(t, f.regulator.registerFacility('', f.accounts.ownerB, 1n, F0), 'InvalidFacilityId', [0n]);
  await reverts(t, f.regulator.registerFacility('D', f.accounts.ownerB, 1n, F0 + 1n), 'MisalignedWindow', [key('D'), F0 + 1n]);
  await reverts(t, f.outsider.registerFacility('D', f.accounts.ownerB, 1n, F0), 'AccessControlUnauthorizedAccount');
  // Owner corrections only before the first settlement.
  await send(f.regulator.setFacilityOwner(key('C'), f.accounts.ownerB));
  t.same([...(await f.admin.facilitiesOf(f.accounts.ownerA))], [key('A')]);
  t.same([...(await f.admin.facilitiesOf(f.accounts.ownerB))], [key('B'), key('C')]);
  await send(f.oracle.settle(wins('A', 0, [0n])[0]));
  await reverts(t, f.regulator.setFacilityOwner(key('A'), f.accounts.ownerB), 'FacilityHasSettlements', [key('A')]);
  await reverts(t, f.regulator.deregisterFacility(key('A')), 'FacilityHasSettlements', [key('A')]);
});

t.test('batches: one token id per facility per vintage, metadata and uri', async (t) => {
  const f = await withFacilities(chain);
  const r = await send(f.oracle.settleBatch([...wins('A', 0, [1_000n, 2_000n, 500n]), ...wins('C', 0, [7n])]));
  const ev = events(f.admin, r);
  t.same(ev.filter((e) => e.name === 'BatchCreated').map((e) => e.args), [
    { batchId: A_JAN },
    { batchId: A_FEB },
    { batchId: batchId('C', JAN) },
  ]);
  t.equal(await f.admin.balanceOf(f.accounts.ownerA, A_JAN), 3_000n);
  t.equal(await f.admin.balanceOf(f.accounts.ownerA, A_FEB), 500n);
  t.equal(await f.admin.balanceOf(f.accounts.ownerA, batchId('C', JAN)), 7n, 'an owner of two facilities holds both');
  t.equal(await f.admin['totalSupply()'](), 3_507n);
  t.equal(await f.admin['totalSupply(uint256)'](A_JAN), 3_000n);
  const b = await f.admin.batch(A_JAN);
  t.equal(b.facility, key('A'));
  t.equal(b.facilityId, 'A');
  t.equal(b.vintage, BigInt(JAN));
  t.equal(b.issued, 3_000n);
  t.same([...(await f.admin.batchesOf(key('A')))], [A_JAN, A_FEB]);
  await reverts(t, f.admin.batch(batchId('A', 202703)), 'BatchNotFound', [batchId('A', 202703)]);
  await reverts(t, f.admin.batch(batchId('B', JAN)), 'BatchNotFound', [batchId('B', JAN)], 'B never settled: no batch');

  const uri: string = await f.admin.uri(A_JAN);
  t.match(uri, /^data:application\/json;base64,/);
  const json = JSON.parse(Buffer.from(uri.slice(uri.indexOf(',') + 1), 'base64').toString('utf8'));
  t.equal(json.name, 'A 2027-01');
  t.equal(json.decimals, 6);
  t.same(json.properties, { facilityId: 'A', facility: key('A'), vintage: '2027-01', issued: '3000', retired: '0', burned: '0' });
  t.ok(await f.admin.supportsInterface('0xd9b67a26'), 'ERC-1155');
  t.ok(await f.admin.supportsInterface('0x0e89341c'), 'ERC-1155 metadata URI');
});

t.test('mint serial ranges are consecutive per batch and carried by events', async (t) => {
  const f = await withFacilities(chain);
  const r = await send(f.oracle.settleBatch(wins('A', 0, [1_000n, 2_000n, 500n, 0n, 250n])));
  const settled = events(f.admin, r).filter((e) => e.name === 'WindowSettled').map((e) => e.args);
  t.same(settled.map((a) => [a.windowStart, a.netGrams, a.minted, a.firstSerial, a.deficitAfter, a.evidenceRoot]), [
    [ws(0), 1_000n, 1_000n, 1n, 0n, ROOT],
    [ws(1), 2_000n, 2_000n, 1_001n, 0n, ROOT],
    [ws(2), 500n, 500n, 1n, 0n, ROOT],
    [ws(3), 0n, 0n, 0n, 0n, ROOT],
    [ws(4), 250n, 250n, 501n, 0n, ROOT],
  ]);
  const mints = events(f.admin, r).filter((e) => e.name === 'TransferSingle').map((e) => [e.args.from, e.args.to, e.args.id, e.args.value]);
  t.same(mints, [
    [ethers.ZeroAddress, f.accounts.ownerA, A_JAN, 1_000n],
    [ethers.ZeroAddress, f.accounts.ownerA, A_JAN, 2_000n],
    [ethers.ZeroAddress, f.accounts.ownerA, A_FEB, 500n],
    [ethers.ZeroAddress, f.accounts.ownerA, A_FEB, 250n],
  ]);
});

t.test('guards: window ended, fixed length, contiguity, cap = baseline + export allowance', async (t) => {
  const f = await withFacilities(chain);
  const far = BigInt(Date.UTC(2100, 0, 1) / 1000);
  // A facility whose next window is in 2100: the window has not ended.
  await send(f.regulator.registerFacility('F', f.accounts.ownerB, 1_000_000n, far));
  const farInput = { facility: key('F'), windowStart: far, netGrams: 1n, evidenceRoot: ROOT };
  const blockTime = async (p: Promise<unknown>) => {
    try {
      await p;
      t.fail('expected WindowNotEnded');
    } catch (e) {
      const d = decode(e);
      t.equal(d?.name, 'WindowNotEnded');
      return d?.args as bigint[];
    }
  };
  const args2100 = await blockTime(f.oracle.settle(farInput));
  t.same(args2100?.slice(0, 2), [key('F'), far + W], 'a window ending in 2100 reverts');
  t.equal((await f.admin.facility(key('F'))).nextWindowStart, far, 'nothing recorded');
  // A's current window (12:00-13:00) has not ended at 12:00:30; its previous one has.
  await send(f.oracle.settleBatch(wins('A', 0, twelve())));
  await send(f.oracle.settleBatch(wins('A', 12, [0n, 0n])));
  const argsNow = await blockTime(f.oracle.settleBatch(wins('A', 14, [0n])));
  t.same(argsNow?.slice(0, 2), [key('A'), ws(15)]);
  t.ok(argsNow && argsNow[2] < ws(15), 'block time before the window end');
  // 2^63 g and cap + 1 revert; cap itself passes.
  const big = { facility: key('B'), windowStart: ws(0), netGrams: 2n ** 63n, evidenceRoot: ROOT };
  await reverts(t, f.oracle.settle(big), 'NetAboveCap', [key('B'), 2n ** 63n, 1_000_000n]);
  await reverts(t, f.oracle.settleBatch([{ ...big, netGrams: 1_000_001n }]), 'NetAboveCap', [key('B'), 1_000_001n, 1_000_000n]);
  await reverts(t, f.oracle.settle({ ...big, netGrams: -(2n ** 63n) }), 'NetOutOfRange');
  t.equal(await f.admin['totalSupply()'](), 0n, 'nothing minted');
  await send(f.oracle.settle({ ...big, netGrams: 1_000_000n }));
  // Contiguity and exactly once.
  await reverts(t, f.oracle.settle({ ...big, netGrams: 1n }), 'WindowAlreadySettled', [key('B'), ws(0)]);
  await reverts(t, f.oracle.settle({ ...big, windowStart: ws(2), netGrams: 1n }), 'WindowOutOfOrder', [key('B'), ws(1), ws(2)]);
  await reverts(t, f.oracle.settle({ ...big, windowStart: ws(1) + 1n, netGrams: 1n }), 'WindowOutOfOrder', [key('B'), ws(1), ws(1) + 1n]);
  // Export allowance (g/h) raises the cap from its effective window; a baseline change is scheduled.
  await reverts(t, f.regulator.setExportAllowance(key('B'), 500_000n, ws(0)), 'BaselineEffectiveTooEarly', [key('B'), ws(0), ws(1)]);
  await reverts(t, f.regulator.setExportAllowance(key('B'), 500_000n, ws(2) + 5n), 'MisalignedWindow', [key('B'), ws(2) + 5n]);
  let r = await send(f.regulator.setExportAllowance(key('B'), 500_000n, ws(1)));
  t.same(events(f.admin, r).map((e) => e.name), ['CapChanged', 'ExportAllowanceChanged']);
  t.equal((await f.admin.facility(key('B'))).capGramsPerWindow, 1_500_000n);
  r = await send(f.regulator.setBaseline(key('B'), 2_000_000_000n, ws(3)));
  t.same(events(f.admin, r).map((e) => e.name), ['BaselineChanged'], 'scheduled, not applied');
  await reverts(t, f.regulator.setBaseline(key('B'), 1n, ws(4)), 'LimitsChangePending', [key('B'), ws(3)]);
  await reverts(t, f.oracle.settle({ ...big, windowStart: ws(1), netGrams: 1_500_001n }), 'NetAboveCap', [key('B'), 1_500_001n, 1_500_000n]);
  await send(f.oracle.settleBatch(wins('B', 1, [1_500_000n, 0n])));
  r = await send(f.oracle.settle(wins('B', 3, [2_500_000n])[0]));
  t.same(events(f.admin, r).map((e) => [e.name, e.args.capGramsPerWindow]).slice(0, 1), [['CapChanged', 2_500_000n]], 'applied at its window');
  const b = await f.admin.facility(key('B'));
  t.equal(b.baselineMgPerHour, 2_000_000_000n);
  t.equal(b.exportAllowanceGPerHour, 500_000n);
  t.equal(b.limitsPending, false);
  await reverts(t, f.oracle.settle(wins('B', 4, [2_500_001n])[0]), 'NetAboveCap', [key('B'), 2_500_001n, 2_500_000n]);
  await reverts(t, f.oracle.settle(wins('Z', 0, [1n])[0]), 'FacilityNotRegistered', [key('Z')]);
  await reverts(t, f.outsider.settle(wins('B', 4, [1n])[0]), 'AccessControlUnauthorizedAccount');
});

t.test('scheduled limits: a due change is folded in before the next, same-window changes merge', async (t) => {
  const f = await withFacilities(chain);
  await send(f.oracle.settleBatch(wins('B', 0, [0n])));
  await send(f.regulator.setBaseline(key('B'), 2_000_000_000n, ws(2)));
  await send(f.regulator.setExportAllowance(key('B'), 1_000_000n, ws(2)));
  let b = await f.admin.facility(key('B'));
  t.same([b.limitsPending, b.pendingBaselineMgPerHour, b.pendingExportAllowanceGPerHour, b.pendingEffectiveFrom, b.capGramsPerWindow], [true, 2_000_000_000n, 1_000_000n, ws(2), 1_000_000n], 'merged into one pending change');
  await send(f.oracle.settleBatch(wins('B', 1, [0n])));
  // next window = ws(2): the pending change is due; a later change folds it in first.
  const r = await send(f.regulator.setBaseline(key('B'), 500_000_000n, ws(4)));
  t.same(events(f.admin, r).map((e) => [e.name, e.args.capGramsPerWindow ?? e.args.baselineMgPerHour]), [['CapChanged', 3_000_000n], ['BaselineChanged', 500_000_000n]]);
  b = await f.admin.facility(key('B'));
  t.same([b.baselineMgPerHour, b.exportAllowanceGPerHour, b.limitsEffectiveFrom, b.pendingBaselineMgPerHour, b.pendingExportAllowanceGPerHour, b.pendingEffectiveFrom], [2_000_000_000n, 1_000_000n, ws(2), 500_000_000n, 1_000_000n, ws(4)]);
  await send(f.oracle.settleBatch(wins('B', 2, [3_000_000n, 0n])));
  await reverts(t, f.oracle.settle(wins('B', 4, [1_500_001n])[0]), 'NetAboveCap', [key('B'), 1_500_001n, 1_500_000n]);
  await reverts(t, f.regulator.setBaseline(key('B'), 2n ** 96n, ws(5)), 'SafeCastOverflowedUintDowncast');
  await reverts(t, f.regulator.setBaseline(key('Z'), 1n, ws(5)), 'FacilityNotRegistered', [key('Z')]);
});

t.test('settleBatch is idempotent per facility-window: a retried batch changes nothing', async (t) => {
  const f = await withFacilities(chain);
  const batch = [...wins('A', 0, [1_000n, 2_000n]), ...wins('B', 0, [300n])];
  await send(f.oracle.settleBatch(batch));
  const before = await snapshot(f);
  const r = await send(f.oracle.settleBatch([...batch.map((b) => ({ ...b, netGrams: b.netGrams * 2n })), ...wins('A', 2, [5n])]));
  const ev = events(f.admin, r);
  t.same(ev.filter((e) => e.name === 'SettlementSkipped').map((e) => [e.args.facility, e.args.windowStart]), [
    [key('A'), ws(0)], [key('A'), ws(1)], [key('B'), ws(0)],
  ]);
  t.equal(ev.filter((e) => e.name === 'WindowSettled').length, 1, 'only the new window settles');
  const after = await snapshot(f);
  t.equal(after.supply, before.supply + 5n);
  t.equal(await f.admin.balanceOf(f.accounts.ownerA, A_JAN), 3_000n);
});

t.test('burns: owner holdings of the facility, oldest vintage first, the rest is deficit (carried to the next vintage)', async (t) => {
  const f = await withFacilities(chain);
  // Jan: 1,000 (serials 1-1000); Feb: 500.
  await send(f.oracle.settleBatch(wins('A', 0, twelve({ 0: 1_000n, 2: 500n }))));
  await send(f.ownerA.safeTransferFrom(f.accounts.ownerA, f.accounts.outsider, A_JAN, 200n, '0x'));
  // Window 12 nets -1,000: 800 from Jan (the owner's; the outsider's 200 untouched), then 200 from Feb.
  let r = await send(f.oracle.settle(wins('A', 12, [-1_000n])[0]));
  let ev = events(f.admin, r);
  t.same(ev.filter((e) => e.name === 'CreditsBurned').map((e) => [e.args.batchId, e.args.from, e.args.amount, e.args.firstSerial]), [
    [A_JAN, f.accounts.ownerA, 800n, 1n],
    [A_FEB, f.accounts.ownerA, 200n, 1n],
  ]);
  t.match(ev.find((e) => e.name === 'WindowSettled')?.args, { netGrams: -1_000n, minted: 0n, deficitAfter: 0n });
  t.equal(await f.admin.balanceOf(f.accounts.outsider, A_JAN), 200n, 'credits held elsewhere are not burned');
  // Window 13 nets -600: 300 left in Feb, 300 deficit.
  r = await send(f.oracle.settle(wins('A', 13, [-600n])[0]));
  ev = events(f.admin, r);
  t.same(ev.filter((e) => e.name === 'CreditsBurned').map((e) => [e.args.batchId, e.args.amount, e.args.firstSerial]), [[A_FEB, 300n, 201n]]);
  t.match(ev.find((e) => e.name === 'WindowSettled')?.args, { deficitAfter: 300n });
  t.equal((await f.admin.facility(key('A'))).deficit, 300n);
  const jan = await f.admin.batch(A_JAN);
  t.same([jan.issued, jan.burned, jan.retired, jan.supply, jan.ownerBalance], [1_000n, 800n, 0n, 200n, 0n]);
  t.equal(await f.admin['totalSupply()'](), 200n);

  // In deficit: the owner's credits of A cannot move, and A's credits cannot come back to the owner.
  await reverts(t, f.outsider.safeTransferFrom(f.accounts.outsider, f.accounts.ownerA, A_JAN, 1n, '0x'), 'FacilityInDeficit', [key('A'), 300n]);
  await reverts(t, f.ownerA.retire([A_JAN], [1n], 'x', ''), 'FacilityInDeficit', [key('A'), 300n]);
  // ...but the outsider may still retire them, and the owner's other facility is unaffected.
  await send(f.outsider.retire([A_JAN], [10n], 'ACME', ''));
  await send(f.oracle.settleBatch(wins('C', 0, twelve({ 1: 50n }))));
  await send(f.ownerA.retire([batchId('C', JAN)], [5n], 'ACME', ''));

  // A deficit carried across vintages: a fresh ledger, deficit in January, paid down by February.
  const g = await withFacilities(chain);
  r = await send(g.oracle.settleBatch(wins('A', 0, [0n, -500n, 800n])));
  const settled = events(g.admin, r).filter((e) => e.name === 'WindowSettled').map((e) => [e.args.minted, e.args.firstSerial, e.args.deficitAfter]);
  t.same(settled, [[0n, 0n, 0n], [0n, 0n, 500n], [300n, 1n, 0n]]);
  t.equal(await g.admin.balanceOf(g.accounts.ownerA, A_FEB), 300n);
  t.equal(await g.admin.balanceOf(g.accounts.ownerA, A_JAN), 0n);
  t.equal((await g.admin.facility(key('A'))).deficit, 0n);
});

t.test('burns start again at an older vintage the owner got back', async (t) => {
  const f = await withFacilities(chain);
  await send(f.oracle.settleBatch(wins('A', 0, twelve({ 0: 1_000n, 2: 500n }))));
  await send(f.ownerA.safeTransferFrom(f.accounts.ownerA, f.accounts.outsider, A_JAN, 1_000n, '0x'));
  let r = await send(f.oracle.settle(wins('A', 12, [-100n])[0]));
  t.same(events(f.admin, r).filter((e) => e.name === 'CreditsBurned').map((e) => [e.args.batchId, e.args.amount, e.args.firstSerial]), [[A_FEB, 100n, 1n]], 'the owner holds no January credits: February burns');
  // The outsider sends 300 January credits back (approved operator, batch transfer): they are burned first.
  await send(f.outsider.setApprovalForAll(f.accounts.relayer, true));
  t.equal(await f.admin.isApprovedForAll(f.accounts.outsider, f.accounts.relayer), true);
  r = await send(f.relayer.safeBatchTransferFrom(f.accounts.outsider, f.accounts.ownerA, [A_JAN, A_JAN], [200n, 100n], '0x'));
  t.same(events(f.admin, r).map((e) => e.name), ['TransferBatch']);
  t.same([...(await f.admin.balanceOfBatch([f.accounts.ownerA, f.accounts.outsider], [A_JAN, A_JAN]))], [300n, 700n]);
  r = await send(f.oracle.settle(wins('A', 13, [-400n])[0]));
  t.same(events(f.admin, r).filter((e) => e.name === 'CreditsBurned').map((e) => [e.args.batchId, e.args.amount, e.args.firstSerial]), [
    [A_JAN, 300n, 1n],
    [A_FEB, 100n, 101n],
  ]);
  t.equal(await f.admin.balanceOf(f.accounts.ownerA, A_FEB), 300n);
  t.equal(await f.admin.balanceOf(f.accounts.outsider, A_JAN), 700n);
  t.equal((await f.admin.facility(key('A'))).deficit, 0n);
});

t.test('a contract owner must accept ERC-1155 (checked at registration, not on each mint)', async (t) => {
  const f = await deployCredit(chain);
  // The ledger's own metadata renderer is a contract without onERC1155Received.
  const renderer: string = await f.admin.metadataRenderer();
  await reverts(t, f.regulator.registerFacility('K', renderer, 1n, F0), 'ERC1155InvalidReceiver', [renderer]);
  await reverts(t, f.regulator.registerFacility('K', ethers.ZeroAddress, 1n, F0), 'InvalidFacilityOwner', [ethers.ZeroAddress]);
  await reverts(t, f.ownerA.safeTransferFrom(f.accounts.ownerA, renderer, A_JAN, 0n, '0x'), 'BatchNotFound', [A_JAN]);
});

t.test('suspension freezes the facility batches wherever held; settlement goes on', async (t) => {
  const f = await withFacilities(chain);
  await send(f.oracle.settleBatch([...wins('A', 0, twelve({ 0: 1_000n })), ...wins('B', 0, twelve({ 0: 100n }))]));
  await send(f.ownerA.safeTransferFrom(f.accounts.ownerA, f.accounts.outsider, A_JAN, 300n, '0x'));
  await send(f.outsider.safeTransferFrom(f.accounts.outsider, f.accounts.ownerB, A_JAN, 100n, '0x'));
  const r = await send(f.regulator.setFacilitySuspended(key('A'), true));
  t.same(events(f.admin, r).map((e) => e.name), ['FacilitySuspended']);
  const before = await snapshot(f);
  await reverts(t, f.ownerA.safeTransferFrom(f.accounts.ownerA, f.accounts.outsider, A_JAN, 1n, '0x'), 'FacilityIsSuspended', [key('A')]);
  await reverts(t, f.outsider.safeTransferFrom(f.accounts.outsider, f.accounts.ownerA, A_JAN, 1n, '0x'), 'FacilityIsSuspended', [key('A')]);
  await reverts(t, f.ownerB.retire([A_JAN], [1n], 'x', ''), 'FacilityIsSuspended', [key('A')], 'frozen in a third party wallet');
  await reverts(t, f.outsider.retire([A_JAN], [1n], 'x', ''), 'FacilityIsSuspended', [key('A')]);
  await reverts(t, f.ownerB.safeBatchTransferFrom(f.accounts.ownerB, f.accounts.outsider, [batchId('B', JAN), A_JAN], [1n, 1n], '0x'), 'FacilityIsSuspended', [key('A')]);
  t.same(await snapshot(f), before, 'nothing moved');
  // B is not suspended; A still settles.
  await send(f.ownerB.safeTransferFrom(f.accounts.ownerB, f.accounts.outsider, batchId('B', JAN), 1n, '0x'));
  await send(f.oracle.settle(wins('A', 12, [5n])[0]));
  t.equal(await f.admin.balanceOf(f.accounts.ownerA, A_FEB), 5n);
  await send(f.regulator.setFacilitySuspended(key('A'), false));
  await send(f.outsider.retire([A_JAN], [1n], 'x', ''));
});

t.test('retirement from several batches, certificate on chain and rebuilt from logs; serials never twice', async (t) => {
  const f = await withFacilities(chain);
  await send(f.oracle.settleBatch([...wins('A', 0, twelve({ 0: 1_000n, 2: 400n })), ...wins('B', 0, twelve({ 0: 50n }))]));
  await send(f.ownerA.safeTransferFrom(f.accounts.ownerA, f.accounts.outsider, A_JAN, 100n, '0x'));
  // The outsider retires first: serials 1-40 of A Jan.
  let r = await send(f.outsider.retire([A_JAN], [40n], 'Outsider Ltd', 'first'));
  t.same(events(f.admin, r).filter((e) => e.name === 'BatchRetired').map((e) => [e.args.id, e.args.batchId, e.args.amount, e.args.firstSerial]), [[1n, A_JAN, 40n, 1n]]);
  // The owner retires from Jan, Feb and Jan again in one call.
  r = await send(f.ownerA.retire([A_JAN, A_FEB, A_JAN], [10n, 400n, 5n], 'City of Shenzhen', 'FY2026 offset'));
  const ev = events(f.admin, r);
  const parts = ev.filter((e) => e.name === 'BatchRetired').map((e) => [e.args.batchId, e.args.amount, e.args.firstSerial]);
  t.same(parts, [[A_JAN, 10n, 41n], [A_FEB, 400n, 1n], [A_JAN, 5n, 51n]]);
  t.same(ev.filter((e) => e.name === 'TransferSingle').map((e) => [e.args.from, e.args.to, e.args.id, e.args.value]), [
    [f.accounts.ownerA, ethers.ZeroAddress, A_JAN, 10n],
    [f.accounts.ownerA, ethers.ZeroAddress, A_FEB, 400n],
    [f.accounts.ownerA, ethers.ZeroAddress, A_JAN, 5n],
  ]);
  t.match(ev.at(-1), { name: 'CreditsRetired', args: { id: 2n, account: f.accounts.ownerA, amount: 415n, beneficiary: 'City of Shenzhen', reason: 'FY2026 offset' } });
  const cert = await f.admin.retirement(2n);
  t.equal(cert.account, f.accounts.ownerA);
  t.equal(cert.amount, 415n);
  t.equal(cert.beneficiary, 'City of Shenzhen');
  t.same(cert.parts.map((p: ethers.Result) => [p.batchId, p.amount, p.firstSerial]), parts);
  const block = await chain.provider.getBlock(r.blockNumber);
  t.equal(cert.retiredAt, BigInt(block!.timestamp));
  await reverts(t, f.admin.retirement(3n), 'RetirementNotFound', [3n]);

  // Certificates rebuilt from logs alone; no serial of a batch is ever taken twice.
  const logs = await chain.provider.getLogs({ address: f.address, fromBlock: 0 });
  const parsed = logs.map((l) => f.admin.interface.parseLog(l)).filter((p) => p !== null);
  const taken = new Map<bigint, [bigint, bigint][]>();
  for (const p of parsed) {
    if (p.name !== 'BatchRetired' && p.name !== 'CreditsBurned') continue;
    const [id, amount, first] = p.name === 'BatchRetired' ? [p.args[1], p.args[2], p.args[3]] : [p.args[0], p.args[2], p.args[3]];
    const list = taken.get(id) ?? [];
    list.push([first, first + amount - 1n]);
    taken.set(id, list);
  }
  t.same(taken.get(A_JAN), [[1n, 40n], [41n, 50n], [51n, 55n]], 'contiguous, in order, disjoint');
  const certs = parsed.filter((p) => p.name === 'CreditsRetired').map((p) => p.args[0]);
  t.same(certs, [1n, 2n]);
  const jan = await f.admin.batch(A_JAN);
  t.same([jan.issued, jan.retired, jan.burned, jan.supply], [1_000n, 55n, 0n, 945n]);
  const u = await f.admin.uri(A_JAN);
  t.match(JSON.parse(Buffer.from(u.slice(u.indexOf(',') + 1), 'base64').toString()).properties, { retired: '55' });
});

t.test('bad input: more than held, frozen batch, used nonce, expired deadline, someone else\'s credits — nothing moves', async (t) => {
  const f = await withFacilities(chain);
  await send(f.oracle.settleBatch([...wins('A', 0, twelve({ 0: 1_000n, 2: 400n })), ...wins('B', 0, twelve({ 0: 50n }))]));
  const before = await snapshot(f);
  // More than held (also when a later entry of a multi-batch retirement fails: the whole call reverts).
  await reverts(t, f.ownerA.retire([A_JAN], [1_001n], 'x', ''), 'ERC1155InsufficientBalance', [f.accounts.ownerA, 1_000n, 1_001n, A_JAN]);
  await reverts(t, f.ownerA.retire([A_JAN, A_FEB], [10n, 401n], 'x', ''), 'ERC1155InsufficientBalance', [f.accounts.ownerA, 400n, 401n, A_FEB]);
  await reverts(t, f.ownerA.safeTransferFrom(f.accounts.ownerA, f.accounts.outsider, A_JAN, 1_001n, '0x'), 'ERC1155InsufficientBalance');
  // Someone else's credits: retiring what one does not hold, moving without approval.
  await reverts(t, f.outsider.retire([A_JAN], [1n], 'x', ''), 'ERC1155InsufficientBalance', [f.accounts.outsider, 0n, 1n, A_JAN]);
  await reverts(t, f.outsider.safeTransferFrom(f.accounts.ownerA, f.accounts.outsider, A_JAN, 1n, '0x'), 'ERC1155MissingApprovalForAll', [f.accounts.outsider, f.accounts.ownerA]);
  // Other refusals.
  await reverts(t, f.ownerA.retire([A_JAN], [0n], 'x', ''), 'InvalidRetirementAmount', [0n]);
  await reverts(t, f.ownerA.retire([], [], 'x', ''), 'InvalidRetirementBatchCount', [0n]);
  await reverts(t, f.ownerA.retire([A_JAN], [1n, 2n], 'x', ''), 'ERC1155InvalidArrayLength', [1n, 2n]);
  await reverts(t, f.ownerA.retire([A_JAN], [1n], '', ''), 'MissingBeneficiary', []);
  await reverts(t, f.ownerA.retire([A_JAN], [1n], 'x'.repeat(257), ''), 'RetirementTextTooLong', [257n, 256n]);
  await reverts(t, f.ownerA.retire([batchId('Z', JAN)], [1n], 'x', ''), 'BatchNotFound', [batchId('Z', JAN)]);

  // Signed requests relayed by a third party.
  const deadline = (await now(chain)) + 3600n;
  const req = { holder: f.accounts.ownerA, batchIds: [A_JAN, A_FEB], amounts: [100n, 50n], beneficiary: 'Relay Co', reason: 'via gateway', nonce: 0n, deadline };
  const relay = (q: typeof req, sig: string) => f.relayer.retireWithSig(q.holder, q.batchIds, q.amounts, q.beneficiary, q.reason, q.nonce, q.deadline, sig);
  const sigA = await signRetire(f, f.wallets.ownerA, req);
  // Someone else's credits: the outsider signs a request for ownerA's credits.
  await reverts(t, relay(req, await signRetire(f, f.wallets.outsider, req)), 'InvalidRetirementSignature', [f.accounts.ownerA]);
  // A tampered request (amount changed) does not match the signature.
  await reverts(t, relay({ ...req, amounts: [100n, 51n] }, sigA), 'InvalidRetirementSignature', [f.accounts.ownerA]);
  // Expired deadline.
  const past = { ...req, deadline: (await now(chain)) - 1n };
  await reverts(t, relay(past, await signRetire(f, f.wallets.ownerA, past)), 'RetirementSignatureExpired', [past.deadline]);
  // Frozen batch.
  await send(f.regulator.setFacilitySuspended(key('A'), true));
  await reverts(t, relay(req, sigA), 'FacilityIsSuspended', [key('A')]);
  await send(f.regulator.setFacilitySuspended(key('A'), false));
  t.same(await snapshot(f), before, 'nothing moved');
  t.equal(await f.admin.nonces(f.accounts.ownerA), 0n, 'no nonce used by a refused request');

  const r = await send(relay(req, sigA));
  const ev = events(f.admin, r);
  t.match(ev.at(-1), { name: 'CreditsRetired', args: { id: 1n, account: f.accounts.ownerA, amount: 150n, beneficiary: 'Relay Co' } });
  t.equal(await f.admin.balanceOf(f.accounts.ownerA, A_JAN), 900n);
  // Used nonce: the same signature again.
  const mid = await snapshot(f);
  await reverts(t, relay(req, sigA), 'InvalidAccountNonce', [f.accounts.ownerA, 1n]);
  t.same(await snapshot(f), mid, 'the replay moved nothing');
});

t.test('corrections: append-only, exactly once, into the original vintage, bounded by the cap', async (t) => {
  const f = await withFacilities(chain);
  await send(f.oracle.settleBatch([...wins('A', 0, twelve({ 0: 1_000n, 2: 500n })), ...wins('B', 0, [0n])]));
  // The regulator's void authorises corrections of A's windows settled before it that end after `from`.
  let r = await send(f.regulator.voidReadings(key('A'), 'meter-1', ws(0) + 60n, ws(1), 'meter faulty'));
  t.same(events(f.admin, r)[0], { name: 'ReadingsVoided', args: { id: 1n, facility: key('A'), device: ethers.id('meter-1'), deviceId: 'meter-1', from: ws(0) + 60n, to: ws(1), settledBefore: ws(12), reason: 'meter faulty' } });
  await send(f.regulator.voidReadings(key('B'), 'meter-b', ws(0), ws(1), 'other facility'));
  await send(f.regulator.voidReadings(key('A'), 'meter-2', ws(5), ws(6), 'later range'));
  const c1 = { facility: key('A'), windowStart: ws(0), seq: 1, voidId: 1n, deltaGrams: 250n, evidenceRoot: ethers.id('corrected'), reason: 'void M1 2027-01-31 (meter faulty)' };
  await reverts(t, f.oracle.settleCorrections([{ ...c1, voidId: 0n }]), 'CorrectionNotAuthorized', [key('A'), ws(0), 0n], 'no void');
  await reverts(t, f.oracle.settleCorrections([{ ...c1, voidId: 2n }]), 'CorrectionNotAuthorized', [key('A'), ws(0), 2n], 'another facility\'s void');
  await reverts(t, f.oracle.settleCorrections([{ ...c1, voidId: 3n, windowStart: ws(4) }]), 'CorrectionNotAuthorized', [key('A'), ws(4), 3n], 'window ends before the void starts');
  t.same([...(await f.admin.corrections(key('A'), ws(0)))], [0n, 0n], 'nothing applied');
  r = await send(f.oracle.settleCorrections([c1]));
  let ev = events(f.admin, r);
  t.same(ev.map((e) => e.name), ['TransferSingle', 'CorrectionSettled']);
  t.match(ev[0].args, { to: f.accounts.ownerA, id: A_JAN, value: 250n });
  t.match(ev[1].args, { facility: key('A'), windowStart: ws(0), seq: 1n, voidId: 1n, deltaGrams: 250n, minted: 250n, firstSerial: 1_001n, burned: 0n, deficitAfter: 0n, evidenceRoot: ethers.id('corrected'), reason: c1.reason });
  t.equal(await f.admin.balanceOf(f.accounts.ownerA, A_JAN), 1_250n, 'minted into the window\'s vintage');
  // A retry is skipped; out of order, unsettled window, no reason, above the cap: refused.
  r = await send(f.oracle.settleCorrections([c1]));
  t.same(events(f.admin, r).map((e) => e.name), ['CorrectionSkipped']);
  await reverts(t, f.oracle.settleCorrections([{ ...c1, seq: 3 }]), 'CorrectionOutOfOrder', [key('A'), ws(0), 2n, 3n]);
  await reverts(t, f.oracle.settleCorrections([{ ...c1, seq: 1, windowStart: ws(12) }]), 'CorrectionOfUnsettledWindow', [key('A'), ws(12), ws(12)]);
  await reverts(t, f.oracle.settleCorrections([{ ...c1, seq: 1, windowStart: F0 - W }]), 'CorrectionOfUnsettledWindow', [key('A'), F0 - W, ws(12)]);
  await reverts(t, f.oracle.settleCorrections([{ ...c1, seq: 2, reason: '' }]), 'MissingCorrectionReason', []);
  await reverts(t, f.oracle.settleCorrections([{ ...c1, seq: 2, deltaGrams: CAP_A }]), 'CorrectionAboveCap', [key('A'), ws(0), CAP_A + 250n, CAP_A]);
  await reverts(t, f.outsider.settleCorrections([{ ...c1, seq: 2 }]), 'AccessControlUnauthorizedAccount');
  t.same([...(await f.admin.corrections(key('A'), ws(0)))], [1n, 250n]);
  // A negative correction burns oldest vintage first, then deficit.
  r = await send(f.oracle.settleCorrections([{ ...c1, seq: 2, deltaGrams: -2_000n, reason: 'void export meter' }]));
  ev = events(f.admin, r);
  t.same(ev.filter((e) => e.name === 'CreditsBurned').map((e) => [e.args.batchId, e.args.amount, e.args.firstSerial]), [[A_JAN, 1_250n, 1n], [A_FEB, 500n, 1n]]);
  t.match(ev.at(-1)?.args, { seq: 2n, deltaGrams: -2_000n, burned: 1_750n, deficitAfter: 250n });
  t.same([...(await f.admin.corrections(key('A'), ws(0)))], [2n, -1_750n]);
  // A window settled after the void is not covered by it.
  await send(f.oracle.settle(wins('A', 12, [0n])[0]));
  await reverts(t, f.oracle.settleCorrections([{ ...c1, windowStart: ws(12) }]), 'CorrectionNotAuthorized', [key('A'), ws(12), 1n]);
  // A positive correction of a February window pays the deficit first.
  r = await send(f.oracle.settleCorrections([{ ...c1, windowStart: ws(3), deltaGrams: 400n }]));
  t.match(events(f.admin, r).at(-1)?.args, { minted: 150n, firstSerial: 501n, deficitAfter: 0n });
  t.equal(await f.admin.balanceOf(f.accounts.ownerA, A_FEB), 150n);
  t.equal(await f.admin['totalSupply()'](), 150n);
});

t.test('device keys (set, rotate, revoke) and voids are regulator events', async (t) => {
  const f = await withFacilities(chain);
  const k1 = ethers.hexlify(ethers.randomBytes(32));
  const k2 = ethers.hexlify(ethers.randomBytes(32));
  const dev = ethers.id('meter-1');
  let r = await send(f.regulator.setDeviceKey('meter-1', k1));
  t.same(events(f.admin, r).map((e) => [e.name, e.args]), [['DeviceKeySet', { device: dev, deviceId: 'meter-1', publicKey: k1, previousKey: ethers.ZeroHash }]]);
  r = await send(f.regulator.setDeviceKey('meter-1', k2));
  t.same(events(f.admin, r)[0].args, { device: dev, deviceId: 'meter-1', publicKey: k2, previousKey: k1 }, 'rotation names the previous key');
  t.equal(await f.admin.deviceKey(dev), k2);
  r = await send(f.regulator.setDeviceKey('meter-1', k2));
  t.same(events(f.admin, r), [], 'same key again: no event');
  r = await send(f.regulator.setDeviceKey('meter-1', ethers.ZeroHash));
  t.equal(events(f.admin, r)[0].args.previousKey, k2, 'revoked');
  await reverts(t, f.oracle.setDeviceKey('meter-1', k1), 'AccessControlUnauthorizedAccount');
  await reverts(t, f.regulator.setDeviceKey('', k1), 'InvalidDeviceRecord', []);
  r = await send(f.regulator.voidReadings(key('A'), 'meter-1', 100n, 200n, 'meter faulty'));
  t.same(events(f.admin, r)[0], { name: 'ReadingsVoided', args: { id: 1n, facility: key('A'), device: dev, deviceId: 'meter-1', from: 100n, to: 200n, settledBefore: F0, reason: 'meter faulty' } });
  await reverts(t, f.regulator.voidReadings(key('A'), 'meter-1', 200n, 200n, 'x'), 'InvalidDeviceRecord', []);
  await reverts(t, f.regulator.voidReadings(key('A'), 'meter-1', 100n, 200n, ''), 'InvalidDeviceRecord', []);
  await reverts(t, f.regulator.voidReadings(key('Z'), 'meter-1', 100n, 200n, 'x'), 'FacilityNotRegistered', [key('Z')]);
  await reverts(t, f.outsider.voidReadings(key('A'), 'meter-1', 100n, 200n, 'x'), 'AccessControlUnauthorizedAccount');
});

t.test('pause blocks settlement, corrections, transfers and retirements', async (t) => {
  const f = await withFacilities(chain);
  await send(f.oracle.settleBatch(wins('A', 0, twelve({ 0: 1_000n }))));
  await send(f.admin.pause());
  await reverts(t, f.oracle.settle(wins('A', 12, [1n])[0]), 'EnforcedPause', []);
  await reverts(t, f.oracle.settleBatch(wins('A', 12, [1n])), 'EnforcedPause', []);
  await reverts(t, f.oracle.settleCorrections([{ facility: key('A'), windowStart: ws(0), seq: 1, voidId: 1n, deltaGrams: 1n, evidenceRoot: ROOT, reason: 'r' }]), 'EnforcedPause', []);
  await reverts(t, f.ownerA.safeTransferFrom(f.accounts.ownerA, f.accounts.outsider, A_JAN, 1n, '0x'), 'EnforcedPause', []);
  await reverts(t, f.ownerA.retire([A_JAN], [1n], 'x', ''), 'EnforcedPause', []);
  await reverts(t, f.outsider.pause(), 'AccessControlUnauthorizedAccount');
  await send(f.admin.unpause());
  await send(f.ownerA.retire([A_JAN], [1n], 'x', ''));
});

// Last: moves the chain's clock forward (later tests would see every facility lagging).
t.test('a facility lagging more than two windows freezes its owner\'s credits, not a third party\'s', async (t) => {
  const f = await withFacilities(chain);
  await send(f.oracle.settleBatch(wins('A', 0, twelve({ 0: 1_000n }))));
  await send(f.ownerA.safeTransferFrom(f.accounts.ownerA, f.accounts.outsider, A_JAN, 100n, '0x'));
  // next window = 10:00; at 13:00 three windows (10, 11, 12) have ended unsettled.
  await setClock(chain, NOW0 + W);
  t.ok((await now(chain)) >= ws(12) + 3n * W);
  await reverts(t, f.ownerA.retire([A_JAN], [1n], 'x', ''), 'FacilityLagging', [key('A'), ws(12)]);
  await reverts(t, f.ownerA.safeTransferFrom(f.accounts.ownerA, f.accounts.outsider, A_JAN, 1n, '0x'), 'FacilityLagging', [key('A'), ws(12)]);
  await send(f.outsider.retire([A_JAN], [1n], 'x', ''));
  await send(f.oracle.settle(wins('A', 12, [0n])[0]));
  await send(f.ownerA.retire([A_JAN], [1n], 'x', ''));
  t.equal(await f.admin.balanceOf(f.accounts.ownerA, A_JAN), 899n);
});
