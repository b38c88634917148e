/**
 * The TLS listener: with a certificate and key configured the broker also listens on TLS; a device
 * authenticates and gets its QoS 1 PUBACK over it (after the reading is stored), and a client that
 * does not trust the certificate is refused by TLS itself. The certificate is a self-signed one
 * made by openssl for 127.0.0.1 in a temp dir.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import mqtt from 'mqtt';
import { buildBroker } from '../../broker/broker.ts';
import { buildIngestPipeline } from '../../broker/pipeline.ts';
import { silentLogger } from '../../domain/logger.ts';
import { Registry as PromRegistry } from 'prom-client';
import { makeFleet, reading, topic } from './helpers.ts';

function selfSigned(dir: string): { cert: Buffer; key: Buffer } {
  const keyFile = path.join(dir, 'key.pem');
  const certFile = path.join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  return { cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile) };
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
