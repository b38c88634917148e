/**
 * domain/ingest-rules.ts on its own: the rules over an in-memory lookup (the stores' contract suite
 * runs them through SQLite and InfluxDB), with exact boundaries of the plausibility bound.
 */
import t from 'tap';
import { checkReading, compareDecimalText, exceedsCapacity, type DeviceReadings, type StoredReading } from '../../domain/ingest-rules.ts';
import { Decimal } from '../../domain/decimal.ts';

const H = 3_600_000;

/** A lookup over a plain list (what every store serves). */
function lookup(rows: StoredReading[]): DeviceReadings {
  const sorted = [...rows].sort((a, b) => a.seq - b.seq);
  return {
    at: (seq) => sorted.find((r) => r.seq === seq),
    below: (seq, metric) => sorted.filter((r) => r.seq < seq && (metric === undefined || r.metric === metric)).at(-1),
    above: (seq, metric) => sorted.find((r) => r.seq > seq && (metric === undefined || r.metric === metric)),
  };
}

const row = (seq: number, ts: number, value: string, extra: Partial<StoredReading> = {}): StoredReading => ({
  seq,
  ts,
  metric: 'electricity_import',
  value,
  unit: 'kWh',
  reset: false,
  ...extra,
});
const outcome = (o: ReturnType<typeof checkReading>) => (o.status === 'rejected' ? o.reason : o.status);

t.test('exceedsCapacity is exact at the boundary, whatever the scales', async (t) => {
  t.equal(exceedsCapacity('120000', '100000', H), false, 'exactly 1.2 x 100,000 kW for an hour');
  t.equal(exceedsCapacity('120000.000001', '100000', H), true);
  t.equal(exceedsCapacity('0.0000012', '0.000001', H), false, 'tiny capacity, exact');
  t.equal(exceedsCapacity('0.0000012000001', '0.000001', H), true);
  t.equal(exceedsCapacity('1', '100000', 0), true, 'any increase in no time');
  t.equal(exceedsCapacity('0', '100000', 0), false, 'no increase in no time');
  t.equal(exceedsCapacity('1e3', '1000', H), false, 'non-canonical text goes through Decimal');
  t.equal(exceedsCapacity('33.333334', '100000', 1000), true, 'one second: 33.3333... kWh');
  t.equal(exceedsCapacity('33.333333', '100000', 1000), false);
});

t.test('compareDecimalText orders like Decimal.cmp', async (t) => {
  const pool = ['0', '0.5', '0.45', '1', '10', '9.99', '100000000000000000000', '1e2', '100.0'];
  for (const a of pool) for (const b of pool) t.equal(compareDecimalText(a, b), Decimal.parse(a).cmp(Decimal.parse(b)), `${a} vs ${b}`);
});

t.test('the rules over a lookup', async (t) => {
  const stored = lookup([row(10, 10_000, '100'), row(20, 20_000, '110'), row(15, 15_000, '3', { metric: 'natural_gas' })]);
  t.equal(outcome(checkReading(row(10, 10_000, '100'), stored)), 'duplicate');
  t.equal(outcome(checkReading(row(10, 10_000, '100', { reset: true }), stored)), 'duplicate_conflict');
  t.equal(outcome(checkReading(row(12, 9_999, '101'), stored)), 'ts_out_of_order');
  t.equal(outcome(checkReading(row(17, 15_001, '101'), stored)), 'stored', 'neighbours by seq (gas 15 for ts, import 10/20 for value)');
  t.equal(outcome(checkReading(row(17, 14_999, '101'), stored)), 'ts_out_of_order', 'the gas neighbour counts for ts');
  t.equal(outcome(checkReading(row(17, 16_000, '111'), stored)), 'register_backwards');
  t.equal(outcome(checkReading(row(25, 21_000, '150'), stored)), 'implausible', '40 kWh in a second is 144,000 kW > 1.2 x 100,000');
  t.equal(outcome(checkReading(row(25, 21_000, '140'), stored)), 'stored', '30 kWh in a second is 108,000 kW');
  t.equal(outcome(checkReading(row(25, 21_000, '150'), stored, { capacity: '200000', reportingIntervalSeconds: 60 })), 'stored', 'declared capacity');
  t.equal(outcome(checkReading(row(25, 21_000, '300', { metric: 'natural_gas' }), stored)), 'implausible', 'gas: 297 m3 in 6 s');
  t.equal(outcome(checkReading(row(5, 1_000, '5', { metric: 'co2_direct' }), stored)), 'stored', 'first co2 reading');
  t.equal(
    outcome(checkReading(row(5, 1_000, '5', { metric: 'co2_direct' }), stored, { reportingIntervalSeconds: 1, capacity: '10000' })),
    'implausible',
    'bounded by 1.2 x 10,000 kg/h x 1 s = 3.33 kg',
  );
});
