/**
 * Fault injection: the --faults grammar, and for every kind the exact bytes it produces and the
 * outcome the platform's own validator gives them (broker/validate.ts), plus the injected counts.
 */
import t from 'tap';
import { validatePayload } from '../../broker/validate.ts';
import { openDatabase } from '../../store/sqlite/db.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import { MAX_FUTURE_MS } from '../../domain/reading.ts';
import { DeviceSim, type Outgoing } from '../../simulators/device.ts';
import { GARBAGE_KINDS, NO_FAULTS, formatFaults, garbagePayload, parseFaults, type FaultRates } from '../../simulators/faults.ts';
import { PROFILES, countKinds, type DeviceKind } from '../../simulators/profiles.ts';
import { withTmpDir } from '../helpers/tmp.ts';

const T0 = Date.UTC(2026, 10, 23, 2, 0, 0); // 10:00 local on a Monday
const WINDOW = 60_000;
const GRACE = 10_000;

function sim(faults: Partial<FaultRates>, kind: DeviceKind = 'gas', index = 0): DeviceSim {
  return new DeviceSim(
    { facilityId: 'f1', deviceId: `f1-${kind}`, kind, index, profile: PROFILES.standard, facilitySeed: 7, facilityKinds: countKinds(['grid', 'gas', 'cems', 'solar']) },
    { seed: 'faults', faults: { ...NO_FAULTS, ...faults }, windowMs: WINDOW, graceMs: GRACE },
  );
}

function check(m: Outgoing, now: number) {
  return validatePayload(m.payload, { facilityId: 'f1', deviceId: m.deviceId, now });
}

/** What the platform does with the messages, in this order: validation, then a real SQLite store (the ingest rules). */
async function outcomes(messages: Outgoing[], now: number | number[]): Promise<string[]> {
  return withTmpDir('mrv-sim-faults-', async (dir) => {
    const db = openDatabase(dir);
    try {
      const { readings } = openSqliteStores(db);
      const out: string[] = [];
      for (const [i, m] of messages.entries()) {
        const v = check(m, typeof now === 'number' ? now : now[i]);
        for (const x of v.rejections) out.push(`rejected:${x.reason}`);
        for (const o of await readings.commit(v.readings)) out.push(o.status === 'rejected' ? `rejected:${o.reason}` : o.status);
      }
      return out;
    } finally {
      db.close();
    }
  });
}

t.test('parseFaults: the documented grammar, and clear errors', async (t) => {
  const f = parseFaults('drop=0.05,duplicate=0.05,reorder=0.02,late=0.02,garbage=0.01,reset=0.001,skew=0.01,badauth=1,spoof=1');
  t.same(f, { drop: 0.05, duplicate: 0.05, reorder: 0.02, late: 0.02, garbage: 0.01, reset: 0.001, skew: 0.01, badsig: 0, badauth: 1, spoof: 1 });
  t.equal(formatFaults(f), 'drop=0.05,duplicate=0.05,reorder=0.02,late=0.02,garbage=0.01,reset=0.001,skew=0.01,badauth=1,spoof=1');
  t.same(parseFaults(''), NO_FAULTS);
  t.same(parseFaults(undefined), NO_FAULTS);
  t.throws(() => parseFaults('drop=2'), /between 0 and 1/);
  t.throws(() => parseFaults('badauth=0.5'), /whole number/);
  t.throws(() => parseFaults('nope=1'), /unknown fault "nope"/);
  t.throws(() => parseFaults('drop'), /name=number/);
  t.throws(() => parseFaults('drop=0.6,late=0.6'), /must not exceed 1/);
});

t.test('no faults: one valid reading per tick, seqs 1, 2, 3', async (t) => {
  const s = sim({});
  const seqs: number[] = [];
  for (let i = 0; i < 3; i++) {
    const now = T0 + i * 1000;
    const { messages } = s.tick(now);
    t.equal(messages.length, 1);
    t.same(messages[0].faults, []);
    const v = check(messages[0], now);
    t.same(v.rejections, []);
    seqs.push(...v.readings.map((r) => r.seq));
  }
  t.same(seqs, [1, 2, 3]);
});

t.test('drop: the seq is used but nothing is sent; the register moves on', async (t) => {
  const s = sim({ drop: 1 }, 'grid');
  const r1 = s.tick(T0);
  const r2 = s.tick(T0 + 60_000);
  t.same(r1.messages, []);
  t.ok(r1.dropped && r2.dropped);
  t.same([...r1.readings, ...r2.readings].map((r) => r.seq), [1, 2, 3, 4], 'import and export per tick');
  t.ok(r2.readings[0].value > r1.readings[0].value, 'the meter kept counting');
  t.equal(s.counts.drop, 4, 'in readings: two ticks of import and export');
  t.same(s.counts.expectedRejections, {});
});

