/**
 * Corrections end to end against a real CreditLedger on Hardhat's in-process chain: the platform's
 * records (SQLite, settled by the oracle on the in-memory ledger, then the same nets and roots put on
 * the CreditLedger, its windows in 2027 on the memory ledger's own clock), a void recorded on chain through
 * the CorrectionPort on the regulator's key, the corrections planned and sent on the oracle's key
 * exactly once, and verify against the chain's CorrectionSettled events.
 * W = 1 h, facility A: 3600 kg/h (3,600,000 g per window), grid 0.5366 kg/kWh.
 */
import t, { type Test } from 'tap';
import { startHardhatChain } from '../../contracts/client/chain.ts';
import { openCorrectionPort } from '../../contracts/client/corrections.ts';
import { keySigner } from '../../contracts/client/connect.ts';
import { Ledger } from '../../contracts/client/ledger.ts';
import { silentLogger } from '../../domain/logger.ts';
import type { Reading } from '../../domain/reading.ts';
import { openDatabase } from '../../store/sqlite/db.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import { buildOracle } from '../../oracle/oracle.ts';
import { buildCorrectionSender, buildCorrector } from '../../oracle/corrections.ts';
import { buildCorrectionAudit } from '../../oracle/correction-audit.ts';
import { MemoryLedger } from '../helpers/memory-ledger.ts';
import { buildGateway } from '../../gateway/app.ts';
import { createKeyStore } from '../../gateway/keys.ts';
import { F0, FEB, JAN, batchId, key, send, setClock, withFacilities } from './credit-helpers.ts';

const chain = await startHardhatChain({ accounts: 8 });
t.teardown(() => chain.close());
await setClock(chain);

const WMS = 3_600_000;
const T0 = Number(F0) * 1000;
const MIN = 60_000;

/**
 * The in-memory ledger the platform's records are settled on first, its clock on the test's windows
 * (F0 is in 2027: on the wall clock its windows would not have ended, and the ledger refuses those).
 */
function memoryLedger(): MemoryLedger {
  const ledger = new MemoryLedger();
  ledger.chain.now = () => T0 + 12 * WMS;
  return ledger;
}

/**
 * The ports of the regulator and the oracle on a fresh ledger, and the platform's file: facility A with
 * one meter reporting hourly; `rd` makes a reading of that meter.
 */
