/**
 * A throwaway PostgreSQL 15 cluster per test file; the server code lives in cluster/postgres.ts
 * (`npm run start:cluster` starts the same server). Tests skip with `postgresMissing()`'s reason, or
 * fail when `process.env.CI` is set (see `requirePostgres`), as test/helpers/influxd.ts does for influxd.
 */
import type { Test } from 'tap';
import { postgresMissing, startPostgres, type PostgresCluster } from '../../cluster/postgres.ts';

export { PG_BIN_DIR, postgresMissing, startPostgres, type PostgresCluster } from '../../cluster/postgres.ts';

/** Returns true when the test can go on; otherwise skips it with the reason, or fails it under CI. */
export function requirePostgres(t: Test): boolean {
  const why = postgresMissing();
  if (why === undefined) return true;
  if (process.env.CI) t.fail(`CI is set and ${why}`);
  else t.plan(0, why);
  return false;
}

/**
 * One cluster for the whole test file: started on first use, stopped in the file's teardown. Returns
 * undefined (after skipping or failing `t` through requirePostgres) when the binaries are missing.
 */
export async function postgresForFile(t: Test): Promise<PostgresCluster | undefined> {
  if (!requirePostgres(t)) return undefined;
  const cluster = await startPostgres();
  t.teardown(() => cluster.stop());
  return cluster;
}
