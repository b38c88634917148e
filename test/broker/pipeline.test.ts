/**
 * The aedes-independent pipeline with a controllable fake store: group commit, resolve-after-commit,
 * commit failure rejecting everything admitted before it, bounded admission under a stalled store,
 * the per-device rate limit (injected clock), close() flushing, and the metrics.
 */
import t from 'tap';
import { Registry as PromRegistry } from 'prom-client';
import { buildIngestPipeline } from '../../broker/pipeline.ts';
import { silentLogger } from '../../domain/logger.ts';
import type { Reading, Rejection } from '../../domain/reading.ts';
import type { CommitOutcome, ReadingStore } from '../../store/types.ts';
import { metric } from './helpers.ts';
import { poll } from '../helpers/eventually.ts';

/** A store whose commits can be held open and made to fail; records every batch. */
function fakeStore() {
  const batches: Reading[][] = [];
  const seen = new Set<string>();
  let gate: Promise<void> | undefined;
  let open: (() => void) | undefined;
  let fail: Error | undefined;
  const store = {
    kind: 'sqlite',
    async commit(readings: Reading[]): Promise<CommitOutcome[]> {
      if (gate) await gate;
      if (fail) throw fail;
      batches.push(readings);
      return readings.map((r) => {
        const k = `${r.deviceId}:${r.seq}`;
        if (seen.has(k)) return { status: 'duplicate' };
        seen.add(k);
        return { status: 'stored' };
      });
    },
  } as unknown as ReadingStore;
  return {
    store,
    batches,
    stall() {
      gate = new Promise((r) => (open = r));
    },
    resume() {
      gate = undefined;
      open?.();
    },
    failWith(e: Error | undefined) {
      fail = e;
    },
  };
}

const rejections: Rejection[] = [];
const registry = { addRejections: (rows: Rejection[]) => void rejections.push(...rows) };
const ctx = { facilityId: 'F1', deviceId: 'd1' };
const now = Date.parse('2026-11-22T06:00:00Z');
const msg = (seq: number, extra: Record<string, unknown> = {}) =>
  Buffer.from(JSON.stringify({ seq, ts: now - 1000, metric: 'electricity_import', value: seq, unit: 'kWh', ...extra }));

t.test('group commit: many submits, few commits, each resolves after its commit', async (t) => {
  const f = fakeStore();
  const metrics = new PromRegistry();
  const p = buildIngestPipeline({ store: f.store, registry, logger: silentLogger, metrics, clock: () => now, maxBatch: 100, maxDelayMs: 5, rateLimit: false });
  t.teardown(() => p.close());
  const results = await Promise.all(Array.from({ length: 250 }, (_, i) => p.submit(ctx, msg(i + 1))));
  t.ok(results.every((r) => r.stored === 1), 'all stored');
  t.ok(f.batches.length >= 3 && f.batches.length <= 5, `250 readings in ${f.batches.length} commits`);
  t.ok(f.batches.every((b) => b.length <= 100), 'no batch above maxBatch');
  t.same(f.batches.flat().map((r) => r.seq), Array.from({ length: 250 }, (_, i) => i + 1), 'order kept');

  const dup = await p.submit(ctx, msg(1));
  t.same(dup, { stored: 0, duplicates: 1, rejected: [] }, 'duplicate reported');
  const bad = await p.submit(ctx, Buffer.from('nope'));
  t.equal(bad.rejected[0].reason, 'invalid_json', 'validation rejection reported');
  t.equal(rejections.at(-1)?.reason, 'invalid_json', 'and logged');
  t.equal(await metric(metrics, 'mrv_readings_stored_total'), 250);
  t.equal(await metric(metrics, 'mrv_readings_duplicate_total'), 1);
  t.equal(await metric(metrics, 'mrv_readings_accepted_total'), 251);
  t.equal(await metric(metrics, 'mrv_readings_rejected_total', { reason: 'invalid_json' }), 1);
  const hist = await metrics.getSingleMetric('mrv_store_commit_seconds')!.get();
  t.ok(hist.values.some((v) => (v as { metricName?: string }).metricName === 'mrv_store_commit_seconds_count' && v.value >= 3), 'commit latency observed');
});

t.test('nothing resolves before the commit lands; a failed commit rejects everything admitted before it', async (t) => {
  const f = fakeStore();
  const p = buildIngestPipeline({ store: f.store, registry, logger: silentLogger, metrics: new PromRegistry(), clock: () => now, maxBatch: 10, maxDelayMs: 1, rateLimit: false });
  t.teardown(() => p.close());
  f.stall();
  let resolved = 0;
  const first = Array.from({ length: 25 }, (_, i) => p.submit(ctx, msg(i + 1)).then((r) => (resolved++, r)));
  t.ok(await poll(() => p.stats().committing), 'a commit starts');
  t.equal(resolved, 0, 'held while the commit is open');
  t.ok(p.stats().committing, 'a commit is in flight');
  f.failWith(new Error('disk full'));
  f.resume();
  const settled = await Promise.allSettled(first);
  t.ok(settled.every((s) => s.status === 'rejected'), 'every submit of the failed batch and of the queue behind it rejects');
  t.match((settled[24] as PromiseRejectedResult).reason, { code: 'STORE_UNAVAILABLE' });
  t.equal(f.batches.length, 0, 'nothing committed');

  f.failWith(undefined);
  const again = await p.submit(ctx, msg(1));
  t.equal(again.stored, 1, 'later submits work again (redelivery)');
});

