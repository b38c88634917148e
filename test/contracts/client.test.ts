/**
 * Ledger client helpers without a chain: unit conversions, artifact loading, custom-error decoding
 * from the shapes ethers and providers produce, the one classifier of chain failures.
 */
import t from 'tap';
import { ethers } from 'ethers';
import { loadArtifact } from '../../contracts/client/artifact.ts';
import { classifyChainError, decodeLedgerError, describeChainError, explainRevert, isRevert, LedgerRevertError, toChainError, toLedgerError } from '../../contracts/client/errors.ts';
import { rpcProvider } from '../../contracts/client/connect.ts';
import { Ledger } from '../../contracts/client/ledger.ts';
import { DomainError, errors } from '../../domain/errors.ts';
import { facilityKey, kgPerHourToMg, toSeconds, LEDGER_ROLES } from '../../contracts/client/units.ts';

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
  t.same(LEDGER_ROLES, { admin: ethers.ZeroHash, regulator: ethers.id('REGULATOR_ROLE'), oracle: ethers.id('ORACLE_ROLE') });
});

t.test('loadArtifact', async (t) => {
  const a = loadArtifact();
  t.equal(a.contractName, 'CreditLedger');
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
  t.match(wrapped, {
    code: 'LEDGER_REVERTED',
    statusCode: 409,
    message: `ledger reverted: the facility with key ${key}'s window starting 2026-01-01T00:00:00.000Z (1767225600) is already settled: nothing to do [WindowAlreadySettled(${key}, 1767225600)]`,
  });
  t.same(decodeLedgerError(wrapped), want, 'a wrapped error decodes to the same thing');
  const plain = new Error('boom');
  t.equal(toLedgerError(plain), plain, 'anything else is passed through');
});

