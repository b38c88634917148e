/**
 * The InfluxDB ReadingStore against a real influxd (Debian's 1.6, 1.x API) started by the test:
 * the shared ReadingStore contract, state reloaded by a new store instance, the repair of a write cut
 * short, and hostile strings that must not inject tags, fields or points.
 */
import t, { type Test } from 'tap';
import { silentLogger } from '../../domain/logger.ts';
import { openInfluxStore, type InfluxReadingStore, type InfluxStoreOptions } from '../../store/influx.ts';
import { encodeLine } from '../../store/influx-line.ts';
import type { CommitOutcome } from '../../store/types.ts';
import { requireInfluxd, startInfluxd, type Influxd } from '../helpers/influxd.ts';
import { FAC, T0, reading, readingStoreContract } from '../helpers/reading-store-contract.ts';

const statuses = (o: CommitOutcome[]) => o.map((x) => (x.status === 'rejected' ? x.reason : x.status));

if (requireInfluxd(t)) {
  const ix: Influxd = await startInfluxd();
  t.teardown(() => ix.close());

  let dbCount = 0;
  const freshDb = async () => {
    const name = `db${++dbCount}`;
    await ix.createDatabase(name);
    return name;
  };
  const open = (t: Test, database: string, extra: Partial<InfluxStoreOptions> = {}): InfluxReadingStore => {
    const store = openInfluxStore({ url: ix.url, database, logger: silentLogger, flushMs: 2, ...extra });
    t.teardown(() => store.close());
    return store;
  };
  const count = async (db: string, measurement: string, where = '') => {
    const res = await ix.query(`SELECT count("value") FROM "${measurement}" ${where}`, db);
    return Number(res.results?.[0].series?.[0].values[0][1] ?? 0);
  };

  t.test('ReadingStore contract (1.x API, real influxd)', async (t) => {
    readingStoreContract(t, async (st) => open(st, await freshDb()));
  });

  t.test('the contract with gzip off and tiny batches (many requests per commit)', async (t) => {
    readingStoreContract(t, async (st) => open(st, await freshDb(), { gzip: false, batchSize: 3 }));
  });

  t.test('a new store instance reloads device state from InfluxDB', async (t) => {
    const db = await freshDb();
    const first = open(t, db);
    await first.commit([reading('dev-a', 1, T0 + 1, '100'), reading('dev-a', 2, T0 + 2, '7', { metric: 'natural_gas' }), reading('dev-b', 5, T0, '1')]);
    await first.close();
    const second = open(t, db);
    const out = await second.commit([
      reading('dev-a', 1, T0 + 1, '100'),
      reading('dev-a', 2, T0 + 2, '8', { metric: 'natural_gas' }),
      reading('dev-a', 0, T0, '1'),
      reading('dev-a', 3, T0 + 3, '99'),
      reading('dev-a', 4, T0 + 4, '6.5', { metric: 'natural_gas' }),
      reading('dev-a', 5, T0 + 5, '101'),
    ]);
    t.same(
      out.map((o) => (o.status === 'rejected' ? o.reason : o.status)),
      ['duplicate', 'duplicate_conflict', 'seq_not_increasing', 'register_backwards', 'register_backwards', 'stored'],
      'duplicates, conflicts, seq and register checks all see what the first instance stored',
    );
    t.equal((await second.highWater(['dev-a'])).get('dev-a'), 5);
    t.equal(await count(db, 'reading'), 4, 'the duplicate rewrote its point, it did not add one');
    t.equal(await count(db, 'reading_seq'), 4);
  });

  t.test('readings above the high-water mark (a write cut short) are rewritten before the mark moves', async (t) => {
    const db = await freshDb();
    const first = open(t, db);
    await first.commit([reading('dev-a', 1, T0 + 1, '1'), reading('dev-a', 2, T0 + 2, '2')]);
    await first.close();
    // A crash mid-request (seqs 3 and 4) left only seq 4's reading_seq point: no `reading` points,
    // nothing of seq 3, no high-water point.
    const cut = reading('dev-a', 4, T0 + 4, '4');
    const line = encodeLine('reading_seq', { facility: FAC, device: 'dev-a', metric: cut.metric }, { ts: BigInt(cut.ts), value: '4', unit: 'kWh', reset: false, received: BigInt(cut.receivedAt) }, 4n);
    const res = await fetch(`${ix.url}/write?db=${db}&precision=ns`, { method: 'POST', body: line });
    t.equal(res.status, 204);
    const second = open(t, db);
    t.equal((await second.highWater(['dev-a'])).get('dev-a'), 2, 'the oracle does not see seq 4 yet');
    t.equal(await second.hasReading('dev-a', T0 + 4, T0 + 5, 10), false, 'it is missing from `reading`');
    const out = await second.commit([reading('dev-a', 3, T0 + 3, '3'), cut, reading('dev-a', 5, T0 + 5, '5')]);
    t.same(out.map((o) => o.status), ['stored', 'duplicate', 'stored'], 'the redelivery of the cut write is stored, not refused as seq_not_increasing');
    t.equal((await second.highWater(['dev-a'])).get('dev-a'), 5);
    t.equal(await second.hasReading('dev-a', T0 + 4, T0 + 5, 10), true, 'seq 4 was rewritten to `reading`');
    t.strictSame(await second.get('dev-a', 4), cut);
    t.same((await second.consume({ deviceId: 'dev-a', maxSeq: 5, before: T0 + 10 })).map((r) => r.seq), [1, 2, 3, 4, 5]);
    t.same(statuses(await second.commit([reading('dev-a', 0, T0, '0')])), ['seq_not_increasing'], 'below the old high-water mark the seq rule holds');
  });

  t.test('after a clean close there is no cut write: a lower seq is refused by the next instance', async (t) => {
    const db = await freshDb();
    const first = open(t, db);
    t.same(statuses(await first.commit([reading('dev-a', 2, T0, '1'), reading('dev-a', 5, T0, '1')])), ['stored', 'stored']);
    await first.close();
    const second = open(t, db);
    t.same(statuses(await second.commit([reading('dev-a', 4, T0, '1')])), ['seq_not_increasing']);
  });

  t.test('hostile strings cannot inject tags, fields or points', async (t) => {
    const db = await freshDb();
    const store = open(t, db);
    const facilityId = 'fac,evil=1 x';
    const deviceId = `d"ev' =,x value="6" 9`;
    const unit = 'k"W h,=\\';
    const r = reading(deviceId, 1, T0 + 1, '42', { facilityId, unit });
    const out = await store.commit([r, reading('bad\\dev', 1, T0, '1'), reading('bad\ndev', 1, T0, '1'), reading('ok-dev', 1, T0, '1', { unit: 'x\ny' })]);
    t.same(
      out.map((o) => (o.status === 'rejected' ? o.reason : o.status)),
      ['stored', 'invalid_shape', 'invalid_shape', 'unknown_unit'],
      'what line protocol cannot carry exactly (backslash in a tag, line breaks) is refused, not mangled',
    );
    t.strictSame(await store.get(deviceId, 1), r, 'read back exactly by the hostile device id');
    t.strictSame(await store.list({ facilityId }), [r], 'and by the hostile facility id');
    t.same(await store.list({ facilityId: 'fac' }), [], 'no facility "fac" was created by the comma');
    t.equal(await count(db, 'reading'), 1, 'one point in reading');
    t.equal(await count(db, 'reading_seq'), 1, 'one point in reading_seq');
    const tagKeys = await ix.query('SHOW TAG KEYS FROM "reading"', db);
    t.same(tagKeys.results?.[0].series?.[0].values.map((v) => v[0]).sort(), ['device', 'facility', 'metric'], 'no extra tag');
    const fieldKeys = await ix.query('SHOW FIELD KEYS FROM "reading"', db);
    t.same(fieldKeys.results?.[0].series?.[0].values.map((v) => v[0]).sort(), ['received', 'reset', 'seq', 'unit', 'value', 'value_f'], 'no extra field');
    const measurements = await ix.query('SHOW MEASUREMENTS', db);
    t.same(measurements.results?.[0].series?.[0].values.map((v) => v[0]).sort(), ['reading', 'reading_hw', 'reading_seq'], 'no extra measurement');
    t.equal((await store.highWater([deviceId, "d\"ev' =,x"])).get(deviceId), 1, 'InfluxQL quoting of the hostile id');
    t.equal((await store.highWater([deviceId])).size, 1);
  });

  t.test('a finite retention policy drops the seq-keyed points: the server says so and commits fail loudly', async (t) => {
    const db = await freshDb();
    await ix.query(`CREATE RETENTION POLICY "short" ON "${db}" DURATION 1h REPLICATION 1`);
    const store = open(t, db, { retentionPolicy: 'short', maxRetryMs: 200 });
    await t.rejects(store.commit([reading('dev-a', 1, Date.now() - 1000, '1')]), { code: 'STORE_UNAVAILABLE', message: /beyond retention/ });
    t.equal(store.stats().fatalFailures, 1, 'not retried: a 4xx');
  });
}
