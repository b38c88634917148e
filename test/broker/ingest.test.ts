/**
 * Abuse and bad payloads. Malformed payloads are acked (PUBACK), logged in the rejections log with
 * their reason, and the connection stays up; topic and packet-size abuse closes that connection.
 * After each case another device still gets PUBACKs for good readings. Validation runs in memory
 * (test/helpers/duplex.ts); an oversized packet and a broker store failure go over real sockets.
 */
import net from 'node:net';
import t from 'tap';
import mqttPacket from 'mqtt-packet';
import type { MqttClient } from 'mqtt';
import { closed, connect, makeFleet, metric, reading, startBroker, topic } from './helpers.ts';
import { poll } from '../helpers/eventually.ts';
import type { RejectReason } from '../../domain/reading.ts';

t.test('bad payloads are rejected with their reason, the broker keeps serving', async (t) => {
  const fleet = makeFleet(t);
  const { broker, metrics } = await startBroker(t, fleet, { inMemory: true });
  const reg = fleet.stores.registry;
  const bad = await connect(t, broker, 'd1', fleet.passwords.d1);
  const good = await connect(t, broker, 'd2', fleet.passwords.d2);
  let goodSeq = 0;
  const goodStillServed = async (what: string) => {
    goodSeq++;
    await good.publishAsync(topic('F1', 'd2'), reading(goodSeq, 1000 + goodSeq), { qos: 1 });
    t.ok(await fleet.stores.readings.get('d2', goodSeq), `after ${what}: another device still gets PUBACK and is stored`);
  };
  const ts = new Date(Date.now() - 60_000).toISOString();
  const el = (fields: string) => `{"seq":50,"ts":"${ts}","metric":"electricity_import","unit":"kWh",${fields}}`;

  await bad.publishAsync(topic('F1', 'd1'), reading(1, 100), { qos: 1 });
  const cases: [string, string | Buffer, RejectReason][] = [
    ['invalid UTF-8', Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), 'invalid_utf8'],
    ['non-JSON', 'hello meter', 'invalid_json'],
    ['NaN', el('"value":NaN'), 'invalid_json'],
    ['Infinity', el('"value":Infinity'), 'invalid_json'],
    ['value as a string', el('"value":"12.5"'), 'invalid_value'],
    ['seq as a string', `{"seq":"51","ts":"${ts}","metric":"electricity_import","unit":"kWh","value":1}`, 'invalid_seq'],
    ['unknown metric', reading(52, 1, { metric: 'water' }), 'unknown_metric'],
    ['unknown unit', reading(53, 1, { unit: 'kJ' }), 'unknown_unit'],
    ['ts an hour ahead', reading(54, 200, { ts: new Date(Date.now() + 3_600_000).toISOString() }), 'future_ts'],
    ['register going backwards', reading(55, 50), 'register_backwards'],
    ['same seq, different content', reading(1, 101), 'duplicate_conflict'],
  ];
  // Rows of one device with the same reason in the same minute are one row with a count.
  const logged = (reason: RejectReason) =>
    reg.listRejections('F1', 1000).filter((r) => r.deviceId === 'd1' && r.reason === reason).reduce((n, r) => n + (r.count ?? 1), 0);
  for (const [what, payload, reason] of cases) {
    const before = logged(reason);
    await bad.publishAsync(topic('F1', 'd1'), payload, { qos: 1 });
    t.equal(logged(reason), before + 1, `${what}: one rejection (reason ${reason}) logged before the PUBACK`);
    t.ok(bad.connected, `${what}: connection stays up`);
  }
  await goodStillServed('malformed payloads');

  // A duplicate (same seq, same content) is acked and not stored twice.
  const dupBefore = await metric(metrics, 'mrv_readings_duplicate_total');
  await bad.publishAsync(topic('F1', 'd1'), reading(1, 100).replace(/"ts":"[^"]+"/, `"ts":"${new Date((await fleet.stores.readings.get('d1', 1))!.ts).toISOString()}"`), { qos: 1 });
  t.equal(await metric(metrics, 'mrv_readings_duplicate_total'), dupBefore + 1, 'duplicate counted');
  t.equal((await fleet.stores.readings.list({ facilityId: 'F1', deviceId: 'd1' })).length, 1, 'd1 has exactly one stored reading');

  t.equal(await metric(metrics, 'mrv_readings_rejected_total', { reason: 'invalid_json' }), 3, 'rejections counted by reason');
  t.equal(await metric(metrics, 'mrv_readings_rejected_total', { reason: 'register_backwards' }), 1);

  // Topic abuse closes the connection and is logged.
  async function abuse(what: string, send: (c: MqttClient) => void, reason: RejectReason) {
    const c = await connect(t, broker, 'd3', fleet.passwords.d3);
    let acked = false;
    c.on('packetreceive', (p) => p.cmd === 'puback' && (acked = true));
    send(c);
    await closed(c);
    t.notOk(acked, `${what}: no PUBACK, connection closed`);
    t.ok(
      await poll(() => reg.listRejections('F1', 1000).some((r) => r.deviceId === 'd3' && r.reason === reason && (r.detail ?? '').length > 0)),
      `${what}: logged as ${reason}`,
    );
    await goodStillServed(what);
  }
  await abuse('101-level topic', (c) => c.publish(Array.from({ length: 101 }, (_, i) => `l${i}`).join('/'), reading(1, 1), { qos: 1 }), 'invalid_topic');
  await abuse('65,535-byte topic', (c) => c.publish('t'.repeat(65_535), '{}', { qos: 1 }), 'invalid_topic');
  t.ok((await metric(metrics, 'mrv_mqtt_connections_dropped_total', { reason: 'topic_too_long' })) >= 1, 'topic length drop counted');
});

