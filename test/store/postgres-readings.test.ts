/**
 * The PostgreSQL reading store beyond the shared contract: its lookup against a reference model of
 * the rules (random batches: every outcome and arrival number as `checkReading` over all stored
 * readings decides), the bounded walk to a late reading's neighbour of the same metric (as the SQLite
 * store), and the query plan of that walk (it stops at the first row of the metric).
 */
import t from 'tap';
import { checkReading, type DeviceReadings, type StoredReading } from '../../domain/ingest-rules.ts';
import { Decimal } from '../../domain/decimal.ts';
import type { Metric, Reading } from '../../domain/reading.ts';
import { openPostgresReadingStore } from '../../store/postgres/readings.ts';
import { MAX_METRIC_WALK } from '../../store/types.ts';
import type { CommitOutcome, DeviceLimits } from '../../store/types.ts';
import { postgresForFile } from '../helpers/postgres.ts';
import { rng } from '../helpers/rng.ts';
import { reading, T0 } from '../helpers/reading-store-contract.ts';

const cluster = await postgresForFile(t);
const statuses = (o: CommitOutcome[]) => o.map((x) => (x.status === 'rejected' ? `rejected:${x.reason}` : x.status));

/** The rules over a plain list of one device's stored readings (no heads, no walk bound, no SQL). */
class Model implements DeviceReadings {
  readonly rows = new Map<number, StoredReading & { arrival?: number }>();
  late = 0;
  at(seq: number) {
    return this.rows.get(seq);
  }
  below(seq: number, metric?: string) {
    let best: StoredReading | undefined;
    for (const r of this.rows.values()) if (r.seq < seq && (metric === undefined || r.metric === metric) && (!best || r.seq > best.seq)) best = r;
    return best;
  }
  above(seq: number, metric?: string) {
    let best: StoredReading | undefined;
    for (const r of this.rows.values()) if (r.seq > seq && (metric === undefined || r.metric === metric) && (!best || r.seq < best.seq)) best = r;
    return best;
  }
  commit(r: Reading, limits: DeviceLimits | undefined): string {
    const value = Decimal.parse(r.value).toString();
    const c: StoredReading = { seq: r.seq, ts: r.ts, metric: r.metric, value, unit: r.unit, reset: r.reset };
    const o = checkReading(c, this, limits);
    if (o.status === 'stored') {
      const max = Math.max(-1, ...this.rows.keys());
      this.rows.set(r.seq, r.seq < max ? { ...c, arrival: ++this.late } : c);
    }
    return o.status === 'rejected' ? `rejected:${o.reason}` : o.status;
  }
}

