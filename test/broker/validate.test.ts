import t from 'tap';
import { Value } from '@sinclair/typebox/value';
import { validatePayload } from '../../broker/validate.ts';
import { MAX_REJECTION_PAYLOAD_BYTES } from '../../domain/limits.ts';
import { REJECT_REASONS, ReadingPayload, type RejectReason } from '../../domain/reading.ts';

const NOW = Date.parse('2026-11-22T06:00:00.000Z');
const ctx = { facilityId: 'f1', deviceId: 'd1', now: NOW };
const base = { seq: 1, ts: '2026-11-22T06:00:00.000Z', metric: 'electricity_import', value: 81234.5, unit: 'kWh' };

const run = (payload: string | Buffer | Uint8Array) => validatePayload(typeof payload === 'string' ? Buffer.from(payload) : payload, ctx);
const one = (fields: Record<string, unknown>) => run(JSON.stringify({ ...base, ...fields }));
/** A single element with raw JSON text for some fields (to write NaN, 1.0 etc.). */
const raw = (fieldsText: string) => run(`{"seq":1,"ts":"2026-11-22T06:00:00.000Z","metric":"electricity_import","unit":"kWh",${fieldsText}}`);

const SIG = Buffer.alloc(64, 7).toString('base64');

function reasonOf(res: ReturnType<typeof run>): RejectReason | undefined {
  return res.rejections.length === 1 && res.readings.length === 0 ? res.rejections[0].reason : undefined;
}

t.test('a valid reading is normalised', async (t) => {
  const res = run(JSON.stringify(base));
  t.same(res.rejections, []);
  t.same(res.readings, [
    { facilityId: 'f1', deviceId: 'd1', seq: 1, ts: NOW, metric: 'electricity_import', value: '81234.5', unit: 'kWh', reset: false, receivedAt: NOW },
  ]);
  const withReset = one({ reset: true, ts: NOW - 1000 });
  t.equal(withReset.readings[0].reset, true);
  t.equal(withReset.readings[0].ts, NOW - 1000, 'epoch ms accepted');
});

