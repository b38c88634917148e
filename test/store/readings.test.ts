import t, { type Test } from 'tap';
import { openDatabase } from '../../store/sqlite/db.ts';
import { MAX_METRIC_WALK } from '../../store/types.ts';
import { SCHEMA_VERSION } from '../../store/sqlite/schema.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import type { Reading } from '../../domain/reading.ts';
import type { CommitOutcome } from '../../store/types.ts';

const T0 = Date.parse('2026-11-22T00:00:00Z');
const MIN = 60_000;

function r(seq: number, value: string, extra: Partial<Reading> = {}): Reading {
  return {
    facilityId: 'f1',
    deviceId: 'd1',
    seq,
    ts: T0 + seq * MIN,
    metric: 'electricity_import',
    value,
    unit: 'kWh',
    reset: false,
    receivedAt: T0 + seq * MIN + 1,
    ...extra,
  };
}

function open(t: Test, dir?: string) {
  const dataDir = dir ?? t.testdir();
  const db = openDatabase(dataDir);
  t.teardown(() => db.close());
  return { dataDir, db, ...openSqliteStores(db) };
}

const statuses = (o: CommitOutcome[]) => o.map((x) => (x.status === 'rejected' ? x.reason : x.status));

t.test('duplicates and conflicts, within one batch and across batches', async (t) => {
  const { readings } = open(t);
  t.same(statuses(await readings.commit([r(1, '100'), r(2, '101'), r(2, '101'), r(2, '102')])), [
    'stored',
    'stored',
    'duplicate',
    'duplicate_conflict',
  ]);
  t.same(statuses(await readings.commit([r(1, '100'), r(2, '101.000'), r(1, '99'), r(2, '101', { ts: T0 })])), [
    'duplicate',
    'duplicate',
    'duplicate_conflict',
    'duplicate_conflict',
  ], 'same content (value compared as a decimal) is a duplicate; any other field differing is a conflict');
  t.same(statuses(await readings.commit([r(2, '101', { reset: true }), r(2, '101', { metric: 'natural_gas', unit: 'm3' })])), [
    'duplicate_conflict',
    'duplicate_conflict',
  ]);
  const stored = await readings.get('d1', 2);
  t.equal(stored?.value, '101', 'the first content stays');
  t.same([...(await readings.marks(['d1', 'nobody'])).entries()], [['d1', { maxSeq: 2, late: 0 }]]);
});

t.test('a lower seq arriving later is stored as a late arrival (no seq_not_increasing)', async (t) => {
  const { db, readings } = open(t);
  t.same(statuses(await readings.commit([r(10, '10'), r(5, '5'), r(11, '11'), r(11, '11'), r(10, '10')])), [
    'stored',
    'stored',
    'stored',
    'duplicate',
    'duplicate',
  ]);
  t.same(statuses(await readings.commit([r(7, '7'), r(12, '12')])), ['stored', 'stored'], 'a gap is filled later');
  t.same(statuses(await readings.commit([r(1, '4', { deviceId: 'd2' })])), ['stored'], 'per device');
  t.same([(await readings.get('d1', 5))?.arrival, (await readings.get('d1', 7))?.arrival, (await readings.get('d1', 12))?.arrival], [1, 2, undefined]);
  t.same((await readings.marks(['d1'])).get('d1'), { maxSeq: 12, late: 2 });
  const out = await readings.commit([r(6, '8')]);
  t.match(out[0], { status: 'rejected', reason: 'register_backwards', detail: /above 7 of the stored higher seq 7/ }, 'the detail names the neighbour');
  const heads = db.prepare("SELECT metric, first_seq, seq FROM device_heads WHERE device_id = 'd1'").all();
  t.same(heads, [{ metric: 'electricity_import', first_seq: 5, seq: 12 }], 'first and last seq per metric');
});

t.test('a late reading whose neighbour of its metric is too far away is refused, not searched for', async (t) => {
  const { readings } = open(t);
  const gap = MAX_METRIC_WALK + 1;
  const co2 = (seq: number) => r(seq, '0.001', { ts: T0 + seq, metric: 'co2_direct', unit: 'kg' });
  const batch: Reading[] = [r(0, '1', { ts: T0 })];
  for (let i = 1; i <= 2 * gap; i++) if (i !== gap) batch.push(co2(i));
  batch.push(r(2 * gap + 1, '2', { ts: T0 + 2 * gap + 1 }));
  t.ok((await readings.commit(batch)).every((o) => o.status === 'stored'), 'in order: the metric head answers at once');
  const out = await readings.commit([r(gap, '1.5', { ts: T0 + gap })]);
  t.match(out[0], { status: 'rejected', reason: 'implausible', detail: new RegExp(`more than ${MAX_METRIC_WALK} readings away`) });
  t.same(statuses(await readings.commit([co2(gap)])), ['stored'], 'a late reading whose neighbours of its metric are close is checked as usual');
});

