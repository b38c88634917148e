/**
 * The pipeline with signed readings and a worker-thread verifier (broker/pipeline.ts): once a batch's
 * signatures are verified, the next batch is taken and verified while the first one commits; batches
 * still commit in the order they were taken, nothing resolves before its own commit, and a batch
 * taken before an earlier commit failed is refused without being written.
 */
import t, { type Test } from 'tap';
import { Registry as PromRegistry } from 'prom-client';
import { buildIngestPipeline } from '../../broker/pipeline.ts';
import { createVerifier, type SignatureVerifier } from '../../broker/verify-pool.ts';
import { silentLogger } from '../../domain/logger.ts';
import type { Reading, Rejection } from '../../domain/reading.ts';
import { canonicalLine, generateDeviceKey, signLine } from '../../domain/signature.ts';
import type { CommitOutcome, ReadingStore } from '../../store/types.ts';
import { poll } from '../helpers/eventually.ts';

const KEY = generateDeviceKey();
const now = Date.parse('2026-11-22T06:00:00Z');
const ctx = { facilityId: 'F1', deviceId: 'd1' };

/** A signed reading of d1 (each a chain start: prev ''), as the device publishes it. */
function signed(seq: number): Buffer {
  const ts = now - 1000;
  const line = canonicalLine({ deviceId: 'd1', seq, ts, metric: 'electricity_import', value: String(seq), unit: 'kWh', reset: false, prev: '' });
  return Buffer.from(JSON.stringify({ seq, ts, metric: 'electricity_import', value: seq, unit: 'kWh', prev: '', sig: signLine(KEY.privateKey, line) }));
}

/** A store whose commits can be held open and made to fail; records every committed batch's seqs. */
function fakeStore() {
  const batches: number[][] = [];
  let gate: Promise<void> | undefined;
  let open: (() => void) | undefined;
  let fail: Error | undefined;
  let commitsStarted = 0;
  const store = {
    kind: 'sqlite',
    async commit(readings: Reading[]): Promise<CommitOutcome[]> {
      commitsStarted++;
      if (gate) await gate;
      if (fail) throw fail;
      batches.push(readings.map((r) => r.seq));
      return readings.map(() => ({ status: 'stored' }));
    },
  } as unknown as ReadingStore;
  return {
    store,
    batches,
    started: () => commitsStarted,
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

/** The real verifier (one worker thread), counting the signatures of each call. */
function countingVerifier(t: Test): { verifier: SignatureVerifier; calls: number[] } {
  const real = createVerifier({ workers: 1, inlineBelow: 1 });
  t.teardown(() => real.close());
  const calls: number[] = [];
  const verifier: SignatureVerifier = {
    workers: real.workers,
    backend: real.backend,
    verify: (items) => (calls.push(items.length), real.verify(items)),
    close: () => real.close(),
  };
  return { verifier, calls };
}

function pipelineWith(t: Test, f: ReturnType<typeof fakeStore>, verifier: SignatureVerifier) {
  const rejections: Rejection[] = [];
  const registry = { addRejections: (rows: Rejection[]) => void rejections.push(...rows), devicePublicKey: (id: string) => (id === 'd1' ? KEY.publicKey : undefined) };
  const p = buildIngestPipeline({ store: f.store, registry, verifier, logger: silentLogger, metrics: new PromRegistry(), clock: () => now, rateLimit: false });
  t.teardown(() => p.close());
  return { p, rejections };
}

t.test('the next batch is verified while the previous one commits; commits keep their order', async (t) => {
  const f = fakeStore();
  const { verifier, calls } = countingVerifier(t);
  const { p, rejections } = pipelineWith(t, f, verifier);
  f.stall();
  let resolvedA = 0;
  const a = [1, 2, 3].map((s) => p.submit(ctx, signed(s)).then((r) => (resolvedA++, r)));
  t.ok(await poll(() => f.started() === 1), 'batch A is committing (held open)');
  t.same(calls, [3], "A's three signatures were verified first");
  const b = [4, 5].map((s) => p.submit(ctx, signed(s)));
  t.ok(await poll(() => calls.length === 2), "B's signatures are verified while A's commit is still open");
  t.same(calls, [3, 2]);
  t.equal(f.started(), 1, 'B waits for its turn: no second commit while A commits');
  t.equal(resolvedA, 0, 'nothing resolves before its commit');
  f.resume();
  const ra = await Promise.all(a);
  const rb = await Promise.all(b);
  t.ok(ra.every((r) => r.stored === 1) && rb.every((r) => r.stored === 1), 'all stored');
  t.same(f.batches, [[1, 2, 3], [4, 5]], 'committed in the order taken');
  t.same(rejections, []);
});

t.test('a batch verified ahead of a commit that fails is refused, not written', async (t) => {
  const f = fakeStore();
  const { verifier, calls } = countingVerifier(t);
  const { p } = pipelineWith(t, f, verifier);
  f.stall();
  const a = [1, 2].map((s) => p.submit(ctx, signed(s)));
  t.ok(await poll(() => f.started() === 1), 'batch A is committing');
  const b = [3, 4].map((s) => p.submit(ctx, signed(s)));
  t.ok(await poll(() => calls.length === 2), 'batch B verified, waiting for its turn');
  f.failWith(new Error('disk full'));
  f.resume();
  const settled = await Promise.allSettled([...a, ...b]);
  t.ok(
    settled.every((s) => s.status === 'rejected'),
    'A and B both refused (not acked: the device redelivers)',
  );
  t.match((settled[3] as PromiseRejectedResult).reason, { code: 'STORE_UNAVAILABLE' });
  t.equal(f.started(), 1, 'B never reached the store');
  t.same(f.batches, []);
  f.failWith(undefined);
  const again = await p.submit(ctx, signed(3));
  t.equal(again.stored, 1, 'later submits work again');
  t.same(f.batches, [[3]]);
});
