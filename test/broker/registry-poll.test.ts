/**
 * Issue 10 item 17: with the gateway in another process (here: a second handle on the same SQLite file,
 * as a gateway process opens it), suspending a device or its facility, or rotating its secret, cuts
 * the device's live MQTT session within seconds: the broker polls the registry rows of its live
 * sessions. Waits are bounded polls of the condition; nothing is timed. The second test runs the
 * broker as its own process (`broker/main.ts`, as `npm run start:broker`).
 */
import t from 'tap';
import type { MqttClient } from 'mqtt';
import { openDatabase } from '../../store/sqlite/db.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import { connect, makeFleet, metric, refusedCode, startBroker, startBrokerProcess } from './helpers.ts';
import { poll } from '../helpers/eventually.ts';

/** Bounded wait (up to ~20 s) for the client to be disconnected. */
const cut = (c: MqttClient) => poll(() => !c.connected);

t.test('changes made through another handle on the file close the live sessions they concern', async (t) => {
  const fleet = makeFleet(t);
  const { port, metrics } = await startBroker(t, fleet, { limits: { registryPollMs: 100 } });
  // The "gateway": its own connection to the same file.
  const gatewayDb = openDatabase(fleet.dir);
  t.teardown(() => gatewayDb.close());
  const gateway = openSqliteStores(gatewayDb).registry;

  const opts = { reconnectPeriod: 0 };
  const d1 = await connect(t, port, 'd1', fleet.passwords.d1, opts);
  const d2 = await connect(t, port, 'd2', fleet.passwords.d2, opts);
  const d3 = await connect(t, port, 'd3', fleet.passwords.d3, opts);
  const e1 = await connect(t, port, 'e1', fleet.passwords.e1, opts);

  gateway.updateDevice('d1', { status: 'suspended' });
  t.ok(await cut(d1), 'suspended device disconnected');
  t.equal(await refusedCode(connect(t, port, 'd1', fleet.passwords.d1, opts)), 5, 'and cannot reconnect (5)');

  const fresh = gateway.rotateSecret('d2');
  t.ok(await cut(d2), 'device with a rotated secret disconnected');
  t.equal(await refusedCode(connect(t, port, 'd2', fleet.passwords.d2, opts)), 4, 'the old secret cannot reconnect (4)');
  const again = await connect(t, port, 'd2', fresh, opts);
  t.ok(again.connected, 'the new secret can');

  gateway.updateFacility('F2', { status: 'suspended' });
  t.ok(await cut(e1), "suspended facility's device disconnected");
  t.equal(await refusedCode(connect(t, port, 'e1', fleet.passwords.e1, opts)), 5, 'and cannot reconnect (5)');

  t.ok(d3.connected, 'a device nothing happened to stays connected');
  t.ok(again.connected);
  t.equal(await metric(metrics, 'mrv_mqtt_connections_dropped_total', { reason: 'registry_changed' }), 3, 'three sessions closed by the poll, counted');
});

t.test('broker in its own process: a suspension written by another process cuts the session', async (t) => {
  const fleet = makeFleet(t);
  const { port } = await startBrokerProcess(t, { DATA_DIR: fleet.dir, MQTT_REGISTRY_POLL_MS: '200' });
  const opts = { reconnectPeriod: 0 };
  const d1 = await connect(t, port, 'd1', fleet.passwords.d1, opts);
  const d2 = await connect(t, port, 'd2', fleet.passwords.d2, opts);
  // This process plays the gateway: it writes the registry through its own handle.
  fleet.stores.registry.updateDevice('d1', { status: 'suspended' });
  t.ok(await cut(d1), 'the suspended device was disconnected by the broker process');
  t.equal(await refusedCode(connect(t, port, 'd1', fleet.passwords.d1, opts)), 5, 'and cannot reconnect');
  t.ok(d2.connected, 'the other device stays connected');
});