t.test('a late reading finds its neighbours of the same metric beyond the short walk', async (t) => {
  const { readings } = open(t);
  const co2 = (seq: number) => r(seq, '0.001', { ts: T0 + seq * 1000, metric: 'co2_direct', unit: 'kg' });
  const batch: Reading[] = [r(0, '100', { ts: T0 })];
  for (let i = 1; i <= 199; i++) if (i !== 100) batch.push(co2(i));
  batch.push(r(200, '120', { ts: T0 + 200_000 }));
  t.ok((await readings.commit(batch)).every((o) => o.status === 'stored'));
  t.match((await readings.commit([r(100, '99', { ts: T0 + 100_000 })]))[0], { reason: 'register_backwards', detail: /below 100 of the stored lower seq 0/ }, '99 rows down');
  t.match((await readings.commit([r(100, '121', { ts: T0 + 100_000 })]))[0], { reason: 'register_backwards', detail: /above 120 of the stored higher seq 200/ }, '100 rows up');
  t.same(statuses(await readings.commit([r(100, '110', { ts: T0 + 100_000 })])), ['stored']);
});

t.test('registers going backwards, and reset', async (t) => {
  const { readings } = open(t);
  t.same(statuses(await readings.commit([r(1, '100'), r(2, '99.9'), r(3, '100'), r(4, '5', { reset: true }), r(5, '6')])), [
    'stored',
    'register_backwards',
    'stored',
    'stored',
    'stored',
  ], 'within one batch, against earlier readings of the batch');
  t.same(statuses(await readings.commit([r(6, '5.99'), r(7, '1', { reset: true }), r(8, '0.5')])), [
    'register_backwards',
    'stored',
    'register_backwards',
  ], 'across batches, against the stored head (after the reset: 1)');
  t.same(statuses(await readings.commit([r(9, '0.5', { metric: 'natural_gas', unit: 'm3' }), r(10, '1000', { metric: 'electricity_export' })])), [
    'stored',
    'stored',
  ], 'each metric has its own head');
  t.same(statuses(await readings.commit([r(11, '1', { metric: 'co2_direct', unit: 'kg' }), r(12, '0.2', { metric: 'co2_direct', unit: 'kg' })])), [
    'stored',
    'stored',
  ], 'co2_direct is an interval, not a register');
  t.same(statuses(await readings.commit([r(13, '999', { metric: 'electricity_export' })])), ['register_backwards']);
  t.same(statuses(await readings.commit([r(14, '1', { deviceId: 'd2' })])), ['stored'], 'heads are per device');
  const head = await readings.list({ facilityId: 'f1', deviceId: 'd1', metric: 'electricity_import', limit: 1 });
  t.equal(head[0].value, '1');
});

t.test('consume: first settlement, then with prev', async (t) => {
  const { readings } = open(t);
  const W = 10 * MIN;
  // Window 0 = [T0, T0+10min), window 1 = [T0+10min, T0+20min).
  await readings.commit([r(1, '10'), r(2, '11'), r(9, '12'), r(12, '13')]); // ts = T0 + seq min
  // Settlement of window 0 sees high-water 12; readings with ts < T0+10min: seqs 1, 2, 9.
  const m1 = (await readings.marks(['d1'])).get('d1');
  t.same(m1, { maxSeq: 12, late: 0 });
  const first = await readings.consume({ deviceId: 'd1', mark: { maxSeq: 12, late: 0 }, before: T0 + W });
  t.same(first.map((x) => x.seq), [1, 2, 9]);
  t.same(first[0], r(1, '10'), 'full reading back');
  // A late arrival (seq 5, ts in window 0) after window 0 was settled, and fresh ones.
  await readings.commit([r(5, '11.5'), r(14, '15'), r(25, '16')]);
  const m2 = { maxSeq: 25, late: 1 };
  t.same((await readings.marks(['d1'])).get('d1'), m2);
  const second = await readings.consume({ deviceId: 'd1', mark: m2, before: T0 + 2 * W, prev: { mark: { maxSeq: 12, late: 0 }, before: T0 + W } });
  t.same(second.map((x) => x.seq), [5, 12, 14], 'late 5 + seq 12 (seen but not due before) + fresh 14, ordered by seq; 25 not due');
  // Nothing is consumed twice: the third settlement picks up only 25.
  const third = await readings.consume({ deviceId: 'd1', mark: m2, before: T0 + 3 * W, prev: { mark: m2, before: T0 + 2 * W } });
  t.same(third.map((x) => x.seq), [25]);
  // The mark hides readings that arrived after the settlement took it (recompute later).
  await readings.commit([r(26, '17'), r(20, '15.5')]);
  const again = await readings.consume({ deviceId: 'd1', mark: m2, before: T0 + 3 * W, prev: { mark: m2, before: T0 + 2 * W } });
  t.same(again.map((x) => x.seq), [25], 'recomputing a settlement gives the same readings');
  t.same((await readings.consume({ deviceId: 'other', mark: { maxSeq: 99, late: 9 }, before: T0 + 3 * W })).length, 0);
});

