/**
 * Settling a window must not scan history: with 1e5 historic readings on one device, every oracle
 * query is a range SEARCH on an index (EXPLAIN QUERY PLAN), before and after ANALYZE, and returns
 * only the readings of the window.
 */
import t from 'tap';
import { openDatabase } from '../../store/sqlite/db.ts';
import { READING_QUERIES, listQuery } from '../../store/sqlite/readings.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import type { Reading } from '../../domain/reading.ts';
import type { Db } from '../../store/sqlite/db.ts';

const N = 100_000;
const T0 = Date.parse('2026-01-01T00:00:00Z');
const STEP = 10_000; // one reading per 10 s
const W = 3600_000;

function plan(db: Db, sql: string, args: unknown[]): string[] {
  return (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...args) as { detail: string }[]).map((r) => r.detail);
}

t.test('oracle queries use the indexes on a device with 1e5 readings', async (t) => {
  const db = openDatabase(t.testdir());
  t.teardown(() => db.close());
  const { readings } = openSqliteStores(db);
  const mk = (deviceId: string, seq: number): Reading => ({
    facilityId: 'f1',
    deviceId,
    seq,
    ts: T0 + seq * STEP,
    metric: 'electricity_import',
    value: String(seq),
    unit: 'kWh',
    reset: false,
    receivedAt: T0 + seq * STEP,
  });
  for (let start = 1; start <= N; start += 10_000) {
    const batch: Reading[] = [];
    for (let seq = start; seq < start + 10_000; seq++) batch.push(mk('big', seq), mk('other', seq));
    const out = await readings.commit(batch);
    t.equal(out.filter((o) => o.status === 'stored').length, batch.length, `batch from ${start} stored`);
  }

  const end = T0 + N * STEP; // after the last reading
  const winStart = Math.floor((end - 1) / W) * W - W; // a window near the end of history
  const winEnd = winStart + W;
  const hw = N;
  const prevMax = Math.floor((winStart - T0) / STEP) + 5; // previous settlement saw a bit into this window
  const queries: [string, string, unknown[]][] = [
    ['consumeNew', READING_QUERIES.consumeNew, ['big', prevMax, hw, winEnd]],
    ['consumeArrived', READING_QUERIES.consumeArrived, ['big', 0, 3, winEnd]],
    ['consumeLate', READING_QUERIES.consumeLate, ['big', winStart, winEnd, prevMax, 0]],
    ['has', READING_QUERIES.has, ['big', winStart, winEnd, hw, 0]],
    ['lastIn', READING_QUERIES.lastIn, ['big', winStart, winEnd, hw, 0]],
    ['between', READING_QUERIES.between, ['big', prevMax, hw, hw, 0]],
    ['maxSeq', READING_QUERIES.maxSeq, ['big']],
    ['maxArrival', READING_QUERIES.maxArrival, ['big']],
    ['consumeAll', READING_QUERIES.consumeAll, ['big', hw, winEnd, 0]],
    ['list device', ...spread(listQuery({ facilityId: 'f1', deviceId: 'big', from: winStart, to: winEnd }))],
    // A facility's listing runs this per device (there is no facility index: see store/sqlite.ts).
    ['list facility, per device', ...spread(listQuery({ facilityId: 'f1', deviceId: 'big', metric: 'electricity_import', from: winStart, to: winEnd }))],
  ];
  for (const analyzed of [false, true]) {
    if (analyzed) db.exec('ANALYZE');
    for (const [name, sql, args] of queries) {
      const details = plan(db, sql, args);
      const label = `${name}${analyzed ? ' (after ANALYZE)' : ''}: ${details.join(' | ')}`;
      t.notOk(details.some((d) => /^SCAN readings/.test(d)), `${label}: no full scan`);
      t.ok(details.some((d) => /^SEARCH readings USING (PRIMARY KEY|INDEX|COVERING INDEX)\b.*\((device_id|facility_id)=\?/.test(d)), `${label}: range search`);
    }
    // The range bounds are on the column that limits the rows to the window, not on history.
    t.match(plan(db, READING_QUERIES.consumeNew, ['big', prevMax, hw, winEnd]).join(), /PRIMARY KEY \(device_id=\? AND seq>\? AND seq<\?\)/);
    t.match(plan(db, READING_QUERIES.consumeLate, ['big', winStart, winEnd, prevMax, 0]).join(), /readings_device_ts \(device_id=\? AND ts>\? AND ts<\?\)/);
    t.match(plan(db, READING_QUERIES.has, ['big', winStart, winEnd, hw, 0]).join(), /readings_device_ts \(device_id=\? AND ts>\? AND ts<\?\)/);
    t.match(plan(db, READING_QUERIES.lastIn, ['big', winStart, winEnd, hw, 0]).join(), /readings_device_ts \(device_id=\? AND ts>\? AND ts<\?\)/);
    t.match(plan(db, READING_QUERIES.consumeArrived, ['big', 0, 3, winEnd]).join(), /readings_device_arrival \(device_id=\? AND arrival>\? AND arrival<\?\)/);
    t.match(plan(db, READING_QUERIES.maxArrival, ['big']).join(), /readings_device_arrival/);
  }

  // And the answers are the window's readings only.
  const consumed = await readings.consume({ deviceId: 'big', mark: { maxSeq: hw, late: 0 }, before: winEnd, prev: { mark: { maxSeq: prevMax, late: 0 }, before: winStart } });
  const firstSeq = Math.ceil((winStart - T0) / STEP);
  const lastSeq = Math.ceil((winEnd - T0) / STEP) - 1;
  t.equal(consumed.length, lastSeq - firstSeq + 1, 'exactly the window');
  t.equal(consumed[0].seq, firstSeq);
  t.equal(consumed.at(-1)?.seq, lastSeq);
  t.ok(consumed.every((r, i) => i === 0 || r.seq === consumed[i - 1].seq + 1), 'ordered by seq, no gaps, no repeats');
  t.equal(await readings.hasReading('big', winStart, winEnd, { maxSeq: hw, late: 0 }), true);
  t.same([...(await readings.marks(['big', 'other']))], [['big', { maxSeq: N, late: 0 }], ['other', { maxSeq: N, late: 0 }]]);
  const cov = await readings.coverage({ deviceId: 'big', start: winStart, end: winEnd, mark: { maxSeq: hw, late: 0 } });
  t.same(cov.lastIn?.seq, lastSeq, 'coverage: the last reading in the window');
  t.same(cov.before?.seq, firstSeq - 1, 'and the last before it');
  t.equal(cov.between, lastSeq - firstSeq + 1);
});

function spread(q: { sql: string; args: (string | number)[] }): [string, unknown[]] {
  return [q.sql, q.args];
}
