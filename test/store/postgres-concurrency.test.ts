/**
 * Several writers on the same devices at once (SPEC "Scale-out": the checks hold whatever worker a
 * reading reaches): two PostgreSQL reading stores on two pools (two "processes"), then two real OS
 * processes, commit interleaved, shuffled batches of the same devices, every seq from both (same
 * content, or a conflicting one), while a third store takes visibility marks. Afterwards: every
 * reading is stored exactly once, by exactly one writer; the other writer got `duplicate` (same
 * content) or `duplicate_conflict` (different content); nothing failed (a deadlock would surface as a
 * failed commit); arrival numbers are 1..late without gaps; each mark taken during the run still sees
 * exactly what it saw then (no reading became visible under an old mark afterwards).
 */
import pg from 'pg';
import type { Test } from 'tap';
import t from 'tap';
import type { Reading } from '../../domain/reading.ts';
import { IDLE_IN_TRANSACTION_MS, openPostgresReadingStore, type PostgresReadingStore } from '../../store/postgres/readings.ts';
import type { VisibilityMark } from '../../store/types.ts';
import { batchesFor, CONFLICT_EVERY, DEFAULT_WORKLOAD, describe, version, type Outcome } from '../helpers/pg-writer.ts';
import { eventually } from '../helpers/eventually.ts';
import { postgresForFile } from '../helpers/postgres.ts';
import { startWriters } from '../helpers/writer-processes.ts';

const cluster = await postgresForFile(t);

const W = DEFAULT_WORKLOAD;
const devices = Array.from({ length: W.devices }, (_, d) => `dev-${d}`);

interface MarkSample {
  mark: VisibilityMark;
  deviceId: string;
  seqs: number[];
}

/** Takes marks and what they see, over and over, until `done()`. */
async function sampleMarks(store: PostgresReadingStore, done: () => boolean): Promise<MarkSample[]> {
  const samples: MarkSample[] = [];
  let i = 0;
  while (!done()) {
    const deviceId = devices[i++ % devices.length];
    const mark = (await store.marks([deviceId])).get(deviceId);
    if (!mark) continue;
    const seqs = (await store.consume({ deviceId, mark, before: Number.MAX_SAFE_INTEGER })).map((r) => r.seq);
    samples.push({ mark, deviceId, seqs });
  }
  return samples;
}

/** The checks on the final state, given both writers' outcomes. */
async function checkFinal(t: Test, store: PostgresReadingStore, outcomes: Record<'a' | 'b', Outcome[]>, samples: MarkSample[]): Promise<void> {
  const key = (o: { deviceId: string; seq: number }) => `${o.deviceId}/${o.seq}`;
  const byKey = new Map<string, Partial<Record<'a' | 'b', string>>>();
  for (const role of ['a', 'b'] as const) {
    t.equal(outcomes[role].length, W.devices * W.seqs, `writer ${role}: an outcome for every reading`);
    for (const o of outcomes[role]) {
      const e = byKey.get(key(o)) ?? {};
      e[role] = o.status;
      byKey.set(key(o), e);
    }
  }
  const bad: string[] = [];
  let conflicts = 0;
  for (const [k, e] of byKey) {
    const seq = Number(k.split('/')[1]);
    const differs = seq % CONFLICT_EVERY === 0;
    const loser = differs ? 'rejected:duplicate_conflict' : 'duplicate';
    const ok = (e.a === 'stored' && e.b === loser) || (e.b === 'stored' && e.a === loser);
    if (!ok) bad.push(`${k}: a ${e.a}, b ${e.b}`);
    if (differs && ok) conflicts++;
  }
  t.same(bad.slice(0, 10), [], 'each reading: stored by exactly one writer; the other got duplicate / duplicate_conflict');
  t.ok(conflicts > 0, 'conflicting versions were exercised');

  const rows: Reading[] = [];
  for (const d of devices) {
    const mark = (await store.marks([d])).get(d) as VisibilityMark;
    const all = await store.consume({ deviceId: d, mark, before: Number.MAX_SAFE_INTEGER });
    rows.push(...all);
    t.same(all.map((r) => r.seq), Array.from({ length: W.seqs }, (_, i) => i + 1), `${d}: every seq stored exactly once`);
    const arrivals = all.filter((r) => r.arrival !== undefined).map((r) => r.arrival as number).sort((a, b) => a - b);
    t.same(arrivals, Array.from({ length: arrivals.length }, (_, i) => i + 1), `${d}: arrival numbers 1..late, no gap, no repeat`);
    t.same(mark, { maxSeq: W.seqs, late: arrivals.length }, `${d}: mark = (max seq, late count)`);
  }
  // The stored content is the version of the writer that reported `stored`.
  const wrong: string[] = [];
  for (const r of rows) {
    const e = byKey.get(key(r)) ?? {};
    const role = e.a === 'stored' ? 'a' : 'b';
    const { arrival, ...content } = r;
    const expected = version(role, Number(r.deviceId.slice(4)), r.seq);
    if (JSON.stringify(content) !== JSON.stringify(expected)) wrong.push(`${key(r)}: ${JSON.stringify(content)}`);
    void arrival;
  }
  t.same(wrong.slice(0, 5), [], "each stored reading is its storing writer's version, field for field");

  // Heads agree with the readings.
  const heads = await store.pool.query<{ device_id: string; metric: string; first_seq: number; last_seq: number; lo: number; hi: number }>(
    `SELECT h.device_id, h.metric, h.first_seq, h.last_seq, min(r.seq) AS lo, max(r.seq) AS hi
     FROM reading_heads h JOIN readings r ON r.device_id = h.device_id AND r.metric = h.metric
     GROUP BY h.device_id, h.metric, h.first_seq, h.last_seq`,
  );
  t.equal(heads.rowCount, W.devices * 2, 'one head per device and metric');
  t.same(heads.rows.filter((h) => h.first_seq !== h.lo || h.last_seq !== h.hi), [], 'heads: first and last seq of each metric');

  // Marks taken during the run see, now, exactly what they saw then.
  t.ok(samples.length > 0, `marks were taken during the run (${samples.length})`);
  const changed: string[] = [];
  for (const s of samples) {
    const now = (await store.consume({ deviceId: s.deviceId, mark: s.mark, before: Number.MAX_SAFE_INTEGER })).map((r) => r.seq);
    if (JSON.stringify(now) !== JSON.stringify(s.seqs)) changed.push(`${s.deviceId} ${JSON.stringify(s.mark)}: then ${s.seqs.length}, now ${now.length}`);
  }
  t.same(changed.slice(0, 5), [], 'no reading became visible under a mark after it was taken');
}