/** Writes `header` then junk up to `total` bytes in 64 KiB chunks until the server closes the socket. */
async function floodUntilClosed(sock: net.Socket, header: Buffer, total: number): Promise<{ written: number; closedByServer: boolean }> {
  let isClosed = false;
  sock.on('error', () => {});
  sock.once('close', () => (isClosed = true));
  let written = 0;
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  await new Promise<void>((r) => sock.write(header, () => r()));
  for (let i = 0; i < Math.ceil(total / chunk.length) && !isClosed; i++) {
    const ok = sock.write(chunk);
    written += chunk.length;
    if (!ok) await new Promise<void>((r) => (isClosed ? r() : (sock.once('drain', () => r()), sock.once('close', () => r()))));
    else await new Promise<void>((r) => setImmediate(r));
  }
  if (!isClosed) await new Promise<void>((r) => sock.once('close', () => r()));
  return { written, closedByServer: true };
}

function tenMbHeader(): Buffer {
  // PUBLISH QoS 0, remaining length 10 MiB as an MQTT varint
  let n = 10 * 1024 * 1024;
  const bytes = [0x30];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    bytes.push(b);
  } while (n > 0);
  return Buffer.from(bytes);
}

t.test('a 10 MB declared packet is dropped at its header, not buffered', async (t) => {
  const fleet = makeFleet(t);
  const { port, metrics } = await startBroker(t, fleet);
  const good = await connect(t, port, 'd2', fleet.passwords.d2);

  // Unauthenticated: the first bytes on the socket declare 10 MB.
  const raw = net.connect(port, '127.0.0.1');
  t.teardown(() => raw.destroy());
  await new Promise((r) => raw.once('connect', r));
  const r1 = await floodUntilClosed(raw, tenMbHeader(), 10 * 1024 * 1024);
  t.ok(r1.written < 10 * 1024 * 1024, `closed after ${r1.written} of 10 MiB (never waited for the body)`);

  // Authenticated device: the drop is also logged for its facility.
  const sock = net.connect(port, '127.0.0.1');
  t.teardown(() => sock.destroy());
  await new Promise((r) => sock.once('connect', r));
  const parser = mqttPacket.parser();
  const connack = new Promise<number>((r) => parser.on('packet', (p) => p.cmd === 'connack' && r(p.returnCode ?? -1)));
  sock.on('data', (b) => parser.parse(b));
  sock.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 30, clientId: 'd1', username: 'd1', password: Buffer.from(fleet.passwords.d1) }));
  t.equal(await connack, 0, 'device connected');
  const r2 = await floodUntilClosed(sock, tenMbHeader(), 10 * 1024 * 1024);
  t.ok(r2.written < 10 * 1024 * 1024, `authenticated: closed after ${r2.written} bytes`);
  t.ok(
    await poll(() => fleet.stores.registry.listRejections('F1').some((r) => r.deviceId === 'd1' && r.reason === 'payload_too_large')),
    'logged as payload_too_large',
  );
  t.equal(await metric(metrics, 'mrv_mqtt_connections_dropped_total', { reason: 'packet_too_large' }), 2, 'both drops counted');

  await good.publishAsync(topic('F1', 'd2'), reading(1, 1), { qos: 1 });
  t.ok(await fleet.stores.readings.get('d2', 1), 'the broker keeps serving other devices');
});

t.test('storage failure: no PUBACK, connection closed, nothing stored; redelivery stores once', async (t) => {
  const fleet = makeFleet(t);
  const real = fleet.stores.readings;
  let failing = true;
  const store = Object.assign(Object.create(real) as typeof real, {
    commit: (rs: Parameters<typeof real.commit>[0]) => (failing ? Promise.reject(new Error('disk on fire')) : real.commit(rs)),
    stage: undefined, // driven through commit, so the failure above applies
  });
  const { port } = await startBroker(t, fleet, { store });
  const c = await connect(t, port, 'd1', fleet.passwords.d1, { reconnectPeriod: 100 });
  let acked = false;
  const done = new Promise<void>((resolve) =>
    c.publish(topic('F1', 'd1'), reading(7, 70), { qos: 1 }, (err) => {
      acked = !err;
      resolve();
    }),
  );
  await new Promise<void>((r) => c.once('close', () => r()));
  t.notOk(acked, 'no PUBACK while the store fails; the broker closed the connection');
  t.equal(await real.get('d1', 7), undefined, 'nothing stored');
  failing = false;
  await done; // mqtt.js reconnects and redelivers the unacked message
  t.ok(acked, 'PUBACK after redelivery once the store works');
  t.equal((await real.list({ facilityId: 'F1', deviceId: 'd1' })).length, 1, 'stored exactly once');
});
