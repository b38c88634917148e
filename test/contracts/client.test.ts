/**
 * Ledger client helpers without a chain: unit conversions, artifact loading, custom-error decoding
 * from the shapes ethers and providers produce.
 */
import t from 'tap';
import { ethers } from 'ethers';
import { loadArtifact } from '../../contracts/client/artifact.ts';
import { decodeLedgerError, LedgerRevertError, toLedgerError } from '../../contracts/client/errors.ts';
import { facilityKey, kgPerHourToMg, toSeconds, ROLES } from '../../contracts/client/ledger.ts';

t.test('unit conversions', async (t) => {
  t.equal(kgPerHourToMg('3600'), 3_600_000_000n);
  t.equal(kgPerHourToMg('0.000001'), 1n);
  t.equal(kgPerHourToMg('12.5e2'), 1_250_000_000n);
  t.equal(kgPerHourToMg('0'), 0n);
  t.throws(() => kgPerHourToMg('0.0000001'), { code: 'VALIDATION_FAILED' });
  t.throws(() => kgPerHourToMg('-5'), { code: 'VALIDATION_FAILED' });
  t.throws(() => kgPerHourToMg('abc'), { code: 'INVALID_DECIMAL' });
  t.equal(toSeconds(1_767_225_600_000), 1_767_225_600n);
  t.throws(() => toSeconds(1_767_225_600_001), { code: 'VALIDATION_FAILED' });
  t.throws(() => toSeconds(-1000), { code: 'VALIDATION_FAILED' });
  t.throws(() => toSeconds(Number.NaN), { code: 'VALIDATION_FAILED' });
  t.equal(facilityKey('plant-1'), ethers.keccak256(ethers.toUtf8Bytes('plant-1')));
  t.same(ROLES, { admin: ethers.ZeroHash, regulator: ethers.id('REGULATOR_ROLE'), oracle: ethers.id('ORACLE_ROLE') });
});

t.test('loadArtifact', async (t) => {
  const a = loadArtifact();
  t.equal(a.contractName, 'CarbonLedger');
  t.match(a.bytecode, /^0x[0-9a-f]{100,}$/);
  t.ok(a.abi.length > 20);
  t.throws(() => loadArtifact('Missing'), { code: 'CONTRACTS_NOT_COMPILED', message: /npm run compile/ });
});

t.test('decodeLedgerError finds the revert data wherever ethers put it', async (t) => {
  const iface = new ethers.Interface(loadArtifact().abi as ethers.InterfaceAbi);
  const key = ethers.id('A');
  const data = iface.encodeErrorResult('WindowAlreadySettled', [key, 1_767_225_600n]);
  const want = { name: 'WindowAlreadySettled', args: [key, 1_767_225_600n] };
  t.same(decodeLedgerError({ data }), want, 'top-level data (CALL_EXCEPTION)');
  t.same(decodeLedgerError({ info: { error: { data } } }), want, 'nested RPC error');
  t.same(decodeLedgerError({ error: { error: { data: { data } } } }), want, 'doubly nested');
  t.same(decodeLedgerError(new Error(`execution reverted, data=${data}`)), want, 'only in the message');
  const gap = iface.encodeErrorResult('WindowOutOfOrder', [key, 10n, 20n]);
  t.same(decodeLedgerError({ data: gap }), { name: 'WindowOutOfOrder', args: [key, 10n, 20n] });
  t.same(decodeLedgerError({ data: iface.encodeErrorResult('EnforcedPause', []) }), { name: 'EnforcedPause', args: [] }, 'OpenZeppelin errors too');

  t.equal(decodeLedgerError(undefined), undefined);
  t.equal(decodeLedgerError(new Error('socket hang up')), undefined);
  t.equal(decodeLedgerError({ data: '0xdeadbeef' }), undefined, 'unknown selector');
  const panic = '0x4e487b71' + ethers.toBeHex(0x11, 32).slice(2);
  t.same(decodeLedgerError({ data: panic }), { name: 'Panic', args: [17n] }, 'Solidity panics (checked arithmetic) are named too');

  const wrapped = toLedgerError({ data });
  t.type(wrapped, LedgerRevertError);
  t.match(wrapped, { code: 'LEDGER_REVERTED', statusCode: 409, message: `ledger reverted: WindowAlreadySettled(${key}, 1767225600)` });
  t.same(decodeLedgerError(wrapped), want, 'a wrapped error decodes to the same thing');
  const plain = new Error('boom');
  t.equal(toLedgerError(plain), plain, 'anything else is passed through');
});
