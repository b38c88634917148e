/**
 * Issue 14: with DATABASE_URL, a registry change made by another OS process reaches a broker process
 * through PostgreSQL's NOTIFY and cuts the sessions it concerns. The broker runs as its own process
 * (`broker/main.ts`, as `npm run start:broker`) with its registry poll switched off
 * (MQTT_REGISTRY_POLL_MS=0), so only the notice can close a session; this test process plays the
 * gateway, writing through its own stores on the same database. Waits are bounded polls.
 */
import t from 'tap';
import type { MqttClient } from 'mqtt';
import { openPostgresReadingStore } from '../../store/postgres/readings.ts';
import { openPostgresStores } from '../../store/postgres/stores.ts';
import { poll } from '../helpers/eventually.ts';
import { postgresForFile } from '../helpers/postgres.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { connect, reading, refusedCode, startBrokerProcess, topic } from './helpers.ts';

const OWNER = '0x' + '11'.repeat(20);
const facility = (id: string) => ({ id, name: id, owner: OWNER, baselineKgPerHour: '3600', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162' });
const cut = (c: MqttClient) => poll(() => !c.connected);

t.test('a suspension, a rotation and a facility suspension written by another process cut the sessions at once; ingest on the same database', async (t) => {
  const cluster = await postgresForFile(t);
  if (!cluster) return;
  const url = await cluster.createDatabase();
  // The "gateway": its own stores (pool, LISTEN connection, replica) on the database.
  const gateway = await openPostgresStores(url);
  t.teardown(() => gateway.close());
  const passwords: Record<string, string> = {};
  await gateway.registry.createFacility(facility('F1'));
  await gateway.registry.createFacility(facility('F2'));
  for (const [f, d] of [['F1', 'd1'], ['F1', 'd2'], ['F1', 'd3'], ['F2', 'e1']]) passwords[d] = (await gateway.registry.createDevice(f, d, 'meter')).password;

  const { port } = await startBrokerProcess(t, { DATA_DIR: tmpDir(t, 'mrv-notify-'), DATABASE_URL: url, READINGS_STORE: 'postgres', MQTT_REGISTRY_POLL_MS: '0' });
  const opts = { reconnectPeriod: 0 };
  const d1 = await connect(t, port, 'd1', passwords.d1, opts);
  const d2 = await connect(t, port, 'd2', passwords.d2, opts);
  const d3 = await connect(t, port, 'd3', passwords.d3, opts);
  const e1 = await connect(t, port, 'e1', passwords.e1, opts);

  // A device registered after the broker started: its replica learns it from the notice.
  const late = (await gateway.registry.createDevice('F1', 'd4', 'meter')).password;
  t.ok(await poll(async () => (await refusedCode(connect(t, port, 'd4', late, opts))) === 'connected', { everyMs: 250 }), 'a device registered meanwhile can connect');

  await gateway.registry.updateDevice('d1', { status: 'suspended' });
  t.ok(await cut(d1), 'the suspended device was disconnected by the broker process');
  t.equal(await refusedCode(connect(t, port, 'd1', passwords.d1, opts)), 5, 'and cannot reconnect (5)');

  const fresh = await gateway.registry.rotateSecret('d2');
  t.ok(await cut(d2), 'the device with a rotated secret was disconnected');
  t.equal(await refusedCode(connect(t, port, 'd2', passwords.d2, opts)), 4, 'the old secret cannot reconnect (4)');
  const again = await connect(t, port, 'd2', fresh, opts);
  t.ok(again.connected, 'the new secret can');

  await gateway.registry.updateFacility('F2', { status: 'suspended' });
  t.ok(await cut(e1), "the suspended facility's device was disconnected");

  t.ok(d3.connected, 'a device nothing happened to stays connected');
  t.ok(again.connected);

  // Ingest on the same database: a reading stored (PUBACK after commit), a bad one in the rejections log.
  await d3.publishAsync(topic('F1', 'd3'), reading(1, 100), { qos: 1 });
  const readings = await openPostgresReadingStore(url);
  t.teardown(() => readings.close());
  t.match(await readings.get('d3', 1), { deviceId: 'd3', value: '100' }, 'the reading is in PostgreSQL once acknowledged');
  await d3.publishAsync(topic('F1', 'd3'), 'not json', { qos: 1 });
  t.ok(
    await poll(async () => (await gateway.registry.listRejections('F1')).some((r) => r.deviceId === 'd3' && r.reason === 'invalid_json')),
    "the refusal is in the database's rejections log",
  );
  t.ok(await poll(() => gateway.registry.getDevice('d3')?.online === true), "the broker process's online status reaches the gateway's replica");
});
