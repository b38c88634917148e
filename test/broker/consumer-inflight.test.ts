/**
 * The external-broker consumer keeps many messages in flight per connection and still acknowledges
 * only after the commit (issue 14). Real Mosquitto, the consumer's connections through a proxy that
 * reads every packet (test/helpers/mqtt-proxy.ts):
 * - with the store's commit stalled, far more messages than connections reach the pipeline while not
 *   one PUBACK is sent; released, they are committed in groups and every message is acknowledged, in
 *   the order each connection received it;
 * - with the store failing, none of the messages in flight is acknowledged; they are redelivered and
 *   stored exactly once when the store recovers;
 * - close() takes no new message and acknowledges those in flight once they are committed, before it
 *   disconnects; what it left is redelivered to the next consumer with the same id, stored once.
 */
import t from 'tap';
import mqtt from 'mqtt';
import { Registry as PromRegistry } from 'prom-client';
import { buildConsumer } from '../../broker/consumer.ts';
import { buildIngestPipeline } from '../../broker/pipeline.ts';
import { silentLogger } from '../../domain/logger.ts';
import type { Reading } from '../../domain/reading.ts';
import { makeFleet, reading, topic } from './helpers.ts';
import { poll } from '../helpers/eventually.ts';
import { startMosquitto } from '../helpers/servers.ts';
import { startMqttProxy } from '../helpers/mqtt-proxy.ts';
import { missing, requireBinary } from '../helpers/require.ts';

const DEVICES = ['d1', 'd2', 'd3'];
const CONNECTIONS = 2;

