/**
 * Every table of the SQLite file is created by the numbered migrations of store/sqlite/schema.ts. A
 * file made by the code before the oracle and api_keys tables joined the numbering (version 2,
 * test/store/fixtures/v2-467a77b.sql) opens with everything kept: registry, readings and their
 * arrival numbers, rejections, oracle records, cursors, late flags, lease, status, API keys.
 */
import fs from 'node:fs';
import path from 'node:path';
import { generateDeviceKey } from '../../domain/signature.ts';
import t, { type Test } from 'tap';
import { createKeyStore } from '../../gateway/keys.ts';
import { verifyDeviceSecret } from '../../store/secrets.ts';
import { openDatabase, type Db } from '../../store/sqlite/db.ts';
import { SCHEMA_VERSION } from '../../store/sqlite/schema.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import { DEFAULT_BACKOFF } from '../../store/types.ts';

const FIXTURE = path.join(import.meta.dirname, 'fixtures', 'v2-467a77b.sql');
const T0 = 1_767_225_600_000;
const H = 3_600_000;
const W0 = `F1-${T0}`;
const ROOT = '0x' + '1'.repeat(64);

const TABLES = [
  'api_keys',
  'device_heads',
  'devices',
  'facilities',
  'facility_baselines',
  'oracle_corrections',
  'oracle_cursors',
  'oracle_facility_status',
  'oracle_late',
  'oracle_lease',
  'oracle_meta',
  'oracle_settlements',
  'oracle_unfinal',
  'reading_devices',
  'reading_voids',
  'readings',
  'rejections',
];

function tables(db: Db): string[] {
  return db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").pluck().all() as string[];
}

function oldFile(t: Test): string {
  const dir = t.testdir();
  const db = openDatabase(dir);
  db.exec(fs.readFileSync(FIXTURE, 'utf8'));
  t.equal(db.pragma('user_version', { simple: true }), 2, 'the fixture is a version-2 file');
  db.close();
  return dir;
}

t.test('a file made before the oracle and key tables were numbered opens with everything kept', async (t) => {
  const dir = oldFile(t);
  const db = openDatabase(dir);
  t.teardown(() => db.close());
  const { readings, registry, records, status, apiKeys } = openSqliteStores(db);
  t.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION, 'migrated to the current version');
  t.same(tables(db), TABLES);

  // Registry and readings.
  t.match(registry.getFacility('F1'), { name: 'Plant one', baselineKgPerHour: '10', status: 'active' });
  t.equal(registry.baselineAt('F1', T0), '3600', 'baseline history kept');
  t.match(registry.getDevice('d1'), { capacity: '100', reportingIntervalSeconds: 60, online: true, lastSeenAt: T0 + 5000 });
  t.match(registry.getDevice('d2'), { status: 'decommissioned', decommissionReason: 'replaced' });
  t.match(await verifyDeviceSecret(registry, 'd1', 'flQbueuxztUwDVB62Fa1s27bPMA_Sjmu'), { deviceId: 'd1', facilityId: 'F1' }, 'the device still logs in');
  t.same((await readings.marks(['d1'])).get('d1'), { maxSeq: 5, late: 1 });
  t.equal((await readings.get('d1', 4))?.arrival, 1, 'the late arrival keeps its number');
  // Migration 4 (device signatures): old devices have no key, old readings no signature; both can now.
  t.notOk('publicKey' in (registry.getDevice('d1') ?? {}), 'an old device has no public key');
  t.notOk('sig' in ((await readings.get('d1', 4)) ?? {}), 'an old reading has no signature');
  t.equal(registry.devicePublicKey('d1'), undefined);
  const key = generateDeviceKey().publicKey;
  t.equal(registry.updateDevice('d1', { publicKey: key }).publicKey, key, 'a key can be set on an upgraded file');
  t.equal(registry.devicePublicKey('d1'), key);
  t.match(registry.listRejections('F1'), [{ reason: 'invalid_json', count: 2 }]);

  // Oracle records and status.
  t.match(records.getSettlement(W0), { evidenceRoot: ROOT, mintedGrams: '3598926', netGrams: '3598926' });
  t.equal(records.row(W0, '0x' + '2'.repeat(64))?.state, 'discarded');
  t.equal(records.firstOpenWindow('F1'), T0 + H, 'the open intent is still open');
  t.same(records.cursor('d1')?.mark, { maxSeq: 5, late: 1 });
  t.ok(records.isLate('d1', 4));
  t.doesNotThrow(() => records.checkWindow(H), 'the window length is remembered');
  t.throws(() => records.checkWindow(2 * H), { code: 'CONFIG_INVALID' });
  t.notOk(records.acquireLease('oracle', 'another', T0 + 2 * H, 60_000), 'the lease is still held');
  t.match(status.get('F1'), { settlementStatus: 'blocked', reason: 'chain refused: FacilitySuspended', attempts: 1 });
  t.match(status.unfinal('F1'), [{ id: W0, blockNumber: 42 }]);

  // API keys.
  const keys = createKeyStore(db);
  t.match(keys.authenticate('mrv_UL0D6P2wTZD6yf-X4OLvBDr5_A3L68l-fUkpgGvxiMg'), { role: 'regulator' });
  t.equal(keys.authenticate('mrv_1cUvQN6E_tAbI7D5TjOOR7KC5kN1jabIu9IAsSPVW7s'), undefined, 'a revoked key stays revoked');
  t.match(keys.authenticate('configured-admin-key-0123456789'), { keyId: 'admin-config', role: 'admin' });
  t.same(apiKeys.list().map((k) => k.role).sort(), ['admin', 'regulator']);

  // And the file takes new writes.
  const rd = { facilityId: 'F1', deviceId: 'd1', seq: 6, ts: T0 + 360_000, metric: 'electricity_import' as const, value: '1005', unit: 'kWh', reset: false, receivedAt: T0 + 360_001 };
  t.same(await readings.commit([rd]), [{ status: 'stored' }]);
  status.block('F1', 'again', T0 + 3 * H, DEFAULT_BACKOFF);
  t.equal(status.get('F1').attempts, 2);
});

t.test('a new file gets the same tables; opening a migrated file again changes nothing', async (t) => {
  const fresh = openDatabase(t.testdir());
  t.teardown(() => fresh.close());
  openSqliteStores(fresh);
  t.same(tables(fresh), TABLES);
  t.equal(fresh.pragma('user_version', { simple: true }), SCHEMA_VERSION);

  const dir = oldFile(t);
  const a = openDatabase(dir);
  t.teardown(() => a.close());
  openSqliteStores(a);
  const schema = a.prepare("SELECT type, name, sql FROM sqlite_master ORDER BY name").all();
  const b = openDatabase(dir);
  t.teardown(() => b.close());
  openSqliteStores(b);
  t.same(b.prepare("SELECT type, name, sql FROM sqlite_master ORDER BY name").all(), schema, 'a second open changes nothing');
});

t.test('a file from a newer program is refused', async (t) => {
  const db = openDatabase(t.testdir());
  t.teardown(() => db.close());
  db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
  t.throws(() => openSqliteStores(db), { code: 'CONFIG_INVALID' });
});