t.test('every revert becomes a sentence the reader can act on', async (t) => {
  const iface = new ethers.Interface(loadArtifact().abi as ethers.InterfaceAbi);
  const holder = ethers.getAddress('0x90f79bf6eb2c4f870365e785982e1f101e93b906');
  // What ethers throws for a direct send that fails estimateGas: CALL_EXCEPTION with the data, no name.
  const thrown = (name: string, args: unknown[]) =>
    Object.assign(new Error('execution reverted (unknown custom error)'), { code: 'CALL_EXCEPTION', data: iface.encodeErrorResult(name, args) });
  const balance = thrown('ERC1155InsufficientBalance', [holder, 3_500_000n, 9_000_000n, 202612n]);
  t.equal(
    describeChainError(balance, { you: holder, action: 'retire' }),
    'insufficient balance: you hold 3500000 g (3.5 t), tried to retire 9000000 g (9 t); retire at most 3500000 g, or wait for more settled windows',
  );
  t.match(describeChainError(balance), /^insufficient balance: account 0x90F79bf6EB2c4f870365E785982E1f101E93b906 holds 3500000 g \(3\.5 t\), the request needs 9000000 g/);
  t.match((toLedgerError(balance) as Error).message, /^ledger reverted: insufficient balance: .* \[ERC1155InsufficientBalance\(0x90F7.*, 3500000, 9000000, 202612\)\]$/, 'the client error carries the sentence and the raw error');

  const role = thrown('AccessControlUnauthorizedAccount', [holder, ethers.id('ORACLE_ROLE')]);
  t.match(describeChainError(role), /not allowed: account 0x90F7\w+ lacks the oracle \(ORACLE_ROLE\) role/);
  t.match(describeChainError(thrown('EnforcedPause', [])), /paused by its administrator/);
  t.match(describeChainError(thrown('InvalidAccountNonce', [holder, 4n]), { you: holder }), /nonce is already used: you are at nonce 4 .*sign a new request/);
  t.match(describeChainError(thrown('RetirementSignatureExpired', [1_767_225_600n])), /expired at 2026-01-01T00:00:00\.000Z .*--valid-seconds/);
  t.match(describeChainError(thrown('FacilityIsSuspended', [ethers.id('plant-7')]), { facilityIds: ['plant-1', 'plant-7'] }), /^facility plant-7 is suspended by the regulator: its batches cannot be retired or moved, wherever held/);
  t.match(describeChainError(thrown('FacilityIsSuspended', [ethers.id('plant-7')])), /^the facility with key 0x[0-9a-f]{64} is suspended/);
  t.match(describeChainError(thrown('FacilityInDeficit', [ethers.id('plant-7'), 300n]), { facilityIds: ['plant-7'] }), /^facility plant-7 is in deficit \(300 g/);
  t.match(describeChainError(thrown('FacilityLagging', [ethers.id('plant-7'), 10n]), { facilityIds: ['plant-7'] }), /lags more than two windows \(next window 1970-01-01T00:00:10\.000Z/);
  t.match(describeChainError(thrown('NetAboveCap', [ethers.id('A'), 11n, 10n])), /net of 11 g .* above its cap of 10 g/);
  t.match(describeChainError(thrown('WindowNotEnded', [ethers.id('A'), 20n, 10n])), /window ending 1970-01-01T00:00:20\.000Z \(20\) has not ended on chain/);
  t.match(describeChainError(thrown('BatchNotFound', [7n])), /no batch with token id 7/);
  t.match(describeChainError(thrown('WindowOutOfOrder', [ethers.id('A'), 10n, 20n])), /next window to settle starts at 1970-01-01T00:00:10\.000Z \(10\), not 1970-01-01T00:00:20\.000Z \(20\)/);

  // OpenZeppelin errors outside the ledger's ABI (ERC-1155) decode too.
  const erc1155 = new ethers.Interface(['error ERC1155InsufficientBalance(address sender, uint256 balance, uint256 needed, uint256 tokenId)']);
  const e1155 = { data: erc1155.encodeErrorResult('ERC1155InsufficientBalance', [holder, 1n, 2n, 7n]) };
  t.same(decodeLedgerError(e1155), { name: 'ERC1155InsufficientBalance', args: [holder, 1n, 2n, 7n] });
  t.match(describeChainError(e1155), /^insufficient balance: account 0x90F7\w+ holds 1 g/);
  t.match(explainRevert({ name: 'Panic', args: [17n] }), /arithmetic overflow/);
  t.equal(explainRevert({ name: 'Error', args: ['nope'] }), 'the contract refused: nope');
  t.equal(explainRevert({ name: 'SomethingNew', args: [1n, 'x'] }), 'SomethingNew(1, x)', 'an unknown name is shown raw');

  // Non-reverts.
  t.match(describeChainError(Object.assign(new Error('insufficient funds for intrinsic transaction cost'), { code: 'INSUFFICIENT_FUNDS' })), /no ether to pay gas.*--relay/);
  t.match(describeChainError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }), { rpc: 'http://127.0.0.1:1' }), /cannot reach the chain at http:\/\/127\.0\.0\.1:1/);
  t.match(describeChainError({ code: 'CALL_EXCEPTION', data: '0xdeadbeef', message: 'execution reverted' }), /does not know \(selector 0xdeadbeef\)/);
});

