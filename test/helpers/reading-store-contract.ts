/**
 * The ReadingStore contract (store/types.ts and docs/DESIGN.md) as assertions that run against any
 * implementation: `readingStoreContract(t, makeStore)` adds one subtest per rule; `makeStore(t)` must
 * return a fresh, empty store and register its own teardown on `t`.
 *
 * Used by test/store/influx.test.ts (real influxd); the SQLite store can run the same assertions.
 */
import type { Test } from 'tap';
import type { Metric, Reading } from '../../domain/reading.ts';
import type { CommitOutcome, ReadingStore } from '../../store/types.ts';

export type MakeStore = (t: Test) => Promise<ReadingStore>;

/** 2026-01-01T00:00:00Z; windows of 10 s from there. */
export const T0 = Date.UTC(2026, 0, 1);
export const W = 10_000;
export const FAC = 'fac-1';
export const FAC2 = 'fac-2';

export function reading(deviceId: string, seq: number, ts: number, value: string, extra: Partial<Reading> = {}): Reading {
  const metric: Metric = extra.metric ?? 'electricity_import';
  const unit = extra.unit ?? (metric === 'natural_gas' ? 'm3' : metric === 'co2_direct' ? 'kg' : 'kWh');
  return { facilityId: FAC, deviceId, seq, ts, metric, value, unit, reset: false, receivedAt: ts + 50, ...extra };
}

const statuses = (o: CommitOutcome[]) => o.map((x) => (x.status === 'rejected' ? `rejected:${x.reason}` : x.status));
const seqs = (rs: Reading[]) => rs.map((r) => r.seq);