t.test('duplicate: the same bytes twice', async (t) => {
  const s = sim({ duplicate: 1 });
  const { messages } = s.tick(T0);
  t.equal(messages.length, 2);
  t.same(messages.map((m) => m.kind), ['reading', 'duplicate']);
  t.ok(messages[0].payload.equals(messages[1].payload), 'byte for byte');
  t.same(messages[0].seqs, messages[1].seqs);
  t.equal(s.counts.duplicate, 1);
  t.same(check(messages[1], T0).rejections, [], 'a duplicate is valid (the store dedupes it)');
});

t.test('reorder: the lower seq arrives second and is stored as a late arrival', async (t) => {
  const s = sim({ reorder: 1 });
  const a = s.tick(T0);
  t.same(a.messages, [], 'held back');
  const b = s.tick(T0 + 1000);
  t.equal(b.messages.length, 2);
  const [first, second] = b.messages;
  t.same(first.seqs, [2]);
  t.same(second.seqs, [1]);
  t.equal(second.expect, undefined, 'any arrival order consistent with the neighbours is accepted');
  t.ok(second.faults.includes('reorder'));
  t.equal(s.counts.reorder, 1);
  t.same(s.counts.expectedRejections, {});
  t.same(await outcomes(b.messages, T0 + 1000), ['stored', 'stored'], 'the real store takes both');
  // with reorder=1 the next one is held again; stop releases it in order, no longer a fault
  t.same(s.tick(T0 + 2000).messages, []);
  const flushed = s.flush();
  t.equal(flushed.length, 1);
  t.same(flushed[0].seqs, [3]);
  t.equal(flushed[0].expect, undefined);
  t.notOk(flushed[0].faults.includes('reorder'));
  t.equal(s.counts.reorder, 1);
  t.same(s.flush(), []);
});

t.test('late: the message is delivered once its window has been settled, and stored', async (t) => {
  const clean = sim({});
  const late = sim({ late: 1 });
  const c1 = clean.tick(T0);
  const l1 = late.tick(T0);
  t.same(l1.messages, [], 'held until its window is settled');
  t.equal(l1.readings[0].value, c1.readings[0].value, 'same values as without the fault');
  const now = T0 + WINDOW + GRACE;
  const l2 = late.tick(now);
  t.same(l2.messages.map((m) => m.seqs[0]), [1], 'the first goes out now (the second is held in turn)');
  const v = check(l2.messages[0], now);
  t.same(v.rejections, []);
  t.equal(v.readings[0].ts, T0, 'with its own ts: a late arrival in a settled window');
  t.equal(late.counts.late, 2, 'one reading per tick for a gas meter');
  t.same(late.counts.expectedRejections, {});
  const rest = late.flush();
  t.same(rest.map((m) => m.seqs[0]), [2], 'stop releases what is still delayed');
  t.same(await outcomes([...rest, ...l2.messages], now), ['stored', 'stored'], 'the real store takes both, in any order');
});

t.test('garbage: each variant is refused with its reason and uses no seq', async (t) => {
  for (const kind of GARBAGE_KINDS) {
    const g = garbagePayload(kind, 5, new Date(T0).toISOString(), 'electricity_import', 'kWh');
    const v = validatePayload(g.bytes, { facilityId: 'f1', deviceId: 'd1', now: T0 });
    t.equal(v.readings.length, 0, kind);
    t.equal(v.rejections[0]?.reason, g.reason, `${kind} -> ${g.reason}`);
  }
  const s = sim({ garbage: 1 });
  const seen = new Set<string>();
  for (let i = 0; i < 40; i++) {
    const now = T0 + i * 1000;
    const { messages } = s.tick(now);
    t.equal(messages.length, 2);
    const [junk, reading] = messages;
    t.equal(junk.kind, 'garbage');
    t.same(junk.seqs, []);
    const v = check(junk, now);
    t.equal(v.rejections[0]?.reason, junk.expect);
    seen.add(junk.expect!);
    t.same(check(reading, now).rejections, []);
    t.same(reading.seqs, [i + 1], 'the garbage used no seq');
    if (junk.expect !== 'invalid_json' && junk.expect !== 'invalid_utf8') t.equal(JSON.parse(junk.payload.toString()).seq, i + 1, 'built around the reading that follows');
  }
  t.equal(seen.size, GARBAGE_KINDS.length, 'every variant shows up');
  t.equal(s.counts.garbage, 40);
  t.equal(Object.values(s.counts.expectedRejections).reduce((a, b) => a + b, 0), 40);
});

