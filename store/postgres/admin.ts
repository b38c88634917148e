/**
 * Server administration the stores' owner does for the starters of a PostgreSQL server (cluster/,
 * the tests): creating a database. Only store/ talks to PostgreSQL (test/domain/boundaries.test.ts).
 */
import pg from 'pg';

const NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** Creates database `name` on the server at `url` (a connection to another database of it); `ifMissing`: no error when it exists. */
export async function createDatabase(url: string, name: string, opts: { ifMissing?: boolean } = {}): Promise<void> {
  if (!NAME.test(name)) throw new Error(`bad database name ${JSON.stringify(name)} (lower-case letters, digits, _)`);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    if (opts.ifMissing) {
      const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
      if (rowCount) return;
    }
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
}
