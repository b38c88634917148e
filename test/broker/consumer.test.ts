/**
 * The pipeline consuming from an external broker: a real Mosquitto (Debian binary, started here on a
 * free port with a temp config), devices publishing to it, our consumer in the shared subscription group.
 * Shows: readings stored; unknown device or wrong facility rejected; no PUBACK before commit — a failing
 * store leaves the message unacked and Mosquitto redelivers it after the reconnect, stored exactly once.
 * And the registry check that replaces our broker's CONNECT check (Mosquitto admits anyone here): a
 * suspended or decommissioned device, a device of a suspended facility, an unknown device and a device publishing under
 * another facility's topic are refused; a suspension during the run takes effect. Signed readings are
 * verified there as at our broker (the pipeline is shared).
 */
import t from 'tap';
import mqtt from 'mqtt';
import { Registry as PromRegistry } from 'prom-client';
import { buildConsumer } from '../../broker/consumer.ts';
import { buildIngestPipeline } from '../../broker/pipeline.ts';
import { createVerifier } from '../../broker/verify-pool.ts';
import { canonicalLine, generateDeviceKey, signLine } from '../../domain/signature.ts';
import { silentLogger } from '../../domain/logger.ts';
import { makeFleet, metric, reading, topic } from './helpers.ts';
import { poll } from '../helpers/eventually.ts';
import { startMosquitto } from '../helpers/servers.ts';
import { missing, requireBinary } from '../helpers/require.ts';


