/**
 * A process that takes the oracle's lease on PostgreSQL and holds it until it is killed (the lease
 * test's leader): `node --import tsx test/helpers/pg-lease-holder.ts URL NAME HOLDER TTL_MS`. Prints
 * one JSON line `{"held":true|false}` once it has tried.
 */
import { createPool } from '../../store/postgres/pool.ts';
import { PgOracleRecords } from '../../store/postgres/records.ts';

const [url, name, holder, ttl] = process.argv.slice(2);
const pool = createPool(url);
const records = new PgOracleRecords(pool);
const held = await records.acquireLease(name, holder, Date.now(), Number(ttl));
process.stdout.write(JSON.stringify({ held }) + '\n');
// Hold it: the process stays until it is killed.
setInterval(() => undefined, 60_000);