t.test('back-pressure: a stalled store bounds what is admitted', async (t) => {
  const f = fakeStore();
  const maxQueuedBytes = 20_000;
  const p = buildIngestPipeline({ store: f.store, registry, logger: silentLogger, metrics: new PromRegistry(), clock: () => now, maxBatch: 50, maxDelayMs: 1, maxQueuedBytes, rateLimit: false });
  t.teardown(() => p.close());
  f.stall();
  const all = Array.from({ length: 2000 }, (_, i) => p.submit({ facilityId: 'F1', deviceId: `dev${i % 20}` }, msg(Math.floor(i / 20) + 1)));
  // wait until the commit has started (and stalls) and the admission bound has been met
  t.ok(await poll(() => p.stats().committing && p.stats().waiting > 1500), 'a commit stalls with most submits waiting');
  const s = p.stats();
  t.ok(s.queuedBytes <= maxQueuedBytes, `admitted ${s.queuedBytes} bytes <= ${maxQueuedBytes}`);
  t.ok(s.waiting > 1500, `${s.waiting} submits wait unparsed (their callers' callbacks stay held)`);
  f.resume();
  const res = await Promise.all(all);
  t.equal(res.filter((r) => r.stored === 1).length, 2000, 'all stored once the store resumes');
});

t.test('rate limit: over the limit is refused (not acked) and logged once a second', async (t) => {
  let clock = now;
  const f = fakeStore();
  const metrics = new PromRegistry();
  const rows: Rejection[] = [];
  const p = buildIngestPipeline({
    store: f.store,
    registry: { addRejections: (r: Rejection[]) => void rows.push(...r) },
    logger: silentLogger,
    metrics,
    clock: () => clock,
    rateLimit: { perSecond: 2, burst: 3 },
  });
  t.teardown(() => p.close());
  const out = await Promise.allSettled([1, 2, 3, 4, 5].map((s) => p.submit(ctx, msg(s))));
  t.same(out.map((o) => o.status), ['fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'rejected'], 'burst of 3, then refused');
  t.match((out[3] as PromiseRejectedResult).reason, { code: 'RATE_LIMITED' });
  const other = await p.submit({ facilityId: 'F1', deviceId: 'd2' }, msg(1));
  t.equal(other.stored, 1, 'other devices unaffected');
  clock += 500; // one token back
  t.equal((await p.submit(ctx, msg(4))).stored, 1, 'accepted again after refill');
  await p.close();
  t.equal(rows.filter((r) => r.reason === 'rate_limited').length, 1, 'one rate_limited row in the log for the burst');
  t.equal(await metric(metrics, 'mrv_readings_rejected_total', { reason: 'rate_limited' }), 2, 'each refusal counted');
});

t.test('rate limit counts readings, not messages (issue 10 item 13)', async (t) => {
  let clock = now;
  const f = fakeStore();
  const metrics = new PromRegistry();
  const rows: Rejection[] = [];
  const p = buildIngestPipeline({
    store: f.store,
    registry: { addRejections: (r: Rejection[]) => void rows.push(...r) },
    logger: silentLogger,
    metrics,
    clock: () => clock,
    rateLimit: { perSecond: 10, burst: 600 },
  });
  t.teardown(() => p.close());
  const array = (from: number, n: number) =>
    Buffer.from(JSON.stringify(Array.from({ length: n }, (_, i) => ({ seq: from + i, ts: now - 1000, metric: 'electricity_import', value: from + i, unit: 'kWh' }))));
  t.equal((await p.submit(ctx, array(1, 500))).stored, 500, 'an array of 500 fits the burst of 600');
  await t.rejects(p.submit(ctx, array(501, 500)), { code: 'RATE_LIMITED' }, 'a second array of 500 is 500 readings over the 100 left');
  await t.rejects(p.submit(ctx, array(501, 1)), { code: 'RATE_LIMITED' }, 'the device stays throttled until the refused array could pass (order kept)');
  clock += 40_000; // 400 tokens back: 500 available
  t.equal((await p.submit(ctx, array(501, 500))).stored, 500, 'accepted after refill');
  // Bad elements count too: they cost the log as much as good ones.
  const bad = Buffer.from(JSON.stringify(Array.from({ length: 200 }, (_, i) => ({ seq: 2000 + i, ts: now, metric: 'nope', value: 1, unit: 'kWh' }))));
  await t.rejects(p.submit(ctx, bad), { code: 'RATE_LIMITED' }, '200 bad elements with no tokens left are refused as well');
  await p.close();
  t.equal(f.batches.flat().length, 1000, 'exactly the two accepted arrays were stored');
});

t.test('rejections older than the retention are pruned on start and periodically', async (t) => {
  const cutoffs: number[] = [];
  const p = buildIngestPipeline({
    store: fakeStore().store,
    registry: { addRejections: () => {}, pruneRejections: (before: number) => (cutoffs.push(before), 0) },
    logger: silentLogger,
    metrics: new PromRegistry(),
    clock: () => now,
    rejectionRetentionMs: 30 * 86_400_000,
    pruneEveryMs: 5,
  });
  t.teardown(() => p.close());
  t.same(cutoffs, [now - 30 * 86_400_000], 'pruned once at start, 30 days back');
  t.ok(await poll(() => cutoffs.length >= 3), 'and again on the interval');
  await p.close();
});

t.test('close() flushes what is queued', async (t) => {
  const f = fakeStore();
  const p = buildIngestPipeline({ store: f.store, registry, logger: silentLogger, metrics: new PromRegistry(), clock: () => now, maxDelayMs: 10_000, rateLimit: false });
  const pending = p.submit(ctx, msg(1));
  await p.close();
  t.equal((await pending).stored, 1, 'queued submit committed by close');
  await t.rejects(p.submit(ctx, msg(2)), { code: 'STORE_UNAVAILABLE' }, 'closed pipeline refuses');
});

/** A store with `stage`: each staged batch waits for the test to land or fail it. */
function stagedStore() {
  const staged: { readings: Reading[]; land: () => void; fail: (e: Error) => void }[] = [];
  const store = {
    kind: 'influxdb',
    async commit(): Promise<CommitOutcome[]> {
      throw new Error('the pipeline must use stage');
    },
    async stage(readings: Reading[]) {
      let land!: () => void;
      let fail!: (e: Error) => void;
      const done = new Promise<CommitOutcome[]>((resolve, reject) => {
        land = () => resolve(readings.map(() => ({ status: 'stored' })));
        fail = reject;
      });
      staged.push({ readings, land, fail });
      return { done };
    },
  } as unknown as ReadingStore;
  return { store, staged };
}

const tick = () => new Promise((r) => setImmediate(r));

t.test('staged store: the next batch is staged while earlier ones are written, up to maxInFlight', async (t) => {
  const f = stagedStore();
  const p = buildIngestPipeline({ store: f.store, registry, logger: silentLogger, metrics: new PromRegistry(), clock: () => now, maxBatch: 10, maxInFlight: 2, rateLimit: false });
  t.teardown(() => p.close());
  let resolved = 0;
  const subs = Array.from({ length: 30 }, (_, i) => p.submit(ctx, msg(i + 1)).then((r) => (resolved++, r)));
  await tick();
  await tick();
  t.equal(f.staged.length, 2, 'two batches staged at once, the third waits');
  t.equal(p.stats().inFlight, 2);
  t.equal(resolved, 0, 'nothing resolves before its batch is durable');
  f.staged[1].land();
  await tick();
  t.equal(resolved, 10, 'a later batch that lands resolves on its own');
  await tick();
  t.equal(f.staged.length, 3, 'its slot goes to the next batch');
  f.staged[0].land();
  f.staged[2].land();
  const res = await Promise.all(subs);
  t.equal(res.reduce((s, r) => s + r.stored, 0), 30, 'all stored');
  t.same(f.staged.map((b) => b.readings.map((r) => r.seq)).flat(), Array.from({ length: 30 }, (_, i) => i + 1), 'staged in submit order');
});

t.test('staged store: a batch that fails rejects its submits and everything queued behind it', async (t) => {
  const f = stagedStore();
  const p = buildIngestPipeline({ store: f.store, registry, logger: silentLogger, metrics: new PromRegistry(), clock: () => now, maxBatch: 10, maxInFlight: 1, rateLimit: false });
  t.teardown(() => p.close());
  const subs = Array.from({ length: 25 }, (_, i) => p.submit(ctx, msg(i + 1)));
  await tick();
  t.equal(f.staged.length, 1, 'one batch in flight (maxInFlight 1)');
  f.staged[0].fail(new Error('write failed'));
  const settled = await Promise.allSettled(subs);
  t.ok(settled.every((s) => s.status === 'rejected'), 'the failed batch and the 15 queued behind it reject: nothing acked');
  t.equal(f.staged.length, 1, 'the queued ones were never staged');
  const again = p.submit(ctx, msg(1));
  await tick();
  f.staged[1].land();
  t.equal((await again).stored, 1, 'a redelivery after the failure is stored');
});