t.test('every reason code from a crafted payload', async (t) => {
  const cases: [string, RejectReason, () => ReturnType<typeof run>][] = [
    ['64 KiB + 1', 'payload_too_large', () => run(Buffer.alloc(64 * 1024 + 1, 0x20))],
    ['invalid UTF-8 bytes', 'invalid_utf8', () => run(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]))],
    ['overlong UTF-8', 'invalid_utf8', () => run(Buffer.from([0x22, 0xc0, 0xaf, 0x22]))],
    ['UTF-8 encoded surrogate', 'invalid_utf8', () => run(Buffer.from([0x22, 0xed, 0xa0, 0x80, 0x22]))],
    ['non-JSON', 'invalid_json', () => run('hello')],
    ['NaN', 'invalid_json', () => raw('"value":NaN')],
    ['Infinity', 'invalid_json', () => raw('"value":Infinity')],
    ['trailing comma', 'invalid_json', () => raw('"value":1,')],
    ['duplicate key', 'invalid_json', () => raw('"value":1,"value":2')],
    ['501-element array', 'too_many_readings', () => run(JSON.stringify(Array.from({ length: 501 }, (_, i) => ({ ...base, seq: i }))))],
    ['empty array', 'invalid_shape', () => run('[]')],
    ['scalar payload', 'invalid_shape', () => run('42')],
    ['extra field', 'invalid_shape', () => one({ extra: 1 })],
    ['missing field', 'invalid_shape', () => run(JSON.stringify({ seq: 1, ts: base.ts, metric: base.metric, unit: 'kWh' }))],
    ['reset not boolean', 'invalid_shape', () => one({ reset: 'true' })],
    ['seq as string', 'invalid_seq', () => one({ seq: '12' })],
    ['negative seq', 'invalid_seq', () => one({ seq: -1 })],
    ['fractional seq', 'invalid_seq', () => one({ seq: 1.5 })],
    ['seq 1.0 literal', 'invalid_seq', () => run(`{"seq":1.0,"ts":${NOW},"metric":"natural_gas","value":1,"unit":"m3"}`)],
    ['seq beyond 2^53', 'invalid_seq', () => run(`{"seq":9007199254740993,"ts":${NOW},"metric":"natural_gas","value":1,"unit":"m3"}`)],
    ['zone-less ts', 'invalid_ts', () => one({ ts: '2026-11-22T06:00:00' })],
    ['date-only ts', 'invalid_ts', () => one({ ts: '2026-11-22' })],
    ['ts not a date', 'invalid_ts', () => one({ ts: 'yesterday' })],
    ['ts Feb 30', 'invalid_ts', () => one({ ts: '2026-02-30T00:00:00Z' })],
    ['ts hour 24', 'invalid_ts', () => one({ ts: '2026-11-22T24:00:00Z' })],
    ['fractional epoch', 'invalid_ts', () => one({ ts: NOW + 0.5 })],
    ['negative epoch', 'invalid_ts', () => one({ ts: -1 })],
    ['ts boolean', 'invalid_ts', () => one({ ts: true })],
    ['ts an hour ahead', 'future_ts', () => one({ ts: new Date(NOW + 3600_000).toISOString() })],
    ['epoch an hour ahead', 'future_ts', () => one({ ts: NOW + 3600_000 })],
    ['unknown metric', 'unknown_metric', () => one({ metric: 'water' })],
    ['metric not a string', 'unknown_metric', () => one({ metric: 5 })],
    ['metric via prototype name', 'unknown_metric', () => one({ metric: 'toString' })],
    ['unknown unit', 'unknown_unit', () => one({ unit: 'GWh' })],
    ['unit of another metric', 'unknown_unit', () => one({ unit: 'm3' })],
    ['unit case matters', 'unknown_unit', () => one({ unit: 'kwh' })],
    ['value as string', 'invalid_value', () => one({ value: '12' })],
    ['value null', 'invalid_value', () => one({ value: null })],
    ['negative register', 'invalid_value', () => one({ value: -1 })],
    ['negative co2', 'invalid_value', () => one({ metric: 'co2_direct', unit: 'kg', value: -0.5 })],
    ['huge exponent', 'invalid_value', () => raw('"value":1e999')],
    ['sig not base64 of 64 bytes', 'bad_signature', () => one({ sig: 'AAAA' })],
    ['sig not a string', 'bad_signature', () => one({ sig: 5 })],
    ['sig non-canonical base64 (unused bits set)', 'bad_signature', () => one({ sig: `${SIG.slice(0, 85)}B==` })],
    ['prev not hex', 'bad_signature', () => one({ sig: SIG, prev: 'x'.repeat(64) })],
    ['prev upper-case hex', 'bad_signature', () => one({ sig: SIG, prev: 'A'.repeat(64) })],
    ['prev without sig', 'bad_signature', () => one({ prev: '' })],
  ];
  const seen = new Set<RejectReason>();
  for (const [name, reason, make] of cases) {
    const res = make();
    t.equal(reasonOf(res), reason, name);
    t.equal(res.rejections[0]?.facilityId, 'f1', `${name}: facility`);
    t.equal(res.rejections[0]?.receivedAt, NOW, `${name}: receivedAt`);
    seen.add(reason);
  }
  // The stateful reasons come from ReadingStore.commit (test/store), the others from the broker.
  const notHere = new Set<string>(['register_backwards', 'ts_out_of_order', 'implausible', 'seq_not_increasing', 'duplicate_conflict', 'rate_limited', 'invalid_topic', 'unknown_device', 'device_not_active', 'facility_not_active']);
  for (const r of REJECT_REASONS) if (!notHere.has(r)) t.ok(seen.has(r), `reason ${r} covered`);
});

