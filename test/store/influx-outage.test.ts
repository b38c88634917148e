/**
 * InfluxDB outages against a real influxd that the test stops and restarts on the same directories:
 * commits pending during the outage resolve only after the server is back, and everything is stored
 * exactly once; a write that finally fails rejects (nothing acknowledged) and a redelivery then stores
 * it; the bounded buffer makes commits wait instead of dropping.
 */
import t, { type Test } from 'tap';
import { silentLogger } from '../../domain/logger.ts';
import type { Reading } from '../../domain/reading.ts';
import { openInfluxStore, type InfluxReadingStore, type InfluxStoreOptions } from '../../store/influx/store.ts';
import type { CommitOutcome } from '../../store/types.ts';
import { poll } from '../helpers/eventually.ts';
import { requireInfluxd, startInfluxd, type Influxd } from '../helpers/influxd.ts';
import { T0, reading } from '../helpers/reading-store-contract.ts';


interface Tracked {
  promise: Promise<CommitOutcome[]>;
  state: 'pending' | 'resolved' | 'rejected';
  whileUp?: boolean;
  error?: Error;
}

if (requireInfluxd(t)) {
  const ix: Influxd = await startInfluxd();
  t.teardown(() => ix.close());
  let up = true;
  let dbCount = 0;

  const open = async (t: Test, extra: Partial<InfluxStoreOptions>): Promise<{ store: InfluxReadingStore; db: string }> => {
    const db = `outage${++dbCount}`;
    await ix.createDatabase(db);
    const store = openInfluxStore({ url: ix.url, database: db, logger: silentLogger, flushMs: 2, retryBaseMs: 50, retryMaxDelayMs: 250, requestTimeoutMs: 2000, closeTimeoutMs: 1000, ...extra });
    t.teardown(() => store.close());
    return { store, db };
  };
  const track = (p: Promise<CommitOutcome[]>): Tracked => {
    const tr: Tracked = { promise: p, state: 'pending' };
    p.then(
      () => {
        tr.state = 'resolved';
        tr.whileUp = up;
      },
      (err: Error) => {
        tr.state = 'rejected';
        tr.error = err;
      },
    );
    return tr;
  };
  const perDevice = async (db: string, measurement: string) => {
    const res = await ix.query(`SELECT count("value") FROM "${measurement}" GROUP BY "device"`, db);
    const out: Record<string, number> = {};
    for (const s of res.results?.[0].series ?? []) out[s.tags?.device ?? ''] = Number(s.values[0][1]);
    return out;
  };
  const stopServer = async () => {
    up = false;
    await ix.stop();
  };
  const startServer = async () => {
    up = true;
    await ix.start();
  };
  t.teardown(async () => {
    if (!ix.running) await ix.start().catch(() => undefined);
  });

  const batchOf = (deviceId: string, from: number, n: number): Reading[] =>
    Array.from({ length: n }, (_, i) => reading(deviceId, from + i, T0 + (from + i) * 1000, String(1000 + from + i)));

  t.test('server stopped mid-stream: nothing acknowledged early, everything stored exactly once', async (t) => {
    const { store, db } = await open(t, { maxRetryMs: 120_000, batchSize: 50 });
    const warm = await store.commit([...batchOf('dev-a', 1, 20), ...batchOf('dev-b', 1, 20)]);
    t.ok(warm.every((o) => o.status === 'stored'), 'before the outage');
    // A stream of commits; the server is stopped (SIGTERM) while the first ones are in flight.
    const during: Tracked[] = [];
    const next = (k: number) => track(store.commit([...batchOf('dev-a', 21 + k * 10, 10), ...batchOf('dev-b', 21 + k * 10, 10)]));
    for (let k = 0; k < 4; k++) during.push(next(k));
    await stopServer();
    for (let k = 4; k < 8; k++) during.push(next(k));
    const afterStop = during.slice(4);
    t.ok(await poll(() => store.stats().failedAttempts >= 4), 'the writer keeps retrying while the server is down');
    t.same(afterStop.map((d) => d.state), Array(4).fill('pending'), 'no commit made during the outage resolved or failed');
    t.notOk(during.some((d) => d.state === 'rejected'), 'none of those in flight at the stop failed either');
    const unknown = track(store.commit([reading('dev-new', 1, T0, '1')]));
    await poll(() => unknown.state !== 'pending');
    t.equal(unknown.state, 'rejected', "a device whose state cannot be loaded fails at once (nothing to ack)");
    t.match(unknown.error, { code: 'STORE_UNAVAILABLE' });
    t.same(afterStop.map((d) => d.state), Array(4).fill('pending'), 'still none resolved');

    await startServer();
    const outcomes = await Promise.all(during.map((d) => d.promise));
    t.ok(outcomes.flat().every((o) => o.status === 'stored'), 'all 160 readings stored');
    t.ok(afterStop.every((d) => d.whileUp === true), 'every commit made during the outage resolved after the server was back');
    t.same(await perDevice(db, 'reading'), { 'dev-a': 100, 'dev-b': 100 }, 'each reading once in `reading`');
    t.same(await perDevice(db, 'reading_seq'), { 'dev-a': 100, 'dev-b': 100 }, 'and once in `reading_seq`');
    const hw = await store.marks(['dev-a', 'dev-b']);
    t.same([hw.get('dev-a'), hw.get('dev-b')], [{ maxSeq: 100, late: 0 }, { maxSeq: 100, late: 0 }]);
    const again = await store.commit([...batchOf('dev-a', 1, 100)]);
    t.ok(again.every((o) => o.status === 'duplicate'), 'a full redelivery is all duplicates');
    t.same(await perDevice(db, 'reading'), { 'dev-a': 100, 'dev-b': 100 }, 'and stores nothing twice');
  });

  t.test('a write that finally fails rejects its commit and the later ones; a redelivery stores them', async (t) => {
    const { store, db } = await open(t, { maxRetryMs: 600, batchSize: 1000 });
    t.ok((await store.commit(batchOf('dev-a', 1, 5))).every((o) => o.status === 'stored'));
    await stopServer();
    const a = track(store.commit(batchOf('dev-a', 6, 5)));
    const b = track(store.commit(batchOf('dev-a', 11, 5)));
    t.ok(await poll(() => a.state !== 'pending' && b.state !== 'pending'), 'both settle once the retry time is spent');
    t.equal(a.state, 'rejected', 'the failed commit rejects: its PUBACKs are withheld');
    t.equal(b.state, 'rejected', 'the later commit (checked against the failed one) rejects too');
    t.match(a.error, { code: 'STORE_UNAVAILABLE' });
    t.equal(store.stats().fatalFailures, 1);
    await startServer();
    const redelivered = await store.commit([...batchOf('dev-a', 6, 5), ...batchOf('dev-a', 11, 5)]);
    t.ok(redelivered.every((o) => o.status === 'stored'), 'state was reloaded from the server: the redelivery is stored');
    t.same(await perDevice(db, 'reading'), { 'dev-a': 15 }, 'exactly once');
    t.same((await store.marks(['dev-a'])).get('dev-a'), { maxSeq: 15, late: 0 });
  });

  t.test('the buffer bound makes commits wait (back-pressure), it never drops', async (t) => {
    const { store, db } = await open(t, { maxRetryMs: 120_000, maxBufferLines: 50, batchSize: 20 });
    await store.commit([reading('dev-a', 0, T0, '1000')]); // the device's state is loaded while up
    await stopServer();
    const first = track(store.commit(batchOf('dev-a', 1, 20))); // 40 lines + 1 high-water line
    const second = track(store.commit(batchOf('dev-a', 21, 20)));
    const third = track(store.commit(batchOf('dev-a', 41, 20)));
    t.ok(await poll(() => store.stats().waiting === 1), 'the second commit waits for buffer space');
    await poll(() => store.stats().failedAttempts >= 2);
    const s = store.stats();
    t.ok(s.buffered <= 50, `buffered lines stay within the bound (${s.buffered})`);
    t.same([first.state, second.state, third.state], ['pending', 'pending', 'pending']);
    await startServer();
    const all = await Promise.all([first.promise, second.promise, third.promise]);
    t.ok(all.flat().every((o) => o.status === 'stored'), 'all stored once the server is back');
    t.same(await perDevice(db, 'reading'), { 'dev-a': 61 });
    t.equal(store.stats().buffered, 0, 'the buffer drains');
  });
}
