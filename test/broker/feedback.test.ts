/**
 * SPEC "MQTT interface": every rejection also reaches the device on
 * `facilities/{f}/devices/{d}/feedback` (one message per refused PUBLISH: a JSON array of
 * `{ seq, reason, detail }`), which it may subscribe to. Issue 10 item 13: a device sending thousands
 * of bad elements, or looping on a wrong topic, adds a bounded number of rows to the rejections log
 * while the counts stay exact. Real sockets, mqtt.js as the device.
 */
import t from 'tap';
import mqtt from 'mqtt';
import { connect, makeFleet, metric, reading, startBroker, topic } from './helpers.ts';
import { poll } from '../helpers/eventually.ts';

const feedbackTopic = (f: string, d: string) => `facilities/${f}/devices/${d}/feedback`;
type Item = { seq: number | null; reason: string; detail: string };

t.test('a device subscribed to its feedback topic gets the reason of each rejected reading', async (t) => {
  const fleet = makeFleet(t);
  const { port } = await startBroker(t, fleet);
  const d1 = await connect(t, port, 'd1', fleet.passwords.d1);
  const got: Item[][] = [];
  d1.on('message', (tp, payload) => {
    if (tp === feedbackTopic('F1', 'd1')) got.push(JSON.parse(payload.toString()) as Item[]);
  });
  const granted = await d1.subscribeAsync(feedbackTopic('F1', 'd1'), { qos: 1 });
  t.equal(granted[0].qos, 1, 'the device may subscribe to its own feedback topic');

  await d1.publishAsync(topic('F1', 'd1'), reading(7, 100, { metric: 'water' }), { qos: 1 });
  t.ok(await poll(() => got.length === 1), 'one feedback message for the refused PUBLISH');
  t.match(got[0], [{ seq: 7, reason: 'unknown_metric', detail: /water/ }], 'with the seq, the reason and the detail');

  // An array: one feedback message listing the bad elements only.
  const ts = new Date(Date.now() - 60_000).toISOString();
  const arr = JSON.stringify([
    { seq: 8, ts, metric: 'electricity_import', value: 200, unit: 'kWh' },
    { seq: 9, ts, metric: 'electricity_import', value: 300, unit: 'kJ' },
    { seq: 10, ts: new Date(Date.now() + 3_600_000).toISOString(), metric: 'electricity_import', value: 400, unit: 'kWh' },
  ]);
  await d1.publishAsync(topic('F1', 'd1'), arr, { qos: 1 });
  t.ok(await poll(() => got.length === 2));
  t.match(got[1], [
    { seq: 9, reason: 'unknown_unit' },
    { seq: 10, reason: 'future_ts' },
  ]);
  t.equal(got[1].length, 2, 'the accepted element is not in the feedback');
  t.ok(await fleet.stores.readings.get('d1', 8), 'and it was stored');

  // A rejection found by the store (register going backwards) too; ts after seq 8's, so only the value is wrong.
  await d1.publishAsync(topic('F1', 'd1'), reading(11, 50, { ts: new Date(Date.now() - 30_000).toISOString() }), { qos: 1 });
  t.ok(await poll(() => got.length === 3));
  t.match(got[2], [{ seq: 11, reason: 'register_backwards' }]);

  // Unparseable payload: seq unknown.
  await d1.publishAsync(topic('F1', 'd1'), 'hello meter', { qos: 1 });
  t.ok(await poll(() => got.length === 4));
  t.match(got[3], [{ seq: null, reason: 'invalid_json' }]);

  // Another device never sees d1's feedback.
  const d2 = await connect(t, port, 'd2', fleet.passwords.d2);
  const code = await d2.subscribeAsync(feedbackTopic('F1', 'd1'), { qos: 1 }).then(
    (g) => g[0].qos,
    (err: { packet?: { granted?: number[] } }) => err.packet?.granted?.[0],
  );
  t.equal(code, 128, "d2 may not subscribe to d1's feedback");
  // A device may not publish on its own feedback topic (only the broker does).
  let acked = false;
  d2.publish(feedbackTopic('F1', 'd2'), '[]', { qos: 1 }, (err) => (acked = !err));
  t.ok(await poll(() => !d2.connected), 'publishing to the feedback topic is refused (connection closed)');
  t.notOk(acked);
});

