/**
 * The contract of the stores beside the readings, run against every backend (like
 * reading-store-contract.ts for the ReadingStore): the FacilityRegistry with its rejections log, the
 * API key table, the oracle's records (intents, confirmation, cursors, late flags, rollback, lease)
 * and status, the voids and corrections. Writes are awaited (SQLite answers at once, PostgreSQL through promises); errors are
 * checked with t.rejects, which takes a sync throw from an async function the same way.
 */
import type { Test } from 'tap';
import type { Rejection } from '../../domain/reading.ts';
import { verifyDeviceSecret } from '../../store/secrets.ts';
import { generateSecret, legacyScryptRecord } from '../../store/secrets.ts';
import type { ApiKeyTable, CorrectionRecords, FacilityRegistry, NewCorrection, NewIntent, OracleRecords, OracleStatus, RecordedInputs } from '../../store/types.ts';

export interface ContractStores {
  registry: FacilityRegistry;
  apiKeys: ApiKeyTable;
  records: OracleRecords;
  status: OracleStatus;
  corrections: CorrectionRecords;
  /** Sets the stores' clock (epoch ms). */
  setClock(ms: number): void;
}

/** Opens fresh, empty stores for one test (closed by the opener's teardown); the clock starts at T0. */
export type OpenContractStores = (t: Test) => Promise<ContractStores>;

