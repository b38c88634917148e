/** API key store and the initial admin key: generated once to an owner-only file, or configured. */
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import t from 'tap';
import { pino } from 'pino';
import { openDatabase } from '../../store/sqlite/db.ts';
import { silentLogger } from '../../domain/logger.ts';
import { ADMIN_KEY_FILE, bootstrapAdminKey, createKeyStore, hashKey } from '../../gateway/keys.ts';
import { tmpDir } from '../helpers/tmp.ts';

function capturingLogger() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

t.test('first start writes the admin key once, owner-only; later starts keep it', async (t) => {
  const dir = tmpDir(t, 'mrv-gw-');
  const db = openDatabase(dir);
  t.teardown(() => db.close());
  const keys = createKeyStore(db);
  const { logger, lines } = capturingLogger();
  const first = await bootstrapAdminKey(keys, { dataDir: dir, logger });
  t.equal(first.source, 'generated');
  const file = path.join(dir, ADMIN_KEY_FILE);
  t.equal(first.file, file);
  t.equal(fs.statSync(file).mode & 0o777, 0o600, 'mode 0600');
  const key = fs.readFileSync(file, 'utf8').trim();
  t.match(key, /^mrv_[A-Za-z0-9_-]{43}$/, '256-bit key');
  t.match(keys.authenticate(key), { role: 'admin', keyId: 'admin-initial' });
  t.ok(lines.join('').includes(file), 'the path is logged');
  t.notOk(lines.join('').includes(key), 'the key is not');

  const before = fs.statSync(file).mtimeMs;
  t.equal((await bootstrapAdminKey(keys, { dataDir: dir, logger })).source, 'existing');
  t.equal(fs.readFileSync(file, 'utf8').trim(), key, 'never overwritten');
  t.equal(fs.statSync(file).mtimeMs, before);

  // Database reset while the file survives: the file's key is registered again, not replaced.
  db.exec('DELETE FROM api_keys');
  const fresh = createKeyStore(db);
  t.equal(fresh.authenticate(key), undefined);
  t.equal((await bootstrapAdminKey(fresh, { dataDir: dir, logger: silentLogger })).source, 'file');
  t.match(fresh.authenticate(key), { role: 'admin' });

  fs.writeFileSync(file, 'garbage');
  db.exec('DELETE FROM api_keys');
  await t.rejects(bootstrapAdminKey(createKeyStore(db), { dataDir: dir, logger: silentLogger }), { code: 'CONFIG_INVALID' });
});

t.test('a configured ADMIN_API_KEY is the admin key; changing it retires the old one', async (t) => {
  const dir = tmpDir(t, 'mrv-gw-');
  const db = openDatabase(dir);
  t.teardown(() => db.close());
  const keys = createKeyStore(db, { cacheMs: 0 });
  t.equal((await bootstrapAdminKey(keys, { dataDir: dir, logger: silentLogger, configuredKey: 'configured-admin-key-0001' })).source, 'config');
  t.notOk(fs.existsSync(path.join(dir, ADMIN_KEY_FILE)), 'no file written');
  t.match(keys.authenticate('configured-admin-key-0001'), { role: 'admin', keyId: 'admin-config' });
  await bootstrapAdminKey(keys, { dataDir: dir, logger: silentLogger, configuredKey: 'configured-admin-key-0002' });
  t.equal(keys.authenticate('configured-admin-key-0001'), undefined, 'old configured key no longer works');
  t.ok(keys.authenticate('configured-admin-key-0002'));
  await t.rejects(bootstrapAdminKey(keys, { dataDir: dir, logger: silentLogger, configuredKey: 'short' }), { code: 'CONFIG_INVALID' });
  t.notOk(JSON.stringify(keys.list()).includes('configured-admin-key'), 'listing shows no part of a configured key');
});

t.test('keys: hashed at rest, role rules, cache honours revocation', async (t) => {
  const dir = tmpDir(t, 'mrv-gw-');
  const db = openDatabase(dir);
  t.teardown(() => db.close());
  let now = 1_000;
  const keys = createKeyStore(db, { cacheMs: 5_000, now: () => now });
  const { info, key } = keys.create('facility', 'facA');
  t.same(keys.authenticate(key), { keyId: info.id, role: 'facility', facilityId: 'facA' });
  const row = db.prepare('SELECT * FROM api_keys WHERE id = ?').get(info.id) as Record<string, unknown>;
  t.equal(row.key_hash, hashKey(key));
  t.notOk(Object.values(row).includes(key), 'the key itself is stored nowhere');
  t.equal(keys.authenticate(key + 'x'), undefined);
  t.equal(keys.authenticate(''), undefined);
  t.throws(() => keys.create('facility'), { code: 'VALIDATION_FAILED' });
  t.throws(() => keys.create('regulator', 'facA'), { code: 'VALIDATION_FAILED' });
  const other = keys.create('regulator');
  t.not(other.key, key);
  now += 1_000;
  t.ok(keys.revoke(info.id));
  t.equal(keys.authenticate(key), undefined, 'revocation clears the cache');
  t.notOk(keys.revoke(info.id));
  t.same(keys.list().map((k) => k.id), [other.info.id]);
});
