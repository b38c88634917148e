/**
 * `npm start` with MQTT_URL under rate-limit pressure (issue 11): the real entry point (main.ts as a
 * process) consuming from a real Mosquitto started here. One device floods far over the per-device
 * rate limit of our own broker while three others publish. Behind an external broker that limit must
 * be off (the composition decides it once, compose.ts `composeIngest`): a refusal there fails the
 * message, and the consumer drops its connection, which every device's messages share. So: every
 * reading of the other devices is stored, the flood too, no consumer connection is dropped or made
 * again, and no reading is refused as rate_limited.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import t from 'tap';
import { eventually } from '../helpers/eventually.ts';
import { jsonLogLines } from '../helpers/json-lines.ts';
import { MOSQUITTO, startMosquitto } from '../helpers/servers.ts';
import { ADMIN_KEY, tempDataDir } from './helpers.ts';
import { startMain, waitForBanner } from './process.ts';

const FACILITY = 'ext-f1';
const FLOODER = 'ext-flood';
const OTHERS = ['ext-d1', 'ext-d2', 'ext-d3'];
/** Readings per device of the others, one per message. */
const EACH = 60;
/** The flood: messages of 500 readings (the most a message may hold), 4,000 readings at once, twice the default burst of 2,000. */
const FLOOD_MESSAGES = 8;
const PER_MESSAGE = 500;
const T0 = Date.now() - 2 * 3_600_000;

function reading(seq: number) {
  // electricity_import is a register: the value never decreases.
  return { seq, ts: new Date(T0 + seq * 1000).toISOString(), metric: 'electricity_import', value: seq, unit: 'kWh' };
}

async function call(url: string, method: string, route: string, body?: unknown): Promise<any> {
  const res = await fetch(`${url}${route}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${route}: ${res.status} ${text.slice(0, 300)}`);
  return JSON.parse(text);
}

/** How many readings of the device the gateway lists (every page). */
async function stored(url: string, deviceId: string): Promise<number> {
  let n = 0;
  let cursor: string | undefined;
  do {
    const page = await call(url, 'GET', `/v1/facilities/${FACILITY}/readings?deviceId=${deviceId}&limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    n += page.items.length;
    cursor = page.next;
  } while (cursor);
  return n;
}

/** mrv_readings_stored_total from /metrics: one request per check (the API limits requests per key). */
async function storedTotal(url: string): Promise<number> {
  const res = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
  const text = await res.text();
  if (!res.ok) throw new Error(`GET /metrics: ${res.status} ${text.slice(0, 300)}`);
  const m = /^mrv_readings_stored_total (\d+)$/m.exec(text);
  return m ? Number(m[1]) : 0;
}

if (!MOSQUITTO) {
  if (process.env.CI) t.fail('mosquitto binary missing (CI requires it: apt-get install mosquitto)');
  else t.plan(0, 'mosquitto binary not found (/usr/sbin/mosquitto): install the Debian package mosquitto to run this test');
} else {
  t.test('npm start with MQTT_URL: a flooding device does not cost the others their connection', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mrv-mosquitto-'));
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
    // No cap on queued messages: Mosquitto itself must not drop any of the consumer's messages.
    const mosquitto = await startMosquitto(dir, ['max_queued_messages 0']);
    t.teardown(() => mosquitto.proc.kill('SIGKILL'));
    t.ok(mosquitto.up, 'mosquitto is up');

    const run = startMain(t, { DATA_DIR: tempDataDir(t), MQTT_URL: mosquitto.url, ADMIN_API_KEY: ADMIN_KEY, SIMULATED_DEVICES: '0', LOG_LEVEL: 'info' });
    const { httpUrl, banner } = await waitForBanner(run);
    t.match(banner, `MQTT           ${mosquitto.url}`, 'devices are sent to the external broker');

    await call(httpUrl, 'POST', '/v1/facilities', { id: FACILITY, name: 'External', owner: '0x' + '22'.repeat(20), baselineKgPerHour: '100' });
    for (const deviceId of [FLOODER, ...OTHERS]) await call(httpUrl, 'POST', `/v1/facilities/${FACILITY}/devices`, { deviceId });

    // Mosquitto admits anyone here; the consumer checks each message against the registry.
    const clients = await Promise.all(
      [FLOODER, ...OTHERS].map(async (deviceId) => {
        const client = await mqtt.connectAsync(mosquitto.url, { clientId: deviceId, reconnectPeriod: 0 });
        t.teardown(() => client.end(true));
        return client;
      }),
    );
    const [flooder, ...others] = clients;
    const topic = (deviceId: string) => `facilities/${FACILITY}/devices/${deviceId}/readings`;
    const flood = Array.from({ length: FLOOD_MESSAGES }, (_, m) =>
      flooder.publishAsync(topic(FLOODER), JSON.stringify(Array.from({ length: PER_MESSAGE }, (_, i) => reading(m * PER_MESSAGE + i + 1))), { qos: 1 }),
    );
    const steady = others.map(async (client, k) => {
      for (let seq = 1; seq <= EACH; seq++) await client.publishAsync(topic(OTHERS[k]), JSON.stringify(reading(seq)), { qos: 1 });
    });
    await Promise.all([...flood, ...steady]);
    t.pass('every publish was acknowledged by Mosquitto');

    const dropped = /readings not stored: dropping the connection/;
    await eventually(
      'every reading stored',
      async () => {
        // The old composition fails here at once: a refused flood message drops a consumer connection.
        if (dropped.test(run.out())) throw new Error(`a consumer connection was dropped:\n${run.out().split('\n').filter((l) => dropped.test(l)).slice(0, 3).join('\n')}`);
        return (await storedTotal(httpUrl)) >= OTHERS.length * EACH + FLOOD_MESSAGES * PER_MESSAGE;
      },
      { timeoutMs: 180_000, everyMs: 500 },
    );
    for (const d of OTHERS) t.equal(await stored(httpUrl, d), EACH, `${d}: all ${EACH} readings stored`);
    t.equal(await stored(httpUrl, FLOODER), FLOOD_MESSAGES * PER_MESSAGE, 'the flood stored too: no per-device limit behind an external broker');

    const records = jsonLogLines(run.out()).map((l) => JSON.parse(l) as { component?: string; msg?: string; level: number });
    t.equal(run.exit(), undefined, 'npm start still runs');
    t.same(records.filter((r) => dropped.test(r.msg ?? '')), [], 'no consumer connection was dropped');
    t.equal(records.filter((r) => r.component === 'consumer' && r.msg === 'consumer connected').length, 4, 'each of the 4 consumer connections connected once, never again');
    const rejections = await call(httpUrl, 'GET', `/v1/facilities/${FACILITY}/rejections?limit=1000`);
    t.same(rejections.items.filter((r: { reason: string }) => r.reason === 'rate_limited'), [], 'nothing refused as rate_limited');
  });
}