async function platform(t: Test) {
  const f = await withFacilities(chain);
  const regulatorPort = openCorrectionPort({ address: f.address, runner: chain.signers[1] });
  const oraclePort = openCorrectionPort({ address: f.address, runner: chain.signers[2] });
  const db = openDatabase(t.testdir());
  t.teardown(() => db.close());
  const stores = openSqliteStores(db, { clock: () => T0 });
  stores.registry.createFacility({ id: 'A', name: 'A', owner: f.accounts.ownerA, baselineKgPerHour: '3600', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162', createdAt: T0 });
  stores.registry.createDevice('A', 'meter-1', 'meter', { reportingIntervalSeconds: 3600 });
  const rd = (seq: number, ts: number, value: string): Reading => ({ facilityId: 'A', deviceId: 'meter-1', seq, ts, metric: 'electricity_import', value, unit: 'kWh', reset: false, receivedAt: ts });
  return { f, regulatorPort, oraclePort, db, stores, rd };
}

t.test('a void on chain, corrections sent once, applied and verified', async (t) => {
  // The platform: facility A, one meter (hourly reporting), settled windows 0..3.
  const { f, regulatorPort, oraclePort, db, stores, rd } = await platform(t);
  await stores.readings.commit([
    rd(1, T0 + 30 * MIN, '10000'),
    rd(2, T0 + WMS + 10 * MIN, '10500'),
    rd(3, T0 + WMS + 50 * MIN, '11000'),
    rd(4, T0 + 2 * WMS + 10 * MIN, '13000'),
    rd(5, T0 + 2 * WMS + 50 * MIN, '13500'),
    rd(6, T0 + 3 * WMS + 30 * MIN, '13600'),
  ]);
  const oracle = buildOracle({ db, readings: stores.readings, registry: stores.registry, ledger: memoryLedger(), logger: silentLogger, windowMs: WMS, graceMs: 1000 });
  t.teardown(() => oracle.close());
  await oracle.runOnce(T0 + 4 * WMS + 1000);
  const settled = oracle.listSettlements({ facilityId: 'A' });
  t.same(settled.map((s) => s.netGrams), ['0', '3063400', '2258500', '3546340']);
  // The same settlements on the CreditLedger (windows 4..11 net 0, so A is not lagging).
  const entries = Array.from({ length: 12 }, (_, i) => ({
    facility: key('A'),
    windowStart: F0 + BigInt(i) * 3600n,
    netGrams: i < 4 ? BigInt(settled[i].netGrams) : 0n,
    evidenceRoot: i < 4 ? settled[i].evidenceRoot : '0x' + '00'.repeat(31) + '01',
  }));
  await send(f.oracle.settleBatch(entries));
  const held = async () => ((await f.admin.balanceOf(f.accounts.ownerA, batchId('A', JAN))) as bigint) + ((await f.admin.balanceOf(f.accounts.ownerA, batchId('A', FEB))) as bigint);
  t.equal(await held(), 3063400n + 2258500n + 3546340n);

  // The regulator voids window 2's readings: on chain first, then here.
  const from = T0 + 2 * WMS;
  const to = T0 + 3 * WMS;
  const onChain = await regulatorPort.voidReadings('A', 'meter-1', from, to, 'meter found faulty');
  t.same({ id: onChain.id, settledBefore: onChain.settledBefore }, { id: 1, settledBefore: T0 + 12 * WMS });
  await t.rejects(oraclePort.voidReadings('A', 'meter-1', from, to, 'not a regulator'), { code: 'LEDGER_REVERTED' }, 'the oracle key cannot void');
  stores.corrections.addVoid({ facilityId: 'A', deviceId: 'meter-1', from, to, reason: 'meter found faulty', by: 'test', at: T0, chainVoidId: onChain.id, settledBefore: onChain.settledBefore });
  const corrector = buildCorrector({ readings: stores.readings, records: oracle.records, corrections: stores.corrections });
  const made = await corrector.plan('A');
  // Independent: w2 keeps no reading (incomplete, net 0); w3 walks 11000 -> 13600 = 2600 kWh.
  t.same(made.map((c) => [c.id, c.deltaGrams]), [
    [`A-${T0 + 2 * WMS}-c1`, '-2258500'],
    [`A-${T0 + 3 * WMS}-c1`, String(3_600_000 - 2600 * 536.6 - 3546340)],
  ]);

  const sender = buildCorrectionSender({ port: oraclePort, corrections: stores.corrections, logger: silentLogger });
  const r1 = await sender.send(WMS);
  t.match(r1, { sent: 2, confirmedFromChain: 0, waiting: [] });
  t.same([...(await f.admin.corrections(key('A'), F0 + 7200n))], [1n, -2258500n]);
  t.same([...(await f.admin.corrections(key('A'), F0 + 10800n))], [1n, -1341500n]);
  t.equal(await held(), 3063400n + 2258500n + 3546340n - 2258500n - 1341500n, 'the deltas were burned from the owner\'s holdings');
  const c2 = stores.corrections.getCorrection(made[0].id)!;
  t.match(c2, { state: 'confirmed', burnedGrams: '2258500', mintedGrams: '0', deficitGrams: '0' });
  t.ok(c2.txHash);

  // Sent once: nothing pending, nothing sent again.
  t.match(await sender.send(WMS), { sent: 0, confirmedFromChain: 0 });
  t.equal((await oraclePort.correctionsOf('A')).length, 2);

  // A correction the chain applied but whose confirmation was lost here is confirmed from the chain, not sent again.
  stores.corrections.addVoid({ facilityId: 'A', deviceId: 'meter-1', from: T0 + 3 * WMS, to: T0 + 4 * WMS, reason: 'second fault', by: 'test', at: T0, chainVoidId: (await regulatorPort.voidReadings('A', 'meter-1', T0 + 3 * WMS, T0 + 4 * WMS, 'second fault')).id, settledBefore: T0 + 12 * WMS });
  const [c3] = await corrector.plan('A');
  t.match(c3, { seq: 2, settlementId: `A-${T0 + 3 * WMS}`, netGrams: '0', deltaGrams: '-2204840' }, 'w3 loses its last reading: incomplete');
  await oraclePort.settleCorrections([{ facilityId: 'A', windowStart: c3.windowStart, seq: 2, voidId: 2, deltaGrams: BigInt(c3.deltaGrams), evidenceRoot: c3.evidenceRoot, reason: c3.reason }]);
  const r3 = await sender.send(WMS);
  t.match(r3, { sent: 0, confirmedFromChain: 1 });
  t.same([...(await f.admin.corrections(key('A'), F0 + 10800n))], [2n, -1341500n - 2204840n], 'applied once');
  t.equal(stores.corrections.getCorrection(c3.id)?.state, 'confirmed');

  // One correction the ledger refuses (above the window cap) does not hold back another.
  const fake = (w: number, delta: string) => ({
    id: `A-${T0 + w * WMS}-c1`, settlementId: `A-${T0 + w * WMS}`, seq: 1, facilityId: 'A', windowStart: T0 + w * WMS, windowEnd: T0 + (w + 1) * WMS,
    voidIds: [1], reason: 'test', complete: false, prevNetGrams: '0', netGrams: delta, deltaGrams: delta, actualKg: '0', evidenceRoot: '0x' + '0'.repeat(63) + '5', inputs: made[0].inputs,
  });
  stores.corrections.insertCorrections([fake(5, '4000000'), fake(6, '-1')], []);
  const r4 = await sender.send(WMS);
  t.match(r4, { sent: 1, refused: [{ id: fake(5, '0').id, reason: /CorrectionAboveCap/ }] });
  t.same([...(await f.admin.corrections(key('A'), F0 + 6n * 3600n))], [1n, -1n]);
  t.equal(stores.corrections.getCorrection(fake(5, '0').id)?.state, 'intent', 'the refused one stays an intent (retried, reported)');

  // Verify recomputes each correction from the store and compares it with the chain.
  const audit = buildCorrectionAudit({ corrections: stores.corrections, readings: stores.readings, port: oraclePort });
  for (const c of [...made, c3]) {
    const v = await audit.verify(c.id);
    t.equal(v.match, true, `${c.id} matches the chain`);
    t.equal(v.onChain.deltaGrams, c.deltaGrams);
  }
});

t.test('wired: the regulator voids over HTTP (on chain through the port), the oracle run sends, /verify matches', async (t) => {
  const { f, regulatorPort, oraclePort, db, stores, rd } = await platform(t);
  await stores.readings.commit([rd(1, T0 + 30 * MIN, '10000'), rd(2, T0 + WMS + 30 * MIN, '11000'), rd(3, T0 + 2 * WMS + 30 * MIN, '12000'), rd(4, T0 + 3 * WMS + 30 * MIN, '12100')]);
  const oracle = buildOracle({ db, readings: stores.readings, registry: stores.registry, ledger: memoryLedger(), logger: silentLogger, windowMs: WMS, graceMs: 1000, correctionPort: oraclePort });
  t.teardown(() => oracle.close());
  await oracle.runOnce(T0 + 4 * WMS + 1000);
  const settled = oracle.listSettlements({ facilityId: 'A' });
  await send(f.oracle.settleBatch(Array.from({ length: 12 }, (_, i) => ({ facility: key('A'), windowStart: F0 + BigInt(i) * 3600n, netGrams: i < 4 ? BigInt(settled[i].netGrams) : 0n, evidenceRoot: i < 4 ? settled[i].evidenceRoot : '0x' + '00'.repeat(31) + '01' }))));
  const app = await buildGateway({
    db,
    registry: stores.registry,
    readings: stores.readings,
    settlements: oracle,
    audit: oracle,
    corrections: {
      records: stores.corrections,
      corrector: buildCorrector({ readings: stores.readings, records: oracle.records, corrections: stores.corrections }),
      audit: buildCorrectionAudit({ corrections: stores.corrections, readings: stores.readings, port: oraclePort }),
      port: regulatorPort,
    },
    logger: silentLogger,
    options: { rateLimitMax: 1000, windowSeconds: 3600 },
  });
  t.teardown(() => app.close());
  const regulator = { authorization: `Bearer ${createKeyStore(db).create('regulator').key}` };
  const r = await app.inject({ method: 'POST', url: '/v1/devices/meter-1/voids', headers: regulator, payload: { from: T0 + 2 * WMS, to: new Date(T0 + 3 * WMS).toISOString(), reason: 'meter found faulty' } });
  t.equal(r.statusCode, 201);
  const out = r.json();
  t.equal(out.void.chainVoidId, 1, 'recorded on chain first');
  // w2 loses its only reading (incomplete, 0); w3 walks 11000 -> 12100 = 1100 kWh.
  t.same(out.corrections.map((c: { deltaGrams: string }) => c.deltaGrams), [String(-BigInt(settled[2].netGrams)), String(3_600_000n - 1100n * 5366n / 10n - BigInt(settled[3].netGrams))]);
  await oracle.runOnce(T0 + 4 * WMS + 2000);
  for (const c of out.corrections as { id: string }[]) {
    const got = (await app.inject({ method: 'GET', url: `/v1/corrections/${c.id}`, headers: regulator })).json();
    t.equal(got.state, 'confirmed', `${c.id} sent by the oracle run and confirmed`);
    const v = (await app.inject({ method: 'GET', url: `/v1/corrections/${c.id}/verify`, headers: regulator })).json();
    t.equal(v.match, true, `${c.id} verifies against the chain`);
  }
  t.equal((await oraclePort.correctionsOf('A')).length, 2);
});

t.test('a refused write leaves no nonce gap on the key: its next transaction is mined', async (t) => {
  const f = await withFacilities(chain);
  // The platform's signer: a key counting its nonces locally (compose.ts keySigner, as the gateway and the oracle use).
  const signer = keySigner(chain.privateKeys[1], chain.provider);
  const port = openCorrectionPort({ address: f.address, runner: signer });
  // Refused by the ledger: a blank reason (the regulator's), corrections without ORACLE_ROLE.
  await t.rejects(port.voidReadings('A', 'meter-1', T0, T0 + WMS, ''), { code: 'LEDGER_REVERTED' });
  await t.rejects(
    port.settleCorrections([{ facilityId: 'A', windowStart: T0, seq: 1, voidId: 1, deltaGrams: -1n, evidenceRoot: '0x' + '00'.repeat(31) + '01', reason: 'x' }]),
    { code: 'LEDGER_REVERTED' },
  );
  // The key's next transaction goes out with the next unused nonce and is mined (a counted nonce for
  // a transaction never sent would leave it queued behind the gap, never mined).
  const mined = await Promise.race([
    port.voidReadings('A', 'meter-1', T0, T0 + WMS, 'meter found faulty'),
    new Promise<'stuck'>((resolve) => {
      const timer = setTimeout(() => resolve('stuck'), 30_000);
      timer.unref();
    }),
  ]);
  t.not(mined, 'stuck', 'the void after the refusals was mined');
  t.match(mined, { id: Number, txHash: /^0x[0-9a-f]{64}$/ });
});

t.test("a read-only ledger's correction port refuses writes before the chain (CHAIN_SIGNER_MISSING), and still reads", async (t) => {
  const f = await withFacilities(chain);
  const port = Ledger.readOnlyAt(f.address, chain.provider).corrections();
  await t.rejects(port.voidReadings('A', 'meter-1', T0, T0 + WMS, 'meter found faulty'), { code: 'CHAIN_SIGNER_MISSING', statusCode: 503 }, 'a gateway without GATEWAY_PRIVATE_KEY cannot void');
  await t.rejects(
    port.settleCorrections([{ facilityId: 'A', windowStart: T0, seq: 1, voidId: 1, deltaGrams: -1n, evidenceRoot: '0x' + '00'.repeat(31) + '01', reason: 'x' }]),
    { code: 'CHAIN_SIGNER_MISSING' },
  );
  t.same(await port.correctionCount('A', T0), { count: 0, cumulativeDeltaGrams: 0n }, 'reads work');
  t.same(await port.correctionsOf('A'), []);
});
