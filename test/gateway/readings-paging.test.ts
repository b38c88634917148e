/**
 * GET /v1/facilities/{id}/readings pages through more readings than one page at the maximum limit
 * (1000, which is also the most a store's listing answers): a full page gives `next`, and following
 * it serves every reading exactly once in key order (ts, device id, seq descending), readings with
 * equal ts across devices included, even more than 1000 of them on one millisecond. Over inject() on
 * the real SQLite registry and reading store, and on a real influxd (whose listing cuts a millisecond
 * in its own order, not the key order).
 */
import t, { type Test } from 'tap';
import type { Reading } from '../../domain/reading.ts';
import { silentLogger } from '../../domain/logger.ts';
import { openInfluxStore } from '../../store/influx/store.ts';
import { requireInfluxd, startInfluxd } from '../helpers/influxd.ts';
import { startGateway, type Harness } from './harness.ts';

const T0 = Date.UTC(2026, 0, 1);

function rd(facilityId: string, deviceId: string, seq: number, ts: number, value = String(1000 + seq)): Reading {
  return { facilityId, deviceId, seq, ts, metric: 'electricity_import', value, unit: 'kWh', reset: false, receivedAt: ts + 50 };
}

const keyText = (r: { ts: string | number; deviceId: string; seq: number }) => `${new Date(r.ts).toISOString()} ${r.deviceId}/${r.seq}`;

function expected(rows: Reading[]): string[] {
  return [...rows].sort((a, b) => b.ts - a.ts || (a.deviceId < b.deviceId ? 1 : a.deviceId > b.deviceId ? -1 : b.seq - a.seq)).map(keyText);
}

/** Follows `next` from the first page; returns the page sizes and every item's key in order. */
async function walk(t: Test, h: Harness, url: string, limit: number): Promise<{ sizes: number[]; seen: string[] }> {
  const sizes: number[] = [];
  const seen: string[] = [];
  let cursor: string | undefined;
  for (let i = 0; i < 100; i++) {
    const res = await h.app.inject({ url: `${url}${url.includes('?') ? '&' : '?'}limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`, headers: h.auth('admin') });
    if (res.statusCode !== 200) {
      t.fail(`${url} page ${i}: ${res.statusCode} ${res.body.slice(0, 300)}`);
      break;
    }
    const body = res.json() as { items: { ts: string; deviceId: string; seq: number }[]; next?: string };
    sizes.push(body.items.length);
    seen.push(...body.items.map(keyText));
    cursor = body.next;
    if (!cursor) break;
  }
  return { sizes, seen };
}

t.test('more readings than the maximum page: next is given and leads through the rest exactly once', async (t) => {
  const h = await startGateway(t);

  // facA: 60 devices reporting on the same seconds (60 readings share each ts), 1,500 readings.
  const a: Reading[] = [];
  for (let d = 0; d < 60; d++) {
    const deviceId = `m${String(d).padStart(3, '0')}`;
    h.registry.createDevice('facA', deviceId, 'meter');
    for (let k = 1; k <= 25; k++) a.push(rd('facA', deviceId, k, T0 + k * 1000));
  }
  const outA = await h.readings.commit(a);
  t.ok(outA.every((o) => o.status === 'stored'), 'facA readings stored');

  const all = await walk(t, h, '/v1/facilities/facA/readings', 1000);
  t.same(all.sizes, [1000, 500], 'a full page at the maximum limit, then the rest');
  t.same(all.seen, expected(a), 'every reading once, newest first, ties by device id then seq');

  const small = await walk(t, h, '/v1/facilities/facA/readings', 97);
  t.equal(small.sizes.length, Math.ceil(1500 / 97), 'pages that cut through milliseconds shared by many devices');
  t.same(small.seen, expected(a), 'every reading once at limit 97 too');

  const exact = await walk(t, h, `/v1/facilities/facA/readings?from=${T0 + 9000}&to=${T0 + 25_000}`, 960);
  t.same(exact.sizes, [960], 'exactly one full page of what the filter selects: no next, no empty page');
  t.same(exact.seen, expected(a.filter((r) => r.ts >= T0 + 9000 && r.ts < T0 + 25_000)));

  const one = await walk(t, h, '/v1/facilities/facA/readings?deviceId=m007', 10);
  t.same(one.seen, expected(a.filter((r) => r.deviceId === 'm007')), 'the device filter is kept across pages');
});

t.test('more readings on one millisecond than a store answers at once', async (t) => {
  const h = await startGateway(t);
  // facB: 1,100 devices with a reading on the same millisecond, and one device's 150 later readings.
  const b: Reading[] = [];
  for (let d = 0; d < 1100; d++) {
    const deviceId = `b${String(d).padStart(4, '0')}`;
    h.registry.createDevice('facB', deviceId, 'meter');
    b.push(rd('facB', deviceId, 1, T0));
  }
  for (let k = 2; k <= 151; k++) b.push(rd('facB', 'b0000', k, T0 + k * 1000));
  t.ok((await h.readings.commit(b)).every((o) => o.status === 'stored'), 'facB readings stored');

  const all = await walk(t, h, '/v1/facilities/facB/readings', 1000);
  t.same(all.sizes, [1000, 250]);
  t.same(all.seen, expected(b), 'every reading once across the crowded millisecond');
  const third = await walk(t, h, '/v1/facilities/facB/readings', 333);
  t.same(third.seen, expected(b), 'at limit 333 too');
});

t.test('the same on the InfluxDB store (a millisecond cut in time order, not key order)', async (t) => {
  if (!requireInfluxd(t)) return;
  const ix = await startInfluxd();
  t.teardown(() => ix.close());
  const store = openInfluxStore({ url: ix.url, database: ix.database, logger: silentLogger, flushMs: 2 });
  t.teardown(() => store.close());
  const h = await startGateway(t, { deps: { readings: store } });
  const a: Reading[] = [];
  for (let d = 0; d < 60; d++) {
    const deviceId = `m${String(d).padStart(3, '0')}`;
    h.registry.createDevice('facA', deviceId, 'meter');
    // Seqs differ per device so that points of one millisecond have different times in InfluxDB.
    for (let k = 1; k <= 25; k++) a.push(rd('facA', deviceId, k * 100 + ((d * 37) % 60), T0 + k * 1000, String(1000 + k)));
  }
  t.ok((await store.commit(a)).every((o) => o.status === 'stored'), 'facA readings stored');
  const all = await walk(t, h, '/v1/facilities/facA/readings', 1000);
  t.same(all.sizes, [1000, 500]);
  t.same(all.seen, expected(a), 'every reading once, in key order');
  const small = await walk(t, h, '/v1/facilities/facA/readings', 97);
  t.same(small.seen, expected(a), 'at limit 97 too');
});