t.test('ts formats', async (t) => {
  const ok: [string, number][] = [
    ['2026-11-22T06:00:00Z', NOW],
    ['2026-11-22T06:00:00.000Z', NOW],
    ['2026-11-22T08:00:00+02:00', NOW],
    ['2026-11-22T00:30:00-05:30', NOW],
    ['2026-11-22t06:00:00z', NOW],
    ['2026-11-22T05:59:59.999999999Z', NOW - 1],
    ['2024-02-29T00:00:00Z', Date.UTC(2024, 1, 29)],
  ];
  for (const [ts, want] of ok) {
    const res = one({ ts });
    t.equal(res.readings[0]?.ts, want, ts);
  }
  t.equal(one({ ts: '2025-02-29T00:00:00Z' }).rejections[0]?.reason, 'invalid_ts', 'not a leap year');
  t.equal(one({ ts: '2026-11-22T06:00:00+24:00' }).rejections[0]?.reason, 'invalid_ts', 'offset out of range');
  t.match(one({ ts: '2026-11-22T06:00:00' }).rejections[0]?.detail, /zone/);
  t.equal(one({ ts: NOW + 5 * 60_000 }).readings.length, 1, 'exactly 5 minutes ahead is accepted');
  t.equal(one({ ts: NOW + 5 * 60_000 + 1 }).rejections[0]?.reason, 'future_ts');
});

t.test('unit normalisation is exact', async (t) => {
  const cases: [string, string, string, string][] = [
    ['electricity_import', '1234.5678', 'Wh', '1.2345678'],
    ['electricity_export', '0.001', 'MWh', '1'],
    ['renewable_generation', '81234.50', 'kWh', '81234.5'],
    ['electricity_import', '1e3', 'Wh', '1'],
    ['electricity_import', '0.1', 'Wh', '0.0001'],
    ['natural_gas', '12.340', 'm3', '12.34'],
    ['co2_direct', '0.1', 't', '100'],
    ['co2_direct', '1', 'g', '0.001'],
    ['co2_direct', '-0', 'kg', '0'],
    ['electricity_import', '12345678901234567890.123456789', 'Wh', '12345678901234567.890123456789'],
  ];
  for (const [metric, value, unit, want] of cases) {
    const res = run(`{"seq":1,"ts":${NOW},"metric":"${metric}","value":${value},"unit":"${unit}"}`);
    t.equal(res.readings[0]?.value, want, `${value} ${unit} -> ${want}`);
    t.equal(res.readings[0]?.unit, metric === 'natural_gas' ? 'm3' : metric === 'co2_direct' ? 'kg' : 'kWh');
  }
});

t.test('a bad element rejects only itself, with its own text', async (t) => {
  const payload = `[
    {"seq":1,"ts":${NOW},"metric":"electricity_import","value":1.50,"unit":"kWh"},
    {"seq":2,"ts":${NOW},"metric":"water","value":1,"unit":"kWh"},
    {"seq":3,"ts":${NOW},"metric":"natural_gas","value":"7","unit":"m3"},
    {"seq":4,"ts":${NOW},"metric":"natural_gas","value":7,"unit":"m3"}
  ]`;
  const res = run(payload);
  t.same(res.readings.map((r) => r.seq), [1, 4]);
  t.same(res.rejections.map((r) => r.reason), ['unknown_metric', 'invalid_value']);
  t.equal(res.rejections[0].payload, `{"seq":2,"ts":${NOW},"metric":"water","value":1,"unit":"kWh"}`);
  t.match(res.rejections[1].detail, /^element 2:/);
  t.same(run('[1, {"seq":1}]').rejections.map((r) => [r.reason, r.payload]), [
    ['invalid_shape', '1'],
    ['invalid_shape', '{"seq":1}'],
  ]);
});