if (requireBinary(t, missing.mosquitto())) {
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
    t.ok(await poll(async () => (await real.list({ facilityId: 'F1', deviceId: 'd1', limit: 1000 })).length === N), `${N} readings stored via the shared subscription`);

    await device.publishAsync(topic('F1', 'ghost'), reading(1, 1), { qos: 1 });
    await device.publishAsync(topic('F2', 'd1'), reading(500, 1), { qos: 1 });
    t.ok(
      await poll(() => fleet.stores.registry.listRejections('F1').some((r) => r.deviceId === 'ghost' && r.reason === 'unknown_device')),
      'unknown device rejected',
    );
    t.ok(
      await poll(() => fleet.stores.registry.listRejections('F2').some((r) => r.deviceId === 'd1' && r.reason === 'invalid_topic')),
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
    t.ok(await poll(() => feedback.length === 1), 'feedback published to the external broker');
    t.match(JSON.parse(feedback[0] ?? '[]'), [{ seq: 7000, reason: 'unknown_unit' }]);

    // Ack only after commit: with the store failing, nothing is acked; Mosquitto redelivers after the
    // consumer's reconnect, and once the store works the reading is stored exactly once.
    failing = true;
    await device.publishAsync(topic('F1', 'd1'), reading(N + 1, 1000 + N), { qos: 1 });
    t.ok(await poll(() => failedCommits >= 2), 'the failed message is redelivered (commit attempted again)');
    t.equal(await real.get('d1', N + 1), undefined, 'not stored while failing');
    failing = false;
    t.ok(await poll(async () => (await real.get('d1', N + 1)) !== undefined), 'stored after the store recovers');
    t.equal((await real.list({ facilityId: 'F1', deviceId: 'd1', limit: 1000 })).length, N + 1, 'exactly once');
  });

  t.test('registry check: the external broker admits anyone, the consumer refuses what our broker would', async (t) => {
    const fleet = makeFleet(t);
    const { registry, readings } = fleet.stores;
    const mosquitto = await startMosquitto(fleet.dir);
    t.teardown(() => mosquitto.proc.kill('SIGKILL'));
    t.ok(mosquitto.up, 'mosquitto is up');
    // F1: d1 active, d2 suspended, d3 decommissioned; F2 suspended (its device e1 active).
    registry.updateDevice('d2', { status: 'suspended' });
    registry.updateDevice('d3', { status: 'decommissioned', reason: 'meter replaced' });
    registry.updateFacility('F2', { status: 'suspended' });

    const metrics = new PromRegistry();
    const pipeline = buildIngestPipeline({ store: readings, registry, logger: silentLogger, metrics, rateLimit: false });
    const consumer = buildConsumer({
      url: mosquitto.url,
      registry,
      pipeline,
      logger: silentLogger,
      metrics,
      connections: 2,
      clientIdPrefix: `reg-${process.pid}`,
      mqttOptions: { reconnectPeriod: 100 },
    });
    await consumer.start();
    t.teardown(async () => {
      await consumer.close();
      await pipeline.close();
    });

    // Anyone at Mosquitto, publishing as any device: no credentials are checked there.
    const anyone = mqtt.connect(mosquitto.url, { clientId: 'anyone', reconnectPeriod: 0 });
    t.teardown(() => anyone.end(true));
    await new Promise((r) => anyone.once('connect', r));
    const feedback: { topic: string; items: { seq: number | null; reason: string; detail: string }[] }[] = [];
    anyone.on('message', (tp, p) => feedback.push({ topic: tp, items: JSON.parse(p.toString()) }));
    await anyone.subscribeAsync('facilities/+/devices/+/feedback', { qos: 1 });

    const rows = (f: string, d: string, reason: string) => registry.listRejections(f, 1000).filter((r) => r.deviceId === d && r.reason === reason);
    const count = (f: string, d: string, reason: string) => rows(f, d, reason).reduce((n, r) => n + (r.count ?? 1), 0);
    const wait = (check: () => boolean | Promise<boolean>) => poll(check);

    await anyone.publishAsync(topic('F1', 'd2'), reading(1, 10), { qos: 1 });
    await anyone.publishAsync(topic('F1', 'ghost'), reading(1, 10), { qos: 1 });
    await anyone.publishAsync(topic('F2', 'd3'), reading(1, 10), { qos: 1 });
    await anyone.publishAsync(topic('F2', 'e1'), reading(1, 10), { qos: 1 });
    await anyone.publishAsync(topic('F1', 'd3'), reading(1, 10), { qos: 1 });
    await anyone.publishAsync(topic('F1', 'd1'), reading(1, 10), { qos: 1 });

    t.ok(await wait(() => count('F1', 'd2', 'device_not_active') === 1), 'suspended device: rejected as device_not_active in its facility\'s log');
    t.match(rows('F1', 'd2', 'device_not_active')[0], { detail: /suspended/, payload: /"seq":1/ }, 'with the reason and the payload');
    t.ok(await wait(() => count('F1', 'd3', 'device_not_active') === 1), 'decommissioned device: device_not_active');
    t.match(rows('F1', 'd3', 'device_not_active')[0], { detail: /decommissioned/ });
    t.ok(await wait(() => count('F1', 'ghost', 'unknown_device') === 1), 'unknown device: rejected as unknown_device');
    t.ok(await wait(() => count('F2', 'd3', 'invalid_topic') === 1), "a device publishing under another facility's topic: invalid_topic");
    t.ok(await wait(() => count('F2', 'e1', 'facility_not_active') === 1), 'device of a suspended facility: facility_not_active');
    t.ok(await wait(async () => (await readings.get('d1', 1)) !== undefined), 'an active device of an active facility is stored');
    for (const d of ['d2', 'ghost', 'd3', 'e1']) t.equal(await readings.get(d, 1), undefined, `${d}: nothing stored`);
    t.equal(await metric(metrics, 'mrv_readings_rejected_total', { reason: 'device_not_active' }), 2, 'counted in metrics by reason');
    t.equal(await metric(metrics, 'mrv_readings_rejected_total', { reason: 'unknown_device' }), 1);
    t.equal(await metric(metrics, 'mrv_readings_rejected_total', { reason: 'facility_not_active' }), 1);
    t.ok(
      await wait(() => feedback.some((f) => f.topic === 'facilities/F1/devices/d2/feedback' && f.items[0]?.reason === 'device_not_active')),
      "the refusal is published to the device's feedback topic",
    );
    t.notOk(
      feedback.some((f) => f.items.some((i) => i.detail.includes('F1')) && f.topic.startsWith('facilities/F2/')),
      "the feedback does not reveal the device's real facility",
    );

    // An unknown facility has no log: counted, not logged.
    await anyone.publishAsync(topic('NOPE', 'ghost2'), reading(1, 10), { qos: 1 });
    t.ok(await wait(async () => (await metric(metrics, 'mrv_readings_rejected_total', { reason: 'unknown_device' })) === 2), 'unknown facility: counted');
    const nope = () => (fleet.db.prepare("SELECT count(*) AS n FROM rejections WHERE facility_id = 'NOPE'").get() as { n: number }).n;
    t.equal(nope(), 0, 'and not logged (no row for a facility that does not exist)');

    // Suspension during the run takes effect (within the cache's TTL): publish until refused.
    let seq = 1;
    /** Publishes d1's next seq until one is `want`; each publish waits (bounded) until it was handled. */
    async function publishUntil(want: 'stored' | 'refused'): Promise<boolean> {
      for (let i = 0; i < 300; i++) {
        const s = ++seq;
        const refusedBefore = count('F1', 'd1', 'device_not_active');
        // Same register value each time: no plausibility limit can refuse it however close the ts.
        await anyone.publishAsync(topic('F1', 'd1'), reading(s, 10), { qos: 1 });
        let outcome: 'stored' | 'refused' | undefined;
        await poll(async () => {
          if ((await readings.get('d1', s)) !== undefined) outcome = 'stored';
          else if (count('F1', 'd1', 'device_not_active') > refusedBefore) outcome = 'refused';
          return outcome !== undefined;
        });
        if (outcome === want) return true;
      }
      return false;
    }
    registry.updateDevice('d1', { status: 'suspended' });
    t.ok(await publishUntil('refused'), 'a device suspended during the run is refused');
    t.equal(await readings.get('d1', seq), undefined, 'the refused reading is not stored');
    const before = count('F1', 'd1', 'device_not_active');
    await anyone.publishAsync(topic('F1', 'd1'), reading(++seq, 10), { qos: 1 });
    t.ok(await wait(() => count('F1', 'd1', 'device_not_active') === before + 1), 'and stays refused');
    t.equal(await readings.get('d1', seq), undefined, 'nothing stored after the suspension took effect');

    registry.updateDevice('d1', { status: 'active' });
    t.ok(await publishUntil('stored'), 'reactivated: stored again');
  });

  t.test('signed readings through the external broker: verified by the shared pipeline, refused bad_signature with feedback', async (t) => {
    const fleet = makeFleet(t);
    const key = generateDeviceKey();
    fleet.stores.registry.updateDevice('d1', { publicKey: key.publicKey });
    const mosquitto = await startMosquitto(fleet.dir, []);
    t.teardown(() => mosquitto.proc.kill('SIGKILL'));
    const metrics = new PromRegistry();
    const verifier = createVerifier({ workers: 1, inlineBelow: 1 });
    const pipeline = buildIngestPipeline({ store: fleet.stores.readings, registry: fleet.stores.registry, verifier, logger: silentLogger, metrics, rateLimit: false });
    const consumer = buildConsumer({ url: mosquitto.url, registry: fleet.stores.registry, pipeline, logger: silentLogger, metrics, connections: 1, clientIdPrefix: `test-sig-${process.pid}` });
    await consumer.start();
    t.teardown(async () => {
      await consumer.close();
      await pipeline.close();
      await verifier.close();
    });
    const device = mqtt.connect(mosquitto.url, { clientId: 'dev-sig-d1', reconnectPeriod: 0 });
    t.teardown(() => device.end(true));
    await new Promise((r) => device.once('connect', r));
    const feedback: { seq: number | null; reason: string }[][] = [];
    device.on('message', (tp, p) => {
      if (tp === 'facilities/F1/devices/d1/feedback') feedback.push(JSON.parse(p.toString()));
    });
    await device.subscribeAsync('facilities/F1/devices/d1/feedback', { qos: 1 });

    const ts = Date.now() - 60_000;
    const line = canonicalLine({ deviceId: 'd1', seq: 1, ts, metric: 'electricity_import', value: '1000', unit: 'kWh', reset: false, prev: '' });
    await device.publishAsync(topic('F1', 'd1'), `{"seq":1,"ts":${ts},"metric":"electricity_import","value":1000,"unit":"kWh","prev":"","sig":"${signLine(key.privateKey, line)}"}`, { qos: 1 });
    t.ok(await poll(async () => (await fleet.stores.readings.get('d1', 1)) !== undefined), 'the signed reading is stored');
    t.match(await fleet.stores.readings.get('d1', 1), { sig: /==$/, prev: '' }, 'with its signature');

    await device.publishAsync(topic('F1', 'd1'), reading(2, 1001), { qos: 1 });
    t.ok(await poll(() => feedback.length === 1), 'feedback published to the external broker');
    t.match(feedback[0], [{ seq: 2, reason: 'bad_signature' }]);
    t.equal(await fleet.stores.readings.get('d1', 2), undefined, 'the unsigned reading of a keyed device is not stored');
    t.equal(await metric(metrics, 'mrv_readings_rejected_total', { reason: 'bad_signature' }), 1, 'counted');
  });
}