t.test('thousands of bad elements: bounded rows, exact counts (issue 10 item 13)', async (t) => {
  const fleet = makeFleet(t);
  // The rate limit is not what this is about (it counts these 5,000 readings too).
  const { port, metrics } = await startBroker(t, fleet, { pipeline: { rateLimit: false } });
  const d1 = await connect(t, port, 'd1', fleet.passwords.d1);
  const ts = new Date(Date.now() - 60_000).toISOString();
  for (let m = 0; m < 10; m++) {
    const bad = Array.from({ length: 500 }, (_, i) => ({ seq: m * 500 + i, ts, metric: 'electricity_import', value: 1, unit: 'furlong' }));
    await d1.publishAsync(topic('F1', 'd1'), JSON.stringify(bad), { qos: 1 });
  }
  const rows = fleet.stores.registry.listRejections('F1', 1000);
  t.ok(rows.length >= 1 && rows.length <= 2, `5,000 bad elements are ${rows.length} row(s) (one per device, reason and minute)`);
  t.equal(rows.reduce((n, r) => n + (r.count ?? 1), 0), 5000, 'the counts add up to 5,000');
  t.equal(await metric(metrics, 'mrv_readings_rejected_total', { reason: 'unknown_unit' }), 5000, 'and the metric counts each one');
  const db = fleet.db.prepare('SELECT COUNT(*) FROM rejections').pluck().get() as number;
  t.equal(db, rows.length, 'no other rows in the file');
});

t.test('a client looping on a wrong topic adds aggregated rows, not one per attempt', async (t) => {
  const fleet = makeFleet(t);
  const { port, metrics } = await startBroker(t, fleet);
  // mqtt.js resends the unacknowledged QoS 1 PUBLISH after every reconnect: a loop.
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
    clientId: 'd1',
    username: 'd1',
    password: fleet.passwords.d1,
    protocolVersion: 4,
    reconnectPeriod: 20,
    connectTimeout: 5000,
  });
  t.teardown(() => client.end(true));
  const got: Item[] = [];
  client.on('message', (tp, payload) => {
    if (tp === feedbackTopic('F1', 'd1')) got.push(...(JSON.parse(payload.toString()) as Item[]));
  });
  let connects = 0;
  client.on('connect', () => connects++);
  await new Promise<void>((r) => client.once('connect', () => r()));
  await client.subscribeAsync(feedbackTopic('F1', 'd1'), { qos: 1 });
  client.publish('facilities/F1/devices/d1/typo', reading(1, 1), { qos: 1 });
  // (mqtt.js resends before it emits 'connect', so the attempts are counted at the broker.)
  const attempts = () => metric(metrics, 'mrv_acl_denied_total', { action: 'publish' });
  t.ok(await poll(async () => (await attempts()) >= 20), 'the client reconnected and resent at least 20 times');
  client.end(true);
  const denied = await attempts();
  t.ok(connects >= 1, 'the device had connected');
  const rows = () => fleet.stores.registry.listRejections('F1', 1000).filter((r) => r.reason === 'invalid_topic');
  t.ok(denied >= 20);
  t.ok(await poll(async () => rows().reduce((n, r) => n + (r.count ?? 1), 0) === (await attempts())), 'the log counts every attempt');
  t.ok(rows().length <= 2, `in ${rows().length} row(s)`);
  t.ok(got.some((i) => i.reason === 'invalid_topic' && /typo/.test(i.detail)), 'the device was told why on its feedback topic');
});
