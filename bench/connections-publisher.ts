/**
 * Bench-only publisher process for bench/connections.ts (not product code): many mqtt.js 5 clients
 * (one device each, MQTT 3.1.1, keepalive 60 s), each socket bound to its own 127.x.y.z source address
 * (Linux routes all of 127/8 to lo), so that a broker sees one address per device as it would in the
 * field. Driven by lines on stdin:
 *   `connect`  connects every device of --devices (a JSON file `[{ id, password }]`), at most
 *              --concurrency CONNECTs outstanding; prints `{ event: 'connected', ok, refused, firstAt,
 *              lastAt, connackMs: number[] }` (epoch ms of the first CONNECT sent and the last CONNACK).
 *   `publish`  every device publishes one QoS 1 reading, device i of n at i/n of --spread-ms (plus
 *              --slot/--slots so that the processes interleave); prints `{ event: 'published', acked,
 *              failed, pubackMs: number[] }` (publish-to-PUBACK; a PUBACK missing 30 s after the spread
 *              counts as failed).
 * Prints `{"event":"ready"}` first; SIGTERM (or stdin closing) ends every client and exits.
 */
import fs from 'node:fs';
import net from 'node:net';
import readline from 'node:readline';
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    devices: { type: 'string' },
    facility: { type: 'string', default: 'BENCH' },
    /** Second octet of the source addresses: 127.<net>.y.z. */
    net: { type: 'string', default: '20' },
    concurrency: { type: 'string', default: '100' },
    'spread-ms': { type: 'string', default: '20000' },
    slot: { type: 'string', default: '0' },
    slots: { type: 'string', default: '1' },
  },
});
const port = Number(values.port);
const host = values.host!;
const devices = JSON.parse(fs.readFileSync(values.devices!, 'utf8')) as { id: string; password: string }[];
const concurrency = Math.max(1, Number(values.concurrency));
const spreadMs = Number(values['spread-ms']);
const slot = Number(values.slot);
const slots = Math.max(1, Number(values.slots));
const netOctet = Number(values.net);

/** Source address of device i: 127.<net>.<1 + i/250>.<1 + i%250> (no .0, no .255). */
const sourceOf = (i: number) => `127.${netOctet}.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`;

const clients: (mqtt.MqttClient | undefined)[] = new Array(devices.length);

function say(v: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(v) + '\n');
}

/** Connects device i; resolves with the CONNECT→CONNACK time, or null when refused or failed. */
function connectOne(i: number): Promise<number | null> {
  const d = devices[i];
  const localAddress = sourceOf(i);
  const t = performance.now();
  return new Promise((resolve) => {
    const client = new mqtt.MqttClient(() => net.createConnection({ port, host, localAddress, noDelay: true }), {
      clientId: d.id,
      username: d.id,
      password: d.password,
      keepalive: 60,
      reconnectPeriod: 0,
      protocolVersion: 4,
      clean: true,
      connectTimeout: 60_000,
    });
    let done = false;
    const finish = (ok: boolean) => {
      if (done) return;
      done = true;
      if (ok) clients[i] = client;
      else client.end(true);
      resolve(ok ? performance.now() - t : null);
    };
    client.once('connect', () => finish(true));
    client.once('error', () => finish(false));
    client.once('close', () => finish(false));
    client.once('end', () => finish(false));
  });
}

async function connectAll(): Promise<void> {
  const connackMs: number[] = [];
  let refused = 0;
  let next = 0;
  const firstAt = Date.now();
  const worker = async () => {
    while (next < devices.length) {
      const ms = await connectOne(next++);
      if (ms === null) refused++;
      else connackMs.push(ms);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, devices.length) }, worker));
  say({ event: 'connected', ok: connackMs.length, refused, firstAt, lastAt: Date.now(), connackMs });
}

async function publishAll(): Promise<void> {
  const pubackMs: number[] = [];
  let failed = 0;
  const ts = Date.now() - 3_600_000;
  const n = devices.length;
  let outstanding = 0;
  const all = Promise.all(
    devices.map(
      (d, i) =>
        new Promise<void>((resolve) => {
          const client = clients[i];
          if (!client) return resolve();
          outstanding++;
          setTimeout(() => {
            const payload = `{"seq":1,"ts":${ts},"metric":"electricity_import","value":1000,"unit":"kWh"}`;
            const t = performance.now();
            client.publish(`facilities/${values.facility}/devices/${d.id}/readings`, payload, { qos: 1 }, (err) => {
              outstanding--;
              if (err) failed++;
              else pubackMs.push(performance.now() - t);
              resolve();
            });
          }, Math.floor(((i * slots + slot) / (n * slots)) * spreadMs));
        }),
    ),
  );
  // A PUBACK that never comes (connection lost) is counted as failed after 30 s past the spread.
  const bound = new Promise<void>((resolve) => setTimeout(resolve, spreadMs + 30_000).unref());
  await Promise.race([all, bound]);
  failed += outstanding;
  say({ event: 'published', acked: pubackMs.length, failed, pubackMs });
}

function endAll(): never {
  for (const c of clients) c?.end(true);
  process.exit(0);
}
process.on('SIGTERM', endAll);

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (line === 'connect') void connectAll();
  else if (line === 'publish') void publishAll();
});
rl.on('close', endAll);
say({ event: 'ready', devices: devices.length });