if (cluster) {
  t.test('random batches: outcomes and arrival numbers as the rules decide over all stored readings', async (t) => {
    const url = await cluster.createDatabase();
    const limitsOf = (d: string): DeviceLimits | undefined => (d.endsWith('-small') ? { capacity: '40', reportingIntervalSeconds: 60 } : undefined);
    const store = await openPostgresReadingStore(url, { limits: limitsOf });
    t.teardown(() => store.close());
    const rand = rng(42);
    const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)];
    const metrics: Metric[] = ['electricity_import', 'natural_gas', 'co2_direct'];
    const units: Record<string, string> = { electricity_import: 'kWh', natural_gas: 'm3', co2_direct: 'kg' };
    const devices = ['r1', 'r2', 'r3-small', 'r4-small'];
    const models = new Map(devices.map((d) => [d, new Model()]));
    const sent: Reading[] = [];
    const mismatches: string[] = [];
    let count = 0;
    const seen = new Map<string, number>();
    for (let b = 0; b < 150; b++) {
      const batch: Reading[] = [];
      const size = 1 + Math.floor(rand() * 20);
      for (let i = 0; i < size; i++) {
        let r: Reading;
        if (sent.length > 0 && rand() < 0.1) {
          // A repeat: the same reading, or another content for the same seq.
          const old = pick(sent);
          r = rand() < 0.5 ? { ...old, receivedAt: old.receivedAt + 1 } : { ...old, value: Decimal.parse(old.value).add(Decimal.parse('0.5')).toString() };
        } else {
          const deviceId = pick(devices);
          const metric = rand() < 0.7 ? pick(metrics.slice(0, 2)) : pick(metrics);
          const seq = Math.floor(rand() * 60);
          // Mostly consistent with seq (ts and register grow with it), sometimes not.
          const ts = T0 + seq * 60_000 + (rand() < 0.25 ? Math.floor((rand() - 0.5) * 200_000) : 0);
          const base = metric === 'co2_direct' ? rand() * 30 : seq * 0.5 + (rand() < 0.25 ? (rand() - 0.5) * 10 : 0);
          const value = Decimal.parse(Math.max(0, base).toFixed(3)).toString();
          r = { facilityId: 'fac-r', deviceId, seq, ts, metric, value, unit: units[metric], reset: metric !== 'co2_direct' && rand() < 0.05, receivedAt: ts + 1 };
        }
        sent.push(r);
        batch.push(r);
      }
      const got = statuses(await store.commit(batch));
      const want = batch.map((r) => (models.get(r.deviceId) as Model).commit(r, limitsOf(r.deviceId)));
      for (let i = 0; i < batch.length; i++) {
        count++;
        seen.set(want[i], (seen.get(want[i]) ?? 0) + 1);
        if (got[i] !== want[i]) mismatches.push(`batch ${b} #${i} ${batch[i].deviceId}/${batch[i].seq}: store ${got[i]}, rules ${want[i]}`);
      }
    }
    t.same(mismatches.slice(0, 10), [], `${count} readings: the store decides as the rules over all stored readings`);
    t.ok(['stored', 'duplicate', 'rejected:duplicate_conflict', 'rejected:ts_out_of_order', 'rejected:register_backwards'].every((s) => (seen.get(s) ?? 0) > 0), `outcomes exercised: ${JSON.stringify([...seen])}`);
    for (const d of devices) {
      const model = models.get(d) as Model;
      const mark = (await store.marks([d])).get(d);
      const rows = mark ? await store.consume({ deviceId: d, mark, before: Number.MAX_SAFE_INTEGER }) : [];
      const want = [...model.rows.values()].sort((a, b) => a.seq - b.seq).map((r) => `${r.seq}:${r.value}:${r.arrival ?? '-'}`);
      t.same(rows.map((r) => `${r.seq}:${r.value}:${r.arrival ?? '-'}`), want, `${d}: the same readings with the same arrival numbers`);
      if (mark) t.same(mark, { maxSeq: Math.max(...model.rows.keys()), late: model.late }, `${d}: mark`);
    }
  });

  t.test('a late reading whose neighbour of its metric is too far away is refused, not searched for', async (t) => {
    const url = await cluster.createDatabase();
    const store = await openPostgresReadingStore(url, { limits: () => undefined });
    t.teardown(() => store.close());
    const r = (seq: number, value: string, extra: Partial<Reading> = {}) => reading('d1', seq, T0 + seq, value, extra);
    const gap = MAX_METRIC_WALK + 1;
    const co2 = (seq: number) => r(seq, '0.001', { metric: 'co2_direct', unit: 'kg' });
    const batch: Reading[] = [r(0, '1')];
    for (let i = 1; i <= 2 * gap; i++) if (i !== gap) batch.push(co2(i));
    batch.push(r(2 * gap + 1, '2'));
    t.ok((await store.commit(batch)).every((o) => o.status === 'stored'), 'in order: the metric head answers at once');
    const out = await store.commit([r(gap, '1.5')]);
    t.match(out[0], { status: 'rejected', reason: 'implausible', detail: new RegExp(`more than ${MAX_METRIC_WALK} readings away`) });
    t.same(statuses(await store.commit([co2(gap)])), ['stored'], 'a late reading whose neighbours of its metric are close is checked as usual');
  });

  t.test('a late reading finds its neighbours of the same metric many rows away, in the database and in the batch', async (t) => {
    const url = await cluster.createDatabase();
    const store = await openPostgresReadingStore(url, { limits: () => undefined });
    t.teardown(() => store.close());
    const r = (seq: number, value: string, extra: Partial<Reading> = {}) => reading('d1', seq, T0 + seq * 1000, value, extra);
    const co2 = (seq: number) => r(seq, '0.001', { metric: 'co2_direct', unit: 'kg' });
    const batch: Reading[] = [r(0, '100')];
    for (let i = 1; i <= 199; i++) if (i !== 100 && i !== 150 && i !== 160 && i !== 170) batch.push(co2(i));
    batch.push(r(200, '120'));
    t.ok((await store.commit(batch)).every((o) => o.status === 'stored'));
    t.match((await store.commit([r(100, '99')]))[0], { reason: 'register_backwards', detail: /below 100 of the stored lower seq 0/ }, '99 rows down');
    t.match((await store.commit([r(100, '121')]))[0], { reason: 'register_backwards', detail: /above 120 of the stored higher seq 200/ }, '100 rows up');
    t.same(
      statuses(await store.commit([r(150, '115'), r(100, '116'), r(100, '110')])),
      ['stored', 'rejected:register_backwards', 'stored'],
      'the batch so far counts: 150 (115), stored first, is the higher neighbour of 100',
    );
    t.match((await store.commit([r(170, '114')]))[0], { reason: 'register_backwards', detail: /below 115 of the stored lower seq 150/ });
    t.same(
      statuses(await store.commit([r(160, '116'), r(170, '115.5')])),
      ['stored', 'rejected:register_backwards'],
      'the lower neighbour of 170 is 160 of this batch, not 150 of the database',
    );
    t.same(statuses(await store.commit([r(170, '118')])), ['stored']);
    const m = (await store.marks(['d1'])).get('d1');
    t.same(m, { maxSeq: 200, late: 4 });
  });

  t.test('the walk to a neighbour of the same metric stops at the first one (query plan)', async (t) => {
    const url = await cluster.createDatabase();
    const store = await openPostgresReadingStore(url, { limits: () => undefined });
    t.teardown(() => store.close());
    const rows: Reading[] = [];
    for (let i = 0; i < 20_000; i++) rows.push(reading('d1', i, T0 + i * 1000, String(i), i % 1000 === 0 ? {} : { metric: 'co2_direct', unit: 'kg', value: '0.001' }));
    await store.commit(rows);
    await store.pool.query('ANALYZE readings');
    const plan = await store.pool.query<{ 'QUERY PLAN': string }>(
      `EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
       SELECT w.* FROM (SELECT seq, ts, metric, value, unit, reset FROM readings r WHERE r.device_id = 'd1' AND r.seq < 19999 AND r.seq >= 0
         ORDER BY r.seq DESC LIMIT ${MAX_METRIC_WALK}) w WHERE w.metric = 'electricity_import' ORDER BY w.seq DESC LIMIT 1`,
    );
    const text = plan.rows.map((r) => r['QUERY PLAN']).join('\n');
    t.notMatch(text, /Sort/, 'no sort: the subquery order is used');
    const idx = text.split('\n').find((l) => /Index (Only )?Scan Backward/.test(l)) ?? '';
    const n = Number(/actual rows=(\d+)/.exec(idx)?.[1]);
    t.ok(n > 0 && n <= 1000, `the index scan read ${n} rows (the previous register reading is 999 rows down), not the whole range\n${text}`);
  });
}
