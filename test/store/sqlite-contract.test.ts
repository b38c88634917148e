/** The same ReadingStore contract the InfluxDB store passes, against the embedded SQLite store. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { openDatabase } from '../../store/sqlite/db.ts';
import { silentLogger } from '../../domain/logger.ts';
import { SqliteReadingStore } from '../../store/sqlite/readings.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import { readingStoreContract } from '../helpers/reading-store-contract.ts';

readingStoreContract(t, async (t, opts) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mrv-sqlite-contract-'));
  const db = openDatabase(dir);
  t.teardown(() => {
    db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const { readings } = openSqliteStores(db);
  return opts?.limits ? new SqliteReadingStore(db, silentLogger, opts.limits) : readings;
});
