/**
 * `npm run cli -- retire`: on a real chain (anvil from @foundry-rs/anvil, over JSON-RPC) with the
 * CarbonLedger deployed and credits minted to a facility owner:
 * - direct: the holder's key sends `retire`; balance drops, a numbered record exists;
 * - relay: the CLI signs the EIP-712 request locally and posts it to a running gateway, which
 *   submits it with its own (relayer) wallet; the holder's key never reaches the gateway;
 * - a replayed signed request is answered with the retirement it produced (200), another request on
 *   a used nonce is refused (422), bad arguments exit 2.
 */
import t from 'tap';
import { ethers } from 'ethers';
import { startAnvil } from '../../contracts/client/chain.ts';
import { loadArtifact } from '../../contracts/client/artifact.ts';
import { runCli, signRetirement } from '../../gateway/cli.ts';
import { buildGateway } from '../../gateway/app.ts';
import { silentLogger } from '../../domain/logger.ts';
import { Ledger } from '../../contracts/client/ledger.ts';
import { startGateway } from './harness.ts';
import { missing, skipUnless } from '../helpers/require.ts';


async function capture(argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(argv, (s) => out.push(s), (s) => err.push(s));
  return { code, out: out.join('\n'), err: err.join('\n') };
}

t.test('retire directly and through the relay', { skip: skipUnless(missing.anvil()) }, async (t) => {
  const chain = await startAnvil();
  t.teardown(() => chain.close());
  const rpc = chain.rpcUrl!;
  const [adminKey, regulatorKey, oracleKey, ownerKey, relayerKey] = chain.privateKeys;
  const wallet = (k: string) => new ethers.NonceManager(new ethers.Wallet(k, chain.provider));
  const artifact = loadArtifact();
  const admin = new ethers.Wallet(adminKey, chain.provider);
  const factory = new ethers.ContractFactory(artifact.abi as ethers.InterfaceAbi, artifact.bytecode, admin);
  const deployed = await factory.deploy(admin.address, ethers.computeAddress(regulatorKey), ethers.computeAddress(oracleKey), 3600n);
  await deployed.waitForDeployment();
  const address = await deployed.getAddress();
  const at = (k: string) => new ethers.Contract(address, artifact.abi as ethers.InterfaceAbi, wallet(k));
  const owner = ethers.computeAddress(ownerKey);

  // The last hour that has ended (the ledger settles ended windows; an owner whose settlement lags is frozen).
  const first = BigInt(Math.floor(Date.now() / 3_600_000) * 3600 - 3600);
  await (await at(regulatorKey).getFunction('registerFacility')('facA', owner, 36_000_000_000n, first)).wait();
  const key = ethers.id('facA');
  await (await at(oracleKey).getFunction('settle')({ facility: key, windowStart: first, netGrams: 5_000_000n, evidenceRoot: ethers.ZeroHash })).wait();
  const read = at(adminKey);
  const [batchId] = (await read.getFunction('batchesOf')(key)) as bigint[];
  const balance = async () => (await read.getFunction('balanceOf')(owner, batchId)) as bigint;
  t.equal(await balance(), 5_000_000n, 'credits minted to the owner');

  // Direct: the holder's own transaction.
  const direct = await capture(['retire', '--rpc', rpc, '--key', ownerKey, '--contract', address, '--batch-ids', String(batchId), '--amounts', '1500000', '--beneficiary', 'City of X', '--reason', 'scope 2 2026']);
  t.equal(direct.code, 0, direct.err);
  const d = JSON.parse(direct.out);
  t.match(d, { ok: true, via: 'direct', holder: owner, batchIds: [String(batchId)], amounts: ['1500000'], amountGrams: '1500000', txHash: /^0x[0-9a-f]{64}$/, id: '1' });
  t.equal(await balance(), 3_500_000n);
  const rec = await read.getFunction('retirement')(1n);
  t.equal(rec.account, owner);
  t.equal(rec.amount, 1_500_000n);
  t.equal(rec.beneficiary, 'City of X');

  // Relay: a gateway whose chain client (the real Ledger) holds only a relayer key.
  const relayer = wallet(relayerKey);
  const relayLedger = Ledger.attach(address, relayer);
  const h = await startGateway(t, { deps: { ledger: undefined } });
  const app = await buildGateway({ db: h.db, registry: h.registry, ledger: relayLedger, logger: silentLogger });
  t.teardown(() => app.close());
  const base = await app.listen({ port: 0, host: '127.0.0.1' });

  const relayed = await capture(['retire', '--relay', base, '--api-key', h.key.regulator, '--rpc', rpc, '--key', ownerKey, '--contract', address, '--batch-ids', String(batchId), '--amounts', '500000', '--beneficiary', 'Hospital Y']);
  t.equal(relayed.code, 0, relayed.err);
  t.match(JSON.parse(relayed.out), { ok: true, via: 'relay', holder: owner, txHash: /^0x[0-9a-f]{64}$/ });
  t.equal(await balance(), 3_000_000n, 'retired from the holder without the holder sending a transaction');
  t.equal(await read.getFunction('retirementCount')(), 2n);
  const relayTx = await chain.provider.getTransaction(JSON.parse(relayed.out).txHash);
  t.equal(relayTx?.from, await relayer.getAddress(), 'the relayer paid, not the holder');

  // The list endpoint reads the records back from the chain through the real client.
  const list = await app.inject({ url: '/v1/retirements?facilityId=facA', headers: h.auth('regulator') });
  t.equal(list.statusCode, 200);
  // Newest first (every list of the API pages newest first).
  t.equal(list.json().items.length, 2);
  t.match(list.json().items, [
    { id: '2', account: owner, facilityIds: ['facA'], amountGrams: '500000', amountTonnes: '0.5', beneficiary: 'Hospital Y', parts: [{ amountGrams: '500000', firstSerial: /^facA-\d{4}-\d\d-1500001$/, lastSerial: /-2000000$/ }] },
    { id: '1', account: owner, facilityIds: ['facA'], amountGrams: '1500000', amountTonnes: '1.5', beneficiary: 'City of X', reason: 'scope 2 2026', retiredAt: /Z$/, txHash: /^0x/, parts: [{ firstSerial: /-1$/, lastSerial: /-1500000$/ }] },
  ]);

  // The certificate, from the chain alone.
  const cert = await capture(['certificate', '2', '--rpc', rpc, '--contract', address]);
  t.equal(cert.code, 0, cert.err);
  t.match(JSON.parse(cert.out), { id: '2', beneficiary: 'Hospital Y', parts: [{ amountGrams: '500000', lastSerial: /-2000000$/ }], settlements: [{ mintedGrams: '5000000', firstSerial: /-1$/, lastSerial: /-5000000$/, txHash: /^0x/ }] });
  const none = await capture(['certificate', '9', '--rpc', rpc, '--contract', address]);
  t.equal(none.code, 1);
  t.match(none.err, /no retirement #9/);
  t.equal((await capture(['certificate', '--rpc', rpc, '--contract', address])).code, 2);
  t.equal((await capture(['certificate', '1', '2', '--rpc', rpc, '--contract', address])).code, 2);

  // The same signed request twice: it took place once; the second answer is that retirement (200).
  const signed = await signRetirement(new ethers.Wallet(ownerKey, chain.provider), address, { batchIds: [batchId], amounts: [1000n], beneficiary: 'Z', reason: '' });
  // A second request the holder signs with the same nonce: only one of the two can take place.
  const other = await signRetirement(new ethers.Wallet(ownerKey, chain.provider), address, { batchIds: [batchId], amounts: [2000n], beneficiary: 'Z', reason: '' });
  t.equal(other.nonce, signed.nonce);
  const post = (body: unknown) => app.inject({ method: 'POST', url: '/v1/retirements', headers: h.auth('regulator'), payload: body as object });
  const once = await post(signed);
  t.equal(once.statusCode, 201);
  const replay = await post(signed);
  t.equal(replay.statusCode, 200, 'a replay is answered with the retirement the request produced');
  t.same(replay.json(), { ...once.json(), alreadySubmitted: true }, 'same id and transaction, nothing retired twice');
  // Another request of the holder with a nonce already used: refused, the reason decoded (InvalidAccountNonce).
  const reused = await post(other);
  t.equal(reused.statusCode, 422);
  t.match(reused.json(), { error: { code: 'RELAY_REJECTED', message: /InvalidAccountNonce|reverted/ } });
  const forged = await post({ ...(await signRetirement(new ethers.Wallet(relayerKey, chain.provider), address, { batchIds: [batchId], amounts: [1000n], beneficiary: 'Z', reason: '' })), holder: owner });
  t.equal(forged.statusCode, 422, 'a signature by someone else than the holder is refused');
  t.match(forged.json(), { error: { code: 'RELAY_REJECTED' } });
  t.equal(await balance(), 2_999_000n);
});

t.test('argument errors exit 2 with usage', async (t) => {
  const none = await capture([]);
  t.equal(none.code, 2);
  t.match(none.err, /usage: npm run cli -- <command>/);
  t.match(none.err, /retire/);
  const bad = await capture(['retire', '--rpc', 'http://127.0.0.1:1', '--key', '0x12', '--contract', 'nope', '--batch-ids', '1', '--amounts', '0', '--beneficiary', 'x', '--relay', 'http://x']);
  t.equal(bad.code, 2);
  for (const m of [/--key/, /--contract/, /--amounts must/, /--relay needs --api-key/]) t.match(bad.err, m);
  const uneven = await capture(['retire', '--rpc', 'http://127.0.0.1:1', '--key', '0x' + '11'.repeat(32), '--contract', '0x' + '22'.repeat(20), '--batch-ids', '1,2', '--amounts', '5', '--beneficiary', 'x']);
  t.equal(uneven.code, 2);
  t.match(uneven.err, /one amount per batch id/);
  t.equal((await capture(['retire', '--bogus'])).code, 2);
});
