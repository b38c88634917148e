/**
 * The standalone gateway never borrows the oracle's key (issue 10 item 9): without GATEWAY_PRIVATE_KEY
 * it reads the chain (balances) and answers a relayed retirement with 503 CHAIN_SIGNER_MISSING, and
 * the oracle's account sends nothing; with its own key it relays with that key. Real anvil, the
 * gateway service as `npm run start:gateway` composes it, over real HTTP.
 */
import t from 'tap';
import { ethers } from 'ethers';
import { startAnvil } from '../../contracts/client/chain.ts';
import { Ledger } from '../../contracts/client/ledger.ts';
import { loadConfig } from '../../domain/config.ts';
import { silentLogger } from '../../domain/logger.ts';
import { startGatewayService } from '../../gateway/main.ts';
import { missing, requireBinary } from '../helpers/require.ts';

const ADMIN = 'admin-key-for-the-signer-test';

if (requireBinary(t, missing.anvil())) {
  t.test('without GATEWAY_PRIVATE_KEY: reads work, relays answer 503, the oracle key is untouched', async (t) => {
    const anvil = await startAnvil();
    t.teardown(() => anvil.close());
    const ledger = await Ledger.deploy(new ethers.NonceManager(new ethers.Wallet(anvil.privateKeys[0], anvil.provider)), { windowSeconds: 3600, confirmTimeoutMs: 20_000 });
    const holder = new ethers.Wallet(anvil.privateKeys[5], anvil.provider);
    // The last hour that has ended: the owner's credits are frozen when its settlement lags.
    const first = Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3_600_000;
    await ledger.registerFacility('F', holder.address, '3600', first);
    await ledger.settleBatch([{ facilityId: 'F', windowStart: first, windowEnd: first + 3_600_000, netGrams: 5_000n, evidenceRoot: ethers.id('r') }]);
    const [batch] = await ledger.batches('F');
    const oracleKey = anvil.privateKeys[1];
    const oracleAddress = ethers.computeAddress(oracleKey);
    const gatewayKey = anvil.privateKeys[2];
    const env = (extra: Record<string, string>) =>
      loadConfig({ CHAIN_RPC_URL: anvil.rpcUrl!, CONTRACT_ADDRESS: ledger.address, ORACLE_PRIVATE_KEY: oracleKey, ADMIN_API_KEY: ADMIN, DATA_DIR: t.testdir(), ...extra }, { httpPort: 0 });
    const signed = await ledger.signRetirement(holder, [BigInt(batch.id)], [1_000n], 'City', 'offset', Math.floor(Date.now() / 1000) + 3600);
    const request = {
      holder: signed.holder,
      batchIds: [batch.id],
      amounts: ['1000'],
      beneficiary: signed.beneficiary,
      reason: signed.reason,
      nonce: signed.nonce.toString(),
      deadline: String(signed.deadline),
      signature: signed.signature,
    };
    const post = (url: string) =>
      fetch(`${url}/v1/retirements`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify(request) });

    const readOnly = await startGatewayService(env({}), { logger: silentLogger });
    t.teardown(() => readOnly.close());
    const auth = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };
    const created = await fetch(`${readOnly.url}/v1/facilities`, { method: 'POST', headers: auth, body: JSON.stringify({ id: 'F', name: 'F', owner: holder.address, baselineKgPerHour: '3600' }) });
    t.equal(created.status, 201);
    t.match(await created.json(), { chain: { synced: false, message: /CHAIN_SIGNER_MISSING|chain signer/ } }, 'no key: the registration push is not attempted with another key');
    const bal = await fetch(`${readOnly.url}/v1/facilities/F/balance`, { headers: { authorization: `Bearer ${ADMIN}` } });
    t.equal(bal.status, 200, 'chain reads work without a key');
    t.match(await bal.json(), { balanceGrams: '5000' });
    const refused = await post(readOnly.url);
    t.equal(refused.status, 503);
    t.match(await refused.json(), { error: { code: 'CHAIN_SIGNER_MISSING', message: /GATEWAY_PRIVATE_KEY/ } });
    t.equal(await anvil.provider.getTransactionCount(oracleAddress), 0, 'the oracle key sent nothing');
    await readOnly.close();

    const relaying = await startGatewayService(env({ GATEWAY_PRIVATE_KEY: gatewayKey }), { logger: silentLogger });
    t.teardown(() => relaying.close());
    const ok = await post(relaying.url);
    t.equal(ok.status, 201, 'relayed with the gateway key');
    const { txHash } = (await ok.json()) as { txHash: string };
    t.equal((await anvil.provider.getTransaction(txHash))?.from, ethers.computeAddress(gatewayKey), 'signed by the gateway key');
    t.equal(await anvil.provider.getTransactionCount(oracleAddress), 0, 'the oracle key still sent nothing');
    t.equal(await ledger.heldBy(holder.address), 4_000n);
  });
}
