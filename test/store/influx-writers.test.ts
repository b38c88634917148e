/**
 * The InfluxDB reading store with several writers (SPEC "Scale-out"; store/influx/coordinator.ts): two
 * OS processes, each an InfluxDB store coordinated through PostgreSQL, commit interleaved, shuffled
 * batches of the same devices, every seq from both (same content, or a conflicting one; the workload
 * of test/helpers/pg-writer.ts). Afterwards, on a real influxd and a real PostgreSQL: every reading is
 * stored by exactly one writer, the other got `duplicate` / `duplicate_conflict`; each (device, seq) is
 * one point in both measurements (a conflicting version with another ts would be a second `reading`
 * point); the stored content is the storing writer's version; ts and each register rise with seq;
 * arrival numbers are 1..late without gap or repeat; the mark is (max seq, late). The same workload
 * without the coordinator (the one-writer mode) is shown to break these rules, so the test can fail.
 */
import type { Test } from 'tap';
import t from 'tap';
import { loadConfig } from '../../domain/config.ts';
import { Decimal } from '../../domain/decimal.ts';
import { silentLogger } from '../../domain/logger.ts';
import type { Reading } from '../../domain/reading.ts';
import pg from 'pg';
import { deviceLockKey, INFLUX_LOCK_NAMESPACE, openInfluxCoordinator } from '../../store/influx/coordinator.ts';
import { readingLines } from '../../store/influx/schema.ts';
import { openInfluxStore, type InfluxReadingStore } from '../../store/influx/store.ts';
import { eventually } from '../helpers/eventually.ts';
import { openStores } from '../../store/open.ts';
import type { VisibilityMark } from '../../store/types.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { startInfluxd, requireInfluxd, type Influxd } from '../helpers/influxd.ts';
import { CONFLICT_EVERY, DEFAULT_WORKLOAD, version, type Outcome } from '../helpers/pg-writer.ts';
import { postgresForFile } from '../helpers/postgres.ts';
import { startWriters } from '../helpers/writer-processes.ts';
import { readingStoreContract } from '../helpers/reading-store-contract.ts';

const W = DEFAULT_WORKLOAD;
const devices = Array.from({ length: W.devices }, (_, d) => `dev-${d}`);
const cluster = requireInfluxd(t) ? await postgresForFile(t) : undefined;
let influxd: Influxd | undefined;
if (cluster) {
  influxd = await startInfluxd();
  t.teardown(() => influxd?.close());
}

/** Runs both writer processes to the end; their outcomes by role. */
async function runWriters(t: Test, database: string, pgUrl: string, plain: boolean): Promise<Record<'a' | 'b', Outcome[]>> {
  const ix = influxd as Influxd;
  const writers = await startWriters(t, 'influx-writer.ts', (role) => [ix.url, database, pgUrl, role, String(W.seed), ...(plain ? ['plain'] : [])]);
  const codes = await writers.go();
  // Without the coordinator a writer may also fail outright (its stale state no longer matches the
  // server); that counts as breaking the rules too.
  if (!plain) t.same(codes, [0, 0], `both writers finished cleanly ${writers.errors()}`);
  else if (codes.some((c) => c !== 0)) t.comment(`a plain writer failed: ${writers.errors().slice(0, 600)}`);
  return writers.outcomes();
}

