/**
 * The in-memory connection (test/helpers/duplex.ts) that the protocol-level broker tests use: a broker
 * started without a listener serves mqtt.js through `handle`, with the same refusals and packet guard.
 */
import net from 'node:net';
import t from 'tap';
import { duplexPair } from '../helpers/duplex.ts';
import { closed, connect, makeFleet, metric, reading, refusedCode, startBroker, topic } from './helpers.ts';

t.test('a duplex pair: each side reads what the other writes; destroying one closes both', async (t) => {
  const [a, b] = duplexPair();
  const got: Buffer[] = [];
  b.on('data', (c: Buffer) => got.push(c));
  a.write(Buffer.from('hello'));
  await new Promise((r) => setImmediate(r));
  t.equal(Buffer.concat(got).toString(), 'hello');
  const closedB = new Promise((r) => b.once('close', r));
  a.destroy();
  await closedB;
  t.ok(a.destroyed && b.destroyed);
});

t.test('a broker started in memory opens no port and serves clients through handle', async (t) => {
  const fleet = makeFleet(t);
  const { broker, port, metrics } = await startBroker(t, fleet, { inMemory: true });
  t.equal(port, 0, 'no listener');
  t.ok(broker.ping(), 'started');
  const c = await connect(t, broker, 'd1', fleet.passwords.d1);
  t.notOk(c.stream instanceof net.Socket, 'the client is not on a socket');
  await c.publishAsync(topic('F1', 'd1'), reading(1, 100), { qos: 1 });
  t.ok(await fleet.stores.readings.get('d1', 1), 'PUBACK after the reading is stored');
  t.equal(await refusedCode(connect(t, broker, 'd1', 'wrong')), 4, 'bad credentials -> CONNACK 4');

  // The packet guard reads the stream itself: a header declaring 10 MiB drops the connection.
  const big = await connect(t, broker, 'd2', fleet.passwords.d2);
  big.stream.write(Buffer.from([0x30, 0x80, 0x80, 0x80, 0x05]));
  await closed(big);
  t.equal(await metric(metrics, 'mrv_mqtt_connections_dropped_total', { reason: 'packet_too_large' }), 1, 'dropped by the guard');
  t.equal(broker.disconnectDevice('d1'), 1, 'sessions are tracked as for sockets');
});