t.test('hasReading', async (t) => {
  const { readings } = open(t);
  await readings.commit([r(1, '1'), r(5, '2')]); // ts T0+1min, T0+5min
  const m = (maxSeq: number) => ({ maxSeq, late: 0 });
  t.equal(await readings.hasReading('d1', T0, T0 + 2 * MIN, m(5)), true);
  t.equal(await readings.hasReading('d1', T0 + 2 * MIN, T0 + 5 * MIN, m(5)), false, 'to is exclusive');
  t.equal(await readings.hasReading('d1', T0 + 5 * MIN, T0 + 6 * MIN, m(5)), true, 'from is inclusive');
  t.equal(await readings.hasReading('d1', T0 + 5 * MIN, T0 + 6 * MIN, m(4)), false, 'above the mark is invisible');
  t.equal(await readings.hasReading('d2', T0, T0 + 10 * MIN, m(99)), false);
});

t.test('list for the API', async (t) => {
  const { readings } = open(t);
  await readings.commit([
    r(1, '1'),
    r(2, '2'),
    r(3, '1', { metric: 'natural_gas', unit: 'm3' }),
    r(1, '7', { deviceId: 'd2' }),
    r(1, '7', { deviceId: 'd3', facilityId: 'f2' }),
  ]);
  const all = await readings.list({ facilityId: 'f1' });
  t.same(all.map((x) => [x.deviceId, x.seq]), [['d1', 3], ['d1', 2], ['d2', 1], ['d1', 1]], 'newest first; ties by device then seq');
  t.same((await readings.list({ facilityId: 'f1', deviceId: 'd1', metric: 'electricity_import' })).map((x) => x.seq), [2, 1]);
  t.same((await readings.list({ facilityId: 'f1', from: T0 + 2 * MIN, to: T0 + 3 * MIN })).map((x) => x.seq), [2], 'from inclusive, to exclusive');
  t.same((await readings.list({ facilityId: 'f1', limit: 2 })).length, 2);
  t.same((await readings.list({ facilityId: 'f1', deviceId: 'd3' })).length, 0, 'another facility is not visible');
  t.same((await readings.list({ facilityId: 'f2' })).map((x) => x.deviceId), ['d3']);
});

t.test('list limit: default 100, at most 1000', async (t) => {
  const { readings } = open(t);
  const batch: Reading[] = [];
  for (let i = 1; i <= 1200; i++) batch.push(r(i, String(i)));
  t.equal((await readings.commit(batch)).filter((o) => o.status === 'stored').length, 1200);
  t.equal((await readings.list({ facilityId: 'f1' })).length, 100);
  t.equal((await readings.list({ facilityId: 'f1', limit: 5000 })).length, 1000);
  t.equal((await readings.list({ facilityId: 'f1', limit: 0 })).length, 1);
});

t.test('data survives closing and reopening the file', async (t) => {
  const dir = t.testdir();
  {
    const db = openDatabase(dir);
    const { readings } = openSqliteStores(db);
    await readings.commit([r(1, '100'), r(2, '150.25')]);
    await readings.close();
    await t.rejects(readings.commit([r(3, '1')]), { code: 'STORE_UNAVAILABLE' }, 'a closed store refuses commits');
    t.equal(await readings.ping(), false);
    db.close();
  }
  const { readings } = open(t, dir);
  t.equal(await readings.ping(), true);
  t.same(await readings.get('d1', 2), r(2, '150.25'));
  t.same(statuses(await readings.commit([r(2, '150.25'), r(3, '150'), r(4, '151')])), ['duplicate', 'register_backwards', 'stored'], 'state checks use the reopened file');
});