/** What breaks the several-writers guarantee, as a list of problems (empty: it held). */
async function problems(database: string, outcomes: Record<'a' | 'b', Outcome[]>): Promise<Record<string, string[]>> {
  const ix = influxd as Influxd;
  const out: Record<string, string[]> = { outcomes: [], points: [], content: [], order: [], arrivals: [], marks: [] };
  const key = (o: { deviceId: string; seq: number }) => `${o.deviceId}/${o.seq}`;
  const byKey = new Map<string, Partial<Record<'a' | 'b', string>>>();
  for (const role of ['a', 'b'] as const) {
    if (outcomes[role].length !== W.devices * W.seqs) out.outcomes.push(`writer ${role}: ${outcomes[role].length} outcomes`);
    for (const o of outcomes[role]) {
      const e = byKey.get(key(o)) ?? {};
      e[role] = o.status;
      byKey.set(key(o), e);
    }
  }
  for (const [k, e] of byKey) {
    const loser = Number(k.split('/')[1]) % CONFLICT_EVERY === 0 ? 'rejected:duplicate_conflict' : 'duplicate';
    if (!((e.a === 'stored' && e.b === loser) || (e.b === 'stored' && e.a === loser))) out.outcomes.push(`${k}: a ${e.a}, b ${e.b}`);
  }

  const counts = await ix.query(`SELECT count("value") FROM "reading" GROUP BY "device"; SELECT count("value") FROM "reading_seq" GROUP BY "device"`, database);
  for (const [i, m] of ['reading', 'reading_seq'].entries()) {
    for (const s of counts.results?.[i]?.series ?? []) {
      const n = Number(s.values[0][1]);
      if (n !== W.seqs) out.points.push(`${m} ${s.tags?.device}: ${n} points for ${W.seqs} seqs`);
    }
  }

  const observer = openInfluxStore({ url: ix.url, database, logger: silentLogger });
  try {
    for (const d of devices) {
      const mark = (await observer.marks([d])).get(d) as VisibilityMark | undefined;
      if (!mark) {
        out.marks.push(`${d}: no mark`);
        continue;
      }
      const all = await observer.consume({ deviceId: d, mark, before: Number.MAX_SAFE_INTEGER });
      const seqs = all.map((r) => r.seq);
      if (JSON.stringify(seqs) !== JSON.stringify(Array.from({ length: W.seqs }, (_, i) => i + 1))) out.points.push(`${d}: visible seqs ${seqs.length}`);
      const arrivals = all.filter((r) => r.arrival !== undefined).map((r) => r.arrival as number).sort((a, b) => a - b);
      if (JSON.stringify(arrivals) !== JSON.stringify(Array.from({ length: arrivals.length }, (_, i) => i + 1))) out.arrivals.push(`${d}: ${JSON.stringify(arrivals)}`);
      if (mark.maxSeq !== W.seqs || mark.late !== arrivals.length) out.marks.push(`${d}: mark ${JSON.stringify(mark)}, ${arrivals.length} late`);
      const last = new Map<string, Reading>();
      let prev: Reading | undefined;
      for (const r of all) {
        const e = byKey.get(key(r)) ?? {};
        const role = e.a === 'stored' ? 'a' : 'b';
        const want = version(role, Number(d.slice(4)), r.seq);
        const got = { facilityId: r.facilityId, deviceId: r.deviceId, seq: r.seq, ts: r.ts, metric: r.metric, value: r.value, unit: r.unit, reset: r.reset, receivedAt: r.receivedAt };
        if (JSON.stringify(got) !== JSON.stringify(want)) out.content.push(`${key(r)}: ${JSON.stringify(got)}`);
        if (prev && r.ts < prev.ts) out.order.push(`${key(r)}: ts before seq ${prev.seq}'s`);
        const same = last.get(r.metric);
        if (same && Decimal.parse(r.value).cmp(Decimal.parse(same.value)) < 0) out.order.push(`${key(r)}: register below seq ${same.seq}'s`);
        last.set(r.metric, r);
        prev = r;
      }
    }
  } finally {
    await observer.close();
  }
  return out;
}