t.test('payload-level failures keep at most 4 KiB of the payload', async (t) => {
  const big = run(Buffer.alloc(64 * 1024 + 1, 0x61));
  t.equal(big.rejections[0].payload.length, MAX_REJECTION_PAYLOAD_BYTES);
  const junk = run('x'.repeat(10_000));
  t.equal(junk.rejections[0].reason, 'invalid_json');
  t.equal(Buffer.byteLength(junk.rejections[0].payload), MAX_REJECTION_PAYLOAD_BYTES);
  const badUtf8 = run(Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xff]), Buffer.from('"}')]));
  t.equal(badUtf8.rejections[0].payload, '{"a":"\ufffd"}', 'shown with a replacement character');
  const many = run(JSON.stringify(Array.from({ length: 501 }, (_, i) => ({ ...base, seq: i }))));
  t.equal(many.rejections.length, 1, 'one row for the whole payload');
  t.ok(Buffer.byteLength(many.rejections[0].payload) <= MAX_REJECTION_PAYLOAD_BYTES);
  t.equal(run(JSON.stringify(Array.from({ length: 500 }, (_, i) => ({ ...base, seq: i })))).readings.length, 500, '500 accepted');
  t.equal(run(Buffer.alloc(64 * 1024, 0x20)).rejections[0].reason, 'invalid_json', 'exactly 64 KiB passes the size check');
});

t.test('agrees with the TypeBox ReadingPayload schema', async (t) => {
  const samples: Record<string, unknown>[] = [
    base,
    { ...base, reset: false },
    { ...base, ts: NOW },
    { ...base, metric: 'co2_direct', unit: 'kg' },
    { ...base, extra: 1 },
    { ...base, seq: -1 },
    { ...base, seq: 1.5 },
    { ...base, seq: '1' },
    { ...base, value: '1' },
    { ...base, metric: 'water' },
    { ...base, reset: 1 },
    { ...base, ts: 1.5 },
    { ...base, ts: true },
    { seq: 1, ts: base.ts, metric: base.metric, unit: 'kWh' },
  ];
  for (const s of samples) {
    const schemaOk = Value.Check(ReadingPayload, s);
    const oursOk = run(JSON.stringify(s)).readings.length === 1;
    t.equal(oursOk, schemaOk, JSON.stringify(s));
  }
  // Stricter than a JSON schema can say: the schema cannot see literal form, zone or units.
  t.ok(Value.Check(ReadingPayload, { ...base, ts: '2026-11-22T06:00:00' }), 'schema: zone-less ts is a string');
  t.equal(one({ ts: '2026-11-22T06:00:00' }).readings.length, 0, 'validator: zone required');
});

t.test('validation does not depend on float parsing', async (t) => {
  // 0.1 + 0.2 style inputs and 17+ significant digits survive exactly.
  const res = run(`{"seq":9007199254740991,"ts":${NOW},"metric":"natural_gas","value":0.30000000000000004441,"unit":"m3"}`);
  t.equal(res.readings[0].seq, Number.MAX_SAFE_INTEGER);
  t.equal(res.readings[0].value, '0.30000000000000004441');
});

t.test('signed readings: sig and prev are carried with the value and unit as sent', async (t) => {
  const prev = 'ab'.repeat(32);
  const res = run(`{"seq":1,"ts":${NOW},"metric":"electricity_import","value":81234.50,"unit":"Wh","prev":"${prev}","sig":"${SIG}"}`);
  t.same(res.rejections, []);
  t.match(res.readings[0], { value: '81.2345', unit: 'kWh', sig: SIG, prev, sentValue: '81234.50', sentUnit: 'Wh' });
  const plain = one({ sig: SIG });
  t.equal(plain.readings[0].prev, '', 'absent prev is the empty prev (chain start)');
  t.equal(plain.readings[0].sentValue, undefined, 'value sent as stored');
  t.equal(plain.readings[0].sentUnit, undefined, 'unit sent as stored');
  t.equal(run(JSON.stringify([{ ...base, sig: SIG, prev: '' }, { ...base, seq: 2, sig: 'bad' }])).rejections[0].reason, 'bad_signature', 'one bad element of an array');
  t.equal(one({}).readings[0].sig, undefined, 'unsigned stays unsigned');
  t.ok(Value.Check(ReadingPayload, { ...base, sig: SIG, prev }), 'the schema accepts the signed fields');
  t.notOk(Value.Check(ReadingPayload, { ...base, sig: 'x' }), 'and checks their form');
});