t.test('a second connection (another process) writing the same file is seen', async (t) => {
  const { dataDir, readings: a } = open(t);
  const { readings: b } = open(t, dataDir);
  t.same(statuses(await a.commit([r(1, '100')])), ['stored']);
  t.same(statuses(await b.commit([r(2, '200')])), ['stored']);
  t.same(statuses(await a.commit([r(2, '200'), r(3, '150')])), ['duplicate', 'register_backwards'], 'no stale cache in a');
  t.same(statuses(await b.commit([r(3, '250')])), ['stored']);
  t.same(statuses(await a.commit([r(3, '300')])), ['duplicate_conflict']);
});

t.test('storage failure rejects the commit: nothing may be acknowledged', async (t) => {
  const dir = t.testdir();
  const db = openDatabase(dir);
  const { readings } = openSqliteStores(db);
  db.close();
  await t.rejects(readings.commit([r(1, '1')]), { code: 'STORE_UNAVAILABLE' });
  t.equal(await readings.ping(), false);
});

t.test('a batch is all-or-nothing on a storage error', async (t) => {
  const { db, readings } = open(t);
  // Simulate the disk failing mid-batch: a trigger that aborts on one row.
  db.exec(`CREATE TRIGGER boom BEFORE INSERT ON readings WHEN NEW.seq = 3 BEGIN SELECT RAISE(ABORT, 'disk full'); END`);
  await t.rejects(readings.commit([r(1, '1'), r(2, '2'), r(3, '3')]), { code: 'STORE_UNAVAILABLE' });
  t.equal(await readings.get('d1', 1), undefined, 'the earlier readings of the batch were rolled back');
  db.exec('DROP TRIGGER boom');
  t.same(statuses(await readings.commit([r(1, '1'), r(2, '2'), r(3, '3')])), ['stored', 'stored', 'stored'], 'the device redelivers');
});

t.test('a malformed value from a caller is rejected, not stored', async (t) => {
  const { readings } = open(t);
  t.same(statuses(await readings.commit([r(1, 'abc'), r(2, '1.50')])), ['invalid_value', 'stored']);
  t.equal((await readings.get('d1', 2))?.value, '1.5', 'stored canonical');
  t.same(await readings.commit([]), []);
});

t.test('a file from before reading_devices: the facility index goes, the device list is filled once', async (t) => {
  const dir = t.testdir();
  {
    // The 0.1.0 layout: readings with a facility index, no reading_devices table.
    const db = openDatabase(dir);
    db.exec(`CREATE TABLE readings (device_id TEXT NOT NULL, seq INTEGER NOT NULL, facility_id TEXT NOT NULL, ts INTEGER NOT NULL,
      metric TEXT NOT NULL, value TEXT NOT NULL, unit TEXT NOT NULL, reset INTEGER NOT NULL, received_at INTEGER NOT NULL,
      PRIMARY KEY (device_id, seq)) WITHOUT ROWID;
      CREATE INDEX readings_device_ts ON readings (device_id, ts);
      CREATE INDEX readings_facility_ts ON readings (facility_id, ts);`);
    const ins = db.prepare('INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)');
    ins.run('old1', 1, 'f1', T0 + MIN, 'electricity_import', '5', 'kWh', T0);
    ins.run('old2', 1, 'f1', T0 + 2 * MIN, 'electricity_import', '6', 'kWh', T0);
    ins.run('old3', 1, 'f2', T0 + 3 * MIN, 'electricity_import', '7', 'kWh', T0);
    db.close();
  }
  const { db, readings } = open(t, dir);
  const indexes = db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'readings'").pluck().all();
  t.notOk(indexes.includes('readings_facility_ts'), 'facility index dropped');
  t.ok(indexes.includes('readings_device_ts'), 'device index kept');
  t.same((await readings.list({ facilityId: 'f1' })).map((x) => x.deviceId), ['old2', 'old1'], 'old readings listed by facility');
  await readings.commit([r(1, '1', { deviceId: 'new1' })]);
  t.same((await readings.list({ facilityId: 'f1' })).map((x) => x.deviceId), ['old2', 'old1', 'new1'], 'and new devices join the list');
  t.same((await readings.list({ facilityId: 'f2' })).map((x) => x.deviceId), ['old3']);
});

t.test('facility listing across many devices merges newest first and honours the limit', async (t) => {
  const { readings } = open(t);
  const batch: Reading[] = [];
  for (let d = 0; d < 12; d++) for (let s = 1; s <= 30; s++) batch.push(r(s, String(s), { deviceId: `m${d}`, ts: T0 + s * MIN + d }));
  await readings.commit(batch);
  const got = await readings.list({ facilityId: 'f1', limit: 50 });
  t.equal(got.length, 50);
  const expected = [...batch].sort((a, b) => b.ts - a.ts).slice(0, 50).map((x) => `${x.deviceId}:${x.seq}`);
  t.same(got.map((x) => `${x.deviceId}:${x.seq}`), expected, 'the 50 newest of 360, in order');
  const window = await readings.list({ facilityId: 'f1', from: T0 + 10 * MIN, to: T0 + 11 * MIN });
  t.same(window.map((x) => x.seq), Array(12).fill(10), 'from/to applied per device');
});

