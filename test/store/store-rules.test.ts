/**
 * The rules the SQLite and PostgreSQL stores share (store/registry-rules.ts, store/rejections.ts,
 * store/records.ts, store/corrections.ts), as pure functions: what both backends decide is decided
 * here once, so these cases hold for both. The stores themselves run the contract suite
 * (test/helpers/registry-contract.ts) on both backends.
 */
import t from 'tap';
import { MAX_REJECTION_DETAIL_BYTES, MAX_REJECTION_PAYLOAD_BYTES } from '../../domain/limits.ts';
import type { Rejection } from '../../domain/reading.ts';
import { listCorrectionsSql } from '../../store/corrections.ts';
import { checkStoredWindow, confirmTarget, listSettlementsSql, rollbackCursors } from '../../store/records.ts';
import { checkDevicePatch, checkFacilityPatch, checkNewDevice, checkNewFacility, statusWrite, toDevice } from '../../store/registry-rules.ts';
import { groupRejections, REJECTION_BUCKET_MS, toRejectionEntry } from '../../store/rejections.ts';
import type { SettlementDbRow } from '../../store/rows.ts';
import type { RecordedInputs } from '../../store/types.ts';

const OWNER = '0x' + 'ab'.repeat(20);

t.test('statusWrite: a decommissioning is written once and is final', async (t) => {
  t.equal(statusWrite('d', 'active', undefined), undefined, 'no status in the patch: nothing');
  t.equal(statusWrite('d', 'active', 'suspended'), 'status');
  t.equal(statusWrite('d', 'suspended', 'decommissioned'), 'decommission');
  t.equal(statusWrite('d', 'decommissioned', 'decommissioned'), undefined, 'again: nothing (the first time and reason stay)');
  t.throws(() => statusWrite('d', 'decommissioned', 'active'), { code: 'DEVICE_DECOMMISSIONED' });
  t.throws(() => statusWrite('d', 'decommissioned', 'suspended'), { code: 'DEVICE_DECOMMISSIONED' });
});

t.test('registry input checks: hostile values are VALIDATION errors, decimals canonical', async (t) => {
  const f = { id: 'f1', name: 'Plant', owner: OWNER, baselineKgPerHour: '3600.0', gridFactorKgPerKwh: '0.50', gasFactorKgPerM3: 2 as unknown as string };
  t.same(checkNewFacility(f), { baseline: '3600', grid: '0.5', gas: '2' });
  for (const bad of [{ id: 'a b' }, { name: '' }, { owner: '0x12' }, { baselineKgPerHour: '-1' }, { gridFactorKgPerKwh: 'NaN' }, { gasFactorKgPerM3: {} }]) {
    t.throws(() => checkNewFacility({ ...f, ...(bad as object) }), { code: 'VALIDATION_FAILED' }, JSON.stringify(bad));
  }
  t.same(checkFacilityPatch({}, 5), { status: undefined, baseline: undefined, from: 5 }, 'a baseline change is in force from now by default');
  t.throws(() => checkFacilityPatch({ effectiveFrom: 1.5 }, 5), { code: 'VALIDATION_FAILED' });
  t.throws(() => checkFacilityPatch({ status: 'decommissioned' as never }, 5), { code: 'VALIDATION_FAILED' }, 'a facility is active or suspended');
  t.same(checkNewDevice('d1', 'meter', {}), { capacity: null, interval: 60, publicKey: null });
  t.throws(() => checkNewDevice('d1', 'meter', { capacity: '0' }), { code: 'VALIDATION_FAILED' }, 'capacity above 0');
  t.throws(() => checkNewDevice('d1', 'meter', { reportingIntervalSeconds: 86_401 }), { code: 'VALIDATION_FAILED' });
  t.throws(() => checkNewDevice('d1', 'x'.repeat(65), {}), { code: 'VALIDATION_FAILED' });
  t.throws(() => checkDevicePatch({ reason: 'why' }), { code: 'VALIDATION_FAILED' }, 'a reason only with a decommissioning');
  t.throws(() => checkDevicePatch({ status: 'decommissioned', reason: ' ' }), { code: 'VALIDATION_FAILED' }, 'a decommissioning needs a reason');
  t.throws(() => checkDevicePatch({ status: 'decommissioned', reason: 'x'.repeat(501) }), { code: 'VALIDATION_FAILED' });
});

t.test('toDevice: online is 0/1 in SQLite, a boolean in PostgreSQL', async (t) => {
  const row = { device_id: 'd', facility_id: 'f', kind: 'meter', status: 'active' as const, created_at: 1, last_seen_at: null, capacity: null, reporting_interval: 60, decommissioned_at: null, decommission_reason: null, public_key: null };
  t.equal(toDevice({ ...row, online: 1 }).online, true);
  t.equal(toDevice({ ...row, online: true }).online, true);
  t.equal(toDevice({ ...row, online: 0 }).online, false);
  t.same(Object.keys(toDevice({ ...row, online: false })).sort(), ['createdAt', 'deviceId', 'facilityId', 'kind', 'online', 'reportingIntervalSeconds', 'status'], 'null columns are absent');
});

