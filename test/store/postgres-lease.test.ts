/**
 * Issue 14: the oracle's lease in PostgreSQL between OS processes. A leader holds it with a long ttl;
 * while it lives nobody else gets it; once it is killed (SIGKILL: no release, its connection just
 * closes) another process takes it at its next attempt, long before the ttl, so a killed leader is
 * replaced within one cron period. Waits are bounded polls.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { openPostgresStores } from '../../store/postgres/stores.ts';
import { poll } from '../helpers/eventually.ts';
import { postgresForFile } from '../helpers/postgres.ts';

const HOUR = 3_600_000;

t.test('a killed holder frees the lease at once; a live one keeps it', async (t) => {
  const cluster = await postgresForFile(t);
  if (!cluster) return;
  const url = await cluster.createDatabase();
  const other = await openPostgresStores(url);
  t.teardown(() => other.close());

  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
  const leader = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/pg-lease-holder.ts', url, 'oracle-run', 'leader', String(HOUR)], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => {
    if (leader.exitCode === null && leader.signalCode === null) leader.kill('SIGKILL');
  });
  const first = await new Promise<{ held: boolean }>((resolve, reject) => {
    leader.once('exit', (code) => reject(new Error(`leader exited early (${code})`)));
    readline.createInterface({ input: leader.stdout! }).once('line', (line) => resolve(JSON.parse(line) as { held: boolean }));
  });
  t.ok(first.held, 'the leader took the lease (ttl one hour)');
  const start = Date.now();
  t.notOk(await other.records.acquireLease('oracle-run', 'follower', Date.now(), 60_000), 'held by a live leader: refused');

  const exited = new Promise((resolve) => leader.once('exit', resolve));
  leader.kill('SIGKILL');
  await exited;
  t.ok(await poll(() => other.records.acquireLease('oracle-run', 'follower', Date.now(), 60_000), { everyMs: 100 }), 'taken once the leader was killed');
  t.ok(Date.now() - start < HOUR, "long before the leader's ttl");
  t.notOk(await other.records.acquireLease('oracle-run', 'third', Date.now(), 60_000), 'and the new holder keeps it against others');
});
