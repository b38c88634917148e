import fs from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { generateDeviceKey } from '../../domain/signature.ts';
import { openDatabase } from '../../store/sqlite/db.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import { generateSecret, hashSecret, legacyScryptRecord, legacyStats, verifyDeviceSecret, verifySecret } from '../../store/secrets.ts';
import type { Rejection } from '../../domain/reading.ts';

const OWNER = '0x' + 'ab'.repeat(20);
const T0 = Date.parse('2026-11-22T00:00:00Z');
const H = 3600_000;

function open(t: Test, dir?: string) {
  const dataDir = dir ?? t.testdir();
  const db = openDatabase(dataDir);
  t.teardown(() => db.close());
  let now = T0;
  const clock = { set: (v: number) => (now = v) };
  return { dataDir, db, clock, ...openSqliteStores(db, { clock: () => now }) };
}

const facility = (id = 'f1') => ({ id, name: 'Plant ' + id, owner: OWNER, baselineKgPerHour: '3600.0', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162' });

t.test('facilities: create, conflict, validation, status', async (t) => {
  const { registry } = open(t);
  const f = registry.createFacility(facility());
  t.same(f, { ...facility(), baselineKgPerHour: '3600', status: 'active', createdAt: T0 }, 'decimals stored canonical');
  t.throws(() => registry.createFacility(facility()), { code: 'FACILITY_EXISTS', statusCode: 409 });
  t.throws(() => registry.createFacility({ ...facility('bad id') }), { code: 'VALIDATION_FAILED' });
  t.throws(() => registry.createFacility({ ...facility('f2'), owner: 'nope' }), { code: 'VALIDATION_FAILED' });
  t.throws(() => registry.createFacility({ ...facility('f2'), baselineKgPerHour: '-1' }), { code: 'VALIDATION_FAILED' });
  t.throws(() => registry.createFacility({ ...facility('f2'), gridFactorKgPerKwh: 'abc' }), { code: 'VALIDATION_FAILED' });
  registry.createFacility({ ...facility('f0'), createdAt: 5 });
  t.same(registry.listFacilities().map((x) => x.id), ['f0', 'f1']);
  t.equal(registry.getFacility('nope'), undefined);
  t.equal(registry.updateFacility('f1', { status: 'suspended' }).status, 'suspended');
  t.throws(() => registry.updateFacility('nope', { status: 'active' }), { code: 'FACILITY_NOT_FOUND', statusCode: 404 });
  t.throws(() => registry.updateFacility('f1', { status: 'gone' as never }), { code: 'VALIDATION_FAILED' });
});

t.test('baseline history', async (t) => {
  const { registry, clock } = open(t);
  registry.createFacility(facility());
  t.equal(registry.baselineAt('f1', 0), '3600', 'the first baseline is in force from the start');
  t.equal(registry.baselineAt('f1', T0 - 10 * H), '3600');
  // A PATCH made at T0 + 30 min (default effectiveFrom = now): in force from then on, so the window
  // that started at T0 keeps 3600 (the oracle reads the baseline at a window's start).
  clock.set(T0 + H / 2);
  const f = registry.updateFacility('f1', { baselineKgPerHour: '4000' });
  t.equal(f.baselineKgPerHour, '4000', 'the facility shows the latest configured baseline');
  t.equal(registry.baselineAt('f1', T0), '3600');
  t.equal(registry.baselineAt('f1', T0 + H / 2 - 1), '3600');
  t.equal(registry.baselineAt('f1', T0 + H / 2), '4000');
  t.equal(registry.baselineAt('f1', T0 + H), '4000');
  // An explicit effectiveFrom (the next window start), then a correction of the same change.
  registry.updateFacility('f1', { baselineKgPerHour: '2500.50', effectiveFrom: T0 + 3 * H });
  registry.updateFacility('f1', { baselineKgPerHour: '2500.25', effectiveFrom: T0 + 3 * H });
  t.equal(registry.baselineAt('f1', T0 + 3 * H - 1), '4000');
  t.equal(registry.baselineAt('f1', T0 + 3 * H), '2500.25');
  t.equal(registry.baselineAt('f1', T0 + 100 * H), '2500.25');
  t.same(registry.baselineHistory('f1').map((b) => [b.effectiveFrom, b.baselineKgPerHour]), [
    [0, '3600'],
    [T0 + H / 2, '4000'],
    [T0 + 3 * H, '2500.25'],
  ]);
  t.throws(() => registry.baselineAt('nope', T0), { code: 'FACILITY_NOT_FOUND' });
  t.throws(() => registry.updateFacility('f1', { baselineKgPerHour: 'x' }), { code: 'VALIDATION_FAILED' });
  t.equal(registry.baselineAt('f1', T0 + 100 * H), '2500.25', 'a failed update changes nothing');
});

t.test('devices: secrets, verify, rotate, suspend', async (t) => {
  const { registry, db, dataDir } = open(t);
  registry.createFacility(facility());
  t.throws(() => registry.createDevice('nope', 'd1', 'meter'), { code: 'FACILITY_NOT_FOUND' });
  t.throws(() => registry.createDevice('f1', 'bad/id', 'meter'), { code: 'VALIDATION_FAILED' });
  const { device, password } = registry.createDevice('f1', 'd1', 'meter');
  t.same(device, { deviceId: 'd1', facilityId: 'f1', kind: 'meter', status: 'active', reportingIntervalSeconds: 60, createdAt: T0, online: false });
  t.match(password, /^[A-Za-z0-9_-]{32,}$/, 'base64url');
  t.ok(Buffer.from(password, 'base64url').length >= 16, 'at least 128 random bits');
  t.throws(() => registry.createDevice('f1', 'd1', 'meter'), { code: 'DEVICE_EXISTS' });
  const other = registry.createDevice('f1', 'd2', 'cems');
  t.not(other.password, password, 'independent secrets');

  // Stored only as a salted HMAC-SHA256 record (a fast keyed hash: the secret has 192 random bits).
  const hash = (db.prepare('SELECT secret_hash FROM devices WHERE device_id = ?').pluck().get('d1') as string);
  t.match(hash, /^hs256\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/, 'hs256$salt$mac, base64url');
  db.pragma('wal_checkpoint(TRUNCATE)');
  const fileBytes = Buffer.concat(fs.readdirSync(dataDir).map((f) => fs.readFileSync(path.join(dataDir, f))));
  t.equal(fileBytes.indexOf(password), -1, 'the plaintext password is nowhere in the database files');

  t.match(await verifyDeviceSecret(registry, 'd1', password), { deviceId: 'd1', facilityId: 'f1', status: 'active', facilityStatus: 'active' });
  t.match(await verifyDeviceSecret(registry, 'd1', Buffer.from(password)), { deviceId: 'd1' }, 'MQTT passwords come as Buffers');
  t.equal(await verifyDeviceSecret(registry, 'd1', password + 'x'), undefined, 'wrong secret');
  t.equal(await verifyDeviceSecret(registry, 'd1', other.password), undefined, "another device's secret");
  t.equal(await verifyDeviceSecret(registry, 'ghost', password), undefined, 'unknown device');
  t.equal(await verifyDeviceSecret(registry, 'd1', undefined), undefined, 'no password');
  t.equal(await verifyDeviceSecret(registry, 'd1', ''), undefined, 'empty password');
  t.equal(await verifyDeviceSecret(registry, 'd1', 'x'.repeat(100_000)), undefined, 'huge password');
  t.match(await verifyDeviceSecret(registry, 'd2', other.password), { deviceId: 'd2' }, 'standalone export');

  // Rotation: the old secret stops working at once.
  const rotated = registry.rotateSecret('d1');
  t.not(rotated, password);
  t.equal(await verifyDeviceSecret(registry, 'd1', password), undefined, 'old secret refused');
  t.match(await verifyDeviceSecret(registry, 'd1', rotated), { deviceId: 'd1' });
  t.throws(() => registry.rotateSecret('ghost'), { code: 'DEVICE_NOT_FOUND', statusCode: 404 });

  // Suspension is reported; the broker refuses the CONNACK on it.
  t.equal(registry.updateDevice('d1', { status: 'suspended' }).status, 'suspended');
  t.match(await verifyDeviceSecret(registry, 'd1', rotated), { status: 'suspended', facilityStatus: 'active' });
  registry.updateFacility('f1', { status: 'suspended' });
  t.match(registry.credentials('d2'), { status: 'active', facilityStatus: 'suspended' });
  t.throws(() => registry.updateDevice('ghost', { status: 'active' }), { code: 'DEVICE_NOT_FOUND' });
  t.same(registry.listDevices('f1').map((d) => d.deviceId), ['d1', 'd2']);
  t.throws(() => registry.listDevices('nope'), { code: 'FACILITY_NOT_FOUND' });
  t.equal(registry.getDevice('ghost'), undefined);
});

t.test('devices: Ed25519 public key at creation and by update, normalised to hex; anything else refused', async (t) => {
  const { registry } = open(t);
  registry.createFacility(facility());
  const k1 = generateDeviceKey().publicKey;
  const k2 = generateDeviceKey().publicKey;
  const { device } = registry.createDevice('f1', 'm1', 'grid', { publicKey: Buffer.from(k1, 'hex').toString('base64') });
  t.equal(device.publicKey, k1, 'base64 in, hex stored');
  t.equal(registry.devicePublicKey('m1'), k1);
  t.notOk('publicKey' in registry.createDevice('f1', 'm2', 'grid').device, 'no key: none');
  t.equal(registry.devicePublicKey('m2'), undefined);
  t.equal(registry.devicePublicKey('ghost'), undefined);
  t.equal(registry.updateDevice('m2', { publicKey: k2.toUpperCase() }).publicKey, k2, 'set by update, upper-case hex normalised');
  t.equal(registry.updateDevice('m1', { publicKey: k2 }).publicKey, k2, 'rotated');
  for (const bad of ['', 'xyz', k1.slice(2), k1 + 'aa', Buffer.alloc(33).toString('base64'), 42]) {
    t.throws(() => registry.createDevice('f1', 'm3', 'grid', { publicKey: bad as string }), { code: 'VALIDATION_FAILED', message: /publicKey must be an Ed25519 public key/ });
    t.throws(() => registry.updateDevice('m1', { publicKey: bad as string }), { code: 'VALIDATION_FAILED' });
  }
  t.equal(registry.getDevice('m3'), undefined, 'nothing created');
  t.equal(registry.devicePublicKey('m1'), k2, 'unchanged by refused updates');
});

t.test('devices: capacity, reporting interval, decommissioning (final, with a reason)', async (t) => {
  const { registry, readings, clock } = open(t);
  registry.createFacility(facility());
  const { device } = registry.createDevice('f1', 'm1', 'grid', { capacity: '250.5', reportingIntervalSeconds: 10 });
  t.match(device, { capacity: '250.5', reportingIntervalSeconds: 10, status: 'active' });
  t.same(registry.deviceLimits('m1'), { capacity: '250.5', reportingIntervalSeconds: 10, kind: 'grid' });
  t.same(registry.deviceLimits('ghost'), undefined);
  for (const [opts, why] of [
    [{ capacity: '-1' }, /capacity must not be negative/],
    [{ capacity: '0' }, /capacity must be above 0/],
    [{ capacity: 'lots' }, /capacity must be a decimal/],
    [{ reportingIntervalSeconds: 0 }, /reportingIntervalSeconds must be an integer from 1 to 86400/],
    [{ reportingIntervalSeconds: 86_401 }, /reportingIntervalSeconds/],
    [{ reportingIntervalSeconds: 1.5 }, /reportingIntervalSeconds/],
  ] as const) {
    t.throws(() => registry.createDevice('f1', 'm2', 'grid', opts as never), { code: 'VALIDATION_FAILED', message: why });
  }
  t.equal(registry.getDevice('m2'), undefined, 'nothing created by a refused request');

  // Capacity changes apply to the readings committed after them.
  const H = 3_600_000;
  const r = (seq: number, ts: number, value: string) => ({ facilityId: 'f1', deviceId: 'm1', seq, ts, metric: 'electricity_import' as const, value, unit: 'kWh', reset: false, receivedAt: ts });
  t.same((await readings.commit([r(1, T0, '0'), r(2, T0 + H, '300.6')])).map((o) => o.status), ['stored', 'stored'], '1.2 x 250.5 = 300.6 kWh in an hour');
  t.match((await readings.commit([r(3, T0 + 2 * H, '601.3')]))[0], { status: 'rejected', reason: 'implausible' });
  t.equal(registry.updateDevice('m1', { capacity: '1000' }).capacity, '1000');
  t.same((await readings.commit([r(3, T0 + 2 * H, '601.3')])).map((o) => o.status), ['stored'], 'the new capacity applies at once');

  // Decommissioning: needs a reason, records when, is final.
  t.throws(() => registry.updateDevice('m1', { status: 'decommissioned' }), { code: 'VALIDATION_FAILED', message: /reason is required/ });
  t.throws(() => registry.updateDevice('m1', { status: 'decommissioned', reason: '  ' }), { code: 'VALIDATION_FAILED' });
  t.throws(() => registry.updateDevice('m1', { status: 'suspended', reason: 'x' }), { code: 'VALIDATION_FAILED', message: /only accepted with status decommissioned/ });
  t.throws(() => registry.updateDevice('m1', { status: 'retired' as never }), { code: 'VALIDATION_FAILED' });
  registry.updateDevice('m1', { status: 'suspended' });
  clock.set(T0 + 5000);
  const d = registry.updateDevice('m1', { status: 'decommissioned', reason: 'meter replaced after calibration failure' });
  t.match(d, { status: 'decommissioned', decommissionedAt: T0 + 5000, decommissionReason: 'meter replaced after calibration failure' });
  t.match(registry.credentials('m1'), { status: 'decommissioned' }, 'the broker refuses it at CONNECT like a suspended device');
  for (const status of ['active', 'suspended'] as const) {
    t.throws(() => registry.updateDevice('m1', { status }), { code: 'DEVICE_DECOMMISSIONED', message: /decommissioned; that is final/ });
  }
  clock.set(T0 + 9000);
  t.match(registry.updateDevice('m1', { status: 'decommissioned', reason: 'again' }), { decommissionedAt: T0 + 5000, decommissionReason: 'meter replaced after calibration failure' }, 'a second decommissioning changes nothing');
  t.match(registry.listDevices('f1'), [{ deviceId: 'm1', status: 'decommissioned', decommissionedAt: T0 + 5000 }]);
});

t.test('secret records: malformed or weak records never match', async (t) => {
  const good = await hashSecret('pw');
  t.equal(await verifySecret('pw', good), true);
  t.equal(await verifySecret('pw2', good), false);
  t.equal(await verifySecret('pw', undefined), false);
  t.equal(await verifySecret('pw', 'plaintext'), false);
  t.equal(await verifySecret('pw', good.slice(0, -4)), false, 'truncated mac');
  t.equal(await verifySecret('pw', 'hs256$$' + good.split('$')[2]), false, 'no salt');
  t.not(await hashSecret('pw'), good, 'salted: same password, different record');
  const secret = generateSecret();
  const legacy = legacyScryptRecord(secret);
  t.equal(await verifySecret(secret, legacy.replace('scrypt$16384', 'scrypt$1024')), false, 'legacy: N below 16384 refused');
  t.equal(await verifySecret(secret, legacy.replace('scrypt$16384', 'scrypt$16385')), false, 'legacy: N not a power of two');
});

t.test('legacy scrypt records still log in, are upgraded on the first login, and never cost scrypt for strangers (issue 10 item 11)', async (t) => {
  const { registry, db } = open(t);
  registry.createFacility(facility());
  registry.createDevice('f1', 'old', 'meter');
  const secret = generateSecret();
  const legacy = legacyScryptRecord(secret);
  db.prepare('UPDATE devices SET secret_hash = ? WHERE device_id = ?').run(legacy, 'old');
  const stored = () => db.prepare('SELECT secret_hash FROM devices WHERE device_id = ?').pluck().get('old') as string;

  const runs = legacyStats.scryptRuns;
  t.equal(await verifyDeviceSecret(registry, 'ghost', secret), undefined, 'unknown device');
  t.equal(await verifyDeviceSecret(registry, 'old', 'not a generated secret!'), undefined, 'malformed password');
  t.equal(await verifyDeviceSecret(registry, 'old', 'x'.repeat(100_000)), undefined, 'huge password');
  t.equal(await verifyDeviceSecret(registry, 'old', undefined), undefined, 'no password');
  t.equal(legacyStats.scryptRuns, runs, 'none of these ran scrypt');
  t.equal(stored(), legacy, 'record untouched');

  t.equal(await verifyDeviceSecret(registry, 'old', generateSecret()), undefined, 'a well-formed wrong secret is refused (after scrypt)');
  t.equal(legacyStats.scryptRuns, runs + 1);
  t.equal(stored(), legacy, 'a failed login does not upgrade');

  const ok = await verifyDeviceSecret(registry, 'old', secret);
  t.match(ok, { deviceId: 'old', status: 'active' }, 'the legacy secret still logs in');
  t.match(stored(), /^hs256\$/, 'and the record is now hs256');
  t.equal(ok!.secretHash, stored(), 'the credentials returned carry the new record');
  const before = legacyStats.scryptRuns;
  t.ok(await verifyDeviceSecret(registry, 'old', secret), 'the same secret logs in against the new record');
  t.equal(legacyStats.scryptRuns, before, 'without scrypt');

  // Compare-and-set: a rotation between check and upgrade wins.
  db.prepare('UPDATE devices SET secret_hash = ? WHERE device_id = ?').run(legacy, 'old');
  const rotated = registry.rotateSecret('old');
  t.equal(registry.replaceSecretHash('old', legacy, await hashSecret(secret)), false, 'upgrade of a record that was rotated meanwhile does nothing');
  t.ok(await verifyDeviceSecret(registry, 'old', rotated), 'the rotated secret stands');
  t.match(stored(), /^hs256\$/, 'rotation writes hs256 records');
});

t.test('online status and lastSeenAt', async (t) => {
  const { registry } = open(t);
  registry.createFacility(facility());
  registry.createDevice('f1', 'd1', 'meter');
  registry.setOnline('d1', true, T0 + 1000);
  t.match(registry.getDevice('d1'), { online: true, lastSeenAt: T0 + 1000 });
  registry.setOnline('d1', false, T0 + 5000);
  t.match(registry.getDevice('d1'), { online: false, lastSeenAt: T0 + 5000 });
  registry.setOnline('d1', true, T0 + 2000);
  t.match(registry.getDevice('d1'), { online: true, lastSeenAt: T0 + 5000 }, 'lastSeenAt never moves backwards');
  t.doesNotThrow(() => registry.setOnline('ghost', true, T0), 'unknown device ignored');
});

t.test('rejections log', async (t) => {
  const { registry } = open(t);
  registry.createFacility(facility());
  registry.createFacility(facility('f2'));
  const rows: Rejection[] = [
    { facilityId: 'f1', deviceId: 'd1', receivedAt: T0, reason: 'invalid_json', detail: 'x', payload: 'hello' },
    { facilityId: 'f1', deviceId: 'd1', receivedAt: T0 + 1, reason: 'future_ts', payload: '€'.repeat(3000) },
    { facilityId: 'f2', deviceId: 'd9', receivedAt: T0 + 2, reason: 'unknown_unit', payload: '{}' },
  ];
  registry.addRejections(rows);
  registry.addRejections([]);
  const list = registry.listRejections('f1');
  t.same(list.map((r) => r.reason), ['future_ts', 'invalid_json'], 'newest first, own facility only');
  t.equal(Buffer.byteLength(list[0].payload), 4095, 'payload capped at 4 KiB on a character boundary');
  t.same(list[1], rows[0]);
  t.equal(list[0].detail, undefined);
  t.same(registry.listRejections('f1', 1).map((r) => r.reason), ['future_ts']);
  t.throws(() => registry.listRejections('nope'), { code: 'FACILITY_NOT_FOUND' });
  // One row per minute each: 1100 distinct rows.
  const many: Rejection[] = Array.from({ length: 1100 }, (_, i) => ({ ...rows[2], receivedAt: i * 60_000 }));
  registry.addRejections(many);
  t.equal(registry.listRejections('f2').length, 100, 'default limit 100');
  t.equal(registry.listRejections('f2', 5000).length, 1000, 'max 1000');
});

t.test('rejections are aggregated per device, reason and minute, and pruned (issue 10 item 13)', async (t) => {
  const { registry, db } = open(t);
  registry.createFacility(facility());
  const minute = Math.floor(T0 / 60_000) * 60_000;
  const row = (i: number, reason: Rejection['reason'] = 'unknown_metric', deviceId = 'd1'): Rejection => ({
    facilityId: 'f1',
    deviceId,
    receivedAt: minute + (i % 60) * 1000,
    reason,
    detail: `element ${i}`,
    payload: `{"seq":${i}}`,
  });
  // 5,000 bad elements in one minute, in batches as the pipeline writes them, plus another reason and device.
  for (let b = 0; b < 10; b++) registry.addRejections(Array.from({ length: 500 }, (_, i) => row(b * 500 + i)));
  registry.addRejections([row(1, 'future_ts'), row(2, 'future_ts'), row(3, 'unknown_metric', 'd2')]);
  const count = () => (db.prepare('SELECT COUNT(*) FROM rejections').pluck().get() as number);
  t.equal(count(), 3, 'three stored rows: (d1, unknown_metric), (d1, future_ts), (d2, unknown_metric)');
  const list = registry.listRejections('f1');
  const agg = list.find((r) => r.deviceId === 'd1' && r.reason === 'unknown_metric')!;
  t.equal(agg.count, 5000, 'the count is exact');
  t.equal(agg.detail, 'element 0', 'the first one is the sample');
  t.equal(agg.receivedAt, minute);
  t.equal(agg.lastReceivedAt, minute + 59_000, 'last occurrence kept');
  t.equal(list.find((r) => r.reason === 'future_ts')!.count, 2);
  t.equal(list.find((r) => r.deviceId === 'd2')!.count, undefined, 'a single rejection has no count');
  // The next minute starts a new row.
  registry.addRejections([{ ...row(9), receivedAt: minute + 60_000 }]);
  t.equal(count(), 4);

  // Retention: rows last seen before the cut-off go.
  t.equal(registry.pruneRejections(minute + 59_500), 3, 'the three rows of the first minute (last seen before the cut-off) pruned');
  t.same(registry.listRejections('f1').map((r) => r.receivedAt), [minute + 60_000]);
});

t.test('registry survives closing and reopening the file', async (t) => {
  const dir = t.testdir();
  let password: string;
  {
    const db = openDatabase(dir);
    const { registry } = openSqliteStores(db, { clock: () => T0 });
    registry.createFacility(facility());
    registry.updateFacility('f1', { baselineKgPerHour: '10', effectiveFrom: T0 + H });
    ({ password } = registry.createDevice('f1', 'd1', 'meter'));
    registry.addRejections([{ facilityId: 'f1', deviceId: 'd1', receivedAt: T0, reason: 'invalid_utf8', payload: '?' }]);
    db.close();
  }
  const { registry } = open(t, dir);
  t.equal(registry.getFacility('f1')?.baselineKgPerHour, '10');
  t.equal(registry.baselineAt('f1', T0), '3600');
  t.match(await verifyDeviceSecret(registry, 'd1', password), { deviceId: 'd1' });
  t.equal(registry.listRejections('f1').length, 1);
});

t.test('a rejections table from before aggregation is migrated in place', async (t) => {
  const dir = t.testdir();
  {
    const db = openDatabase(dir);
    db.exec(`CREATE TABLE rejections (
      id INTEGER PRIMARY KEY AUTOINCREMENT, facility_id TEXT NOT NULL, device_id TEXT NOT NULL,
      received_at INTEGER NOT NULL, reason TEXT NOT NULL, detail TEXT, payload TEXT NOT NULL);
      INSERT INTO rejections (facility_id, device_id, received_at, reason, detail, payload) VALUES
        ('f1', 'd1', ${T0}, 'invalid_json', 'a', 'x'), ('f1', 'd1', ${T0 + 1}, 'invalid_json', 'b', 'y');`);
    db.close();
  }
  const { registry } = open(t, dir);
  registry.createFacility(facility());
  t.same(registry.listRejections('f1').map((r) => [r.detail, r.count]), [['b', undefined], ['a', undefined]], 'old rows kept, one each');
  registry.addRejections([{ facilityId: 'f1', deviceId: 'd1', receivedAt: T0 + 2, reason: 'invalid_json', detail: 'c', payload: 'z' }]);
  registry.addRejections([{ facilityId: 'f1', deviceId: 'd1', receivedAt: T0 + 3, reason: 'invalid_json', detail: 'd', payload: 'z' }]);
  t.same(registry.listRejections('f1').map((r) => [r.detail, r.count]), [['c', 2], ['b', undefined], ['a', undefined]], 'new rows aggregate beside them');
  t.equal(registry.pruneRejections(T0 + 2), 2, 'old rows are pruned by their time');
  // Opening again (a second process, a restart) migrates nothing twice.
  const again = openDatabase(dir);
  t.teardown(() => again.close());
  t.doesNotThrow(() => openSqliteStores(again));
});