t.test('groupRejections: one row per facility, device, reason and minute; the first kept as the sample, cut to size', async (t) => {
  const T = 10 * REJECTION_BUCKET_MS;
  const r = (at: number, extra: Partial<Rejection> = {}): Rejection => ({ facilityId: 'f', deviceId: 'd', receivedAt: at, reason: 'invalid_json', payload: `p${at}`, ...extra });
  const groups = groupRejections([r(T + 5, { payload: 'x'.repeat(MAX_REJECTION_PAYLOAD_BYTES + 10), detail: 'y'.repeat(MAX_REJECTION_DETAIL_BYTES + 10) }), r(T + 1, { reason: 'invalid_ts' }), r(T + 9, { count: 4 }), r(T + REJECTION_BUCKET_MS)]);
  t.same(
    groups.map((g) => [g.reason, g.bucket, g.count, g.receivedAt, g.last]),
    [
      ['invalid_json', 10, 5, T + 5, T + 9],
      ['invalid_ts', 10, 1, T + 1, T + 1],
      ['invalid_json', 11, 1, T + REJECTION_BUCKET_MS, T + REJECTION_BUCKET_MS],
    ],
    'in order of first appearance, counts summed, the latest time kept',
  );
  t.ok(Buffer.byteLength(groups[0].payload) <= MAX_REJECTION_PAYLOAD_BYTES && Buffer.byteLength(groups[0].detail!) <= MAX_REJECTION_DETAIL_BYTES, 'payload and detail cut');
  t.equal(groups[1].detail, null, 'no detail: NULL');
  const entry = toRejectionEntry({ id: 7, facility_id: 'f', device_id: 'd', received_at: 1, reason: 'stale', detail: null, payload: '', count: 3, last_received_at: null });
  t.same(entry, { id: 7, rejection: { facilityId: 'f', deviceId: 'd', receivedAt: 1, reason: 'stale', payload: '', count: 3, lastReceivedAt: 1 } });
});

t.test('list statements: placeholders in text order for both dialects', async (t) => {
  const q = { facilityId: 'f', from: 10, to: 20, newestFirst: true, before: { windowStart: 15, facilityId: 'g' }, limit: 50_000 };
  const pgArgs: (string | number)[] = [];
  const pgSql = listSettlementsSql(q, (v) => `$${pgArgs.push(v)}`);
  const liteArgs: (string | number)[] = [];
  const liteSql = listSettlementsSql(q, (v) => (liteArgs.push(v), '?'));
  t.same(pgArgs, ['f', 10, 20, 15, 15, 'g', 10_000], 'the limit is capped at 10,000');
  t.same(liteArgs, pgArgs);
  t.match(pgSql, /window_start < \$4 OR \(window_start = \$5 AND facility_id < \$6\)\) ORDER BY window_start DESC, facility_id DESC LIMIT \$7$/);
  t.equal(liteSql.split('?').length - 1, liteArgs.length);
  const cArgs: (string | number)[] = [];
  t.match(listCorrectionsSql({ state: 'confirmed' }, (v) => `$${cArgs.push(v)}`), /WHERE state = \$1 ORDER BY window_start, facility_id, seq LIMIT \$2$/);
  t.same(cArgs, ['confirmed', 1000], 'limit default 1000');
});

t.test('records decisions', async (t) => {
  t.doesNotThrow(() => checkStoredWindow(3_600_000, 3_600_000, { place: 'database', fresh: 'a new database' }));
  t.throws(() => checkStoredWindow(3_600_000, 60_000, { place: 'database', fresh: 'a new database' }), {
    code: 'CONFIG_INVALID',
    message: /WINDOW_SECONDS is 3600 but this database was settled with 60; windows are fixed per database \(use the original value or a new database\)/,
  });
  const row = (root: string, state: SettlementDbRow['state']) => ({ evidence_root: root, state }) as SettlementDbRow;
  t.equal(confirmTarget('w', 'r1', row('r1', 'confirmed'), row('r1', 'confirmed')), 'already');
  t.throws(() => confirmTarget('w', 'r2', row('r1', 'confirmed'), row('r2', 'intent')), { code: 'EVIDENCE_MISMATCH' });
  t.throws(() => confirmTarget('w', 'r2', undefined, undefined), { code: 'NOT_FOUND' });
  const intent = row('r2', 'intent');
  t.equal(confirmTarget('w', 'r2', undefined, intent), intent);

  const settled = (start: number, devices: { deviceId: string; prevBefore?: number }[]) =>
    ({
      id: `f-${start}`,
      window_start: start,
      window_end: start + 100,
      inputs: JSON.stringify({ devices: devices.map((d) => ({ deviceId: d.deviceId, startCursors: [{ s: start }], ...(d.prevBefore !== undefined ? { prev: { mark: { maxSeq: 4, late: 1 }, before: d.prevBefore } } : {}) })) } as unknown as RecordedInputs),
    }) as SettlementDbRow;
  const plan = rollbackCursors('f', [settled(100, [{ deviceId: 'a', prevBefore: 100 }]), settled(200, [{ deviceId: 'a', prevBefore: 200 }, { deviceId: 'b' }])]);
  t.same(plan, [
    { deviceId: 'a', windowStart: 100, back: { settlementId: 'f-0', windowEnd: 100, maxSeq: 4, late: 1, cursors: '[{"s":100}]' } },
    { deviceId: 'b', windowStart: 200, back: undefined },
  ], 'each device back to where the first lost settlement that counted it started it; none before: removed');
});
