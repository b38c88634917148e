/**
 * Topic ACL, in memory (test/helpers/duplex.ts: the ACL is protocol, not socket, behaviour): publishing to another device's topic, `$SYS/`, subscribing to `#`, to
 * another facility or device -> refused and counted; the device's own subtree is granted.
 */
import t from 'tap';
import { closed, connect, makeFleet, metric, reading, startBroker, topic } from './helpers.ts';
import { poll } from '../helpers/eventually.ts';

t.test('publish ACL', async (t) => {
  const fleet = makeFleet(t);
  const { broker, metrics } = await startBroker(t, fleet, { inMemory: true });
  const other = await connect(t, broker, 'd2', fleet.passwords.d2);

  for (const [i, tp] of [topic('F1', 'd2'), topic('F2', 'e1'), 'facilities/F1/devices/d1/other', '$SYS/broker/x', 'anything'].entries()) {
    const a = await connect(t, broker, 'd1', fleet.passwords.d1);
    let acked = false;
    a.publish(tp, reading(100 + i, 5), { qos: 1 }, (err) => (acked = !err));
    await closed(a);
    t.notOk(acked, `publish to ${tp}: no PUBACK, connection closed`);
  }
  t.equal(await fleet.stores.readings.get('d2', 100), undefined, "nothing stored for d2 from d1's publish");
  t.equal(await metric(metrics, 'mrv_acl_denied_total', { action: 'publish' }), 4, 'ACL denials counted ($SYS refused before the ACL)');
  const topicRows = () => fleet.stores.registry.listRejections('F1').filter((r) => r.deviceId === 'd1' && r.reason === 'invalid_topic');
  t.ok(
    await poll(() => topicRows().reduce((n, r) => n + (r.count ?? 1), 0) === 4),
    'denials in the rejections log as invalid_topic (aggregated: the counts add up to 4)',
  );
  t.ok(topicRows().length <= 2, 'in one row per minute');
  await other.publishAsync(topic('F1', 'd2'), reading(1, 1), { qos: 1 });
  t.ok(await fleet.stores.readings.get('d2', 1), 'the other device still publishes to its own topic');
});

t.test('subscribe ACL', async (t) => {
  const fleet = makeFleet(t);
  const { broker, metrics } = await startBroker(t, fleet, { inMemory: true });
  const a = await connect(t, broker, 'd1', fleet.passwords.d1);
  const cases: [string, boolean][] = [
    ['#', false],
    ['facilities/#', false],
    ['facilities/F2/devices/e1/#', false],
    ['facilities/F1/devices/d2/#', false],
    ['facilities/F1/devices/+/readings', false],
    ['$SYS/#', false],
    ['facilities/F1/devices/d1/#', true],
    ['facilities/F1/devices/d1/status', true],
  ];
  for (const [filter, allowed] of cases) {
    // mqtt.js turns a 0x80 return code into an error carrying the SUBACK packet.
    const code = await a.subscribeAsync(filter, { qos: 1 }).then(
      (g) => g[0].qos,
      (err: { packet?: { granted?: number[] } }) => err.packet?.granted?.[0],
    );
    t.equal(code, allowed ? 1 : 128, `${filter}: ${allowed ? 'granted' : 'SUBACK 0x80'}`);
  }
  t.ok(a.connected, 'refused subscriptions keep the connection');
  t.equal(await metric(metrics, 'mrv_acl_denied_total', { action: 'subscribe' }), 6, 'denials counted');

  // A device publishing to its own topic while subscribed to its subtree gets its own message back.
  const got: string[] = [];
  a.on('message', (tp) => got.push(tp));
  await a.publishAsync(topic('F1', 'd1', 'status'), 'online', { qos: 1 });
  t.ok(await poll(() => got.includes(topic('F1', 'd1', 'status'))), 'own subtree delivered');
});
