/**
 * Issue 10 item 15: DATA_DIR is owner-only (0700) and the SQLite files (db, -wal, -shm) 0600, for a new
 * DATA_DIR and for one an earlier version left 0755/0644.
 */
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import Database from 'better-sqlite3';
import { openDatabase } from '../../store/sqlite/db.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';

const mode = (p: string) => fs.statSync(p).mode & 0o777;

function writeSomething(dir: string): void {
  const db = openDatabase(dir);
  t.teardown(() => db.open && db.close());
  openSqliteStores(db).registry.createFacility({ id: 'F', name: 'F', owner: '0x' + '11'.repeat(20), baselineKgPerHour: '1', gridFactorKgPerKwh: '1', gasFactorKgPerM3: '1' });
}

t.test('a new DATA_DIR is 0700 and every SQLite file 0600', async (t) => {
  const dir = path.join(t.testdir(), 'data');
  const db = openDatabase(dir);
  t.teardown(() => db.close());
  openSqliteStores(db).registry.createFacility({ id: 'F', name: 'F', owner: '0x' + '11'.repeat(20), baselineKgPerHour: '1', gridFactorKgPerKwh: '1', gasFactorKgPerM3: '1' });
  t.equal(mode(dir), 0o700, 'DATA_DIR 0700');
  for (const f of ['mrv.sqlite', 'mrv.sqlite-wal', 'mrv.sqlite-shm']) {
    t.ok(fs.existsSync(path.join(dir, f)), `${f} exists (WAL mode, written)`);
    t.equal(mode(path.join(dir, f)), 0o600, `${f} is 0600`);
  }
});

t.test('an existing DATA_DIR left 0755 with 0644 files is made 0700/0600 on start', async (t) => {
  const dir = path.join(t.testdir(), 'old');
  fs.mkdirSync(dir);
  fs.chmodSync(dir, 0o755);
  // An earlier version's file: created by SQLite with the default 0644, WAL files left behind.
  const old = new Database(path.join(dir, 'mrv.sqlite'));
  old.pragma('journal_mode = WAL');
  old.exec('CREATE TABLE x (a); INSERT INTO x VALUES (1)');
  for (const f of ['mrv.sqlite', 'mrv.sqlite-wal', 'mrv.sqlite-shm']) fs.chmodSync(path.join(dir, f), 0o644);
  t.equal(mode(path.join(dir, 'mrv.sqlite-wal')), 0o644);
  writeSomething(dir);
  old.close();
  t.equal(mode(dir), 0o700, 'DATA_DIR chmod 0700');
  t.equal(mode(path.join(dir, 'mrv.sqlite')), 0o600, 'db chmod 0600');
  for (const f of ['mrv.sqlite-wal', 'mrv.sqlite-shm']) {
    if (fs.existsSync(path.join(dir, f))) t.equal(mode(path.join(dir, f)), 0o600, `${f} chmod 0600`);
  }
});

t.test('a shared sticky directory is refused rather than chmodded', async (t) => {
  const dir = path.join(t.testdir(), 'sticky');
  fs.mkdirSync(dir);
  fs.chmodSync(dir, 0o1777);
  t.throws(() => openDatabase(dir), { code: 'CONFIG_INVALID', message: /sticky/ });
  t.equal(mode(dir), 0o777, 'left as it was');
});