if (requireBinary(t, missing.mosquitto())) {
  t.test('many messages in flight per connection, none acknowledged before the commit', async (t) => {
    const fleet = makeFleet(t);
    // No in-flight cap at Mosquitto: the consumer's own window bounds what it takes.
    const mosquitto = await startMosquitto(fleet.dir, ['max_inflight_messages 0', 'max_queued_messages 0']);
    t.teardown(() => mosquitto.proc.kill('SIGKILL'));
    t.ok(mosquitto.up, 'mosquitto is up');
    const proxy = await startMqttProxy(mosquitto.port);
    t.teardown(() => proxy.close());

    const real = fleet.stores.readings;
    let release: () => void = () => {};
    let gate: Promise<void> | undefined = new Promise<void>((r) => (release = r));
    let failing = false;
    let failedCommits = 0;
    const batches: number[] = [];
    let submitted = 0;
    const store = Object.assign(Object.create(real) as typeof real, {
      stage: undefined, // driven through commit
      commit: async (rs: Reading[]) => {
        if (gate) await gate;
        if (failing) {
          failedCommits++;
          throw new Error('store down');
        }
        batches.push(rs.length);
        return real.commit(rs);
      },
    });
    const metrics = new PromRegistry();
    const pipeline = buildIngestPipeline({ store, registry: fleet.stores.registry, logger: silentLogger, metrics, rateLimit: false });
    const counted = Object.assign(Object.create(pipeline) as typeof pipeline, {
      submit: (...args: Parameters<typeof pipeline.submit>) => (submitted++, pipeline.submit(...args)),
    });
    const consumer = buildConsumer({
      url: proxy.url,
      registry: fleet.stores.registry,
      pipeline: counted,
      logger: silentLogger,
      metrics,
      connections: CONNECTIONS,
      clientIdPrefix: `inflight-${process.pid}`,
      mqttOptions: { reconnectPeriod: 100 },
    });
    await consumer.start();
    t.teardown(async () => {
      release();
      await consumer.close();
      await pipeline.close();
    });

    const device = mqtt.connect(mosquitto.url, { clientId: `dev-${process.pid}`, reconnectPeriod: 0 });
    t.teardown(() => device.end(true));
    await new Promise((r) => device.once('connect', r));

    const EACH = 100;
    const N = EACH * DEVICES.length;
    await Promise.all(
      DEVICES.flatMap((d) => Array.from({ length: EACH }, (_, i) => device.publishAsync(topic('F1', d), reading(i + 1, 1000 + i), { qos: 1 }))),
    );
    // Old behaviour: one message per connection in flight, so at most CONNECTIONS submits while stalled.
    const HELD = 10 * CONNECTIONS;
    t.ok(await poll(() => submitted >= HELD), `${HELD}+ messages handed to the pipeline while the commit is stalled (got ${submitted})`);
    t.equal(proxy.ackedTotal(), 0, 'and not one PUBACK sent before the commit');
    t.equal((await real.list({ facilityId: 'F1', limit: 1000 })).length, 0, 'nothing stored yet');

    const stalled = gate;
    gate = undefined;
    release();
    await stalled;
    t.ok(await poll(async () => (await real.list({ facilityId: 'F1', limit: 1000 })).length === N), `all ${N} readings stored`);
    t.ok(await poll(() => proxy.ackedTotal() === N), `every message acknowledged once stored (${proxy.ackedTotal()})`);
    t.ok(Math.max(...batches) >= HELD, `committed in groups (largest commit ${Math.max(...batches)} readings, ${batches.length} commits for ${N})`);
    const consumerConns = proxy.connections.filter((c) => c.clientId.startsWith(`inflight-${process.pid}`));
    t.equal(consumerConns.length, CONNECTIONS, 'the consumer connections went through the proxy');
    for (const c of consumerConns) {
      t.same(c.acked, c.delivered.map((d) => d.messageId), `${c.clientId}: PUBACKs in the order the PUBLISHes arrived`);
    }

    // Store failing with many messages in flight: none acknowledged, redelivered, stored exactly once.
    const ackedBefore = proxy.ackedTotal();
    failing = true;
    gate = new Promise<void>((r) => (release = r));
    const more = DEVICES.flatMap((d) => Array.from({ length: 20 }, (_, i) => ({ d, seq: EACH + i + 1 })));
    await Promise.all(more.map(({ d, seq }) => device.publishAsync(topic('F1', d), reading(seq, 1000 + seq), { qos: 1 })));
    t.ok(await poll(() => submitted >= N + HELD), 'several of the new messages in flight at once');
    const failing0 = gate;
    gate = undefined;
    release();
    await failing0;
    t.ok(await poll(() => failedCommits >= 2), 'the failed messages come back (commit attempted again after the reconnect)');
    t.equal(proxy.ackedTotal(), ackedBefore, 'no PUBACK while the store fails');
    failing = false;
    t.ok(await poll(async () => (await real.list({ facilityId: 'F1', limit: 1000 })).length === N + more.length), 'stored after the store recovers');
    for (const d of DEVICES) t.equal((await real.list({ facilityId: 'F1', deviceId: d, limit: 1000 })).length, EACH + 20, `${d}: exactly once`);
    const redelivered = proxy.connections.reduce((n, c) => n + c.delivered.filter((x) => x.dup).length, 0);
    t.ok(redelivered > 0, `the broker redelivered the unacknowledged messages (${redelivered} with DUP)`);
    t.same(fleet.stores.registry.listRejections('F1'), [], 'no reading rejected on the way');
  });

  t.test('close() acknowledges the messages in flight once committed, then disconnects', async (t) => {
    const fleet = makeFleet(t);
    const mosquitto = await startMosquitto(fleet.dir, ['max_inflight_messages 0', 'max_queued_messages 0']);
    t.teardown(() => mosquitto.proc.kill('SIGKILL'));
    const proxy = await startMqttProxy(mosquitto.port);
    t.teardown(() => proxy.close());
    const real = fleet.stores.readings;
    let release: () => void = () => {};
    let gate: Promise<void> | undefined = new Promise<void>((r) => (release = r));
    const store = Object.assign(Object.create(real) as typeof real, {
      stage: undefined,
      commit: async (rs: Reading[]) => {
        if (gate) await gate;
        return real.commit(rs);
      },
    });
    const metrics = new PromRegistry();
    const pipeline = buildIngestPipeline({ store, registry: fleet.stores.registry, logger: silentLogger, metrics, rateLimit: false });
    t.teardown(() => pipeline.close());
    let submitted = 0;
    const counted = Object.assign(Object.create(pipeline) as typeof pipeline, {
      submit: (...args: Parameters<typeof pipeline.submit>) => (submitted++, pipeline.submit(...args)),
    });
    const prefix = `drain-${process.pid}`;
    const opts = { url: proxy.url, registry: fleet.stores.registry, logger: silentLogger, metrics, connections: CONNECTIONS, clientIdPrefix: prefix, mqttOptions: { reconnectPeriod: 100 } };
    const consumer = buildConsumer({ ...opts, pipeline: counted });
    await consumer.start();
    const device = mqtt.connect(mosquitto.url, { clientId: `dev-drain-${process.pid}`, reconnectPeriod: 0 });
    t.teardown(() => device.end(true));
    await new Promise((r) => device.once('connect', r));
    const M = 60;
    await Promise.all(Array.from({ length: M }, (_, i) => device.publishAsync(topic('F1', 'd1'), reading(i + 1, 1000 + i), { qos: 1 })));
    t.ok(await poll(() => submitted >= 10 * CONNECTIONS), `messages in flight behind the stalled commit (${submitted})`);

    const closed = consumer.close();
    const inFlight = submitted;
    // More messages reach the closing consumer: left unacknowledged for the next session.
    const LATE = 20;
    await Promise.all(Array.from({ length: LATE }, (_, i) => device.publishAsync(topic('F1', 'd1'), reading(M + i + 1, 1000 + M + i), { qos: 1 })));
    const delivered = () => proxy.connections.reduce((n, c) => n + c.delivered.length, 0);
    t.ok(await poll(() => delivered() >= M + LATE), 'the late messages were delivered to the closing consumer');
    gate = undefined;
    release();
    await closed;
    t.equal(proxy.ackedTotal(), inFlight, `every message in flight at close() acknowledged before the disconnect (${inFlight})`);
    t.equal(submitted, inFlight, 'no message taken after close()');

    // What close() did not take is the next session's: stored once, nothing lost.
    const next = buildConsumer({ ...opts, pipeline });
    await next.start();
    t.teardown(() => next.close());
    t.ok(await poll(async () => (await real.list({ facilityId: 'F1', deviceId: 'd1', limit: 1000 })).length === M + LATE), `all ${M + LATE} stored after a consumer with the same id resumed`);
    t.same(fleet.stores.registry.listRejections('F1'), [], 'none refused');
  });
}