t.test('one classifier: reverts, an unavailable node, anything else; each as the catalogue says it', async (t) => {
  const iface = new ethers.Interface(loadArtifact().abi as ethers.InterfaceAbi);
  const data = iface.encodeErrorResult('WindowOutOfOrder', [facilityKey('A'), 10n, 20n]);
  const decodable = Object.assign(new Error('execution reverted (unknown custom error)'), { code: 'CALL_EXCEPTION', data });
  const undecodable = Object.assign(new Error('execution reverted'), { code: 'CALL_EXCEPTION', data: '0xdeadbeef' });
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8545'), { code: 'ECONNREFUSED' });
  const nested = Object.assign(new Error('could not coalesce error'), { code: 'UNKNOWN_ERROR_X', cause: Object.assign(new Error('socket closed'), { code: 'ECONNRESET' }) });
  const cases: [string, unknown, string][] = [
    ['decodable revert', decodable, 'revert'],
    ['undecodable CALL_EXCEPTION', undecodable, 'revert'],
    ['LedgerRevertError', toLedgerError(decodable), 'revert'],
    ['connection refused', refused, 'unavailable'],
    ['fetch failed', new TypeError('fetch failed'), 'unavailable'],
    ['ethers TIMEOUT', Object.assign(new Error('timeout'), { code: 'TIMEOUT' }), 'unavailable'],
    ['ethers SERVER_ERROR', Object.assign(new Error('bad response (status=502)'), { code: 'SERVER_ERROR' }), 'unavailable'],
    ['reset, down the cause chain', nested, 'unavailable'],
    ['CHAIN_UNAVAILABLE', errors.CHAIN_UNAVAILABLE('x'), 'unavailable'],
    ['another catalogue error', errors.VALIDATION('x'), 'other'],
    ['insufficient funds', Object.assign(new Error('insufficient funds'), { code: 'INSUFFICIENT_FUNDS' }), 'other'],
    ['a plain bug', new TypeError('x is undefined'), 'other'],
  ];
  for (const [what, e, kind] of cases) {
    t.equal(classifyChainError(e), kind, what);
    t.equal(isRevert(e), kind === 'revert', `${what}: isRevert`);
  }
  t.match(toChainError(decodable), { code: 'LEDGER_REVERTED', revert: { name: 'WindowOutOfOrder', args: [facilityKey('A'), 10n, 20n] } });
  t.ok(toChainError(decodable) instanceof LedgerRevertError);
  t.equal(toChainError(undecodable), undecodable, 'an undecodable revert keeps its shape for describeChainError');
  const down = toChainError(refused) as DomainError;
  t.match(down, { code: 'CHAIN_UNAVAILABLE', statusCode: 503, message: 'chain unavailable: connect ECONNREFUSED 127.0.0.1:8545' });
  t.equal(down.cause, refused);
  t.equal((toChainError(Object.assign(new Error('x'.repeat(500)), { code: 'NETWORK_ERROR' })) as Error).message.length, 'chain unavailable: '.length + 160);
  const v = errors.VALIDATION('x');
  t.equal(toChainError(v), v, 'a catalogue error as it is');
  const bug = new TypeError('x is undefined');
  t.equal(toChainError(bug), bug);
  t.match(describeChainError(nested, { rpc: 'http://node' }), /cannot reach the chain at http:\/\/node/);
  // What a Ledger call throws for an outage (CHAIN_UNAVAILABLE wrapping it) is said as that outage (the CLI's reads go through the Ledger).
  t.match(describeChainError(down, { rpc: 'http://node' }), /^cannot reach the chain at http:\/\/node/);
  t.match(describeChainError(errors.CHAIN_UNAVAILABLE('transaction 0x1 not mined within 5 ms')), /^chain unavailable: transaction 0x1 not mined/, 'without a cause: its own message');
});

t.test('calls through the port leave as catalogue errors: an unreachable node is CHAIN_UNAVAILABLE, a keyless write CHAIN_SIGNER_MISSING', async (t) => {
  const provider = rpcProvider('http://127.0.0.1:1', { chainId: 31337 });
  t.teardown(() => provider.destroy());
  const ledger = Ledger.readOnlyAt(ethers.ZeroAddress.replace(/0$/, '1'), provider);
  await t.rejects(ledger.facility('A'), { code: 'CHAIN_UNAVAILABLE', statusCode: 503, message: /ECONNREFUSED/ });
  await t.rejects(ledger.blockNumber(), { code: 'CHAIN_UNAVAILABLE' });
  await t.rejects(ledger.registerFacility('A', ethers.ZeroAddress.replace(/0$/, '2'), '1', 0), { code: 'CHAIN_SIGNER_MISSING', statusCode: 503 });
  const opened = Ledger.open({ rpcUrl: 'http://127.0.0.1:1', address: ethers.ZeroAddress.replace(/0$/, '1') });
  t.teardown(() => opened.close());
  t.equal(opened.ledger.readOnly, true, 'no key: read-only');
});
