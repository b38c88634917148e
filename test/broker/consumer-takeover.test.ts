/**
 * SIGKILL of a consumer mid-burst (issue 14): two consumer processes (`tsx broker/main.ts` with
 * MQTT_URL, the same SQLite DATA_DIR, MQTT_CLIENT_ID a and b) share the subscription at a real
 * Mosquitto. Devices publish a burst at QoS 1; Mosquitto acknowledges every message. Consumer a talks
 * through a proxy that, midway, stops passing its bytes to Mosquitto: from then on a commits readings
 * whose PUBACKs Mosquitto never gets. a is then SIGKILLed with many messages in flight; a replacement
 * started with a's MQTT_CLIENT_ID resumes a's sessions, gets the unacknowledged messages again (DUP) and
 * afterwards every reading Mosquitto acknowledged is stored exactly once, none refused.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import t from 'tap';
import { makeFleet, reading, topic, type T } from './helpers.ts';
import { poll } from '../helpers/eventually.ts';
import { startMosquitto } from '../helpers/servers.ts';
import { startMqttProxy } from '../helpers/mqtt-proxy.ts';
import { missing, requireBinary } from '../helpers/require.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const DEVICES: [string, string][] = [['F1', 'd1'], ['F1', 'd2'], ['F1', 'd3'], ['F2', 'e1']];
const EACH = 1500;
const N = EACH * DEVICES.length;

/** A consumer process; resolves once it is subscribed (its 'listening' line). */
async function startConsumer(t: T, dataDir: string, url: string, clientId: string): Promise<ChildProcess> {
  // One process (node with the tsx loader), so SIGKILL hits the consumer itself, not a tsx wrapper.
  const child = spawn(process.execPath, ['--import', 'tsx', 'broker/main.ts'], {
    cwd: root,
    env: { ...process.env, DATA_DIR: dataDir, MQTT_URL: url, MQTT_CLIENT_ID: clientId, INFLUX_URL: '', READINGS_STORE: '', DATABASE_URL: '', LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const lines = readline.createInterface({ input: child.stdout! });
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`consumer ${clientId} exited early (${code})`)));
    lines.on('line', (line) => {
      try {
        if ((JSON.parse(line) as { event?: string }).event === 'listening') resolve();
      } catch {
        // other output
      }
    });
  });
  return child;
}

if (requireBinary(t, missing.mosquitto())) {
  t.test('a consumer SIGKILLed mid-burst: its replacement takes over, every acknowledged reading stored exactly once', async (t) => {
    const fleet = makeFleet(t);
    const mosquitto = await startMosquitto(fleet.dir, ['max_inflight_messages 0', 'max_queued_messages 0']);
    t.teardown(() => mosquitto.proc.kill('SIGKILL'));
    t.ok(mosquitto.up, 'mosquitto is up');
    const proxy = await startMqttProxy(mosquitto.port);
    t.teardown(() => proxy.close());
    const idA = `take-a-${process.pid}`;
    const idB = `take-b-${process.pid}`;

    const a = await startConsumer(t, fleet.dir, proxy.url, idA);
    await startConsumer(t, fleet.dir, mosquitto.url, idB);
    const stored = () => (fleet.db.prepare('SELECT count(*) AS n FROM readings').get() as { n: number }).n;

    const device = mqtt.connect(mosquitto.url, { clientId: `dev-${process.pid}`, reconnectPeriod: 0 });
    t.teardown(() => device.end(true));
    await new Promise((r) => device.once('connect', r));
    // Every PUBACK from Mosquitto: these readings are acknowledged to the device.
    const published = Promise.all(
      DEVICES.flatMap(([f, d]) => Array.from({ length: EACH }, (_, i) => device.publishAsync(topic(f, d), reading(i + 1, 1000 + i), { qos: 1 }))),
    );

    t.ok(await poll(() => stored() >= N / 10), 'the burst is being stored');
    proxy.holdUpstream = true;
    const ackedAtHold = proxy.ackedTotal();
    // a keeps committing and acknowledging; Mosquitto hears none of it.
    t.ok(await poll(() => proxy.ackedTotal() >= ackedAtHold + 100), `consumer a committed messages Mosquitto has no PUBACK for (${proxy.ackedTotal() - ackedAtHold})`);
    const exited = new Promise((r) => a.once('exit', r));
    a.kill('SIGKILL');
    await exited;
    const heldAcks = proxy.ackedTotal() - ackedAtHold;
    proxy.holdUpstream = false;
    await published;
    t.pass(`Mosquitto acknowledged all ${N} readings to the device`);

    const deliveredBefore = proxy.connections.length;
    await startConsumer(t, fleet.dir, proxy.url, idA);
    t.ok(await poll(() => stored() === N, { timeoutMs: 120_000 }), `all ${N} acknowledged readings stored after the takeover (${stored()})`);
    for (const [, d] of DEVICES) {
      const row = fleet.db.prepare('SELECT count(*) AS n, count(DISTINCT seq) AS s, min(seq) AS lo, max(seq) AS hi FROM readings WHERE device_id = ?').get(d);
      t.same(row, { n: EACH, s: EACH, lo: 1, hi: EACH }, `${d}: seqs 1..${EACH}, each once`);
    }
    const replacement = proxy.connections.slice(deliveredBefore).filter((c) => c.clientId.startsWith(idA));
    t.ok(replacement.length > 0, "the replacement resumed a's sessions (same client ids)");
    const dups = replacement.reduce((n, c) => n + c.delivered.filter((x) => x.dup).length, 0);
    t.ok(dups >= heldAcks, `Mosquitto redelivered a's unacknowledged messages to it (${dups} with DUP, ${heldAcks} of them already stored)`);
    const rejected = fleet.db.prepare('SELECT count(*) AS n FROM rejections').get() as { n: number };
    t.equal(rejected.n, 0, 'no reading refused (a redelivered one is a duplicate, acknowledged and stored once)');
  });
}
