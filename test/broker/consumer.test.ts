/**
 * The pipeline consuming from an external broker: a real Mosquitto (Debian binary, started here on a
 * free port with a temp config), devices publishing to it, our consumer in the shared subscription group.
 * Shows: readings stored; unknown device or wrong facility rejected; no PUBACK before commit — a failing
 * store leaves the message unacked and Mosquitto redelivers it after the reconnect, stored exactly once.
 */
import t from 'tap';
import mqtt from 'mqtt';
import { Registry as PromRegistry } from 'prom-client';
import { buildConsumer } from '../../broker/consumer.ts';
import { buildIngestPipeline } from '../../broker/pipeline.ts';
import { silentLogger } from '../../domain/logger.ts';
import { eventually, makeFleet, reading, topic } from './helpers.ts';
import { MOSQUITTO, startMosquitto } from '../helpers/servers.ts';


if (!MOSQUITTO) {
  if (process.env.CI) t.fail('mosquitto binary missing (CI requires it: apt-get install mosquitto)');
  else t.plan(0, 'mosquitto binary not found (/usr/sbin/mosquitto): install the Debian package mosquitto to run this test');
} else {
  t.test('consumer on a shared subscription at Mosquitto', async (t) => {
    const fleet = makeFleet(t);
    const mosquitto = await startMosquitto(fleet.dir, ['max_inflight_messages 100']);
    t.teardown(() => mosquitto.proc.kill('SIGKILL'));
    const { url } = mosquitto;
    t.ok(mosquitto.up, 'mosquitto is up');

    const real = fleet.stores.readings;
    let failing = false;
    let failedCommits = 0;
    const store = Object.assign(Object.create(real) as typeof real, {
      stage: undefined, // driven through commit, so the failure below applies
      commit: (rs: Parameters<typeof real.commit>[0]) => {
        if (failing) {
          failedCommits++;
          return Promise.reject(new Error('store down'));
        }
        return real.commit(rs);
      },
    });
    const metrics = new PromRegistry();
    const pipeline = buildIngestPipeline({ store, registry: fleet.stores.registry, logger: silentLogger, metrics, rateLimit: false });
    const consumer = buildConsumer({
      url,
      registry: fleet.stores.registry,
      pipeline,
      logger: silentLogger,
      metrics,
      connections: 2,
      clientIdPrefix: `test-${process.pid}`,
      mqttOptions: { reconnectPeriod: 100 },
    });
    await consumer.start();
    t.teardown(async () => {
      await consumer.close();
      await pipeline.close();
    });

    const device = mqtt.connect(url, { clientId: 'dev-d1', reconnectPeriod: 0 });
    t.teardown(() => device.end(true));
    await new Promise((r) => device.once('connect', r));

    const N = 200;
    await Promise.all(Array.from({ length: N }, (_, i) => device.publishAsync(topic('F1', 'd1'), reading(i + 1, 1000 + i), { qos: 1 })));
    t.ok(await eventually(async () => (await real.list({ facilityId: 'F1', deviceId: 'd1', limit: 1000 })).length === N, 200, 25), `${N} readings stored via the shared subscription`);

    await device.publishAsync(topic('F1', 'ghost'), reading(1, 1), { qos: 1 });
    await device.publishAsync(topic('F2', 'd1'), reading(500, 1), { qos: 1 });
    t.ok(
      await eventually(() => fleet.stores.registry.listRejections('F1').some((r) => r.deviceId === 'ghost' && r.reason === 'invalid_topic')),
      'unknown device rejected',
    );
    t.ok(
      await eventually(() => fleet.stores.registry.listRejections('F2').some((r) => r.deviceId === 'd1' && r.reason === 'invalid_topic')),
      "a device publishing under another facility's topic is rejected",
    );
    t.equal(await real.get('d1', 500), undefined, 'and not stored');

    // Feedback: the device, subscribed at Mosquitto to its feedback topic, is told why a reading was refused.
    const feedback: string[] = [];
    device.on('message', (tp, p) => {
      if (tp === 'facilities/F1/devices/d1/feedback') feedback.push(p.toString());
    });
    await device.subscribeAsync('facilities/F1/devices/d1/feedback', { qos: 1 });
    await device.publishAsync(topic('F1', 'd1'), reading(7000, 5000, { unit: 'kJ' }), { qos: 1 });
    t.ok(await eventually(() => feedback.length === 1, 200, 25), 'feedback published to the external broker');
    t.match(JSON.parse(feedback[0] ?? '[]'), [{ seq: 7000, reason: 'unknown_unit' }]);

    // Ack only after commit: with the store failing, nothing is acked; Mosquitto redelivers after the
    // consumer's reconnect, and once the store works the reading is stored exactly once.
    failing = true;
    await device.publishAsync(topic('F1', 'd1'), reading(N + 1, 1000 + N), { qos: 1 });
    t.ok(await eventually(() => failedCommits >= 2, 200, 25), 'the failed message is redelivered (commit attempted again)');
    t.equal(await real.get('d1', N + 1), undefined, 'not stored while failing');
    failing = false;
    t.ok(await eventually(async () => (await real.get('d1', N + 1)) !== undefined, 200, 25), 'stored after the store recovers');
    t.equal((await real.list({ facilityId: 'F1', deviceId: 'd1', limit: 1000 })).length, N + 1, 'exactly once');
  });
}
