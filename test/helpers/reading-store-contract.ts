/**
 * The ReadingStore contract (store/types.ts and docs/DESIGN.md) as assertions that run against any
 * implementation: `readingStoreContract(t, makeStore)` adds one subtest per rule; `makeStore(t)` must
 * return a fresh, empty store and register its own teardown on `t`.
 *
 * Used by test/store/influx.test.ts (real influxd), test/store/sqlite-contract.test.ts and
 * test/store/postgres-contract.test.ts; the void case checks oracle/voids.ts on every backend.
 */
import type { Test } from 'tap';
import type { Metric, Reading } from '../../domain/reading.ts';
import type { CommitOutcome, DeviceLimitsLookup, ReadingStore, VisibilityMark } from '../../store/types.ts';
import { applyVoids } from '../../oracle/voids.ts';

/** A fresh, empty store; `opts.limits` replaces the registry's capacity / interval lookup. */
export type MakeStore = (t: Test, opts?: { limits?: DeviceLimitsLookup }) => Promise<ReadingStore>;

/** 2026-01-01T00:00:00Z; windows of 10 s from there. */
export const T0 = Date.UTC(2026, 0, 1);
export const W = 10_000;
export const FAC = 'fac-1';
export const FAC2 = 'fac-2';
/** A second: readings spaced this far apart stay well inside the default capacities. */
export const S = 1000;

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
      reading('dev-a', 2, T0 + 2, '123456789012345678901234.567891', { reset: true }),
      reading('dev-a', 3, T0 + 3, '0.000001', { metric: 'co2_direct', unit: 'kg' }),
      reading('dev-a', 4, T0 + 4, '12.5', { metric: 'natural_gas', reset: true }),
    ];
    t.same(statuses(await store.commit(batch)), ['stored', 'stored', 'stored', 'stored']);
    for (const r of batch) t.strictSame(await store.get('dev-a', r.seq), r, `seq ${r.seq} reads back field for field`);
    t.equal(await store.get('dev-a', 5), undefined, 'unknown seq');
    t.equal(await store.get('dev-zz', 1), undefined, 'unknown device');
    t.equal(await store.ping(), true, 'ping');
  });

  t.test('signed readings keep sig, prev, sentValue and sentUnit (get, list, consume); a duplicate needs the same signature', async (t) => {
    const store = await makeStore(t);
    const sigA = 'A'.repeat(85) + 'Q==';
    const sigB = 'B'.repeat(85) + 'g==';
    const prev = 'ab'.repeat(32);
    const batch = [
      reading('dev-s', 1, T0 + 1 * S, '81.2345', { sig: sigA, prev: '', sentValue: '81234.50', sentUnit: 'Wh' }),
      reading('dev-s', 2, T0 + 2 * S, '82', { sig: sigB, prev }),
      reading('dev-s', 3, T0 + 3 * S, '83'),
    ];
    t.same(statuses(await store.commit(batch)), ['stored', 'stored', 'stored']);
    for (const r of batch) t.strictSame(await store.get('dev-s', r.seq), r, `seq ${r.seq} reads back field for field`);
    const listed = await store.list({ facilityId: FAC, deviceId: 'dev-s' });
    t.strictSame(
      listed.map((r) => [r.seq, r.sig, r.prev, r.sentValue, r.sentUnit]),
      [
        [3, undefined, undefined, undefined, undefined],
        [2, sigB, prev, undefined, undefined],
        [1, sigA, '', '81234.50', 'Wh'],
      ],
      'list carries the signature fields',
    );
    const marks = await store.marks(['dev-s']);
    const used = await store.consume({ deviceId: 'dev-s', mark: marks.get('dev-s')!, before: T0 + 10 * S });
    t.strictSame(used, batch, 'consume carries the signature fields');
    t.same(statuses(await store.commit([{ ...batch[0], receivedAt: batch[0].receivedAt + 5 }])), ['duplicate'], 'same content and signature: duplicate');
    t.same(statuses(await store.commit([{ ...batch[0], sig: sigB }])), ['rejected:duplicate_conflict'], 'same content, other signature');
    const { sig: _s, prev: _p, sentValue: _v, sentUnit: _u, ...bare } = batch[1];
    t.same(statuses(await store.commit([bare])), ['rejected:duplicate_conflict'], 'signed stored, unsigned redelivered');
    t.same(statuses(await store.commit([{ ...batch[2], sig: sigA, prev: '' }])), ['rejected:duplicate_conflict'], 'unsigned stored, signed redelivered');
  });

  t.test('a repeated seq: same content is a duplicate, different content a duplicate_conflict', async (t) => {
    const store = await makeStore(t);
    const r1 = reading('dev-a', 10, T0 + 10 * S, '500');
    t.same(statuses(await store.commit([r1])), ['stored']);
    t.same(statuses(await store.commit([{ ...r1, receivedAt: r1.receivedAt + 999 }])), ['duplicate'], 'redelivery (later receivedAt) is a duplicate');
    t.same(statuses(await store.commit([{ ...r1, value: '501' }])), ['rejected:duplicate_conflict'], 'other value');
    t.same(statuses(await store.commit([{ ...r1, ts: r1.ts + 1 }])), ['rejected:duplicate_conflict'], 'other ts');
    t.same(statuses(await store.commit([{ ...r1, reset: true }])), ['rejected:duplicate_conflict'], 'other reset flag');
    t.same(statuses(await store.commit([{ ...r1, metric: 'natural_gas', unit: 'm3' }])), ['rejected:duplicate_conflict'], 'other metric');
    const r2 = reading('dev-a', 11, T0 + 11 * S, '510');
    const r3 = reading('dev-a', 12, T0 + 12 * S, '520');
    t.same(
      statuses(await store.commit([r2, { ...r2 }, r3, { ...r3, value: '521' }, r1])),
      ['stored', 'duplicate', 'stored', 'rejected:duplicate_conflict', 'duplicate'],
      'within one batch, against earlier readings of the batch and stored ones, outcomes in input order',
    );
    t.strictSame(await store.get('dev-a', 10), r1, 'the original content is kept');
    t.strictSame(await store.get('dev-a', 12), r3);
    t.same(await store.list({ facilityId: FAC }).then((l) => l.length), 3, 'each stored once');
  });

  t.test('any arrival order is accepted when consistent with the stored neighbours', async (t) => {
    const store = await makeStore(t);
    const at = (seq: number, value: string, extra: Partial<Reading> = {}) => reading('dev-a', seq, T0 + seq * S, value, extra);
    t.same(statuses(await store.commit([at(10, '100')])), ['stored']);
    t.same(statuses(await store.commit([at(5, '50')])), ['stored'], 'a lower seq arriving later is stored');
    t.same(
      statuses(await store.commit([at(7, '70'), at(6, '60'), at(8, '80'), at(12, '120'), at(11, '110')])),
      ['stored', 'stored', 'stored', 'stored', 'stored'],
      'in any order within a batch, each checked against the stored readings and the batch so far',
    );
    t.same(statuses(await store.commit([reading('dev-b', 3, T0, '1'), reading('dev-b', 1, T0, '1')])), ['stored', 'stored'], 'devices are independent');
    t.equal((await store.get('dev-a', 10))?.arrival, undefined, 'an in-order reading has no arrival number');
    const arrivals = await Promise.all([5, 7, 6, 8, 11, 12].map(async (seq) => (await store.get('dev-a', seq))?.arrival));
    t.same(arrivals, [1, 2, 3, 4, 5, undefined], 'late arrivals are numbered per device in arrival order; 12 was in order');
    t.equal((await store.get('dev-b', 1))?.arrival, 1, 'per device');
    t.strictSame(await store.get('dev-a', 6), { ...at(6, '60'), arrival: 3 }, 'the reading reads back with its arrival number');
  });

  t.test('ts never decreases along seq (ts_out_of_order), whatever the metric', async (t) => {
    const store = await makeStore(t);
    t.same(statuses(await store.commit([reading('dev-a', 10, T0 + 10 * S, '1'), reading('dev-a', 20, T0 + 20 * S, '1', { metric: 'natural_gas' })])), [
      'stored',
      'stored',
    ]);
    t.same(statuses(await store.commit([reading('dev-a', 15, T0 + 9 * S, '1')])), ['rejected:ts_out_of_order'], 'before the lower seq');
    t.same(statuses(await store.commit([reading('dev-a', 15, T0 + 21 * S, '1')])), ['rejected:ts_out_of_order'], 'after the higher seq (another metric)');
    t.same(statuses(await store.commit([reading('dev-a', 21, T0 + 19 * S, '1')])), ['rejected:ts_out_of_order'], 'in order by seq, but earlier than the max');
    t.same(statuses(await store.commit([reading('dev-a', 5, T0 + 11 * S, '1')])), ['rejected:ts_out_of_order'], 'a late arrival after its higher neighbour');
    t.same(
      statuses(await store.commit([reading('dev-a', 15, T0 + 10 * S, '1'), reading('dev-a', 16, T0 + 10 * S - 1, '1')])),
      ['stored', 'rejected:ts_out_of_order'],
      'an equal ts is fine; the batch so far counts',
    );
    t.equal(await store.get('dev-a', 21), undefined, 'a rejected reading is not stored');
    // Issue 10 item 1: a reset far ahead in time, then the next seq back at now.
    const now = T0 + 100 * S;
    t.same(statuses(await store.commit([reading('dev-c', 1, now - 60_000, '1000001')])), ['stored']);
    t.same(
      statuses(await store.commit([reading('dev-c', 2, now + 4 * 60_000, '0', { reset: true }), reading('dev-c', 3, now, '10')])),
      ['stored', 'rejected:ts_out_of_order'],
      'the reading after a future-dated reset cannot go back in time',
    );
  });

  t.test('a register never decreases along seq: neighbours of the same metric on both sides', async (t) => {
    const store = await makeStore(t);
    const at = (seq: number, value: string, extra: Partial<Reading> = {}) => reading('dev-a', seq, T0 + seq * S, value, extra);
    t.same(statuses(await store.commit([at(10, '100'), at(20, '200'), at(14, '7', { metric: 'natural_gas' })])), ['stored', 'stored', 'stored']);
    t.same(statuses(await store.commit([at(15, '99.999')])), ['rejected:register_backwards'], 'below the lower neighbour');
    t.same(statuses(await store.commit([at(15, '200.001')])), ['rejected:register_backwards'], 'above the higher neighbour');
    t.same(statuses(await store.commit([at(15, '150'), at(17, '149'), at(12, '151')])), ['stored', 'rejected:register_backwards', 'rejected:register_backwards'], 'the batch so far counts');
    t.same(statuses(await store.commit([at(16, '150'), at(18, '200')])), ['stored', 'stored'], 'equal values are not backwards');
    t.same(statuses(await store.commit([at(13, '8', { metric: 'natural_gas' })])), ['rejected:register_backwards'], 'per metric: above the higher gas neighbour (14: 7)');
    t.same(statuses(await store.commit([at(19, '3', { metric: 'natural_gas' })])), ['rejected:register_backwards'], 'gas below its lower gas neighbour');
    t.same(statuses(await store.commit([at(30, '3', { reset: true })])), ['stored'], 'reset allows a lower value');
    t.same(statuses(await store.commit([at(25, '260')])), ['stored'], 'above a higher neighbour that is a reset: fine');
    t.same(statuses(await store.commit([at(31, '2')])), ['rejected:register_backwards'], 'after the reset the new segment must not go down');
    t.same(statuses(await store.commit([at(22, '300', { reset: true })])), ['rejected:register_backwards'], 'a reset above a higher non-reset neighbour (25: 260)');
    t.same(
      statuses(await store.commit([at(40, '5', { metric: 'co2_direct' }), at(41, '2', { metric: 'co2_direct' })])),
      ['stored', 'stored'],
      'interval metrics may go down',
    );
    t.same(statuses(await store.commit([reading('dev-b', 1, T0, '1')])), ['stored'], 'another device has its own registers');
    t.equal(await store.get('dev-a', 15).then((r) => r?.value), '150');
    t.equal(await store.get('dev-a', 17), undefined);
  });

  t.test('plausibility against capacity, on both sides (implausible)', async (t) => {
    const store = await makeStore(t, { limits: (d) => (d === 'small' ? { capacity: '10', reportingIntervalSeconds: 60 } : d === 'slow' ? { reportingIntervalSeconds: 3600 } : undefined) });
    const H = 3_600_000;
    // Default 100,000 kW: 120,000 kWh in one hour is the limit.
    t.same(statuses(await store.commit([reading('dev-a', 1, T0, '0'), reading('dev-a', 2, T0 + H, '120000')])), ['stored', 'stored'], 'exactly 1.2 x capacity');
    t.same(statuses(await store.commit([reading('dev-a', 3, T0 + 2 * H, '240000.001')])), ['rejected:implausible'], 'just above');
    t.same(statuses(await store.commit([reading('dev-a', 3, T0 + 2 * H, '100000000000000000000')])), ['rejected:implausible'], 'a 1e20 kWh jump');
    t.same(statuses(await store.commit([reading('dev-a', 3, T0 + 2 * H, '100000000000000000000', { reset: true })])), ['stored'], 'a reset is not an increase');
    t.same(statuses(await store.commit([reading('dev-a', 4, T0 + 2 * H + 1000, '100000000000000000001')])), ['stored'], 'the increase after a reset counts from it');
    // The higher side: inserting a reading must not leave its higher neighbour implausible.
    t.same(statuses(await store.commit([reading('dev-h', 10, T0, '0'), reading('dev-h', 20, T0 + H, '100000')])), ['stored', 'stored']);
    t.same(statuses(await store.commit([reading('dev-h', 15, T0 + H - 1000, '0')])), ['rejected:implausible'], '100,000 kWh in the last second');
    t.same(statuses(await store.commit([reading('dev-h', 15, T0 + H / 2, '50000')])), ['stored'], 'half way is plausible on both sides');
    // Declared capacity: 10 kW -> 12 kWh per hour.
    t.same(statuses(await store.commit([reading('small', 1, T0, '0'), reading('small', 2, T0 + H, '12'), reading('small', 3, T0 + 2 * H, '24.001')])), [
      'stored',
      'stored',
      'rejected:implausible',
    ]);
    t.same(statuses(await store.commit([reading('small', 3, T0 + 2 * H, '5', { metric: 'natural_gas' })])), ['stored'], 'a first gas reading has nothing to rise from');
    // co2_direct: an interval mass. Default 1,000,000 kg/h; a first reading is bounded by the reporting interval (60 s: 20,000 kg).
    const co2 = { metric: 'co2_direct' as const };
    t.same(statuses(await store.commit([reading('cems', 1, T0, '20000.001', co2)])), ['rejected:implausible'], 'first reading above 1.2 x capacity x interval');
    t.same(statuses(await store.commit([reading('cems', 1, T0, '20000', co2), reading('cems', 2, T0 + 1000, '333.334', co2)])), ['stored', 'rejected:implausible'], 'one second after the previous');
    t.same(statuses(await store.commit([reading('cems', 3, T0 + 60_000, '20000', co2)])), ['stored']);
    t.same(statuses(await store.commit([reading('cems', 2, T0 + 30_000, '1', co2)])), ['rejected:implausible'], 'would leave seq 3 with 20,000 kg in 30 s');
    t.same(statuses(await store.commit([reading('slow', 1, T0, '1200000', co2)])), ['stored'], 'the declared interval (1 h) bounds a first reading');
    // A co2 reading arriving after a higher seq is stored, not lost.
    t.same(statuses(await store.commit([reading('cems', 5, T0 + 120_000, '5000', co2), reading('cems', 4, T0 + 90_000, '5000', co2)])), ['stored', 'stored']);
    t.equal((await store.get('cems', 4))?.arrival, 1, 'stored as a late arrival');
  });

  t.test('marks: the highest seq and the late-arrival count per device', async (t) => {
    const store = await makeStore(t);
    t.same([...(await store.marks(['dev-a']))], [], 'no readings: absent');
    await store.commit([reading('dev-a', 3, T0 + S, '1'), reading('dev-a', 7, T0 + 2 * S, '2'), reading('dev-b', 2, T0 + S, '1')]);
    await store.commit([reading('dev-a', 9, T0 + 3 * S, '1')]); // register_backwards: not stored
    await store.commit([reading('dev-a', 7, T0 + 2 * S, '2')]); // duplicate
    let m = await store.marks(['dev-a', 'dev-b', 'dev-c']);
    t.same(m.get('dev-a'), { maxSeq: 7, late: 0 });
    t.same(m.get('dev-b'), { maxSeq: 2, late: 0 });
    t.notOk(m.has('dev-c'), 'a device with no readings is absent');
    await store.commit([reading('dev-a', 5, T0 + 1500, '1.5'), reading('dev-a', 4, T0 + 1200, '1.2')]);
    m = await store.marks(['dev-a']);
    t.same(m.get('dev-a'), { maxSeq: 7, late: 2 }, 'two late arrivals');
    t.same([...(await store.marks([]))], []);
  });

  t.test('consume follows the mark / cursor rule', async (t) => {
    const store = await makeStore(t);
    const W1 = { start: T0, end: T0 + W };
    const W2 = { start: T0 + W, end: T0 + 2 * W };
    await store.commit([
      reading('dev-a', 1, T0 - 5000, '10'), // before W1
      reading('dev-a', 2, T0 + 1000, '10.1'),
      reading('dev-a', 3, T0 + W - 1, '10.2'), // last ms of W1
      reading('dev-a', 4, T0 + W, '10.201'), // exactly at W1's end: belongs to W2
      reading('dev-a', 5, T0 + 15_000, '10.3'),
      reading('dev-b', 1, T0 + 1000, '99'),
    ]);
    const m1 = (await store.marks(['dev-a'])).get('dev-a') as VisibilityMark;
    t.same(m1, { maxSeq: 5, late: 0 });
    const first = await store.consume({ deviceId: 'dev-a', mark: m1, before: W1.end });
    t.same(seqs(first), [1, 2, 3], 'first settlement: everything visible with ts < end, by seq');
    t.strictSame(first[1], reading('dev-a', 2, T0 + 1000, '10.1'), 'full readings');
    t.same(seqs(await store.consume({ deviceId: 'dev-a', mark: { maxSeq: 2, late: 0 }, before: W1.end })), [1, 2], 'maxSeq bounds what is visible');

    // Arrive after W1 was settled: in order, one for W2 and one for W3 ...
    await store.commit([reading('dev-a', 7, T0 + 16_000, '10.5'), reading('dev-a', 9, T0 + 25_000, '10.7')]);
    // ... and late (below the max): one with ts in W1, one in W2.
    await store.commit([reading('dev-a', 6, T0 + 15_500, '10.4'), reading('dev-a', 8, T0 + 20_000, '10.6')]);
    const m2 = (await store.marks(['dev-a'])).get('dev-a') as VisibilityMark;
    t.same(m2, { maxSeq: 9, late: 2 });
    t.same(seqs(await store.consume({ deviceId: 'dev-a', mark: m1, before: W2.end })), [1, 2, 3, 4, 5], 'an old mark does not see what came later');
    const prev = { mark: m1, before: W1.end };
    const second = await store.consume({ deviceId: 'dev-a', mark: m2, before: W2.end, prev });
    t.same(seqs(second), [4, 5, 6, 7], 'not yet due before (4, 5), late arrival (6), new (7); not 1-3 (consumed), not 8, 9 (not due)');
    t.strictSame(second[2], { ...reading('dev-a', 6, T0 + 15_500, '10.4'), arrival: 1 });
    t.same(seqs(await store.consume({ deviceId: 'dev-a', mark: { maxSeq: 9, late: 0 }, before: W2.end, prev })), [4, 5, 7], 'late arrivals beyond the mark are invisible');
    t.same(seqs(await store.consume({ deviceId: 'dev-a', mark: m1, before: W2.end, prev })), [4, 5], 'nothing new above prev');
    const third = await store.consume({ deviceId: 'dev-a', mark: m2, before: W2.end + W, prev: { mark: m2, before: W2.end } });
    t.same(seqs(third), [8, 9], 'the next window gets only what is left');

    // A late arrival with ts in a window already settled: counted once, by the next settlement.
    t.same(statuses(await store.commit([reading('dev-a', 0, T0 - 6000, '9.9')])), ['stored']);
    const m3 = (await store.marks(['dev-a'])).get('dev-a') as VisibilityMark;
    t.same(m3, { maxSeq: 9, late: 3 });
    const fourth = await store.consume({ deviceId: 'dev-a', mark: m3, before: W2.end + W, prev: { mark: m2, before: W2.end + W } });
    t.same(seqs(fourth), [0], 'only the late arrival');

    // Disjoint and complete: the chain of settlements consumes each visible, due reading exactly once.
    const all = [...first, ...second, ...third, ...fourth].map((r) => r.seq).sort((a, b) => a - b);
    t.same(all, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 'each reading exactly once over the chain');
    t.same(seqs(await store.consume({ deviceId: 'dev-b', mark: { maxSeq: 1, late: 0 }, before: W1.end })), [1], 'per device');
    t.same(await store.consume({ deviceId: 'dev-zz', mark: { maxSeq: 10, late: 5 }, before: W2.end }), [], 'unknown device');
  });

  t.test('hasReading: from <= ts < to, visible under the mark', async (t) => {
    const store = await makeStore(t);
    await store.commit([reading('dev-a', 1, T0, '1'), reading('dev-a', 2, T0 + W - 1, '2'), reading('dev-a', 4, T0 + W + 5, '2.001')]);
    const mk = (maxSeq: number, late = 0) => ({ maxSeq, late });
    t.equal(await store.hasReading('dev-a', T0, T0 + W, mk(1)), true, 'from is inclusive');
    t.equal(await store.hasReading('dev-a', T0 + 1, T0 + W - 1, mk(5)), false, 'to is exclusive');
    t.equal(await store.hasReading('dev-a', T0 + 1, T0 + W, mk(5)), true);
    t.equal(await store.hasReading('dev-a', T0 + W, T0 + 2 * W, mk(2)), false, 'seq above maxSeq is invisible');
    t.equal(await store.hasReading('dev-a', T0 + W, T0 + 2 * W, mk(4)), true);
    t.same(statuses(await store.commit([reading('dev-a', 3, T0 + W + 1, '2.0005')])), ['stored']);
    t.equal(await store.hasReading('dev-a', T0 + W, T0 + W + 2, mk(4, 0)), false, 'a late arrival beyond the mark is invisible');
    t.equal(await store.hasReading('dev-a', T0 + W, T0 + W + 2, mk(4, 1)), true, 'and visible once the mark counts it');
    t.equal(await store.hasReading('dev-a', Number.MIN_SAFE_INTEGER, T0 + 1, mk(4, 1)), true, 'an open lower bound');
    t.equal(await store.hasReading('dev-b', T0, T0 + 2 * W, mk(100)), false, 'other device');
  });

  t.test('coverage of a window under a mark', async (t) => {
    const store = await makeStore(t);
    const start = T0 + W;
    const end = T0 + 2 * W;
    await store.commit([
      reading('dev-a', 1, T0 + 1000, '1'),
      reading('dev-a', 2, T0 + 2000, '2'), // before.seq
      reading('dev-a', 3, start, '3'),
      reading('dev-a', 6, start + 5000, '6'), // lastIn
      reading('dev-a', 7, end, '7'), // after
    ]);
    let mark = (await store.marks(['dev-a'])).get('dev-a') as VisibilityMark;
    let c = await store.coverage({ deviceId: 'dev-a', start, end, mark });
    t.same(c, { before: { seq: 2, ts: T0 + 2000 }, lastIn: { seq: 6, ts: start + 5000 }, after: true, between: 2, interval: false });
    t.same(await store.coverage({ deviceId: 'dev-a', start, end, mark: { maxSeq: 3, late: 0 } }), {
      before: { seq: 2, ts: T0 + 2000 },
      lastIn: { seq: 3, ts: start },
      after: false,
      between: 1,
      interval: false,
    }, 'what an older mark saw');
    await store.commit([reading('dev-a', 4, start + 1000, '1', { metric: 'co2_direct' })]);
    c = await store.coverage({ deviceId: 'dev-a', start, end, mark });
    t.equal(c.between, 2, 'the late arrival is not visible under the old mark');
    mark = (await store.marks(['dev-a'])).get('dev-a') as VisibilityMark;
    c = await store.coverage({ deviceId: 'dev-a', start, end, mark });
    t.equal(c.between, 3, 'under the new mark it is');
    t.equal(c.interval, true, 'a co2_direct reading in (before, lastIn] makes it an interval device');
    t.same(await store.coverage({ deviceId: 'dev-a', start: T0 - W, end: T0, mark }), { after: true, between: 0, interval: false }, 'nothing before or in');
    t.same(await store.coverage({ deviceId: 'dev-zz', start, end, mark }), { after: false, between: 0, interval: false }, 'unknown device');
  });

  t.test('list: by facility, newest first, with filters and limit', async (t) => {
    const store = await makeStore(t);
    await store.commit([
      reading('dev-a', 1, T0 + 1, '1'),
      reading('dev-a', 2, T0 + 2, '5', { metric: 'co2_direct' }),
      reading('dev-a', 3, T0 + 3, '1.000001'),
      reading('dev-b', 1, T0 + 4, '1', { metric: 'natural_gas' }),
      reading('dev-x', 1, T0 + 5, '1', { facilityId: FAC2 }),
    ]);
    const all = await store.list({ facilityId: FAC });
    t.same(all.map((r) => `${r.deviceId}:${r.seq}`), ['dev-b:1', 'dev-a:3', 'dev-a:2', 'dev-a:1'], 'newest first, one facility');
    t.strictSame(all[1], reading('dev-a', 3, T0 + 3, '1.000001'));
    t.same(seqs(await store.list({ facilityId: FAC, deviceId: 'dev-a' })), [3, 2, 1], 'device');
    t.same(seqs(await store.list({ facilityId: FAC, metric: 'co2_direct' })), [2], 'metric');
    t.same(seqs(await store.list({ facilityId: FAC, deviceId: 'dev-a', from: T0 + 2, to: T0 + 3 })), [2], 'from inclusive, to exclusive');
    t.same(seqs(await store.list({ facilityId: FAC, deviceId: 'dev-a', limit: 2 })), [3, 2], 'limit keeps the newest');
    t.same(await store.list({ facilityId: 'fac-none' }), []);
    t.same((await store.list({ facilityId: FAC2 })).map((r) => r.deviceId), ['dev-x']);
  });

  t.test('voids (oracle/voids.ts) over the contract queries: consumed set and coverage without the voided readings', async (t) => {
    const store = await makeStore(t);
    const at = [2, 8, 12, 15, 21, 25];
    t.same(statuses(await store.commit(at.map((s, i) => reading('dev-v', i + 1, T0 + s * S, String(100 + i))))), at.map(() => 'stored'));
    const mark = (await store.marks(['dev-v'])).get('dev-v') as VisibilityMark;
    const w = { start: T0 + W, end: T0 + 2 * W };
    const consumed = await store.consume({ deviceId: 'dev-v', mark, before: w.end });
    const coverage = await store.coverage({ deviceId: 'dev-v', start: w.start, end: w.end, mark });
    const v = (id: number, from: number, to: number) => ({ id, deviceId: 'dev-v', from: T0 + from * S, to: T0 + to * S, reason: 'faulty' });
    const one = await applyVoids(store, 'dev-v', w, mark, consumed, coverage, [v(1, 7, 9), v(2, 14, 16), v(3, 20, 22)]);
    t.same(seqs(one.readings), [1, 3], 'consumed without seq 2 and 4');
    t.same(seqs(one.excluded), [2, 4]);
    t.same(one.coverage, { before: { seq: 1, ts: T0 + 2 * S }, lastIn: { seq: 3, ts: T0 + 12 * S }, after: true, between: 1, interval: false }, 'before, lastIn and between of the remaining readings');
    t.same([...one.used].sort(), [1, 2], 'the void over seq 5 changed nothing: seq 6 is after the window too');
    const two = await applyVoids(store, 'dev-v', w, mark, consumed, coverage, [v(4, 11, 30)]);
    t.same(two.coverage, { before: { seq: 2, ts: T0 + 8 * S }, after: false, between: 0, interval: false }, 'no reading left in or after the window');
    t.same([...two.used], [4]);
  });
}
