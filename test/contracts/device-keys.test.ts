/**
 * CreditLedger device keys on Hardhat's in-process network: the regulator sets, rotates and revokes a
 * device's Ed25519 key (`DeviceKeySet` with the previous key), the same key again emits nothing, other
 * roles and bad ids are refused, and a paused ledger records no key. Read back through the client.
 */
import t from 'tap';
import { ethers } from 'ethers';
import { startHardhatChain } from '../../contracts/client/chain.ts';
import { deviceIdKey } from '../../contracts/client/units.ts';
import { REGULATOR_ROLE, deploy, eventsOf, expectRevert } from './helpers.ts';

const chain = await startHardhatChain({ accounts: 8 });
t.teardown(() => chain.close());

const hex = () => ethers.hexlify(ethers.randomBytes(32)).slice(2);

t.test('setDeviceKey: set, rotate, same key, revoke; events and state', async (t) => {
  const f = await deploy(chain);
  const k1 = hex();
  const k2 = hex();
  const dev = deviceIdKey('meter-1');
  t.equal(await f.admin.deviceKey('meter-1'), undefined, 'no key yet');
  let tx = await f.regulator.setDeviceKey('meter-1', k1);
  t.same(await eventsOf(f.admin, tx.txHash), [{ name: 'DeviceKeySet', args: { device: dev, deviceId: 'meter-1', publicKey: '0x' + k1, previousKey: ethers.ZeroHash } }]);
  t.equal(await f.admin.deviceKey('meter-1'), k1);
  tx = await f.regulator.setDeviceKey('meter-1', '0x' + k2.toUpperCase());
  t.same(await eventsOf(f.admin, tx.txHash), [{ name: 'DeviceKeySet', args: { device: dev, deviceId: 'meter-1', publicKey: '0x' + k2, previousKey: '0x' + k1 } }], 'a rotation names the key it replaces');
  tx = await f.regulator.setDeviceKey('meter-1', k2);
  t.same(await eventsOf(f.admin, tx.txHash), [], 'the current key again: no event');
  tx = await f.regulator.setDeviceKey('meter-1', '0'.repeat(64));
  t.same(await eventsOf(f.admin, tx.txHash), [{ name: 'DeviceKeySet', args: { device: dev, deviceId: 'meter-1', publicKey: ethers.ZeroHash, previousKey: '0x' + k2 } }], 'revoked');
  t.equal(await f.admin.deviceKey('meter-1'), undefined, 'revoked: no current key');
  await f.regulator.setDeviceKey('meter-2', k1);
  const all = await f.admin.deviceKeys();
  t.same(
    all.map((r) => [r.deviceId, r.publicKey, r.previousKey]),
    [
      ['meter-1', k1, null],
      ['meter-1', k2, k1],
      ['meter-1', null, k2],
      ['meter-2', k1, null],
    ],
    'the history, oldest first',
  );
  t.same((await f.admin.deviceKeys('meter-2')).map((r) => r.deviceKey), [deviceIdKey('meter-2')], 'one device by its topic');
  t.same(await f.admin.deviceKeys('meter-3'), []);
});

t.test('setDeviceKey: regulator only, 1..64-byte ids, 32-byte keys, recorded while paused', async (t) => {
  const f = await deploy(chain);
  const k = hex();
  await expectRevert(t, f.oracle.setDeviceKey('m', k), 'AccessControlUnauthorizedAccount', [f.accounts.oracle, REGULATOR_ROLE]);
  await expectRevert(t, f.admin.setDeviceKey('m', k), 'AccessControlUnauthorizedAccount', [f.accounts.admin, REGULATOR_ROLE], 'not even the admin');
  await expectRevert(t, f.regulator.setDeviceKey('', k), 'InvalidDeviceRecord', []);
  await expectRevert(t, f.regulator.setDeviceKey('x'.repeat(65), k), 'InvalidDeviceRecord', []);
  await f.regulator.setDeviceKey('x'.repeat(64), k);
  t.equal(await f.admin.deviceKey('x'.repeat(64)), k, '64 bytes is accepted');
  for (const bad of ['', 'zz'.repeat(32), 'ab'.repeat(31), 'ab'.repeat(33)]) {
    await t.rejects(f.regulator.setDeviceKey('m', bad), { message: /32 bytes as 64 hex/ }, `key ${JSON.stringify(bad)} refused before sending`);
  }
  // Pause stops credits moving (settlement, corrections, transfers, retirements), not the regulator's record.
  await f.admin.pause();
  await f.regulator.setDeviceKey('m', k);
  t.equal(await f.admin.deviceKey('m'), k);
  await f.admin.unpause();
});
