/**
 * Authentication with mqtt.js 5 as the device (CONNACK codes in memory, the rest over real sockets): CONNACK codes for bad credentials,
 * unknown and suspended devices/facilities, client-id rules, no takeover by a failed login, MQTT 5,
 * session kicking for the gateway, and online status.
 */
import net from 'node:net';
import t from 'tap';
import mqttPacket from 'mqtt-packet';
import { connect, makeFleet, metric, refusedCode, startBroker, topic, closed } from './helpers.ts';
import { poll } from '../helpers/eventually.ts';

t.test('CONNACK codes', async (t) => {
  const fleet = makeFleet(t);
  const { broker, metrics } = await startBroker(t, fleet, { inMemory: true });
  const pw = fleet.passwords;

  t.equal(await refusedCode(connect(t, broker, 'd1', 'wrong-password')), 4, 'wrong password -> 4');
  t.equal(await refusedCode(connect(t, broker, 'nobody', pw.d1)), 4, 'unknown device -> 4');
  t.equal(await refusedCode(connect(t, broker, 'd1', undefined)), 4, 'no password -> 4');
  t.equal(await refusedCode(connect(t, broker, 'd1', pw.d2)), 4, "another device's password -> 4");

  fleet.stores.registry.updateDevice('d2', { status: 'suspended' });
  t.equal(await refusedCode(connect(t, broker, 'd2', pw.d2)), 5, 'suspended device -> 5');
  fleet.stores.registry.updateFacility('F2', { status: 'suspended' });
  t.equal(await refusedCode(connect(t, broker, 'e1', pw.e1)), 5, 'device of a suspended facility -> 5');
  t.equal(await refusedCode(connect(t, broker, 'e1', 'wrong')), 4, 'suspended and wrong password -> 4 (status not revealed)');

  t.equal(await refusedCode(connect(t, broker, 'd3', pw.d3, { username: 'd3', clientId: 'other-id' })), 2, 'client id != device id -> 2');
  t.equal(await refusedCode(connect(t, broker, 'd3', pw.d3, { clientId: 'x'.repeat(65), username: 'd3' })), 2, 'client id too long -> 2');

  const ok = await connect(t, broker, 'd3', pw.d3);
  t.ok(ok.connected, 'right credentials connect');

  t.equal(await metric(metrics, 'mrv_auth_failed_total', { reason: 'bad_credentials' }), 5, 'bad credentials counted');
  t.equal(await metric(metrics, 'mrv_auth_failed_total', { reason: 'device_suspended' }), 1);
  t.equal(await metric(metrics, 'mrv_auth_failed_total', { reason: 'facility_suspended' }), 1);
  t.equal(await metric(metrics, 'mrv_auth_failed_total', { reason: 'client_id' }), 2);
});

/** A 3.1.1 CONNECT with an empty client id and clean=false (mqtt-packet refuses to generate one). */
function emptyIdConnect(username: string, password: Buffer): Buffer {
  const str = (b: Buffer) => Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
  const body = Buffer.concat([
    str(Buffer.from('MQTT')),
    Buffer.from([4, 0xc0, 0, 30]), // level 4; flags: username, password, clean=0; keepalive 30
    str(Buffer.alloc(0)),
    str(Buffer.from(username)),
    str(password),
  ]);
  return Buffer.concat([Buffer.from([0x10, body.length]), body]);
}

t.test('empty client id with clean=false is refused; MQTT 5 gets rc=1', async (t) => {
  const fleet = makeFleet(t);
  const { port } = await startBroker(t, fleet);

  async function rawConnect(packet: Record<string, unknown>): Promise<{ returnCode?: number; reasonCode?: number; closed: boolean }> {
    const sock = net.connect(port, '127.0.0.1');
    t.teardown(() => sock.destroy());
    const parser = mqttPacket.parser({ protocolVersion: (packet.protocolVersion as number) ?? 4 });
    return new Promise((resolve) => {
      let got: { returnCode?: number; reasonCode?: number } = {};
      parser.on('packet', (p) => {
        if (p.cmd === 'connack') got = { returnCode: p.returnCode, reasonCode: p.reasonCode };
      });
      sock.on('data', (b) => parser.parse(b));
      sock.on('close', () => resolve({ ...got, closed: true }));
      sock.write(packet.clientId === '' ? emptyIdConnect(String(packet.username), packet.password as Buffer) : mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, keepalive: 30, ...packet } as mqttPacket.IConnectPacket));
    });
  }

  const empty = await rawConnect({ clientId: '', clean: false, username: 'd1', password: Buffer.from(fleet.passwords.d1) });
  t.equal(empty.returnCode, 2, 'CONNACK 2 (identifier rejected)');
  t.ok(empty.closed, 'and the connection is closed');

  const v5 = await rawConnect({ clientId: 'd1', clean: true, protocolVersion: 5, username: 'd1', password: Buffer.from(fleet.passwords.d1) });
  t.equal(v5.returnCode ?? v5.reasonCode, 1, 'MQTT 5 CONNECT answered with 1 (unacceptable protocol version)');
  t.ok(v5.closed);
});

