/**
 * The InfluxDB ReadingStore against a real influxd (Debian's 1.6, 1.x API) started by the test:
 * the shared ReadingStore contract, state reloaded by a new store instance, the repair of a write cut
 * short, and hostile strings that must not inject tags, fields or points.
 */
import t, { type Test } from 'tap';
import { silentLogger } from '../../domain/logger.ts';
import { openInfluxStore, type InfluxReadingStore, type InfluxStoreOptions } from '../../store/influx/store.ts';
import { encodeLine } from '../../store/influx/line.ts';
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
    readingStoreContract(t, async (st, o) => open(st, await freshDb(), { limits: o?.limits }));
  });

  t.test('the contract with gzip off and tiny batches (many requests per commit)', async (t) => {
    readingStoreContract(t, async (st, o) => open(st, await freshDb(), { gzip: false, batchSize: 3, limits: o?.limits }));
  });

  t.test('a new store instance reloads device state from InfluxDB', async (t) => {
    const db = await freshDb();
    const first = open(t, db);
    await first.commit([
      reading('dev-a', 1, T0 + 1000, '100'),
      reading('dev-a', 2, T0 + 2000, '7', { metric: 'natural_gas' }),
      reading('dev-a', 4, T0 + 4000, '101'),
      reading('dev-b', 5, T0, '1'),
    ]);
    await first.commit([reading('dev-a', 3, T0 + 3000, '8', { metric: 'natural_gas' })]);
    await first.close();
    const second = open(t, db);
    const out = await second.commit([
      reading('dev-a', 1, T0 + 1000, '100'),
      reading('dev-a', 2, T0 + 2000, '8', { metric: 'natural_gas' }),
      reading('dev-a', 0, T0 + 1001, '1'),
      reading('dev-a', 5, T0 + 5000, '99'),
      reading('dev-a', 6, T0 + 6000, '6.5', { metric: 'natural_gas' }),
      reading('dev-a', 0, T0, '101.5'),
      reading('dev-a', 0, T0, '100'),
      reading('dev-a', 7, T0 + 7000, '101'),
    ]);
    t.same(
      out.map((o) => (o.status === 'rejected' ? o.reason : o.status)),
      ['duplicate', 'duplicate_conflict', 'ts_out_of_order', 'register_backwards', 'register_backwards', 'register_backwards', 'stored', 'stored'],
      'duplicates, conflicts, ts order and register checks (both sides, per metric) all see what the first instance stored',
    );
    t.same((await second.marks(['dev-a'])).get('dev-a'), { maxSeq: 7, late: 2 }, 'the arrival count continues from the first instance');
    t.equal((await second.get('dev-a', 0))?.arrival, 2);
    t.equal(await count(db, 'reading'), 7, 'the duplicate rewrote its point, it did not add one');
    t.equal(await count(db, 'reading_seq'), 7);
  });

  t.test('readings above the mark (a write cut short) are rewritten before the mark moves', async (t) => {
    const db = await freshDb();
    const first = open(t, db);
    await first.commit([reading('dev-a', 1, T0 + 1000, '1'), reading('dev-a', 2, T0 + 2000, '2')]);
    await first.close();
    // A crash mid-request (seqs 3 and 4) left only seq 4's reading_seq point: no `reading` points,
    // nothing of seq 3, no mark point.
    const cut = reading('dev-a', 4, T0 + 4000, '4');
    const line = encodeLine('reading_seq', { facility: FAC, device: 'dev-a', metric: cut.metric }, { ts: BigInt(cut.ts), value: '4', unit: 'kWh', reset: false, received: BigInt(cut.receivedAt) }, 4n);
    const res = await fetch(`${ix.url}/write?db=${db}&precision=ns`, { method: 'POST', body: line });
    t.equal(res.status, 204);
    const second = open(t, db);
    t.same((await second.marks(['dev-a'])).get('dev-a'), { maxSeq: 2, late: 0 }, 'the oracle does not see seq 4 yet');
    const all = { maxSeq: 10, late: 10 };
    t.equal(await second.hasReading('dev-a', T0 + 4000, T0 + 5000, all), false, 'it is missing from `reading`');
    const out = await second.commit([reading('dev-a', 3, T0 + 3000, '3'), cut, reading('dev-a', 5, T0 + 5000, '5')]);
    t.same(out.map((o) => o.status), ['stored', 'duplicate', 'stored'], 'the redelivery of the cut write is stored');
    t.same((await second.marks(['dev-a'])).get('dev-a'), { maxSeq: 5, late: 1 });
    t.equal((await second.get('dev-a', 3))?.arrival, 1, 'seq 3 came below the max seq 4 that the cut write left: a late arrival');
    t.equal(await second.hasReading('dev-a', T0 + 4000, T0 + 5000, all), true, 'seq 4 was rewritten to `reading`');
    t.strictSame(await second.get('dev-a', 4), cut);
    t.same((await second.consume({ deviceId: 'dev-a', mark: { maxSeq: 5, late: 1 }, before: T0 + 10_000 })).map((r) => r.seq), [1, 2, 3, 4, 5]);
    t.same(statuses(await second.commit([reading('dev-a', 0, T0, '0')])), ['stored'], 'a lower seq consistent with its neighbours is stored');
  });

  t.test('an interrupted late write: its pointer is repaired or counts nothing', async (t) => {
    const db = await freshDb();
    const first = open(t, db);
    await first.commit([reading('dev-a', 1, T0 + 1000, '1'), reading('dev-a', 5, T0 + 5000, '5')]);
    await first.close();
    // A crash left seq 3's late-arrival points (arrival 1) without its mark point, and a pointer
    // (arrival 2) to seq 4 whose reading never landed.
    const r3 = { ...reading('dev-a', 3, T0 + 3000, '3'), arrival: 1 };
    const lines = [
      encodeLine('reading_seq', { facility: FAC, device: 'dev-a', metric: r3.metric }, { ts: BigInt(r3.ts), value: '3', unit: 'kWh', reset: false, received: BigInt(r3.receivedAt), arrival: 1n }, 3n),
      encodeLine('reading_late', { device: 'dev-a' }, { seq: 3n }, 1n),
      encodeLine('reading_late', { device: 'dev-a' }, { seq: 4n }, 2n),
    ].join('\n');
    t.equal((await fetch(`${ix.url}/write?db=${db}&precision=ns`, { method: 'POST', body: lines })).status, 204);
    const second = open(t, db);
    t.same((await second.marks(['dev-a'])).get('dev-a'), { maxSeq: 5, late: 0 }, 'not visible yet');
    t.same(statuses(await second.commit([reading('dev-a', 4, T0 + 4000, '4'), r3])), ['stored', 'duplicate']);
    t.same((await second.marks(['dev-a'])).get('dev-a'), { maxSeq: 5, late: 3 }, 'numbering continues after the highest pointer');
    t.equal((await second.get('dev-a', 4))?.arrival, 3);
    t.equal(await second.hasReading('dev-a', T0 + 3000, T0 + 3001, { maxSeq: 5, late: 3 }), true, 'seq 3 was rewritten to `reading`');
    const prev = { mark: { maxSeq: 5, late: 0 }, before: T0 + 10_000 };
    const got = await second.consume({ deviceId: 'dev-a', mark: { maxSeq: 5, late: 3 }, before: T0 + 10_000, prev });
    t.same(got.map((r) => `${r.seq}:${r.arrival}`), ['3:1', '4:3'], 'each late reading once; the stale pointer to seq 4 (arrival 2) adds nothing');
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
    t.same((await store.marks([deviceId, "d\"ev' =,x"])).get(deviceId), { maxSeq: 1, late: 0 }, 'InfluxQL quoting of the hostile id');
    t.equal((await store.marks([deviceId])).size, 1);
  });

  t.test('a finite retention policy drops the seq-keyed points: the server says so and commits fail loudly', async (t) => {
    const db = await freshDb();
    await ix.query(`CREATE RETENTION POLICY "short" ON "${db}" DURATION 1h REPLICATION 1`);
    const store = open(t, db, { retentionPolicy: 'short', maxRetryMs: 200 });
    await t.rejects(store.commit([reading('dev-a', 1, Date.now() - 1000, '1')]), { code: 'STORE_UNAVAILABLE', message: /beyond retention/ });
    t.equal(store.stats().fatalFailures, 1, 'not retried: a 4xx');
  });
}
