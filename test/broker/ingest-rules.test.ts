/**
 * The SPEC's stateful ingest rules end to end, over MQTT (in memory, test/helpers/duplex.ts) into a
 * real SQLite file: the attack of issue 10 item 1 (a future-dated reset, then a reading back at now),
 * readings accepted in any arrival order, register neighbours on both sides, plausibility against
 * default and declared capacity (issue 10 item 5: a 1e20 kWh jump), and a co2_direct reading arriving
 * after a higher seq stored rather than lost (item 2). Each rejection is in the rejections log before its PUBACK.
 *
 * The log aggregates rejections of one device and reason per minute (keeping the first detail), so
 * tests that read each rejection's detail give the pipeline a clock one minute further per message.
 */
import t from 'tap';
import { REJECTION_BUCKET_MS } from '../../store/rejections.ts';
import { connect, makeFleet, startBroker, topic } from './helpers.ts';

const MIN = 60_000;

/** A receive clock that moves one rejection bucket on per `tick()`: each rejection gets its own log row. */
function bucketClock(): { clock: () => number; tick: () => void } {
  let offset = 0;
  return { clock: () => Date.now() + offset, tick: () => void (offset += REJECTION_BUCKET_MS) };
}

function el(seq: number, ts: number, value: string, extra: Record<string, unknown> = {}): string {
  // The value as a raw JSON number (exact text, not through a float).
  const rest = Object.entries({ metric: 'electricity_import', unit: 'kWh', ...extra })
    .map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`)
    .join(',');
  return `{"seq":${seq},"ts":${ts},"value":${value},${rest}}`;
}

t.test('issue 10 item 1: a future-dated reset followed by a reading at now is refused (ts_out_of_order)', async (t) => {
  const fleet = makeFleet(t);
  const { broker } = await startBroker(t, fleet, { inMemory: true });
  const { readings, registry } = fleet.stores;
  const c = await connect(t, broker, 'd1', fleet.passwords.d1);
  const now = Date.now();
  await c.publishAsync(topic('F1', 'd1'), el(41, now - 2 * MIN, '1000000'), { qos: 1 });
  await c.publishAsync(topic('F1', 'd1'), el(42, now - MIN, '1000001'), { qos: 1 });
  await c.publishAsync(topic('F1', 'd1'), el(43, now + 4 * MIN, '0', { reset: true }), { qos: 1 });
  await c.publishAsync(topic('F1', 'd1'), el(44, now, '10'), { qos: 1 });
  t.ok(await readings.get('d1', 43), 'the reset (inside the 5-minute future allowance) is stored');
  t.equal(await readings.get('d1', 44), undefined, 'the reading back at now is not');
  const [row] = registry.listRejections('F1', 1);
  t.match(row, { deviceId: 'd1', reason: 'ts_out_of_order', detail: /stored lower seq 43/ }, 'logged before the PUBACK, naming the neighbour');

  // Item 5: a 1e20 kWh jump is refused at ingest (default capacity 100,000 kW).
  await c.publishAsync(topic('F1', 'd1'), el(45, now + 4 * MIN + 30_000, '100000000000000000000'), { qos: 1 });
  t.equal(await readings.get('d1', 45), undefined);
  t.match(registry.listRejections('F1', 1)[0], { reason: 'implausible', detail: /more than 1\.2 x capacity 100000 kWh\/h/ });
  t.ok(c.connected, 'the connection stays up');
});

t.test('any arrival order over MQTT; register neighbours on both sides; a late co2_direct reading is stored', async (t) => {
  const fleet = makeFleet(t);
  const receive = bucketClock();
  const { broker } = await startBroker(t, fleet, { pipeline: { clock: receive.clock }, inMemory: true });
  const { readings, registry } = fleet.stores;
  const c = await connect(t, broker, 'd2', fleet.passwords.d2);
  const t0 = Date.now() - 30 * MIN;
  const send = (payload: string) => (receive.tick(), c.publishAsync(topic('F1', 'd2'), payload, { qos: 1 }));
  await send(el(20, t0 + 20 * MIN, '200'));
  await send(el(10, t0 + 10 * MIN, '100'));
  await send(`[${el(15, t0 + 15 * MIN, '150')},${el(12, t0 + 12 * MIN, '120')}]`);
  for (const seq of [10, 12, 15, 20]) t.ok(await readings.get('d2', seq), `seq ${seq} stored whatever its arrival position`);
  t.same(registry.listRejections('F1', 10), [], 'nothing refused');
  t.same((await readings.marks(['d2'])).get('d2'), { maxSeq: 20, late: 3 }, 'three late arrivals');

  await send(el(17, t0 + 17 * MIN, '201'));
  t.match(registry.listRejections('F1', 1)[0], { reason: 'register_backwards', detail: /above 200 of the stored higher seq 20/ });
  await send(el(11, t0 + 11 * MIN, '99'));
  t.match(registry.listRejections('F1', 1)[0], { reason: 'register_backwards', detail: /below 100 of the stored lower seq 10/ });
  await send(el(13, t0 + 11 * MIN, '130'));
  t.match(registry.listRejections('F1', 1)[0], { reason: 'ts_out_of_order', detail: /before .* of the stored lower seq 12/ });

  // co2_direct: the measured mass of seq 31 arrives after seq 32 and is counted, not dropped.
  await send(el(32, t0 + 25 * MIN, '40', { metric: 'co2_direct', unit: 'kg' }));
  await send(el(31, t0 + 24 * MIN, '35', { metric: 'co2_direct', unit: 'kg' }));
  t.match(await readings.get('d2', 31), { value: '35', arrival: 4 });
  t.equal(registry.listRejections('F1', 10).length, 3, 'no further rejection');
});

t.test('plausibility against the declared capacity, on both sides, and a capacity change', async (t) => {
  const fleet = makeFleet(t);
  const small = fleet.stores.registry.createDevice('F1', 'small', 'meter', { capacity: '6', reportingIntervalSeconds: 60 });
  const receive = bucketClock();
  const { broker } = await startBroker(t, fleet, { pipeline: { clock: receive.clock }, inMemory: true });
  const { readings, registry } = fleet.stores;
  const c = await connect(t, broker, 'small', small.password);
  const send = (payload: string) => (receive.tick(), c.publishAsync(topic('F1', 'small'), payload, { qos: 1 }));
  const t0 = Date.now() - 30 * MIN;
  // 6 kW: at most 1.2 x 6 = 7.2 kWh per hour, 0.12 kWh per minute.
  await send(el(1, t0, '10'));
  await send(el(3, t0 + 10 * MIN, '11.2'));
  t.ok(await readings.get('small', 3), '1.2 kWh in 10 minutes: exactly the bound');
  await send(el(4, t0 + 11 * MIN, '11.3201'));
  t.match(registry.listRejections('F1', 1)[0], { deviceId: 'small', reason: 'implausible' }, 'just above, in order');
  await send(el(2, t0 + MIN, '10.13'));
  t.match(registry.listRejections('F1', 1)[0], { reason: 'implausible', detail: /rose 0\.13 kWh in 60000 ms/ }, 'above the bound over its lower neighbour');
  await send(el(2, t0 + 9 * MIN, '10'));
  t.match(registry.listRejections('F1', 1)[0], { reason: 'implausible', detail: /stored higher seq 3 would rise 1\.2 kWh in 60000 ms/ }, 'would make its higher neighbour implausible');
  await send(el(2, t0 + 5 * MIN, '10.6'));
  t.ok(await readings.get('small', 2), 'plausible on both sides: stored');
  // Capacity changes apply to the next readings.
  registry.updateDevice('small', { capacity: '100' });
  await send(el(4, t0 + 11 * MIN, '11.3201'));
  t.ok(await readings.get('small', 4), 'the same reading passes under the new capacity');
});