t.test('a failed login with the id of a connected device does not disconnect it', async (t) => {
  const fleet = makeFleet(t);
  const { port } = await startBroker(t, fleet);
  const real = await connect(t, port, 'd1', fleet.passwords.d1);
  let realClosed = false;
  real.on('close', () => (realClosed = true));

  t.equal(await refusedCode(connect(t, port, 'd1', 'guess')), 4, 'impostor refused');
  t.equal(await refusedCode(connect(t, port, 'd1', 'guess', { clean: false })), 4, 'impostor with clean=false refused');
  await real.publishAsync(topic('F1', 'd1'), JSON.stringify({ seq: 1, ts: Date.now() - 1000, metric: 'electricity_import', value: 1, unit: 'kWh' }), { qos: 1 });
  t.notOk(realClosed, 'the real device is still connected and got its PUBACK');
  t.ok(real.connected);

  // A successful login with the same id does take over (MQTT-3.1.4-2).
  const second = await connect(t, port, 'd1', fleet.passwords.d1);
  await closed(real);
  t.ok(second.connected, 'a second authenticated session takes over');
});

t.test('disconnectDevice / disconnectFacility, rotation, online status', async (t) => {
  const fleet = makeFleet(t);
  const { port, broker, metrics } = await startBroker(t, fleet);
  const reg = fleet.stores.registry;

  const d1 = await connect(t, port, 'd1', fleet.passwords.d1, { reconnectPeriod: 0 });
  const d2 = await connect(t, port, 'd2', fleet.passwords.d2);
  const e1 = await connect(t, port, 'e1', fleet.passwords.e1);
  t.ok(await poll(() => reg.getDevice('d1')!.online === true), 'd1 online after connect');
  // The gauge moves on aedes' clientReady, which may follow the CONNACK the client already saw.
  t.ok(await poll(async () => (await metric(metrics, 'mrv_connected_devices')) === 3), 'connected devices gauge');

  // Status message: the device says it is going offline.
  await d2.publishAsync(topic('F1', 'd2', 'status'), 'offline', { qos: 1 });
  t.equal(reg.getDevice('d2')!.online, false, 'status message updates online status');
  await d2.publishAsync(topic('F1', 'd2', 'status'), JSON.stringify({ status: 'online' }), { qos: 1 });
  t.equal(reg.getDevice('d2')!.online, true);

  const newSecret = reg.rotateSecret('d1');
  t.equal(broker.disconnectDevice('d1'), 1, 'one session closed');
  await closed(d1);
  t.ok(await poll(() => reg.getDevice('d1')!.online === false), 'd1 offline after disconnect');
  t.equal(await refusedCode(connect(t, port, 'd1', fleet.passwords.d1)), 4, 'old secret refused after rotation');
  const again = await connect(t, port, 'd1', newSecret);
  t.ok(again.connected, 'new secret works');

  reg.updateFacility('F1', { status: 'suspended' });
  t.equal(broker.disconnectFacility('F1'), 2, 'both F1 sessions closed');
  await Promise.all([closed(again), closed(d2)]);
  t.ok(e1.connected, 'the other facility stays connected');
  t.equal(await refusedCode(connect(t, port, 'd2', fleet.passwords.d2)), 5, 'suspended facility cannot reconnect');
  t.ok(await poll(async () => (await metric(metrics, 'mrv_connected_devices')) === 1), 'gauge back to 1');
});

t.test('last will marks the device offline and is filtered by the ACL', async (t) => {
  const fleet = makeFleet(t);
  const { port, metrics } = await startBroker(t, fleet);
  const reg = fleet.stores.registry;
  const spy = await connect(t, port, 'd2', fleet.passwords.d2);
  const got: string[] = [];
  spy.on('message', (tp) => got.push(tp));
  await spy.subscribeAsync(topic('F1', 'd2', 'status'), { qos: 1 });

  const d1 = await connect(t, port, 'd1', fleet.passwords.d1, { will: { topic: topic('F1', 'd1', 'status'), payload: Buffer.from('offline'), qos: 1, retain: false } });
  t.ok(await poll(() => reg.getDevice('d1')!.online === true));
  d1.stream.destroy(); // abrupt: the will fires
  t.ok(await poll(() => reg.getDevice('d1')!.online === false), 'offline after the will');

  // A will aimed at another device's topic is not published.
  const d3 = await connect(t, port, 'd3', fleet.passwords.d3, { will: { topic: topic('F1', 'd2', 'status'), payload: Buffer.from('online'), qos: 0, retain: false } });
  d3.stream.destroy();
  t.ok(await poll(async () => (await metric(metrics, 'mrv_acl_denied_total', { action: 'will' })) === 1), 'will refused and counted');
  t.same(got, [], "d2 never saw a message on its status topic from d3's will");
});
