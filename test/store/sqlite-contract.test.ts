/** The same ReadingStore contract the InfluxDB store passes, against the embedded SQLite store. */
import t from 'tap';
import { openDatabase } from '../../store/sqlite/db.ts';
import { silentLogger } from '../../domain/logger.ts';
import { SqliteReadingStore } from '../../store/sqlite/readings.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import { readingStoreContract } from '../helpers/reading-store-contract.ts';
import { tmpDir } from '../helpers/tmp.ts';

readingStoreContract(t, async (t, opts) => {
  const db = openDatabase(tmpDir(t, 'mrv-sqlite-contract-'));
  t.teardown(() => db.close());
  const { readings } = openSqliteStores(db);
  return opts?.limits ? new SqliteReadingStore(db, silentLogger, opts.limits) : readings;
});
