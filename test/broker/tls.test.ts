/**
 * The TLS listener: with a certificate and key configured the broker listens on TLS; a device
 * authenticates and gets its QoS 1 PUBACK over it (after the reading is stored), and a client that
 * does not trust the certificate is refused by TLS itself. With TLS configured the plain listener is
 * closed unless MQTT_PLAIN=true (the ingest service composed from its configuration, real sockets).
 * The certificate is a self-signed one made by openssl for 127.0.0.1 in a temp dir.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import t from 'tap';
import mqtt from 'mqtt';
import { buildBroker } from '../../broker/broker.ts';
import { buildIngestPipeline } from '../../broker/pipeline.ts';
import { startIngest, type IngestService } from '../../broker/main.ts';
import { loadConfig } from '../../domain/config.ts';
import { silentLogger } from '../../domain/logger.ts';
import { freePort } from '../helpers/servers.ts';
import { Registry as PromRegistry } from 'prom-client';
import { connect, makeFleet, reading, topic, type T } from './helpers.ts';

function selfSigned(dir: string): { cert: Buffer; key: Buffer; certFile: string; keyFile: string } {
  const keyFile = path.join(dir, 'key.pem');
  const certFile = path.join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  return { cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile), certFile, keyFile };
}

/** Starts the ingest service from `env`; it is closed at teardown unless the test closed it first. */
async function ingest(t: T, env: Record<string, string>): Promise<IngestService> {
  const service = await startIngest(loadConfig(env), { logger: silentLogger });
  let closed: Promise<void> | undefined;
  const close = () => (closed ??= service.close());
  t.teardown(close);
  return { ...service, close };
}

/** Whether a TCP connection to the port is accepted (resolves false on ECONNREFUSED). */
function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNREFUSED' ? resolve(false) : reject(err)));
  });
}

/** Connects a device over TLS (trusting `ca`); resolves once CONNACK 0 arrived. */
async function connectTls(t: T, port: number, deviceId: string, password: string, ca: Buffer): Promise<mqtt.MqttClient> {
  const client = mqtt.connect(`mqtts://127.0.0.1:${port}`, { clientId: deviceId, username: deviceId, password, ca, reconnectPeriod: 0, protocolVersion: 4 });
  t.teardown(() => client.end(true));
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  return client;
}

t.test('a device publishes over TLS and is acknowledged after the reading is stored', async (t) => {
  const fleet = makeFleet(t);
  const { cert, key } = selfSigned(fleet.dir);
  const metrics = new PromRegistry();
  const pipeline = buildIngestPipeline({ store: fleet.stores.readings, registry: fleet.stores.registry, logger: silentLogger, metrics });
  const broker = buildBroker({ registry: fleet.stores.registry, pipeline, logger: silentLogger, metrics });
  const ports = await broker.listen({ port: 0, host: '127.0.0.1', tls: { cert, key, port: 0 } });
  t.teardown(async () => {
    await broker.close();
    await pipeline.close();
  });
  t.ok(ports.tlsPort && ports.tlsPort !== ports.port, `TLS listener on its own port (${ports.tlsPort})`);

  const client = mqtt.connect(`mqtts://127.0.0.1:${ports.tlsPort}`, { clientId: 'd1', username: 'd1', password: fleet.passwords.d1, ca: cert, reconnectPeriod: 0, protocolVersion: 4 });
  t.teardown(() => client.end(true));
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  await client.publishAsync(topic('F1', 'd1'), reading(1, 1000), { qos: 1 });
  const stored = await fleet.stores.readings.get('d1', 1);
  t.equal(stored?.value, '1000', 'stored before the PUBACK arrived');

  // A client that does not trust our certificate never gets to MQTT.
  const untrusting = mqtt.connect(`mqtts://127.0.0.1:${ports.tlsPort}`, { clientId: 'd2', username: 'd2', password: fleet.passwords.d2, reconnectPeriod: 0, protocolVersion: 4 });
  t.teardown(() => untrusting.end(true));
  const err = await new Promise<Error>((resolve) => untrusting.once('error', resolve));
  t.match(err.message, /self.signed|certificate/i, 'refused by TLS verification');
});

t.test('with TLS configured the plain listener is closed unless MQTT_PLAIN=true', async (t) => {
  const fleet = makeFleet(t);
  const { cert, certFile, keyFile } = selfSigned(fleet.dir);
  const tlsEnv = { DATA_DIR: fleet.dir, MQTT_TLS_CERT: certFile, MQTT_TLS_KEY: keyFile, MQTT_TLS_PORT: '0' };

  // Default with TLS: TLS only. The plain port (a free one, given explicitly) refuses connections.
  const plainPort = await freePort();
  const tlsOnly = await ingest(t, { ...tlsEnv, MQTT_PORT: String(plainPort) });
  t.equal(tlsOnly.mqttPort, undefined, 'no plain listener reported');
  t.ok(tlsOnly.tlsPort, `TLS listener on ${tlsOnly.tlsPort}`);
  t.equal(await tcpOpen(plainPort), false, `nothing listens on MQTT_PORT ${plainPort}`);
  const d1 = await connectTls(t, tlsOnly.tlsPort!, 'd1', fleet.passwords.d1, cert);
  await d1.publishAsync(topic('F1', 'd1'), reading(1, 1000), { qos: 1 });
  t.equal((await fleet.stores.readings.get('d1', 1))?.value, '1000', 'a device still publishes over TLS');
  d1.end(true);
  await tlsOnly.close();

  // MQTT_PLAIN=true keeps both, on purpose.
  const both = await ingest(t, { ...tlsEnv, MQTT_PORT: '0', MQTT_PLAIN: 'true' });
  t.ok(both.mqttPort && both.tlsPort, `MQTT_PLAIN=true: plain ${both.mqttPort} and TLS ${both.tlsPort}`);
  const d2 = await connect(t, both.mqttPort!, 'd2', fleet.passwords.d2);
  await d2.publishAsync(topic('F1', 'd2'), reading(1, 7), { qos: 1 });
  t.equal((await fleet.stores.readings.get('d2', 1))?.value, '7', 'a device publishes over the plain listener');
  await connectTls(t, both.tlsPort!, 'd3', fleet.passwords.d3, cert);
  t.pass('and over TLS');
  await both.close();

  // Without TLS the plain listener is on by default (the one-machine demo).
  const plain = await ingest(t, { DATA_DIR: fleet.dir, MQTT_PORT: '0' });
  t.ok(plain.mqttPort, 'no TLS: plain listener on');
  t.equal(plain.tlsPort, undefined, 'and no TLS listener');
  await plain.close();
});

t.test('a broker asked for no listener at all refuses to start', async (t) => {
  const fleet = makeFleet(t);
  const metrics = new PromRegistry();
  const pipeline = buildIngestPipeline({ store: fleet.stores.readings, registry: fleet.stores.registry, logger: silentLogger, metrics });
  const broker = buildBroker({ registry: fleet.stores.registry, pipeline, logger: silentLogger, metrics });
  t.teardown(async () => {
    await broker.close();
    await pipeline.close();
  });
  await t.rejects(broker.listen({ port: 0, host: '127.0.0.1', plain: false }), { code: 'CONFIG_INVALID' });
});
