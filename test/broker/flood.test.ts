/**
 * Issue 10 item 11 over real sockets: a flood of unauthenticated CONNECTs (unknown users, sockets
 * closed at once, fast reconnects) from one address does not keep a real device from another address
 * out; slow checks of legacy scrypt records are bounded (over the bound: CONNACK 3 at once, counted).
 * The attacker connects from 127.0.0.2, the device from 127.0.0.1 (both loopback on Linux).
 */
import net from 'node:net';
import t from 'tap';
import mqttPacket from 'mqtt-packet';
import { generateSecret, legacyScryptRecord, legacyStats } from '../../store/secrets.ts';
import { connect, makeFleet, metric, reading, startBroker, topic } from './helpers.ts';
import { poll } from '../helpers/eventually.ts';

const ATTACKER = '127.0.0.2';

function connectPacket(username: string, password: string): Buffer {
  return mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: username, clean: true, keepalive: 30, username, password: Buffer.from(password) });
}

/** Opens a socket from `localAddress`, sends one CONNECT; resolves with the CONNACK code, or 'closed'. */
function rawConnect(port: number, localAddress: string, packet: Buffer, waitForConnack: boolean): Promise<number | 'closed'> {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host: '127.0.0.1', localAddress });
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    let code: number | 'closed' = 'closed';
    parser.on('packet', (p) => {
      if (p.cmd === 'connack') {
        code = p.returnCode ?? 'closed';
        sock.destroy();
      }
    });
    sock.on('data', (b) => parser.parse(b));
    sock.on('error', () => {});
    sock.on('close', () => resolve(code));
    sock.on('connect', () => {
      sock.write(packet);
      if (!waitForConnack) sock.destroy(); // as in the report: CONNECT, then close at once
    });
  });
}

t.test('a CONNECT flood from one address does not keep a real device out', async (t) => {
  const fleet = makeFleet(t);
  const { port, metrics } = await startBroker(t, fleet);
  const scryptBefore = legacyStats.scryptRuns;

  // Attacker: 8 loops of CONNECT (unknown user, well-formed password) + immediate close, bounded.
  let stop = false;
  let attempts = 0;
  const MAX_ATTEMPTS = 20_000;
  const loops = Array.from({ length: 8 }, async (_, k) => {
    while (!stop && attempts < MAX_ATTEMPTS) {
      attempts++;
      await rawConnect(port, ATTACKER, connectPacket(`intruder-${k}-${attempts}`, generateSecret()), false);
    }
  });
  t.teardown(async () => {
    stop = true;
    await Promise.all(loops);
  });
  t.ok(await poll(() => attempts >= 300), 'the flood is under way');

  // The real device connects and publishes while the flood goes on.
  const device = await connect(t, port, 'd1', fleet.passwords.d1, { connectTimeout: 10_000 });
  t.ok(device.connected, 'the real device got CONNACK 0');
  await device.publishAsync(topic('F1', 'd1'), reading(1, 100), { qos: 1 });
  t.ok(await fleet.stores.readings.get('d1', 1), 'and its reading was stored (PUBACK after commit)');
  const during = attempts;
  stop = true;
  await Promise.all(loops);
  t.ok(during < MAX_ATTEMPTS, `the device got through while the flood was still running (${during} attempts so far)`);
  t.ok((await metric(metrics, 'mrv_auth_failed_total', { reason: 'rate_limited' })) > 0, "the attacker's address was rate-limited (counted)");
  t.equal(legacyStats.scryptRuns, scryptBefore, 'no CONNECT of an unknown user ran scrypt');
});

t.test('slow legacy checks are bounded: over the bound CONNACK 3 at once; the legacy device still logs in and is upgraded', async (t) => {
  const fleet = makeFleet(t);
  const legacySecret = generateSecret();
  fleet.db.prepare('UPDATE devices SET secret_hash = ? WHERE device_id = ?').run(legacyScryptRecord(legacySecret), 'd3');
  // No address limit here: this is about the queue of slow checks.
  const { port, metrics } = await startBroker(t, fleet, { limits: { connectRatePerSecond: 1e6, connectBurst: 1e6, maxPendingLogins: 2 } });

  // 30 concurrent guesses at the legacy device (well-formed secrets: each would cost a scrypt).
  const guesses = Promise.all(Array.from({ length: 30 }, () => rawConnect(port, ATTACKER, connectPacket('d3', generateSecret()), true)));
  const device = await connect(t, port, 'd1', fleet.passwords.d1, { connectTimeout: 10_000 });
  t.ok(device.connected, 'a device with a current record connects meanwhile');
  const codes = await guesses;
  t.ok(codes.every((c) => c === 3 || c === 4), 'every guess refused (3: busy, 4: bad credentials)');
  const busy = codes.filter((c) => c === 3).length;
  t.ok(busy > 0, `over the bound refused at once (${busy} of 30)`);
  t.equal(await metric(metrics, 'mrv_auth_failed_total', { reason: 'busy' }), busy, 'and counted as busy');

  const legacy = await connect(t, port, 'd3', legacySecret);
  t.ok(legacy.connected, 'the legacy device logs in with its secret');
  t.match(fleet.stores.registry.credentials('d3')!.secretHash, /^hs256\$/, 'and its record is upgraded');
});
