/**
 * Bench-only publisher process for bench/ingest.ts: one mqtt.js 5 client (one device) publishing
 * ~100-byte readings with `--window` messages in flight for `--duration-ms`, then printing one JSON line
 * `{ acked, p50, p99, elapsedMs }` (publish-to-PUBACK latency in ms). With --qos 0 it floods with at
 * most --window writes outstanding.
 */
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    device: { type: 'string' },
    facility: { type: 'string', default: 'BENCH' },
    password: { type: 'string' },
    'duration-ms': { type: 'string', default: '10000' },
    window: { type: 'string', default: '100' },
    qos: { type: 'string', default: '1' },
    'start-seq': { type: 'string', default: '1' },
  },
});
const duration = Number(values['duration-ms']);
const windowSize = Number(values.window);
const qos = Number(values.qos) as 0 | 1;
const device = values.device!;
const topic = `facilities/${values.facility}/devices/${device}/readings`;

const client = mqtt.connect(values.url!, { clientId: device, username: device, password: values.password, reconnectPeriod: 0, protocolVersion: 4 });
await new Promise<void>((resolve, reject) => {
  client.once('connect', () => resolve());
  client.once('error', reject);
});

let seq = Number(values['start-seq']);
let acked = 0;
let inflight = 0;
const lat: number[] = [];
const ts0 = Date.now() - 3_600_000;
const t0 = performance.now();
const cpu0 = process.cpuUsage();
let stopping = false;

await new Promise<void>((resolve) => {
  const pump = () => {
    while (!stopping && inflight < windowSize) {
      const s = seq++;
      // 0.001 kWh per ms (3,600 kW): plausible under the default capacity, so every reading is stored.
      const payload = `{"seq":${s},"ts":${ts0 + s},"metric":"electricity_import","value":${1000 + s / 1000},"unit":"kWh"}`;
      const start = performance.now();
      inflight++;
      client.publish(topic, payload, { qos }, (err) => {
        inflight--;
        if (!err) {
          acked++;
          if (qos === 1) lat.push(performance.now() - start);
        }
        if (stopping) {
          if (inflight === 0) resolve();
        } else setImmediate(pump);
      });
    }
  };
  pump();
  setTimeout(() => {
    stopping = true;
    if (inflight === 0) resolve();
    // Messages stuck behind a stalled broker do not hold the report back.
    setTimeout(resolve, 2000).unref();
  }, duration);
});
const elapsedMs = performance.now() - t0;
lat.sort((a, b) => a - b);
const q = (p: number) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : null);
const cpu = process.cpuUsage(cpu0);
process.stdout.write(JSON.stringify({ device, acked, elapsedMs, p50: q(0.5), p99: q(0.99), nextSeq: seq, cpuMs: (cpu.user + cpu.system) / 1000 }) + '\n');
client.end(true);
process.exit(0);