t.test('reset: the register restarts near 0 with reset: true', async (t) => {
  const s = sim({ reset: 1 }, 'grid');
  const { messages, readings } = s.tick(T0);
  const body = JSON.parse(messages[0].payload.toString());
  t.ok(Array.isArray(body) && body.length === 2, 'grid meter: import and export');
  t.equal(body[0].reset, true);
  t.equal(body[1].reset, undefined, 'only one register resets');
  t.ok(readings[0].value < 1000 && readings[0].unit === 'kWh', `${readings[0].value} ${readings[0].unit}`);
  const v = check(messages[0], T0);
  t.same(v.rejections, []);
  t.equal(v.readings[0].reset, true);
  t.equal(s.counts.reset, 1);
  const cems = sim({ reset: 1 }, 'cems');
  cems.tick(T0);
  t.equal(cems.counts.reset, 0, 'an interval metric has no register to reset');
});

t.test('skew: the clock runs ahead (kept), beyond +5 min refused as future_ts, back in time refused ts_out_of_order', async (t) => {
  const s = sim({ skew: 1 });
  let future = 0;
  let backwards = 0;
  const all: Outgoing[] = [];
  let lastStored = -Infinity;
  for (let i = 0; i < 60; i++) {
    const now = T0 + i * 1000;
    const { messages } = s.tick(now);
    const v = check(messages[0], now);
    const ts = Date.parse(JSON.parse(messages[0].payload.toString()).ts);
    all.push(...messages);
    if (ts - now > MAX_FUTURE_MS) {
      future++;
      t.equal(messages[0].expect, 'future_ts');
      t.equal(v.rejections[0]?.reason, 'future_ts');
    } else if (messages[0].expect === 'ts_out_of_order') {
      backwards++;
      t.ok(ts < lastStored, 'stamped before the previous stored reading');
    } else {
      t.same(v.rejections, []);
      t.equal(messages[0].expect, undefined);
      t.ok(ts >= lastStored, 'never before the previous stored reading');
      lastStored = ts;
    }
  }
  t.ok(future > 0 && future < 60);
  t.ok(backwards > 0, `${backwards} stamped back in time`);
  t.equal(s.counts.skew, 60);
  t.equal(s.counts.skewFuture, future);
  t.same(s.counts.expectedRejections, { future_ts: future, ts_out_of_order: backwards });
  const got = await outcomes(all, T0 + 60_000);
  t.same(got, all.map((m) => (m.expect ? `rejected:${m.expect}` : 'stored')), 'the real store agrees with every expectation');
});

t.test('mixed faults: the counts add up to what was produced', async (t) => {
  const s = sim(parseFaults('drop=0.05,duplicate=0.05,reorder=0.05,late=0.05,garbage=0.05,reset=0.05,skew=0.05'), 'grid');
  let messages = 0;
  let dropped = 0;
  let dups = 0;
  let garbage = 0;
  const sent: Outgoing[] = [];
  const at: number[] = [];
  for (let i = 0; i < 2000; i++) {
    const r = s.tick(T0 + i * 1000);
    sent.push(...r.messages);
    at.push(...r.messages.map(() => T0 + i * 1000));
    if (r.dropped) dropped += r.readings.length;
    messages += r.messages.length;
    dups += r.messages.filter((m) => m.kind === 'duplicate').reduce((n, m) => n + m.seqs.length, 0);
    garbage += r.messages.filter((m) => m.kind === 'garbage').length;
  }
  t.equal(s.counts.drop, dropped);
  t.equal(s.counts.duplicate, dups);
  t.equal(s.counts.garbage, garbage);
  t.equal(s.lastSeq, 4000, 'two registers per tick, every seq used once');
  // per 2000 messages at 5%: ~100 events; drop, duplicate, late and skew count readings (two per message)
  for (const [k, per] of [['drop', 2], ['duplicate', 2], ['reorder', 1], ['late', 2], ['garbage', 1], ['reset', 1], ['skew', 2]] as const) {
    t.ok(s.counts[k] / per > 40 && s.counts[k] / per < 160, `${k}: ${s.counts[k]}`);
  }
  t.ok(messages > 1900);
  // Through validation and a real store (the ingest rules): exactly the expected refusals, all else kept.
  const got = await outcomes(sent, at);
  const refused: Record<string, number> = {};
  for (const o of got) if (o.startsWith('rejected:')) refused[o.slice(9)] = (refused[o.slice(9)] ?? 0) + 1;
  t.same(refused, s.counts.expectedRejections, 'the platform refuses exactly what the simulator expects');
  t.ok(got.filter((o) => o === 'stored').length > 3000, 'the rest is stored');
});
