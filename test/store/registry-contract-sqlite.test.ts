/**
 * The registry / keys / records / status contract (test/helpers/registry-contract.ts) on the SQLite
 * file, the default backend; test/store/postgres-registry.test.ts runs the same suite on PostgreSQL.
 */
import t from 'tap';
import { openDatabase } from '../../store/sqlite/db.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import { registryContract, T0 } from '../helpers/registry-contract.ts';

registryContract(t, async (t) => {
  const db = openDatabase(t.testdir());
  t.teardown(() => db.close());
  let now = T0;
  const stores = openSqliteStores(db, { clock: () => now });
  return { ...stores, setClock: (ms: number) => (now = ms) };
});
