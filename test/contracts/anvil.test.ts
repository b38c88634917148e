/**
 * The ledger client against a real anvil process (the chain `npm start` runs), over HTTP JSON-RPC with
 * a local-key Wallet signer: deploy, register, settle, custom errors decoded from the RPC error, and
 * the state file carrying the chain (and the settlement) across a restart.
 * Skips when the anvil binary is absent, except under CI where that is a failure.
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { ethers } from 'ethers';
import { anvilBinary, startAnvil } from '../../contracts/client/chain.ts';
import { keySigner } from '../../contracts/client/connect.ts';
import { decodeLedgerError } from '../../contracts/client/errors.ts';
import { Ledger } from '../../contracts/client/ledger.ts';
import { KEY_A, S0, T0, W, win } from './helpers.ts';

const CI = Boolean(process.env.CI);

if (!anvilBinary()) {
  if (CI) t.fail('anvil binary not found (@foundry-rs/anvil): required under CI');
  else t.plan(0, 'anvil binary not found (@foundry-rs/anvil not installed for this platform)');
} else {
  t.test('settles on anvil and survives a restart through the state file', async (t) => {
    const dir = t.testdir();
    const stateFile = path.join(dir, 'chain', 'anvil-state.json');

    const first = await startAnvil({ stateFile });
    t.teardown(() => first.close());
    t.match(first.rpcUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
    t.equal(await first.provider.getBlockNumber(), 0);
    // A NonceManager, as a long-running oracle would use: the client estimates before sending, so a
    // reverted call must not leave a nonce gap that stalls every later transaction.
    const wallet = keySigner(first.privateKeys[0], first.provider);
    const owner = ethers.computeAddress(first.privateKeys[3]);
    const ledger = await Ledger.deploy(wallet, { windowSeconds: W / 1000, confirmTimeoutMs: 30_000 });
    await ledger.registerFacility('A', owner, '3600', T0);
    const res = await ledger.settleBatch([win('A', 0, 7317n)]);
    t.same(res.results.map((r) => [r.status, r.mintedGrams]), [['settled', 7317n]]);
    t.ok(res.gasUsed > 0n);

    // The duplicate, as the oracle would meet it over JSON-RPC.
    const err = await ledger.contract.settle.staticCall({ facility: KEY_A, windowStart: S0, netGrams: 1n, evidenceRoot: ethers.ZeroHash }).catch((e: unknown) => e);
    t.same(decodeLedgerError(err), { name: 'WindowAlreadySettled', args: [KEY_A, S0] });
    const gap = await ledger.settleBatch([win('A', 5, 1n)]).catch((e: unknown) => e);
    t.same(decodeLedgerError(gap), { name: 'WindowOutOfOrder', args: [KEY_A, S0 + 3600n, S0 + 5n * 3600n] });
    const retry = await ledger.settleBatch([win('A', 0, 7317n), win('A', 1, 10n)]);
    t.same(retry.results.map((r) => r.status), ['skipped', 'settled'], 'the next transaction after a revert is mined (no nonce gap)');

    await first.close();
    t.ok(fs.statSync(stateFile).size > 0, 'state dumped on close');

    const second = await startAnvil({ stateFile });
    t.teardown(() => second.close());
    const again = Ledger.attach(ledger.address, new ethers.Wallet(second.privateKeys[0], second.provider), { confirmTimeoutMs: 30_000 });
    t.match(await again.facility('A'), { registered: true, owner, nextWindowStart: T0 + 2 * W, mintedGrams: 7327n });
    t.equal(await again.heldBy(owner), 7327n);
    const settled = await again.settlements({ facilityId: 'A' });
    t.same(settled.map((s) => [s.facilityId, s.windowStart, s.mintedGrams]), [
      ['A', T0, 7317n],
      ['A', T0 + W, 10n],
    ], 'the WindowSettled logs survive the restart too');
    const next = await again.settleBatch([win('A', 2, -27n)]);
    t.same(next.results.map((r) => [r.status, r.burnedGrams]), [['settled', 27n]]);
  });

  t.test('state saved after every mined transaction survives a crash (SIGKILL, no dump on exit)', async (t) => {
    const stateFile = path.join(t.testdir(), 'anvil-state.json');
    const first = await startAnvil({ stateFile, stateIntervalSeconds: 3600 });
    t.teardown(() => first.close());
    const signer = keySigner(first.privateKeys[0], first.provider);
    const ledger = await Ledger.deploy(signer, { windowSeconds: W / 1000, confirmTimeoutMs: 30_000, afterMined: first.saveState });
    const owner = ethers.computeAddress(first.privateKeys[3]);
    await ledger.registerFacility('A', owner, '3600', T0);
    await ledger.settleBatch([win('A', 0, 7317n)]);
    // A transaction sent without the hook: the crash loses it (what a 5 s state interval risked).
    await Ledger.attach(ledger.address, signer, { startBlock: ledger.startBlock }).settleBatch([win('A', 1, 1n)]);
    await first.kill!();
    const second = await startAnvil({ stateFile, stateIntervalSeconds: 3600 });
    t.teardown(() => second.close());
    const again = Ledger.attach(ledger.address, new ethers.Wallet(second.privateKeys[0], second.provider), { startBlock: ledger.startBlock });
    t.match(await again.facility('A'), { registered: true, owner, nextWindowStart: T0 + W, mintedGrams: 7317n }, 'the settlement saved after it was mined survived');
    t.same((await again.settlements({ facilityId: 'A' })).map((s) => s.windowStart), [T0]);
  });

  t.test('startAnvil reports a bad start instead of hanging', async (t) => {
    const dir = t.testdir();
    const stateFile = path.join(dir, 'state.json');
    fs.writeFileSync(stateFile, 'not json');
    await t.rejects(startAnvil({ stateFile, startTimeoutMs: 15_000 }), /anvil exited|did not start/);
  });
}
