/**
 * The SQLite reading store committing on a worker thread (store/sqlite/commit-thread.ts), as the
 * platform's processes run it: the whole ReadingStore contract on a real file; batches sent at once
 * decided in the order sent; the main thread's event loop turning while a batch commits; a worker
 * killed with batches in flight (what was answered `stored` is in the file, the next commit starts a
 * new worker); close() lets the batches sent finish.
 */
import t from 'tap';
import { silentLogger } from '../../domain/logger.ts';
import type { Reading } from '../../domain/reading.ts';
import { openDatabase } from '../../store/sqlite/db.ts';
import { SqliteReadingStore } from '../../store/sqlite/readings.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import type { DeviceLimitsLookup } from '../../store/types.ts';
import { reading, readingStoreContract, S, T0 } from '../helpers/reading-store-contract.ts';
import { tmpDir } from '../helpers/tmp.ts';
import type { Test } from 'tap';

function threaded(t: Test, limits?: DeviceLimitsLookup): SqliteReadingStore {
  const db = openDatabase(tmpDir(t, 'mrv-commit-thread-'));
  const store = limits
    ? new SqliteReadingStore(db, silentLogger, limits, { commitThread: true })
    : openSqliteStores(db, { commitThread: true }).readings;
  t.teardown(async () => {
    await store.close();
    db.close();
  });
  return store;
}

readingStoreContract(t, async (t, opts) => threaded(t, opts?.limits));

const series = (deviceId: string, from: number, n: number): Reading[] =>
  Array.from({ length: n }, (_, i) => reading(deviceId, from + i, T0 + (from + i) * S, String(from + i)));

t.test('batches sent at once are decided in the order sent', async (t) => {
  const store = threaded(t);
  // Each batch repeats the previous one's last seq with other content: only order decides which wins.
  const batches = Array.from({ length: 20 }, (_, b) => {
    const rows = series('dev-a', b * 10 + 1, 10);
    if (b > 0) rows.unshift(reading('dev-a', b * 10, T0 + b * 10 * S, `${b * 10}.5`));
    return rows;
  });
  const outs = await Promise.all(batches.map((b) => store.commit(b)));
  outs.forEach((out, b) => {
    t.same(out.map((o) => o.status), b === 0 ? new Array(10).fill('stored') : ['rejected', ...new Array(10).fill('stored')], `batch ${b}`);
  });
  t.equal((await store.get('dev-a', 100))?.value, '100');
  t.same(await store.marks(['dev-a']), new Map([['dev-a', { maxSeq: 200, late: 0 }]]));
});

t.test("the main thread's event loop turns while a batch commits", async (t) => {
  const store = threaded(t);
  let turns = 0;
  let committing = true;
  const tick = () => {
    if (!committing) return;
    turns++;
    setImmediate(tick);
  };
  setImmediate(tick);
  const out = await store.commit(series('dev-b', 1, 5000));
  committing = false;
  t.equal(out.filter((o) => o.status === 'stored').length, 5000);
  t.ok(turns > 0, `the event loop turned ${turns} times during the commit (a commit on this thread: 0)`);

  // The same on this thread: nothing runs until the commit is done.
  const db = openDatabase(tmpDir(t, 'mrv-commit-inline-'));
  t.teardown(() => db.close());
  const inline = openSqliteStores(db).readings;
  turns = 0;
  committing = true;
  setImmediate(tick);
  await inline.commit(series('dev-b', 1, 5000));
  committing = false;
  t.equal(turns, 0, 'inline: the commit held the event loop');
});

t.test('a worker killed with batches in flight: what was answered stored is stored; the next commit starts a new worker', async (t) => {
  const store = threaded(t);
  t.same((await store.commit(series('dev-c', 1, 10))).map((o) => o.status), new Array(10).fill('stored'), 'the worker runs');
  const sent = Array.from({ length: 10 }, (_, b) => store.commit(series('dev-c', 11 + b * 500, 500)));
  await store.killCommitThread();
  const settled = await Promise.allSettled(sent);
  const failed = settled.filter((s) => s.status === 'rejected');
  for (const s of failed) t.match((s as PromiseRejectedResult).reason, { code: 'STORE_UNAVAILABLE' });
  t.ok(failed.length > 0, `${failed.length} of 10 batches failed with the worker`);
  for (const [b, s] of settled.entries()) {
    if (s.status !== 'fulfilled') continue;
    t.ok(await store.get('dev-c', 11 + b * 500 + 499), `batch ${b}, answered stored, is in the file`);
  }
  // A batch that failed was not acknowledged: sent again it is stored (or a duplicate, had it committed).
  const again = await store.commit(series('dev-c', 11, 5000));
  t.equal(again.filter((o) => o.status === 'stored' || o.status === 'duplicate').length, 5000, 'a new worker commits the retry');
  t.same(await store.marks(['dev-c']), new Map([['dev-c', { maxSeq: 5010, late: 0 }]]));
});

t.test('close() lets the batches sent finish; later commits fail', async (t) => {
  const db = openDatabase(tmpDir(t, 'mrv-commit-close-'));
  t.teardown(() => db.close());
  const store = openSqliteStores(db, { commitThread: true }).readings;
  const sent = [store.commit(series('dev-d', 1, 2000)), store.commit(series('dev-d', 2001, 2000))];
  await store.close();
  for (const out of await Promise.all(sent)) t.equal(out.filter((o) => o.status === 'stored').length, 2000);
  await t.rejects(store.commit(series('dev-d', 4001, 1)), { code: 'STORE_UNAVAILABLE' });
  const after = openSqliteStores(db).readings;
  t.equal((await after.get('dev-d', 4000))?.value, '4000', 'both batches are in the file');
});
