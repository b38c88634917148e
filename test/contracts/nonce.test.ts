/**
 * A send that fails below the signer (at the JSON-RPC level, after ethers' NonceManager counted a
 * nonce for it) must not leave a nonce gap (issue 10 item 9): the ledger client resets the count,
 * the next send asks the chain for its pending nonce and is mined. Real anvil behind a real HTTP
 * proxy that refuses or loses eth_sendRawTransaction.
 */
import t from 'tap';
import { ethers } from 'ethers';
import { anvilBinary, startAnvil } from '../../contracts/client/chain.ts';
import { keySigner, rpcProvider } from '../../contracts/client/connect.ts';
import { Ledger } from '../../contracts/client/ledger.ts';
import { startRpcProxy } from '../helpers/rpc-proxy.ts';
import { T0, win } from './helpers.ts';

if (!anvilBinary()) {
  if (process.env.CI) t.fail('anvil binary not found (@foundry-rs/anvil): required under CI');
  else t.plan(0, 'anvil binary not found');
} else {
  t.test('a refused or lost raw transaction leaves no nonce gap', async (t) => {
    const anvil = await startAnvil();
    t.teardown(() => anvil.close());
    const proxy = await startRpcProxy(anvil.rpcUrl!);
    t.teardown(() => proxy.close());
    const provider = rpcProvider(proxy.url, { chainId: 31337, pollingInterval: 100, batchMaxCount: 1 });
    t.teardown(() => provider.destroy());
    const signer = keySigner(anvil.privateKeys[0], provider);
    // A stalled transaction (the bug) fails this test after 20 s instead of hanging it.
    const ledger = await Ledger.deploy(signer, { windowSeconds: 3600, confirmTimeoutMs: 20_000 });
    const owner = ethers.computeAddress(anvil.privateKeys[3]);
    await ledger.registerFacility('A', owner, '3600', T0);
    await ledger.settleBatch([win('A', 0, 10n)]);

    // 1. The node never sees the transaction: the nonce manager had counted it.
    proxy.failNext('eth_sendRawTransaction', 'refuse');
    await t.rejects(ledger.settleBatch([win('A', 1, 11n)]), /injected fault/);
    const after = await ledger.settleBatch([win('A', 1, 11n)]);
    t.same(after.results.map((r) => r.status), ['settled'], 'the next send is mined (no gap)');

    // 2. The node mines it, but the answer is lost: the retry finds the window settled.
    proxy.failNext('eth_sendRawTransaction', 'loseAnswer');
    await t.rejects(ledger.settleBatch([win('A', 2, 12n)]));
    const retry = await ledger.settleBatch([win('A', 2, 12n), win('A', 3, 13n)]);
    t.same(retry.results.map((r) => r.status), ['skipped', 'settled'], 'the lost one landed, the next is mined after it');

    // 3. Several refusals in a row.
    proxy.failNext('eth_sendRawTransaction', 'refuse', 3);
    for (let i = 0; i < 3; i++) await t.rejects(ledger.settleBatch([win('A', 4, 14n)]));
    t.same((await ledger.settleBatch([win('A', 4, 14n)])).results.map((r) => r.status), ['settled']);
    t.equal((await ledger.facility('A')).mintedGrams, 10n + 11n + 12n + 13n + 14n, 'each window counted once');
    t.equal(await anvil.provider.getTransactionCount(await signer.getAddress(), 'pending'), await anvil.provider.getTransactionCount(await signer.getAddress(), 'latest'), 'nothing stuck in the pool');
  });
}
