/**
 * Roles under `npm start` (issue 10 item 7): the stack composed by main.ts on a real anvil, with the
 * gateway's registry pushes failing (its key loses REGULATOR_ROLE, revoked with the admin key kept
 * under DATA_DIR). A facility registered, then suspended and given a new baseline through the gateway
 * is answered 201/200 with the chain not synced, and later oracle runs put all of it on chain: the
 * oracle's key holds what its pushes need (REGULATOR_ROLE besides ORACLE_ROLE).
 */
import fs from 'node:fs';
import t from 'tap';
import { ethers } from 'ethers';
import { Ledger } from '../../contracts/client/ledger.ts';
import { ADMIN_KEY, start, tempDataDir } from './helpers.ts';
import { eventually } from '../helpers/eventually.ts';

async function send(url: string, method: string, route: string, body: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}${route}`, { method, headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}

t.test('registry pushes the gateway could not make reach the chain through the oracle', async (t) => {
  const stack = await start(t, tempDataDir(t));
  t.ok(stack.localChain, 'the local chain of npm start');
  const { accounts, files } = stack.localChain!;
  const provider = new ethers.JsonRpcProvider(stack.rpcUrl, undefined, { staticNetwork: true, cacheTimeout: -1 });
  t.teardown(() => provider.destroy());
  const admin = Ledger.attach(stack.contractAddress, new ethers.Wallet(fs.readFileSync(files.keys.admin, 'utf8').trim(), provider));
  t.ok(await admin.hasRole('regulator', accounts.oracle), "the oracle's key holds REGULATOR_ROLE");
  t.ok(await admin.hasRole('oracle', accounts.oracle), "the oracle's key holds ORACLE_ROLE");

  // The gateway's pushes fail from now on.
  await admin.revokeRole('regulator', accounts.gateway);

  const owner = ethers.Wallet.createRandom().address;
  const created = await send(stack.httpUrl, 'POST', '/v1/facilities', { id: 'late-reg', name: 'Late', owner, baselineKgPerHour: '3600' });
  t.equal(created.status, 201, 'the registry accepts the facility');
  t.match(JSON.stringify(created.body), /not confirmed on-chain yet/, 'and says the chain has not got it yet');

  const chain = stack.ledgers.oracle;
  await eventually('the oracle to register the facility on chain', async () => (await chain.facility('late-reg')).registered);
  const f = await chain.facility('late-reg');
  t.equal(f.owner, owner, 'registered with the owner from the registry');

  const suspended = await send(stack.httpUrl, 'PATCH', '/v1/facilities/late-reg', { status: 'suspended' });
  t.equal(suspended.status, 200);
  await eventually('the oracle to push the suspension', async () => (await chain.facility('late-reg')).suspended === true);
  t.pass('suspension on chain although the gateway could not push it');

  const rebased = await send(stack.httpUrl, 'PATCH', '/v1/facilities/late-reg', { baselineKgPerHour: '1800' });
  t.equal(rebased.status, 200);
  await eventually('the oracle to push the baseline', async () => (await chain.facility('late-reg')).baselineKgPerHour === '1800');
  t.pass('baseline on chain although the gateway could not push it');
});