export function readingStoreContract(t: Test, makeStore: MakeStore): void {
  t.test('commit stores a batch and get returns each reading exactly', async (t) => {
    const store = await makeStore(t);
    t.same(await store.commit([]), [], 'an empty batch is a no-op');
    const batch = [
      reading('dev-a', 1, T0 + 1, '1000'),
      reading('dev-a', 2, T0 + 2, '123456789012345678901234.567891'),
      reading('dev-a', 3, T0 + 3, '0.000001', { metric: 'co2_direct', unit: 'kg' }),
      reading('dev-a', 4, T0 + 4, '12.5', { metric: 'natural_gas', reset: true }),
    ];
    t.same(statuses(await store.commit(batch)), ['stored', 'stored', 'stored', 'stored']);
    for (const r of batch) t.strictSame(await store.get('dev-a', r.seq), r, `seq ${r.seq} reads back field for field`);
    t.equal(await store.get('dev-a', 5), undefined, 'unknown seq');
    t.equal(await store.get('dev-zz', 1), undefined, 'unknown device');
    t.equal(await store.ping(), true, 'ping');
  });

  t.test('a repeated seq: same content is a duplicate, different content a duplicate_conflict', async (t) => {
    const store = await makeStore(t);
    const r1 = reading('dev-a', 10, T0 + 100, '500');
    t.same(statuses(await store.commit([r1])), ['stored']);
    t.same(statuses(await store.commit([{ ...r1, receivedAt: r1.receivedAt + 999 }])), ['duplicate'], 'redelivery (later receivedAt) is a duplicate');
    t.same(statuses(await store.commit([{ ...r1, value: '501' }])), ['rejected:duplicate_conflict'], 'other value');
    t.same(statuses(await store.commit([{ ...r1, ts: r1.ts + 1 }])), ['rejected:duplicate_conflict'], 'other ts');
    t.same(statuses(await store.commit([{ ...r1, reset: true }])), ['rejected:duplicate_conflict'], 'other reset flag');
    t.same(statuses(await store.commit([{ ...r1, metric: 'natural_gas', unit: 'm3' }])), ['rejected:duplicate_conflict'], 'other metric');
    const r2 = reading('dev-a', 11, T0 + 200, '510');
    const r3 = reading('dev-a', 12, T0 + 300, '520');
    t.same(
      statuses(await store.commit([r2, { ...r2 }, r3, { ...r3, value: '521' }, r1])),
      ['stored', 'duplicate', 'stored', 'rejected:duplicate_conflict', 'duplicate'],
      'within one batch, against earlier readings of the batch and stored ones, outcomes in input order',
    );
    t.strictSame(await store.get('dev-a', 10), r1, 'the original content is kept');
    t.strictSame(await store.get('dev-a', 12), r3);
    t.same(await store.list({ facilityId: FAC }).then((l) => l.length), 3, 'each stored once');
  });

  t.test('seq must increase per device', async (t) => {
    const store = await makeStore(t);
    t.same(statuses(await store.commit([reading('dev-a', 10, T0 + 10, '1')])), ['stored']);
    t.same(statuses(await store.commit([reading('dev-a', 5, T0 + 11, '2')])), ['rejected:seq_not_increasing'], 'a lower seq never stored');
    t.same(
      statuses(await store.commit([reading('dev-a', 13, T0 + 12, '3'), reading('dev-a', 12, T0 + 13, '4'), reading('dev-a', 14, T0 + 14, '5')])),
      ['stored', 'rejected:seq_not_increasing', 'stored'],
      'against earlier readings of the batch',
    );
    t.same(statuses(await store.commit([reading('dev-b', 1, T0 + 12, '1')])), ['stored'], 'devices are independent');
    t.equal(await store.get('dev-a', 5), undefined, 'a rejected reading is not stored');
    t.equal(await store.get('dev-a', 12), undefined);
  });

  t.test('a register may not go backwards without reset', async (t) => {
    const store = await makeStore(t);
    t.same(statuses(await store.commit([reading('dev-a', 1, T0 + 1, '100')])), ['stored']);
    t.same(statuses(await store.commit([reading('dev-a', 2, T0 + 2, '99.999')])), ['rejected:register_backwards']);
    t.same(statuses(await store.commit([reading('dev-a', 3, T0 + 3, '100')])), ['stored'], 'an equal value is not backwards');
    t.same(statuses(await store.commit([reading('dev-a', 4, T0 + 4, '3', { reset: true })])), ['stored'], 'reset allows a lower value');
    t.same(
      statuses(
        await store.commit([
          reading('dev-a', 5, T0 + 5, '7'),
          reading('dev-a', 6, T0 + 6, '6'),
          reading('dev-a', 7, T0 + 7, '1', { metric: 'natural_gas' }),
          reading('dev-a', 8, T0 + 8, '5', { metric: 'co2_direct' }),
          reading('dev-a', 9, T0 + 9, '2', { metric: 'co2_direct' }),
          reading('dev-a', 10, T0 + 10, '0.5', { metric: 'natural_gas' }),
        ]),
      ),
      ['stored', 'rejected:register_backwards', 'stored', 'stored', 'stored', 'rejected:register_backwards'],
      'per metric, against earlier readings of the batch; interval metrics may go down',
    );
    t.same(statuses(await store.commit([reading('dev-b', 1, T0 + 1, '1')])), ['stored'], 'another device has its own registers');
    t.equal(await store.get('dev-a', 2), undefined);
  });

  t.test('highWater is the highest stored seq per device', async (t) => {
    const store = await makeStore(t);
    t.same([...(await store.highWater(['dev-a']))], [], 'no readings: absent');
    await store.commit([reading('dev-a', 3, T0 + 1, '1'), reading('dev-a', 7, T0 + 2, '2'), reading('dev-b', 2, T0 + 1, '1')]);
    await store.commit([reading('dev-a', 9, T0 + 3, '1')]); // register_backwards: not stored
    await store.commit([reading('dev-a', 7, T0 + 2, '2')]); // duplicate
    const hw = await store.highWater(['dev-a', 'dev-b', 'dev-c']);
    t.equal(hw.get('dev-a'), 7);
    t.equal(hw.get('dev-b'), 2);
    t.notOk(hw.has('dev-c'), 'a device with no readings is absent');
    t.same([...(await store.highWater([]))], []);
  });

  t.test('consume follows the high-water / cursor rule', async (t) => {
    const store = await makeStore(t);
    const W1 = { start: T0, end: T0 + W };
    const W2 = { start: T0 + W, end: T0 + 2 * W };
    await store.commit([
      reading('dev-a', 1, T0 - 5000, '10'), // before W1
      reading('dev-a', 2, T0 + 1000, '11'),
      reading('dev-a', 3, T0 + W - 1, '12'), // last ms of W1
      reading('dev-a', 4, T0 + W, '13'), // exactly at W1's end: belongs to W2
      reading('dev-a', 5, T0 + 15_000, '14'),
      reading('dev-b', 1, T0 + 1000, '99'),
    ]);
    const h1 = (await store.highWater(['dev-a'])).get('dev-a') as number;
    t.equal(h1, 5);
    const first = await store.consume({ deviceId: 'dev-a', maxSeq: h1, before: W1.end });
    t.same(seqs(first), [1, 2, 3], 'first settlement: everything visible with ts < end, by seq');
    t.strictSame(first[1], reading('dev-a', 2, T0 + 1000, '11'), 'full readings');
    t.same(seqs(await store.consume({ deviceId: 'dev-a', maxSeq: 2, before: W1.end })), [1, 2], 'maxSeq bounds what is visible');

    // Arrive after W1 was settled: one late for W1, one for W2, one for W3.
    await store.commit([
      reading('dev-a', 6, T0 + 2000, '15'),
      reading('dev-a', 7, T0 + 12_000, '16'),
      reading('dev-a', 8, T0 + 25_000, '17'),
    ]);
    const h2 = (await store.highWater(['dev-a'])).get('dev-a') as number;
    t.equal(h2, 8);
    const prev = { maxSeq: h1, before: W1.end };
    const second = await store.consume({ deviceId: 'dev-a', maxSeq: h2, before: W2.end, prev });
    t.same(seqs(second), [4, 5, 6, 7], 'not yet due before (4, 5), late (6), new (7); not 1-3 (consumed), not 8 (not due)');
    t.strictSame(second[2], reading('dev-a', 6, T0 + 2000, '15'));
    t.same(seqs(await store.consume({ deviceId: 'dev-a', maxSeq: 6, before: W2.end, prev })), [4, 5, 6], 'high-water bound with prev');
    t.same(seqs(await store.consume({ deviceId: 'dev-a', maxSeq: h1, before: W2.end, prev })), [4, 5], 'nothing new above prev.maxSeq');
    const third = await store.consume({ deviceId: 'dev-a', maxSeq: h2, before: W2.end + W, prev: { maxSeq: h2, before: W2.end } });
    t.same(seqs(third), [8], 'the next window gets only what is left');
    t.same(seqs(await store.consume({ deviceId: 'dev-b', maxSeq: 1, before: W1.end })), [1], 'per device');
    t.same(await store.consume({ deviceId: 'dev-zz', maxSeq: 10, before: W2.end }), [], 'unknown device');
  });

  t.test('hasReading: from <= ts < to and seq <= maxSeq', async (t) => {
    const store = await makeStore(t);
    await store.commit([reading('dev-a', 1, T0, '1'), reading('dev-a', 2, T0 + W - 1, '2'), reading('dev-a', 3, T0 + W + 5, '3')]);
    t.equal(await store.hasReading('dev-a', T0, T0 + W, 1), true, 'from is inclusive');
    t.equal(await store.hasReading('dev-a', T0 + 1, T0 + W - 1, 5), false, 'to is exclusive');
    t.equal(await store.hasReading('dev-a', T0 + 1, T0 + W, 5), true);
    t.equal(await store.hasReading('dev-a', T0 + W, T0 + 2 * W, 2), false, 'seq above maxSeq is invisible');
    t.equal(await store.hasReading('dev-a', T0 + W, T0 + 2 * W, 3), true);
    t.equal(await store.hasReading('dev-b', T0, T0 + 2 * W, 100), false, 'other device');
  });

  t.test('list: by facility, newest first, with filters and limit', async (t) => {
    const store = await makeStore(t);
    await store.commit([
      reading('dev-a', 1, T0 + 1, '1'),
      reading('dev-a', 2, T0 + 2, '5', { metric: 'co2_direct' }),
      reading('dev-a', 3, T0 + 3, '2'),
      reading('dev-b', 1, T0 + 4, '1', { metric: 'natural_gas' }),
      reading('dev-x', 1, T0 + 5, '1', { facilityId: FAC2 }),
    ]);
    const all = await store.list({ facilityId: FAC });
    t.same(all.map((r) => `${r.deviceId}:${r.seq}`), ['dev-b:1', 'dev-a:3', 'dev-a:2', 'dev-a:1'], 'newest first, one facility');
    t.strictSame(all[1], reading('dev-a', 3, T0 + 3, '2'));
    t.same(seqs(await store.list({ facilityId: FAC, deviceId: 'dev-a' })), [3, 2, 1], 'device');
    t.same(seqs(await store.list({ facilityId: FAC, metric: 'co2_direct' })), [2], 'metric');
    t.same(seqs(await store.list({ facilityId: FAC, deviceId: 'dev-a', from: T0 + 2, to: T0 + 3 })), [2], 'from inclusive, to exclusive');
    t.same(seqs(await store.list({ facilityId: FAC, deviceId: 'dev-a', limit: 2 })), [3, 2], 'limit keeps the newest');
    t.same(await store.list({ facilityId: 'fac-none' }), []);
    t.same((await store.list({ facilityId: FAC2 })).map((r) => r.deviceId), ['dev-x']);
  });
}