export const T0 = Date.parse('2026-11-22T00:00:00Z');
const H = 3600_000;
const OWNER = '0x' + 'ab'.repeat(20);
const facility = (id = 'f1') => ({ id, name: 'Plant ' + id, owner: OWNER, baselineKgPerHour: '3600.0', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162' });

function inputs(devices: { deviceId: string; maxSeq: number; prevBefore?: number }[], lateKeys: string[] = []): RecordedInputs {
  return {
    methodologyVersion: 'test',
    baselineKgPerHour: '3600',
    factors: {} as RecordedInputs['factors'],
    devices: devices.map((d) => ({
      deviceId: d.deviceId,
      mark: { maxSeq: d.maxSeq, late: 0 },
      ...(d.prevBefore !== undefined ? { prev: { mark: { maxSeq: d.maxSeq - 10, late: 0 }, before: d.prevBefore } } : {}),
      startCursors: [],
      endCursors: [{ metric: 'electricity_import', seq: d.maxSeq, value: String(d.maxSeq) }] as never,
      reportingIntervalSeconds: 60,
      intervalDeclared: false,
      coverage: { after: false, between: 0, interval: false },
      inCoverage: true,
      status: 'ok' as never,
      consumedCount: 1,
    })),
    lateKeys,
    totals: {} as RecordedInputs['totals'],
    baselineKg: '3600',
    rawNetGrams: '0',
  };
}

function intent(facilityId: string, windowStart: number, root: string, devices: { deviceId: string; maxSeq: number; prevBefore?: number }[], lateKeys: string[] = []): NewIntent {
  return {
    id: `${facilityId}-${windowStart}`,
    facilityId,
    windowStart,
    windowEnd: windowStart + H,
    complete: true,
    netGrams: 1000n,
    actualKg: '2600',
    evidenceRoot: root,
    inputs: inputs(devices, lateKeys),
  };
}

const amounts = { txHash: '0xabc', mintedGrams: 1000n, burnedGrams: 0n, deficitGrams: 0n };

function correction(settlementId: string, seq: number, windowStart: number, voidIds: number[], netGrams: string, prevNetGrams: string): NewCorrection {
  return {
    id: `${settlementId}-c${seq}`,
    settlementId,
    seq,
    facilityId: 'f1',
    windowStart,
    windowEnd: windowStart + H,
    voidIds,
    reason: 'meter fault',
    complete: true,
    prevNetGrams,
    netGrams,
    deltaGrams: (BigInt(netGrams) - BigInt(prevNetGrams)).toString(),
    actualKg: '2700',
    evidenceRoot: `0x${'c'.repeat(63)}${seq}`,
    inputs: inputs([{ deviceId: 'd1', maxSeq: 10 }]),
  };
}

export function registryContract(t: Test, open: OpenContractStores): void {
  t.test('facilities: create, conflict, validation, status, list, delete', async (t) => {
    const { registry } = await open(t);
    const f = await registry.createFacility({ ...facility(), createdAt: T0 });
    t.same(f, { ...facility(), baselineKgPerHour: '3600', status: 'active', createdAt: T0 }, 'decimals stored canonical');
    t.same(registry.getFacility('f1'), f, 'read back');
    await t.rejects(async () => registry.createFacility(facility()), { code: 'FACILITY_EXISTS', statusCode: 409 });
    await t.rejects(async () => registry.createFacility(facility('bad id')), { code: 'VALIDATION_FAILED' });
    await t.rejects(async () => registry.createFacility({ ...facility('f2'), owner: 'nope' }), { code: 'VALIDATION_FAILED' });
    await t.rejects(async () => registry.createFacility({ ...facility('f2'), baselineKgPerHour: '-1' }), { code: 'VALIDATION_FAILED' });
    await registry.createFacility({ ...facility('f0'), createdAt: 5 });
    t.same(registry.listFacilities().map((x) => x.id), ['f0', 'f1'], 'listed by id');
    t.equal(registry.getFacility('nope'), undefined);
    t.equal((await registry.updateFacility('f1', { status: 'suspended' })).status, 'suspended');
    t.equal(registry.getFacility('f1')?.status, 'suspended', 'the read sees the write');
    const owner2 = '0x' + 'cd'.repeat(20);
    t.equal((await registry.updateFacility('f1', { owner: owner2 })).owner, owner2);
    await t.rejects(async () => registry.updateFacility('nope', { status: 'active' }), { code: 'FACILITY_NOT_FOUND', statusCode: 404 });
    await t.rejects(async () => registry.updateFacility('f1', { status: 'gone' as never }), { code: 'VALIDATION_FAILED' });
    await registry.createDevice('f0', 'd0', 'meter');
    await registry.deleteFacility('f0');
    t.equal(registry.getFacility('f0'), undefined, 'deleted');
    t.equal(registry.getDevice('d0'), undefined, 'with its devices');
    await t.rejects(async () => registry.deleteFacility('f0'), { code: 'FACILITY_NOT_FOUND' });
  });

  t.test('baseline history: a change is in force from effectiveFrom', async (t) => {
    const { registry, setClock } = await open(t);
    await registry.createFacility(facility());
    t.equal(registry.baselineAt('f1', 0), '3600', 'the first baseline is in force from the start');
    setClock(T0 + H / 2);
    t.equal((await registry.updateFacility('f1', { baselineKgPerHour: '4000' })).baselineKgPerHour, '4000');
    t.equal(registry.baselineAt('f1', T0 + H / 2 - 1), '3600');
    t.equal(registry.baselineAt('f1', T0 + H / 2), '4000');
    await registry.updateFacility('f1', { baselineKgPerHour: '2500.50', effectiveFrom: T0 + 3 * H });
    await registry.updateFacility('f1', { baselineKgPerHour: '2500.25', effectiveFrom: T0 + 3 * H });
    t.equal(registry.baselineAt('f1', T0 + 3 * H - 1), '4000');
    t.equal(registry.baselineAt('f1', T0 + 3 * H), '2500.25', 'a correction of the same change replaces it');
    t.throws(() => registry.baselineAt('nope', T0), { code: 'FACILITY_NOT_FOUND' });
  });

  t.test('devices: create, conflict, limits, keys, status rules, credentials, rotation', async (t) => {
    const { registry } = await open(t);
    await registry.createFacility(facility());
    await t.rejects(async () => registry.createDevice('nope', 'd1', 'meter'), { code: 'FACILITY_NOT_FOUND' });
    const { device, password } = await registry.createDevice('f1', 'd1', 'meter', { capacity: '10.50', reportingIntervalSeconds: 300 });
    t.match(device, { deviceId: 'd1', facilityId: 'f1', kind: 'meter', status: 'active', capacity: '10.5', reportingIntervalSeconds: 300, online: false });
    await t.rejects(async () => registry.createDevice('f1', 'd1', 'meter'), { code: 'DEVICE_EXISTS', statusCode: 409 });
    await t.rejects(async () => registry.createDevice('f1', 'd2', 'meter', { capacity: '0' }), { code: 'VALIDATION_FAILED' });
    await t.rejects(async () => registry.createDevice('f1', 'd2', 'meter', { reportingIntervalSeconds: 0 }), { code: 'VALIDATION_FAILED' });
    t.same(registry.deviceLimits('d1'), { reportingIntervalSeconds: 300, kind: 'meter', capacity: '10.5' });
    t.equal(registry.deviceLimits('nope'), undefined);
    await registry.createDevice('f1', 'd0', 'cems');
    t.same(registry.listDevices('f1').map((d) => d.deviceId), ['d0', 'd1']);
    t.throws(() => registry.listDevices('nope'), { code: 'FACILITY_NOT_FOUND' });

    const creds = await verifyDeviceSecret(registry, 'd1', password);
    t.match(creds, { deviceId: 'd1', facilityId: 'f1', status: 'active', facilityStatus: 'active' }, 'the one-time secret verifies');
    t.equal(await verifyDeviceSecret(registry, 'd1', 'wrong'), undefined);

    const key = '11'.repeat(32);
    t.equal((await registry.updateDevice('d1', { publicKey: key })).publicKey, key);
    t.equal(registry.devicePublicKey('d1'), key);
    t.equal(registry.devicePublicKey('d0'), undefined);

    t.equal((await registry.updateDevice('d1', { status: 'suspended' })).status, 'suspended');
    t.equal(registry.credentials('d1')?.status, 'suspended');
    await registry.updateFacility('f1', { status: 'suspended' });
    t.equal(registry.credentials('d1')?.facilityStatus, 'suspended', "credentials carry the facility's status");
    await t.rejects(async () => registry.updateDevice('d1', { status: 'decommissioned' }), { code: 'VALIDATION_FAILED' }, 'decommissioning needs a reason');
    await t.rejects(async () => registry.updateDevice('d1', { status: 'active', reason: 'x' }), { code: 'VALIDATION_FAILED' });
    const gone = await registry.updateDevice('d1', { status: 'decommissioned', reason: 'replaced' });
    t.match(gone, { status: 'decommissioned', decommissionReason: 'replaced' });
    t.type(gone.decommissionedAt, 'number');
    await t.rejects(async () => registry.updateDevice('d1', { status: 'active' }), { code: 'DEVICE_DECOMMISSIONED' }, 'final');
    await t.rejects(async () => registry.updateDevice('nope', { status: 'active' }), { code: 'DEVICE_NOT_FOUND' });

    const before = registry.credentials('d0')!.secretHash;
    const fresh = await registry.rotateSecret('d0');
    t.not(registry.credentials('d0')!.secretHash, before, 'the stored record changed');
    t.ok(await verifyDeviceSecret(registry, 'd0', fresh), 'the new secret verifies');
    await t.rejects(async () => registry.rotateSecret('nope'), { code: 'DEVICE_NOT_FOUND' });
  });

  t.test('legacy secret upgrade is a compare-and-set', async (t) => {
    const { registry } = await open(t);
    await registry.createFacility(facility());
    await registry.createDevice('f1', 'd1', 'meter');
    const pw = generateSecret();
    const legacy = legacyScryptRecord(pw);
    t.ok(await registry.replaceSecretHash('d1', registry.credentials('d1')!.secretHash, legacy), 'replaced when still expected');
    t.equal(registry.credentials('d1')!.secretHash, legacy);
    t.notOk(await registry.replaceSecretHash('d1', 'something-else', 'x'), 'not when another record is there');
    const creds = await verifyDeviceSecret(registry, 'd1', pw);
    t.match(creds?.secretHash, /^hs256\$/, 'a legacy record that matched is upgraded');
    t.equal(registry.credentials('d1')!.secretHash, creds!.secretHash);
  });

  t.test('online status: lastSeenAt never moves backwards; unknown ids ignored', async (t) => {
    const { registry } = await open(t);
    await registry.createFacility(facility());
    await registry.createDevice('f1', 'd1', 'meter');
    await registry.setOnline('d1', true, T0 + 10);
    t.match(registry.getDevice('d1'), { online: true, lastSeenAt: T0 + 10 });
    await registry.setOnline('d1', false, T0 + 5);
    t.match(registry.getDevice('d1'), { online: false, lastSeenAt: T0 + 10 });
    await registry.setOnline('nope', true, T0);
    t.equal(registry.getDevice('nope'), undefined);
  });

  t.test('rejections: aggregated per device, reason and minute; paged newest first; pruned', async (t) => {
    const { registry } = await open(t);
    await registry.createFacility(facility());
    const r = (deviceId: string, at: number, reason: Rejection['reason'] = 'invalid_shape'): Rejection => ({ facilityId: 'f1', deviceId, receivedAt: at, reason, detail: 'd', payload: 'p' });
    await registry.addRejections([r('d1', T0), r('d1', T0 + 1000), r('d1', T0 + 2000, 'duplicate_conflict')]);
    await registry.addRejections([r('d1', T0 + 3000), r('d2', T0 + 61_000)]);
    const page = await registry.pageRejections('f1');
    t.equal(page.length, 3, 'one row per device, reason and minute');
    t.match(page[0].rejection, { deviceId: 'd2' }, 'newest first');
    const agg = page.find((x) => x.rejection.deviceId === 'd1' && x.rejection.reason === 'invalid_shape')!.rejection;
    t.match(agg, { count: 3, lastReceivedAt: T0 + 3000, receivedAt: T0 }, 'counted, the first kept as the sample');
    const two = await registry.pageRejections('f1', 2);
    t.equal(two.length, 2);
    const rest = await registry.pageRejections('f1', 2, two[1].id);
    t.equal(rest.length, 1, 'the next page starts after the cursor');
    t.equal((await registry.listRejections('f1')).length, 3);
    await t.rejects(async () => registry.pageRejections('nope'), { code: 'FACILITY_NOT_FOUND' });
    t.equal(await registry.pruneRejections(T0 + 60_000), 2, 'rows last seen before the cut go');
    t.equal((await registry.listRejections('f1')).length, 1);
  });

  t.test('API keys: insert, lookup by hash, upsert un-revokes, revoke, admin check', async (t) => {
    const { apiKeys } = await open(t);
    t.notOk(apiKeys.hasActiveAdmin());
    await apiKeys.insert({ id: 'k1', keyHash: 'h1', role: 'facility', facilityId: 'f1', prefix: 'mrv_aaaaaa', createdAt: T0 });
    await apiKeys.insert({ id: 'k2', keyHash: 'h2', role: 'regulator', prefix: 'mrv_bbbbbb', createdAt: T0 + 1 });
    await t.rejects(async () => apiKeys.insert({ id: 'k3', keyHash: 'h1', role: 'admin', prefix: 'x', createdAt: T0 }), 'a hash is unique');
    t.same(apiKeys.byHash('h1'), { id: 'k1', role: 'facility', facilityId: 'f1' });
    t.equal(apiKeys.byHash('nope'), undefined);
    await apiKeys.upsert({ id: 'admin-config', keyHash: 'ha', role: 'admin', prefix: '(configured)', createdAt: T0 + 2 });
    t.ok(apiKeys.hasActiveAdmin());
    t.same(apiKeys.list().map((k) => k.id), ['k1', 'k2', 'admin-config'], 'oldest first');
    t.ok(await apiKeys.revoke('admin-config', T0 + 3));
    t.notOk(await apiKeys.revoke('admin-config', T0 + 4), 'already revoked');
    t.notOk(apiKeys.hasActiveAdmin());
    t.equal(apiKeys.byHash('ha'), undefined, 'a revoked key is not found');
    await apiKeys.upsert({ id: 'admin-config', keyHash: 'hb', role: 'admin', prefix: '(configured)', createdAt: T0 + 5 });
    t.ok(apiKeys.hasActiveAdmin(), 'upsert un-revokes with the new hash');
    t.equal(apiKeys.byHash('ha'), undefined, 'the old hash is gone');
    t.match(apiKeys.byHash('hb'), { id: 'admin-config' });
    await apiKeys.touch('k1', T0 + 9);
    t.equal(apiKeys.list().find((k) => k.id === 'k1')?.lastUsedAt, T0 + 9);
  });

  t.test('records: intents, confirmation moves cursors and late flags, one confirmed root per window', async (t) => {
    const { records } = await open(t);
    await records.checkWindow(H);
    await t.rejects(async () => records.checkWindow(2 * H), { code: 'CONFIG_INVALID' }, 'the window length is fixed');
    const a = intent('f1', T0, '0xaa', [{ deviceId: 'd1', maxSeq: 10 }], ['d1:3']);
    const b = intent('f1', T0, '0xbb', [{ deviceId: 'd1', maxSeq: 11 }]);
    t.ok(await records.insertIntent(a), 'new');
    t.notOk(await records.insertIntent(a), 'the same id and root again is a no-op');
    await records.insertIntents([b, intent('f1', T0 + H, '0xcc', [{ deviceId: 'd1', maxSeq: 20, prevBefore: T0 + H }])]);
    t.equal(await records.firstOpenWindow('f1'), T0);
    t.equal(await records.lastConfirmedWindow('f1'), undefined);
    await records.markSent(a.id, '0xaa', '0x01');
    t.match(await records.row(a.id, '0xaa'), { state: 'sent', txHash: '0x01', netGrams: '1000', complete: true });
    t.equal(await records.confirm(a.id, '0xaa', amounts), 'confirmed');
    t.equal(await records.confirm(a.id, '0xaa', amounts), 'already', 'idempotent');
    await t.rejects(async () => records.confirm(a.id, '0xbb', amounts), { code: 'EVIDENCE_MISMATCH' }, 'another root for a confirmed window');
    await t.rejects(async () => records.confirm('f1-1', '0xdd', amounts), { code: 'NOT_FOUND' });
    t.match(await records.row(b.id, '0xbb'), { state: 'discarded' }, 'the window’s other intents are discarded');
    t.match(await records.cursor('d1'), { settlementId: a.id, windowEnd: T0 + H, mark: { maxSeq: 10, late: 0 } });
    t.ok(await records.isLate('d1', 3));
    t.notOk(await records.isLate('d1', 4));
    t.same([...(await records.lateReadings('f1', [{ deviceId: 'd1', seq: 3 }, { deviceId: 'd1', seq: 4 }]))], ['d1:3']);
    t.match(await records.getSettlement(a.id), { id: a.id, evidenceRoot: '0xaa', mintedGrams: '1000', burnedGrams: '0', baselineKg: '3600' });
    t.equal(await records.getSettlement(b.id + 'x'), undefined);
    t.match(await records.settlementOfReading('f1', { deviceId: 'd1', seq: 3, ts: T0 + 5 }), { late: true, settlement: { id: a.id } });
    t.match(await records.settlementOfReading('f1', { deviceId: 'd1', seq: 5, ts: T0 + 5 }), { late: false, settlement: { id: a.id } });
    t.equal(await records.settlementOfReading('f1', { deviceId: 'd1', seq: 50, ts: T0 + 5 }), undefined, 'not visible under the mark');

    const outs = await records.confirmMany([{ id: `f1-${T0 + H}`, root: '0xcc', amounts }]);
    t.same(outs, ['confirmed']);
    t.equal(await records.lastConfirmedWindow('f1'), T0 + H);
    t.same(
      (await records.listSettlements({ facilityId: 'f1' })).map((s) => s.windowStart),
      [T0, T0 + H],
    );
    t.same(
      (await records.listSettlements({ newestFirst: true, limit: 1 })).map((s) => s.windowStart),
      [T0 + H],
      'newest first, limited',
    );
    t.same((await records.listSettlements({ newestFirst: true, before: { windowStart: T0 + H, facilityId: 'f1' } })).map((s) => s.windowStart), [T0], 'paged');
    t.match(await records.cursor('d1'), { windowEnd: T0 + 2 * H, mark: { maxSeq: 20 } });

    const lost = await records.rollbackFrom('f1', T0 + H);
    t.same(lost, [`f1-${T0 + H}`], 'the lost window rolled back');
    t.match(await records.row(`f1-${T0 + H}`, '0xcc'), { state: 'intent', mintedGrams: null });
    t.match(await records.cursor('d1'), { windowEnd: T0 + H, mark: { maxSeq: 10 } }, 'the cursor back where the lost window started it');
    t.equal(await records.lastConfirmedWindow('f1'), T0);
    await t.rejects(async () => records.forgetFacility('f1', ['d1']), { code: 'FACILITY_SETTLED' });
    await records.insertIntent(intent('f2', T0, '0xee', [{ deviceId: 'e1', maxSeq: 1 }]));
    await records.forgetFacility('f2', ['e1']);
    t.equal(await records.firstOpenWindow('f2'), undefined, 'a facility that never settled is forgotten');
  });

  t.test('voids: recorded with ids, by device and facility, counted per facility', async (t) => {
    const { corrections } = await open(t);
    t.same(await corrections.voidsOf(['d1']), [], 'none yet');
    t.same(await corrections.voidedFacilities(), []);
    const v1 = await corrections.addVoid({ facilityId: 'f1', deviceId: 'd1', from: T0, to: T0 + H, reason: 'meter fault', by: 'k1', at: T0 + 2 * H });
    const v2 = await corrections.addVoid({ facilityId: 'f1', deviceId: 'd2', from: T0 + 10, to: T0 + 20, reason: 'tamper', by: 'k1', at: T0 + 2 * H, chainVoidId: 7, settledBefore: T0 + 3 * H });
    const v3 = await corrections.addVoid({ facilityId: 'f2', deviceId: 'e1', from: T0, to: T0 + 1, reason: 'x', by: 'k2', at: T0 });
    t.ok(v1.id < v2.id && v2.id < v3.id, 'ids increase');
    t.same(v2, { id: v2.id, facilityId: 'f1', deviceId: 'd2', from: T0 + 10, to: T0 + 20, reason: 'tamper', by: 'k1', at: T0 + 2 * H, chainVoidId: 7, settledBefore: T0 + 3 * H });
    t.same(await corrections.voidsOf(['d2', 'd1']), [v1, v2], 'oldest first, whatever order the devices are asked in');
    t.same(await corrections.voidsOf([]), []);
    t.same(await corrections.voidsOf(['nobody']), []);
    t.same(await corrections.voidsOfFacility('f1'), [v1, v2]);
    t.notOk('chainVoidId' in (await corrections.voidsOfFacility('f2'))[0], 'no chain number until the chain holds it');
    t.same(await corrections.voidedFacilities(), [{ facilityId: 'f1', voids: 2 }, { facilityId: 'f2', voids: 1 }]);
  });

  t.test('corrections: appended per settlement, the next seq only, cursors moved with them, confirmed once', async (t) => {
    const { records, corrections, setClock } = await open(t);
    const s = intent('f1', T0, '0xaa', [{ deviceId: 'd1', maxSeq: 10 }]);
    await records.insertIntent(s);
    t.equal(await records.confirm(s.id, '0xaa', amounts), 'confirmed');
    t.match(await records.cursor('d1'), { windowEnd: T0 + H });
    t.equal(await corrections.latest(s.id), undefined);
    setClock(T0 + 5 * H);
    const moved = [{ metric: 'electricity_import', seq: 9, value: '9' }] as never;
    await corrections.insertCorrections([correction(s.id, 1, T0, [1], '900', '1000')], [{ deviceId: 'd1', windowEnd: T0 + H, cursors: moved }]);
    const c1 = await corrections.getCorrection(`${s.id}-c1`);
    t.match(c1, { id: `${s.id}-c1`, settlementId: s.id, seq: 1, state: 'intent', voidIds: [1], complete: true, netGrams: '900', deltaGrams: '-100', mintedGrams: null, txHash: null, createdAt: T0 + 5 * H });
    t.same(c1?.inputs, inputs([{ deviceId: 'd1', maxSeq: 10 }]), 'the inputs read back as recorded');
    t.same((await records.cursor('d1'))?.cursors, moved, 'the cursor of the corrected window moved');
    await t.rejects(async () => corrections.insertCorrections([correction(s.id, 1, T0, [1], '800', '1000')], []), { code: 'CORRECTION_RACED', statusCode: 409 }, 'seq 1 again');
    await t.rejects(
      async () => corrections.insertCorrections([correction(s.id, 2, T0, [1], '800', '900'), correction(s.id, 4, T0, [1], '700', '800')], [{ deviceId: 'd1', windowEnd: T0 + H, cursors: [] }]),
      { code: 'CORRECTION_RACED' },
      'a gap refuses the batch',
    );
    t.equal((await corrections.latest(s.id))?.seq, 1, 'nothing of the refused batch was written');
    t.same((await records.cursor('d1'))?.cursors, moved, 'nor its cursor move');
    const other = intent('f1', T0 + H, '0xbb', [{ deviceId: 'd1', maxSeq: 20 }]);
    await corrections.insertCorrections([correction(other.id, 1, T0 + H, [1], '10', '20'), correction(s.id, 2, T0, [1, 2], '800', '900')], []);
    t.equal((await corrections.latest(s.id))?.seq, 2);
    t.same((await corrections.correctionsOf([other.id, s.id])).map((c) => c.id), [`${other.id}-c1`, `${s.id}-c1`, `${s.id}-c2`], 'by settlement asked, then seq');
    t.same(await corrections.correctionsOf([]), []);
    t.same((await corrections.listCorrections()).map((c) => c.id), [`${s.id}-c1`, `${s.id}-c2`, `${other.id}-c1`], 'oldest window, then seq');
    t.same((await corrections.listCorrections({ limit: 1 })).map((c) => c.id), [`${s.id}-c1`]);
    t.same(await corrections.listCorrections({ facilityId: 'f2' }), []);

    await corrections.confirmCorrection(`${s.id}-c1`, { txHash: '0xdef', mintedGrams: 0n, burnedGrams: 100n, deficitGrams: 0n });
    await corrections.confirmCorrection(`${s.id}-c1`, { txHash: '0x999', mintedGrams: 5n, burnedGrams: 5n, deficitGrams: 5n });
    t.match(await corrections.getCorrection(`${s.id}-c1`), { state: 'confirmed', txHash: '0xdef', burnedGrams: '100', mintedGrams: '0' }, 'confirmed once');
    t.same((await corrections.listCorrections({ state: 'intent' })).map((c) => c.id), [`${s.id}-c2`, `${other.id}-c1`]);
    t.same((await corrections.listCorrections({ facilityId: 'f1', state: 'confirmed' })).map((c) => c.id), [`${s.id}-c1`]);
    await t.rejects(async () => corrections.confirmCorrection('nope-c1', amounts), { code: 'NOT_FOUND' });
  });

  t.test('lease: one holder at a time; renewal; expiry; release', async (t) => {
    const { records } = await open(t);
    t.ok(await records.acquireLease('run', 'a', T0, 1000));
    t.notOk(await records.acquireLease('run', 'b', T0 + 10, 1000), 'held by another');
    t.ok(await records.acquireLease('run', 'a', T0 + 500, 1000), 'renewed by its holder');
    t.notOk(await records.acquireLease('run', 'b', T0 + 1499, 1000), 'still held after the renewal');
    t.ok(await records.acquireLease('run', 'b', T0 + 1500, 1000), 'taken once expired');
    await records.releaseLease('run', 'a');
    t.notOk(await records.acquireLease('run', 'a', T0 + 1600, 1000), "releasing someone else's lease does nothing");
    await records.releaseLease('run', 'b');
    t.ok(await records.acquireLease('run', 'a', T0 + 1600, 1000), 'free once released');
    const many = await Promise.all(['x', 'y', 'z', 'w'].map((h) => records.acquireLease('other', h, T0, 1000)));
    t.equal(many.filter(Boolean).length, 1, 'of takers at once, exactly one wins');
  });

  t.test('status: blocked with exponential capped backoff, cleared, finality watch list', async (t) => {
    const { status } = await open(t);
    const backoff = { baseMs: 10, maxMs: 35 };
    t.same(await status.get('f1'), { facilityId: 'f1', settlementStatus: 'ok' });
    t.match(await status.block('f1', 'refused', T0, backoff), { settlementStatus: 'blocked', reason: 'refused', since: T0, attempts: 1, retryAt: T0 + 10 });
    t.match(await status.block('f1', 'again', T0 + 1, backoff), { attempts: 2, retryAt: T0 + 21, since: T0, reason: 'again' });
    t.match(await status.block('f1', 'again', T0 + 2, backoff), { attempts: 3, retryAt: T0 + 2 + 35 }, 'capped');
    await status.retryNow('f1', T0 + 3);
    t.match(await status.get('f1'), { retryAt: T0 + 3 });
    t.same((await status.listBlocked()).map((s) => s.facilityId), ['f1']);
    t.ok(await status.clear('f1'));
    t.notOk(await status.clear('f1'));
    await status.addUnfinal([
      { id: 'f1-1', facilityId: 'f1', windowStart: 1, evidenceRoot: '0x1', blockNumber: 5 },
      { id: 'f1-2', facilityId: 'f1', windowStart: 2, evidenceRoot: '0x2', blockNumber: 6 },
    ]);
    await status.addUnfinal([{ id: 'f1-2', facilityId: 'f1', windowStart: 2, evidenceRoot: '0x2', blockNumber: 7 }]);
    t.same((await status.unfinal('f1')).map((u) => [u.id, u.blockNumber]), [['f1-1', 5], ['f1-2', 7]]);
    t.same(await status.unfinalFacilities(), ['f1']);
    await status.markFinal('f1-1');
    await status.forgetFrom('f1', 2);
    t.same(await status.unfinal('f1'), []);
    await status.block('f1', 'x', T0, backoff);
    await status.addUnfinal([{ id: 'f1-3', facilityId: 'f1', windowStart: 3, evidenceRoot: '0x3', blockNumber: 8 }]);
    await status.forget('f1');
    t.same(await status.get('f1'), { facilityId: 'f1', settlementStatus: 'ok' });
    t.same(await status.unfinal('f1'), []);
  });
}
