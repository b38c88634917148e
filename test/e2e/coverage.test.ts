/**
 * Issue 10 item 3 end to end over real sockets: a facility's grid meter and CO2 meter (CEMS) publish
 * over MQTT; a regulator suspends the CO2 meter over HTTP; the grid meter goes on. The CEMS' measured
 * emissions stay counted, and no window after the suspension mints (it used to settle complete on the
 * grid meter alone and mint the whole baseline). Every settlement verifies and matches the
 * independent recomputation (checkFacility).
 */
import t from 'tap';
import mqtt, { type MqttClient } from 'mqtt';
import { windowOf } from '../../domain/window.ts';
import { ADMIN_KEY, WINDOW_SECONDS, api, checkFacility, sleep, start, tempDataDir, waitSettledThrough } from './helpers.ts';

const W = WINDOW_SECONDS * 1000;
const OWNER = '0x3333333333333333333333333333333333333333';

async function send(url: string, method: 'POST' | 'PATCH', route: string, body: unknown): Promise<any> {
  const res = await fetch(`${url}${route}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${route}: ${res.status} ${text.slice(0, 300)}`);
  return JSON.parse(text);
}

/** A device publishing one reading every `everyMs` until stopped; each publish waits for its PUBACK. */
function publisher(client: MqttClient, facilityId: string, deviceId: string, everyMs: number, reading: (seq: number) => { metric: string; value: string; unit: string }) {
  let seq = 0;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      seq++;
      const r = reading(seq);
      const payload = `{"seq":${seq},"ts":${Date.now()},"metric":"${r.metric}","value":${r.value},"unit":"${r.unit}"}`;
      await client.publishAsync(`facilities/${facilityId}/devices/${deviceId}/readings`, payload, { qos: 1 });
      await sleep(everyMs);
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return seq;
    },
  };
}

t.test('suspending the CO2 meter over HTTP earns no credits (issue 10 item 3)', async (t) => {
  const dataDir = tempDataDir(t);
  const stack = await start(t, dataDir);
  // Baseline 36,000 kg/h = 20 kg a 2 s window; the CEMS measures 10 kg every 0.25 s (80 kg a window).
  await send(stack.httpUrl, 'POST', '/v1/facilities', { id: 'E2EC', name: 'cement', owner: OWNER, baselineKgPerHour: '36000' });
  const grid = await send(stack.httpUrl, 'POST', '/v1/facilities/E2EC/devices', { deviceId: 'e2ec-grid', kind: 'grid' });
  const cems = await send(stack.httpUrl, 'POST', '/v1/facilities/E2EC/devices', { deviceId: 'e2ec-cems', kind: 'cems' });
  const connect = async (c: { username: string; password: string }) => {
    const client = await mqtt.connectAsync(stack.mqttUrl, { username: c.username, password: c.password, clientId: c.username, reconnectPeriod: 0 });
    t.teardown(() => client.endAsync(true));
    return client;
  };
  const gridClient = await connect(grid);
  const cemsClient = await connect(cems);
  const gridPub = publisher(gridClient, 'E2EC', 'e2ec-grid', 250, () => ({ metric: 'electricity_import', value: '1000', unit: 'kWh' }));
  const cemsPub = publisher(cemsClient, 'E2EC', 'e2ec-cems', 250, () => ({ metric: 'co2_direct', value: '10', unit: 'kg' }));
  await sleep(4 * W);
  const cemsReadings = await cemsPub.stop();
  // The regulator suspends the CO2 meter; the grid meter keeps reporting a flat register for 4 windows.
  const suspendedAt = Date.now();
  const patched = await send(stack.httpUrl, 'PATCH', '/v1/devices/e2ec-cems', { status: 'suspended' });
  t.equal(patched.status, 'suspended');
  await sleep(4 * W);
  await gridPub.stop();
  const lastTs = Date.now();
  t.ok(cemsReadings > 4, `the CEMS published ${cemsReadings} readings before its suspension`);

  await waitSettledThrough(stack, ['E2EC'], lastTs);
  const { items } = await api<{ items: { windowStart: string; netGrams: string; mintedGrams: string; complete: boolean }[] }>(stack, '/v1/settlements?facilityId=E2EC&limit=1000');
  const after = items.filter((s) => Date.parse(s.windowStart) >= windowOf(suspendedAt, W).end);
  t.ok(after.length >= 2, `windows after the suspension were settled (${after.length})`);
  // The suspended CEMS is silent: those windows are incomplete and capped at 0 (before: complete, +20,000 g each).
  t.same(after.filter((s) => s.complete || BigInt(s.netGrams) > 0n), [], 'no window after the suspension is complete or mints');
  t.ok(items.some((s) => BigInt(s.netGrams) < 0n), "the CEMS' emissions were counted (some window burned)");
  t.equal(items.reduce((a, s) => a + BigInt(s.mintedGrams), 0n), 0n, 'nothing was ever minted');
  const balance = await api<{ mintedGrams: string }>(stack, '/v1/facilities/E2EC/balance');
  t.equal(balance.mintedGrams, '0');
  await checkFacility(t, stack, 'E2EC');
});