t.test('a version-0 file is migrated: arrival column, metric heads rebuilt, devices keep their rows', async (t) => {
  const dir = t.testdir();
  {
    // The layout before migrations (user_version 0): device_heads with values, devices without capacity.
    const db = openDatabase(dir);
    db.exec(`CREATE TABLE readings (device_id TEXT NOT NULL, seq INTEGER NOT NULL, facility_id TEXT NOT NULL, ts INTEGER NOT NULL,
      metric TEXT NOT NULL, value TEXT NOT NULL, unit TEXT NOT NULL, reset INTEGER NOT NULL, received_at INTEGER NOT NULL,
      PRIMARY KEY (device_id, seq)) WITHOUT ROWID;
      CREATE INDEX readings_device_ts ON readings (device_id, ts);
      CREATE TABLE reading_devices (facility_id TEXT NOT NULL, device_id TEXT NOT NULL, PRIMARY KEY (facility_id, device_id)) WITHOUT ROWID;
      CREATE TABLE device_heads (device_id TEXT NOT NULL, metric TEXT NOT NULL, seq INTEGER NOT NULL, value TEXT NOT NULL, PRIMARY KEY (device_id, metric)) WITHOUT ROWID;
      CREATE TABLE facilities (id TEXT PRIMARY KEY, name TEXT NOT NULL, owner TEXT NOT NULL, grid_factor TEXT NOT NULL, gas_factor TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'suspended')), created_at INTEGER NOT NULL);
      CREATE TABLE facility_baselines (facility_id TEXT NOT NULL REFERENCES facilities (id), effective_from INTEGER NOT NULL, baseline TEXT NOT NULL,
        set_at INTEGER NOT NULL, PRIMARY KEY (facility_id, effective_from)) WITHOUT ROWID;
      CREATE TABLE devices (device_id TEXT PRIMARY KEY, facility_id TEXT NOT NULL REFERENCES facilities (id), kind TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'suspended')), created_at INTEGER NOT NULL, online INTEGER NOT NULL DEFAULT 0,
        last_seen_at INTEGER, secret_hash TEXT NOT NULL);
      INSERT INTO facilities VALUES ('f1', 'F', '0x${'a'.repeat(40)}', '0.5', '2', 'active', 1);
      INSERT INTO facility_baselines VALUES ('f1', 0, '10', 1);
      INSERT INTO devices VALUES ('d1', 'f1', 'grid', 'suspended', 5, 0, NULL, 'hash');`);
    const ins = db.prepare('INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)');
    ins.run('d1', 1, 'f1', T0 + MIN, 'electricity_import', '5', 'kWh', T0);
    ins.run('d1', 3, 'f1', T0 + 3 * MIN, 'electricity_import', '6', 'kWh', T0);
    db.exec("INSERT INTO device_heads VALUES ('d1', 'electricity_import', 3, '6')");
    db.close();
  }
  const { db, readings, registry } = open(t, dir);
  t.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION, 'at the current version');
  const rejectionCols = (db.prepare('PRAGMA table_info(rejections)').all() as { name: string }[]).map((c) => c.name);
  t.ok(['bucket', 'count', 'last_received_at'].every((c) => rejectionCols.includes(c)), 'the rejections log is aggregated (migration 2)');
  t.same(db.prepare('SELECT device_id, metric, first_seq, seq FROM device_heads').all(), [{ device_id: 'd1', metric: 'electricity_import', first_seq: 1, seq: 3 }]);
  t.match(registry.getDevice('d1'), { status: 'suspended', reportingIntervalSeconds: 60, createdAt: 5 }, 'device row kept, defaults added');
  t.same(statuses(await readings.commit([r(2, '5.5'), r(4, '5.9')])), ['stored', 'register_backwards'], 'the rules run on the migrated file');
  t.same((await readings.marks(['d1'])).get('d1'), { maxSeq: 3, late: 1 });
  db.close();
  const again = openDatabase(dir);
  t.teardown(() => again.close());
  openSqliteStores(again);
  t.equal(again.pragma('user_version', { simple: true }), SCHEMA_VERSION, 'opening again migrates nothing');
});
