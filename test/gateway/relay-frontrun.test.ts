/**
 * A relayed retirement front-run by a third party (issue 10 item 16), on a real anvil chain over
 * JSON-RPC with the real contracts client: someone who saw the signed EIP-712 request submits it to
 * the contract first; the gateway's own submission then reverts (nonce used), and the API answers 200
 * with the retirement that request produced (its id, the front-runner's transaction), not 422.
 * Skips without the anvil binary, except under CI.
 */
import t from 'tap';
import { ethers } from 'ethers';
import { startAnvil } from '../../contracts/client/chain.ts';
import { Ledger } from '../../contracts/client/ledger.ts';
import { buildGateway } from '../../gateway/app.ts';
import { signRetirement } from '../../gateway/cli.ts';
import { silentLogger } from '../../domain/logger.ts';
import { startGateway } from './harness.ts';
import { missing, skipUnless } from '../helpers/require.ts';


t.test('a signed request someone else submitted first is answered with its retirement', { skip: skipUnless(missing.anvil()) }, async (t) => {
  const chain = await startAnvil();
  t.teardown(() => chain.close());
  const [adminKey, regulatorKey, oracleKey, ownerKey, relayerKey, thirdKey] = chain.privateKeys;
  const wallet = (k: string) => new ethers.NonceManager(new ethers.Wallet(k, chain.provider));
  const deployed = await Ledger.deploy(wallet(adminKey), { windowSeconds: 3600, regulator: ethers.computeAddress(regulatorKey), oracle: ethers.computeAddress(oracleKey) });
  const address = deployed.address;
  const owner = ethers.computeAddress(ownerKey);
  // The last hour that has ended: the owner's credits are frozen when its settlement lags.
  const first = Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3_600_000;
  await deployed.connect(wallet(regulatorKey)).registerFacility('facA', owner, '36000', first);
  await deployed.connect(wallet(oracleKey)).settleBatch([{ facilityId: 'facA', windowStart: first, windowEnd: first + 3_600_000, netGrams: 5_000_000n, evidenceRoot: ethers.ZeroHash }]);
  t.equal(await deployed.heldBy(owner), 5_000_000n);
  const batchIds = [BigInt((await deployed.batches('facA'))[0].id)];

  const h = await startGateway(t, { deps: { ledger: undefined } });
  const app = await buildGateway({ db: h.db, registry: h.registry, ledger: Ledger.attach(address, wallet(relayerKey)), logger: silentLogger });
  t.teardown(() => app.close());
  const post = (body: unknown) => app.inject({ method: 'POST', url: '/v1/retirements', headers: h.auth('regulator'), payload: body as object });

  // A normal relay first (201), so the front-run request is not the holder's only retirement.
  const before = await signRetirement(new ethers.Wallet(ownerKey, chain.provider), address, { batchIds, amounts: [100_000n], beneficiary: 'Earlier', reason: '' });
  const normal = await post(before);
  t.equal(normal.statusCode, 201);
  t.equal(normal.json().alreadySubmitted, undefined);

  // The holder signs; a third party sees the request and sends it to the contract itself, first.
  const signed = await signRetirement(new ethers.Wallet(ownerKey, chain.provider), address, { batchIds, amounts: [1_500_000n], beneficiary: 'City of X', reason: 'scope 2' });
  const thief = Ledger.attach(address, wallet(thirdKey));
  const stolen = await thief.retireWithSig({
    holder: signed.holder,
    batchIds: signed.batchIds.map((x) => BigInt(x)),
    amounts: signed.amounts.map((x) => BigInt(x)),
    beneficiary: signed.beneficiary,
    reason: signed.reason,
    nonce: BigInt(signed.nonce),
    deadline: Number(signed.deadline),
    signature: signed.signature,
  });
  // And the holder retires directly with the same content, to make a look-alike record.
  await deployed.retire(new ethers.Wallet(ownerKey, chain.provider), batchIds, [1_500_000n], 'City of X', 'scope 2');
  const balance = await deployed.heldBy(owner);

  const r = await post(signed);
  t.equal(r.statusCode, 200, 'the request took place: not a refusal');
  t.same(r.json(), { txHash: stolen.txHash, id: stolen.id.toString(), alreadySubmitted: true }, "the retirement the signed request produced (the third party's transaction)");
  t.equal(await deployed.heldBy(owner), balance, 'nothing retired twice');
  const rec = (await deployed.retirements({ account: owner })).find((x) => x.id === stolen.id);
  t.match(rec, { amountGrams: 1_500_000n, parts: [{ batchId: String(batchIds[0]), amountGrams: 1_500_000n }], beneficiary: 'City of X', reason: 'scope 2' });

  // Before this change the gateway answered 422; a request that never took place still gets 422.
  const forged = await post({ ...signed, nonce: '99', signature: signed.signature });
  t.equal(forged.statusCode, 422, 'a request whose nonce is not used yet and whose signature does not match is refused');
});
