/**
 * The registry refuses up front what the ledger would refuse (issue 10 item 6), a regulator corrects
 * or removes a facility that never settled, and a blocked facility shows `settlementStatus: blocked`
 * with its reason. Every real part: CarbonLedger on Hardhat's in-process chain, the SQLite registry,
 * the oracle, the gateway over real HTTP (fastify listening on a port).
 */
import t from 'tap';
import { ethers } from 'ethers';
import { startHardhatChain } from '../../contracts/client/chain.ts';
import { Ledger } from '../../contracts/client/ledger.ts';
import { buildOracle } from '../../oracle/oracle.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import { openDatabase } from '../../store/sqlite/db.ts';
import { silentLogger } from '../../domain/logger.ts';
import { buildGateway } from '../../gateway/app.ts';
import { createKeyStore } from '../../gateway/keys.ts';
import { tmpDir } from '../helpers/tmp.ts';

const W = 10_000;

t.test('registration validation, owner correction, removal, blocked status', async (t) => {
  // The chain's clock ahead of ours: the oracle runs at times up to 5 windows ahead below, and the
  // ledger settles only windows that have ended by its block time.
  const chain = await startHardhatChain({ accounts: 8, initialDate: new Date(Date.now() + 10 * W) });
  t.teardown(() => chain.close());
  const ledger = await Ledger.deploy(chain.signers[0], { windowSeconds: W / 1000 });
  const db = openDatabase(tmpDir(t, 'mrv-gw-'));
  t.teardown(() => db.close());
  let now = Date.now();
  const { readings, registry } = openSqliteStores(db, { clock: () => now });
  const oracle = buildOracle({ db, readings, registry, ledger, logger: silentLogger, windowMs: W, graceMs: 1_000, lease: false });
  t.teardown(() => oracle.close());
  const app = await buildGateway({ db, registry, readings, ledger, settlements: oracle, audit: oracle, logger: silentLogger, options: { windowSeconds: W / 1000, chainCacheMs: 0 } });
  t.teardown(() => app.close());
  const base = await app.listen({ port: 0, host: '127.0.0.1' });
  const key = createKeyStore(db).create('regulator').key;
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(base + path, { method, headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  };
  const a1 = chain.signers[3].address; // EIP-55 form
  const a2 = chain.signers[4].address;
  const a3 = chain.signers[5].address;
  // a1 with the case of its first letter flipped: mixed case, wrong checksum.
  const flipAt = [...a1.slice(2)].findIndex((c) => /[a-fA-F]/.test(c));
  const badChecksum = a1.slice(0, 2 + flipAt) + (a1[2 + flipAt] === a1[2 + flipAt].toLowerCase() ? a1[2 + flipAt].toUpperCase() : a1[2 + flipAt].toLowerCase()) + a1.slice(3 + flipAt);
  t.not(badChecksum, a1);
  t.equal(badChecksum.toLowerCase(), a1.toLowerCase());
  const body = (id: string, owner: string, baselineKgPerHour: string | number = '3600') => ({ id, name: id, owner, baselineKgPerHour });

  // 1. A mixed-case owner with a bad checksum: 400 naming it; nothing registered anywhere.
  const bad = await call('POST', '/v1/facilities', body('F1', badChecksum));
  t.equal(bad.status, 400);
  t.match(bad.body, { error: { code: 'VALIDATION_FAILED', message: /EIP-55 checksum/ } });
  t.equal(registry.getFacility('F1'), undefined);
  t.equal((await ledger.facility('F1')).registered, false);
  t.match((await call('POST', '/v1/facilities', body('F1', ethers.ZeroAddress))).body, { error: { message: /zero address/ } });
  // One case: accepted and normalised to EIP-55, registered on chain.
  const ok = await call('POST', '/v1/facilities', body('F1', a1.toLowerCase()));
  t.equal(ok.status, 201);
  t.match(ok.body, { owner: a1, chain: { synced: true }, settlementStatus: 'ok' });
  t.equal((await ledger.facility('F1')).owner, a1);

  // 2. A second facility for the same owner (an organisation may own several): registered on chain too.
  const second = await call('POST', '/v1/facilities', body('F1b', a1.toUpperCase().replace('0X', '0x')));
  t.equal(second.status, 201);
  t.match(second.body, { owner: a1, chain: { synced: true } });
  t.equal((await ledger.facility('F1b')).owner, a1);

  // 3. A baseline with more decimals than the ledger holds (mg/h): 400, for a number or a string.
  for (const b of ['0.0000001', 1.1234567]) {
    const r = await call('POST', '/v1/facilities', body('F2', a2, b));
    t.equal(r.status, 400, `baseline ${b}`);
    t.match(r.body, { error: { message: /more than 6 decimals/ } });
  }
  t.equal((await call('PATCH', '/v1/facilities/F1', { baselineKgPerHour: '1.0000001' })).status, 400);
  t.match((await call('POST', '/v1/facilities', body('F2', a2, '1' + '0'.repeat(52)))).body, { error: { message: /too large/ } });
  t.equal((await call('POST', '/v1/facilities', body('F2', a2, '0.000001'))).status, 201, '6 decimals are fine');

  // 4. A wrong owner corrected before any settlement: registry and chain.
  const fixed = await call('PATCH', '/v1/facilities/F2', { owner: a3 });
  t.equal(fixed.status, 200);
  t.match(fixed.body, { owner: a3, chain: { synced: true } });
  t.equal((await ledger.facility('F2')).owner, a3);
  t.match(await call('PATCH', '/v1/facilities/F2', { owner: a1 }), { status: 200, body: { owner: a1, chain: { synced: true } } }, 'to an owner of another facility');
  t.equal((await call('PATCH', '/v1/facilities/F2', { owner: a3 })).status, 200);
  t.equal((await call('PATCH', '/v1/facilities/F2', { owner: badChecksum })).status, 400);

  // 5. Removed before any settlement: registry, devices and chain; the id and owner are free again.
  await call('POST', '/v1/facilities/F2/devices', { deviceId: 'F2-m' });
  t.equal((await call('DELETE', '/v1/facilities/F2')).status, 204);
  t.equal(registry.getFacility('F2'), undefined);
  t.equal(registry.getDevice('F2-m'), undefined);
  t.equal((await ledger.facility('F2')).registered, false);
  t.equal((await call('GET', '/v1/facilities/F2')).status, 404);
  t.equal((await call('DELETE', '/v1/facilities/F2')).status, 404);
  t.equal((await call('POST', '/v1/facilities', body('F2', a3))).status, 201, 'same id, same owner: registered again');

  // 6. Once F1 settled, its owner is fixed and it cannot be removed (409).
  now = Date.now() + 3 * W;
  const run = await oracle.runOnce(now);
  t.ok(run.settled >= 1, `F1 settled (${run.settled})`);
  t.match(await call('PATCH', '/v1/facilities/F1', { owner: a2 }), { status: 409, body: { error: { code: 'FACILITY_SETTLED', message: /settled/ } } });
  t.match(await call('DELETE', '/v1/facilities/F1'), { status: 409, body: { error: { code: 'FACILITY_SETTLED' } } });
  t.equal(registry.getFacility('F1')?.owner, a1);

  // 7. A facility whose settlement the chain refuses: blocked, with the reason, in the API.
  await ledger.revokeRole('oracle', await chain.signers[0].getAddress());
  const blocked = await oracle.runOnce(now + 2 * W);
  t.ok(blocked.blocked.length >= 1);
  const view = await call('GET', '/v1/facilities/F1');
  t.match(view.body, { settlementStatus: 'blocked', settlementBlocked: { reason: /not allowed: account 0x[0-9a-fA-F]{40} lacks the oracle \(ORACLE_ROLE\) role this call needs.*\[AccessControlUnauthorizedAccount\(/, attempts: 1, since: /Z$/, nextAttemptAt: /Z$/ } });
  const list = await call('GET', '/v1/facilities');
  t.match((list.body.items as { id: string }[]).find((f) => f.id === 'F1'), { settlementStatus: 'blocked' });
});