if (cluster && influxd) {
  t.test('two OS processes, coordinated through PostgreSQL, write the same devices at once', async (t) => {
    const pgUrl = await cluster.createDatabase();
    await influxd!.createDatabase('several');
    const outcomes = await runWriters(t, 'several', pgUrl, false);
    const p = await problems('several', outcomes);
    t.same(p.outcomes.slice(0, 10), [], 'each reading: stored by exactly one writer; the other got duplicate / duplicate_conflict');
    t.same(p.points.slice(0, 10), [], 'each (device, seq) is one point in each measurement, every seq visible');
    t.same(p.content.slice(0, 5), [], "each stored reading is its storing writer's version");
    t.same(p.order.slice(0, 5), [], 'ts and each register rise with seq');
    t.same(p.arrivals, [], 'arrival numbers 1..late, no gap, no repeat');
    t.same(p.marks, [], 'each mark is (max seq, late count)');
  });

  t.test('without the coordinator (one writer per device) the same workload breaks the rules', async (t) => {
    const pgUrl = await cluster.createDatabase();
    await influxd!.createDatabase('plain');
    const outcomes = await runWriters(t, 'plain', pgUrl, true);
    const p = await problems('plain', outcomes);
    t.ok(Object.values(p).some((list) => list.length > 0), `the one-writer mode is not safe here: ${JSON.stringify(p).slice(0, 300)}`);
  });
}

/** A coordinated store on `database` (its own pool: another "process"). */
async function coordinated(t: Test, database: string, pgUrl: string): Promise<InfluxReadingStore> {
  const store = openInfluxStore({ url: (influxd as Influxd).url, database, logger: silentLogger, coordinator: await openInfluxCoordinator(pgUrl) });
  t.teardown(() => store.close());
  return store;
}

const reading = (seq: number, ts: number, value: string): Reading => ({
  facilityId: 'fac-1',
  deviceId: 'dev-x',
  seq,
  ts: Date.UTC(2026, 0, 1) + ts * 1000,
  metric: 'natural_gas',
  value,
  unit: 'm3',
  reset: false,
  receivedAt: Date.UTC(2026, 0, 2),
});

if (cluster && influxd) {
  t.test("a store's cached state gives way to another process's commit", async (t) => {
    const pgUrl = await cluster.createDatabase();
    await influxd!.createDatabase('handover');
    const [a, b] = [await coordinated(t, 'handover', pgUrl), await coordinated(t, 'handover', pgUrl)];
    t.same(await a.commit([reading(1, 1, '10')]), [{ status: 'stored' }], 'a stores seq 1');
    t.same(await b.commit([reading(3, 30, '30')]), [{ status: 'stored' }], 'b stores seq 3');
    // a's cache still says max seq 1: without the reload seq 2 would pass (and seq 3 be taken as new).
    const [late, dup] = await a.commit([reading(2, 40, '20'), reading(3, 30, '31')]);
    t.match(late, { status: 'rejected', reason: 'ts_out_of_order' }, "a sees b's seq 3 as seq 2's upper neighbour");
    t.match(dup, { status: 'rejected', reason: 'duplicate_conflict' }, "a sees b's seq 3 as stored");
    t.same(await a.commit([reading(2, 2, '20')]), [{ status: 'stored' }], 'a consistent seq 2 is stored');
    t.same((await a.marks(['dev-x'])).get('dev-x'), { maxSeq: 3, late: 1 }, 'mark: max seq 3, one late arrival');
    t.same(await b.commit([reading(0, 0, '5')]), [{ status: 'stored' }], 'b stores a late seq 0');
    t.same((await b.marks(['dev-x'])).get('dev-x'), { maxSeq: 3, late: 2 }, "b numbered it after a's late arrival (arrival 2)");
  });

  t.test('a write cut short (epoch bumped, never marked clean) makes the next writer reload and repair', async (t) => {
    const pgUrl = await cluster.createDatabase();
    await influxd!.createDatabase('cut');
    const a = await coordinated(t, 'cut', pgUrl);
    t.same(await a.commit([reading(1, 1, '10')]), [{ status: 'stored' }]);
    // Another writer: took the lock, bumped the epoch, wrote seq 2's points, died before its mark point.
    const admin = new pg.Pool({ connectionString: pgUrl, max: 1 });
    t.teardown(() => admin.end());
    await admin.query(`UPDATE influx_device_state SET epoch = epoch + 1 WHERE device_id = 'dev-x'`);
    const res = await fetch(`${influxd!.url}/write?db=cut&precision=ns`, { method: 'POST', body: readingLines({ ...reading(2, 2, '20'), value: '20' }).join('\n') });
    t.equal(res.status, 204, 'the dead writer wrote seq 2 without its mark point');
    t.match(await a.commit([reading(2, 2, '21')]), [{ status: 'rejected', reason: 'duplicate_conflict' }], "a reloaded: the dead writer's seq 2 is stored");
    t.same((await a.marks(['dev-x'])).get('dev-x'), { maxSeq: 2, late: 0 }, 'the mark was repaired up to seq 2');
    const row = await admin.query<{ epoch: string; clean: string }>(`SELECT epoch, clean FROM influx_device_state WHERE device_id = 'dev-x'`);
    t.equal(row.rows[0].epoch, row.rows[0].clean, 'the device is clean again');
  });

  t.test("a commit waits for the device's lock held by another session", async (t) => {
    const pgUrl = await cluster.createDatabase();
    await influxd!.createDatabase('locked');
    const a = await coordinated(t, 'locked', pgUrl);
    const holder = new pg.Client({ connectionString: pgUrl });
    await holder.connect();
    t.teardown(() => holder.end());
    await holder.query('BEGIN');
    await holder.query('SELECT pg_advisory_xact_lock($1, $2)', [INFLUX_LOCK_NAMESPACE, deviceLockKey('dev-x')]);
    let settled = false;
    const pending = a.commit([reading(1, 1, '10')]).finally(() => (settled = true));
    await eventually('the commit waits on the advisory lock', async () => {
      const r = await holder.query(`SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = $1::bigint::oid AND objid = $2::bigint::oid`, [
        INFLUX_LOCK_NAMESPACE,
        deviceLockKey('dev-x') >>> 0,
      ]);
      return r.rowCount === 1;
    });
    t.notOk(settled, 'not committed while the lock is held');
    t.equal((await (influxd as Influxd).query(`SELECT count("value") FROM "reading_seq"`, 'locked')).results?.[0]?.series, undefined, 'nothing written while the lock is held');
    await holder.query('COMMIT');
    t.same(await pending, [{ status: 'stored' }], 'stored once the lock is released');
  });
}

