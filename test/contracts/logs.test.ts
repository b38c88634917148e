/**
 * Log queries of the ledger client (issue 10 item 10): by the indexed facility topic, from the
 * ledger's start block (CHAIN_START_BLOCK), in bounded eth_getLogs ranges; a query that spans many
 * ranges returns every event once, in order. Hardhat's in-process chain, every request observed.
 */
import t from 'tap';
import { ethers } from 'ethers';
import { startHardhatChain } from '../../contracts/client/chain.ts';
import { Ledger } from '../../contracts/client/ledger.ts';
import { facilityKey } from '../../contracts/client/units.ts';
import { T0, W, win } from './helpers.ts';

t.test('settlements and settlementAt span several bounded ranges from the start block', async (t) => {
  const chain = await startHardhatChain({ accounts: 6 });
  t.teardown(() => chain.close());
  // Blocks before the ledger exists: nothing may be asked of them.
  for (let i = 0; i < 3; i++) await (await chain.signers[5].sendTransaction({ to: chain.signers[4].address, value: 1n })).wait();
  const deployed = await Ledger.deploy(chain.signers[0], { windowSeconds: W / 1000 });
  t.ok(deployed.startBlock >= 4, `the deploying client starts its log queries at the deployment block (${deployed.startBlock})`);
  const ledger = Ledger.attach(deployed.address, chain.signers[0], { startBlock: deployed.startBlock, logRange: 3 });
  await ledger.registerFacility('A', chain.signers[2].address, '3600', T0);
  await ledger.registerFacility('B', chain.signers[3].address, '3600', T0);
  // One block per settlement, A and B interleaved: 8 settlements of A over ~16 blocks.
  for (let k = 0; k < 8; k++) {
    await ledger.settleBatch([win('A', k, BigInt(100 + k))]);
    await ledger.settleBatch([win('B', k, BigInt(200 + k))]);
  }
  const head = await chain.provider.getBlockNumber();

  const requests: { fromBlock: number; toBlock: number; topics: unknown[] }[] = [];
  chain.provider.on('debug', (e: { action: string; payload?: { method: string; params: { fromBlock: string; toBlock: string; topics: unknown[] }[] } }) => {
    if (e.action === 'sendEip1193Request' && e.payload?.method === 'eth_getLogs') {
      const p = e.payload.params[0];
      requests.push({ fromBlock: Number(p.fromBlock), toBlock: Number(p.toBlock), topics: p.topics });
    }
  });

  const a = await ledger.settlements({ facilityId: 'A' });
  t.same(a.map((s) => [s.windowStart, s.netGrams]), Array.from({ length: 8 }, (_, k) => [T0 + k * W, BigInt(100 + k)]), 'every settlement of A once, in order');
  t.ok(requests.length >= Math.ceil((head - deployed.startBlock + 1) / 3), `${requests.length} requests of at most 3 blocks`);
  for (const r of requests) {
    t.ok(r.toBlock - r.fromBlock < 3 && r.fromBlock >= deployed.startBlock && r.toBlock <= head, `range ${r.fromBlock}..${r.toBlock}`);
    t.equal((r.topics[1] as string).toLowerCase(), facilityKey('A'), 'filtered by the indexed facility topic');
  }
  const covered = new Set(requests.flatMap((r) => Array.from({ length: r.toBlock - r.fromBlock + 1 }, (_, i) => r.fromBlock + i)));
  t.equal(covered.size, head - deployed.startBlock + 1, 'the ranges cover start block..head without gaps');

  requests.length = 0;
  const latest = await ledger.settlementAt('A', T0 + 7 * W);
  t.match(latest, { facilityId: 'A', windowStart: T0 + 7 * W, netGrams: 107n });
  t.equal(requests.length, 1, 'a recent window is found in the newest range, in one request');
  const first = await ledger.settlementAt('A', T0);
  t.match(first, { windowStart: T0, netGrams: 100n }, 'an old window is found further back');
  t.equal(await ledger.settlementAt('A', T0 + 8 * W), undefined, 'an unsettled window is not found');
  t.ok(requests.every((r) => r.fromBlock >= deployed.startBlock), 'never below the start block');

  // A client whose start block is after the settlements sees none of them (no query from block 0).
  const late = Ledger.attach(deployed.address, chain.signers[0], { startBlock: head + 1 });
  t.same(await late.settlements({ facilityId: 'A' }), []);
  t.equal(await late.settlementAt('A', T0), undefined);
  t.same(await Ledger.attach(deployed.address, chain.signers[0]).settlements({ facilityId: 'B', windowStart: T0 + 3 * W }).then((x) => x.map((s) => s.netGrams)), [203n]);
  void ethers;
});