if (cluster) {
  t.test('two stores on two pools write the same devices at once', async (t) => {
    const url = await cluster.createDatabase();
    // Both open (and migrate) at once, as two processes starting together would.
    const [a, b, observer] = await Promise.all([0, 1, 2].map(() => openPostgresReadingStore(url, { limits: () => undefined })));
    t.teardown(() => Promise.all([a.close(), b.close(), observer.close()]));
    const outcomes: Record<'a' | 'b', Outcome[]> = { a: [], b: [] };
    const failures: string[] = [];
    let writing = 2;
    const writer = async (role: 'a' | 'b', store: PostgresReadingStore) => {
      const batches = batchesFor(role, W);
      // Three batches in flight per store: one process's own concurrent commits share devices too.
      let next = 0;
      const lane = async () => {
        while (next < batches.length) {
          const batch = batches[next++];
          try {
            const out = await store.commit(batch);
            batch.forEach((r, i) => outcomes[role].push(describe(r, out[i])));
          } catch (err) {
            failures.push(`${role}: ${(err as Error).message}`);
          }
        }
      };
      await Promise.all([lane(), lane(), lane()]);
      writing--;
    };
    const [samples] = await Promise.all([sampleMarks(observer, () => writing === 0), writer('a', a), writer('b', b)]);
    t.same(failures, [], 'no commit failed (no deadlock, no unique violation)');
    await checkFinal(t, observer, outcomes, samples);
  });

  t.test('two OS processes write the same devices at once', async (t) => {
    const url = await cluster.createDatabase();
    const observer = await openPostgresReadingStore(url, { limits: () => undefined });
    t.teardown(() => observer.close());
    const writers = await startWriters(t, 'pg-writer.ts', (role) => [url, role, String(W.seed)]);
    let writing = true;
    // Both start on the same signal; the observer takes marks until both have finished.
    const codes = writers.go().finally(() => (writing = false));
    const [samples, exitCodes] = await Promise.all([sampleMarks(observer, () => !writing), codes]);
    t.same(exitCodes, [0, 0], `both writers finished cleanly ${writers.errors()}`);
    const outcomes = writers.outcomes();
    await checkFinal(t, observer, outcomes, samples);
  });

  t.test('a writer that dies holding a device lock blocks the others only until its connection drops', async (t) => {
    const url = await cluster.createDatabase();
    const store = await openPostgresReadingStore(url, { limits: () => undefined });
    t.teardown(() => store.close());
    t.same(await store.commit([version('a', 0, 1)]), [{ status: 'stored' }]);
    // Another "process", stopped in the middle of its commit: the lock taken, a reading written, no COMMIT.
    const holder = new pg.Client({ connectionString: url });
    holder.on('error', () => undefined);
    await holder.connect();
    await holder.query('BEGIN');
    await holder.query("SELECT 1 FROM reading_device_state WHERE device_id = 'dev-0' FOR UPDATE");
    const r2 = version('b', 0, 2);
    await holder.query(
      'INSERT INTO readings (device_id, seq, facility_id, ts, metric, value, unit, reset, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)',
      [r2.deviceId, r2.seq, r2.facilityId, r2.ts, r2.metric, '999', r2.unit, r2.reset, r2.receivedAt],
    );
    let settled = false;
    const pending = store.commit([version('a', 0, 2), version('a', 1, 1)]);
    void pending.finally(() => (settled = true)).catch(() => undefined);
    await eventually('the commit waits for the device lock', async () => {
      const res = await store.pool.query<{ n: number }>("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'");
      return res.rows[0].n > 0;
    });
    t.equal(settled, false, 'blocked while the lock is held');
    // The holder's process dies: its socket closes, the server rolls its transaction back.
    (holder as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    t.same(await pending, [{ status: 'stored' }, { status: 'stored' }], 'then the commit goes through, against the committed state only');
    t.equal((await store.get('dev-0', 2))?.value, version('a', 0, 2).value, "the dead writer's uncommitted reading is gone");
    const setting = await store.pool.query<{ v: string }>('SELECT current_setting($1) AS v', ['idle_in_transaction_session_timeout']);
    t.equal(setting.rows[0].v, `${IDLE_IN_TRANSACTION_MS / 1000}s`, "a frozen writer's session ends after this long idle in its transaction");
  });
}