if (cluster && influxd) {
  t.test('openStores with INFLUX_URL and DATABASE_URL: the InfluxDB store is coordinated through PostgreSQL', async (t) => {
    const pgUrl = await cluster.createDatabase();
    await influxd!.createDatabase('opened');
    const config = loadConfig({ DATA_DIR: tmpDir(t), DATABASE_URL: pgUrl, INFLUX_URL: influxd!.url, INFLUX_DATABASE: 'opened' });
    const stores = await openStores(config, silentLogger);
    t.teardown(() => stores.close());
    t.equal(stores.readings.kind, 'influxdb');
    // A device id PostgreSQL cannot hold (NUL) is refused alone; the batch's other readings go through.
    t.match(await stores.readings.commit([{ ...reading(1, 1, '10'), deviceId: 'dev\0x' }, reading(1, 1, '10')]), [
      { status: 'rejected', reason: 'invalid_shape' },
      { status: 'stored' },
    ]);
    const admin = new pg.Pool({ connectionString: pgUrl, max: 1 });
    t.teardown(() => admin.end());
    const rows = await admin.query<{ device_id: string; epoch: string; clean: string }>('SELECT device_id, epoch::text, clean::text FROM influx_device_state');
    t.same(rows.rows, [{ device_id: 'dev-x', epoch: '1', clean: '1' }], "the commit went through the device's lock and epoch");
  });
}

if (cluster && influxd) {
  let n = 0;
  t.test('ReadingStore contract on the coordinated InfluxDB store', async (t) => {
    readingStoreContract(t, async (st, o) => {
      const db = `contract_${++n}`;
      await influxd!.createDatabase(db);
      const store = openInfluxStore({ url: influxd!.url, database: db, logger: silentLogger, limits: o?.limits, coordinator: await openInfluxCoordinator(await cluster.createDatabase()) });
      st.teardown(() => store.close());
      return store;
    });
  });
}
