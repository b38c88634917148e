/**
 * Bench-only publisher process for bench/ingest.ts: one mqtt.js 5 client (one device) publishing
 * ~100-byte readings with `--window` messages in flight for `--duration-ms`, then printing one JSON line
 * `{ acked, p50, p99, elapsedMs }` (publish-to-PUBACK latency in ms). With --qos 0 it floods with at
 * most --window writes outstanding.
 * --key SEED (64 hex): every reading is signed (SPEC "Device signatures": canonical line with `prev`,
 * the hash chain continuing from --prev) and ~300 bytes. The first --presign readings are signed before
 * the clock starts: a meter signs on its own hardware, so signing must not take CPU from the broker
 * under test on this machine; readings past them are signed inline and counted (`signedInline`).
 * --go: once connected (and pre-signed), print `{"event":"ready"}` and start only when a line arrives
 * on stdin, so that every publisher of a run starts together and start-up stays out of the figures.
 */
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import { canonicalLine, lineHash, privateKeyObject, signLine } from '../domain/signature.ts';

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
    key: { type: 'string' },
    prev: { type: 'string', default: '' },
    presign: { type: 'string', default: '0' },
    go: { type: 'boolean', default: false },
  },
});
const duration = Number(values['duration-ms']);
const windowSize = Number(values.window);
const qos = Number(values.qos) as 0 | 1;
const device = values.device!;
const topic = `facilities/${values.facility}/devices/${device}/readings`;

const ts0 = Date.now() - 3_600_000;
const key = values.key ? privateKeyObject(values.key) : undefined;
/** Hash of the last canonical line made (the next reading's prev). */
let chainPrev = values.prev!;
let signedInline = 0;

/** The payload of reading `s`; signed readings must be made in seq order (the hash chain). */
function payloadOf(s: number): { text: string; hash?: string } {
  // 0.001 kWh per ms (3,600 kW): plausible under the default capacity, so every reading is stored.
  const value = `${1000 + s / 1000}`;
  const ts = ts0 + s;
  if (!key) return { text: `{"seq":${s},"ts":${ts},"metric":"electricity_import","value":${value},"unit":"kWh"}` };
  const line = canonicalLine({ deviceId: device, seq: s, ts, metric: 'electricity_import', value, unit: 'kWh', reset: false, prev: chainPrev });
  const text = `{"seq":${s},"ts":${ts},"metric":"electricity_import","value":${value},"unit":"kWh","prev":"${chainPrev}","sig":"${signLine(key, line)}"}`;
  chainPrev = lineHash(line);
  return { text, hash: chainPrev };
}

const startSeq = Number(values['start-seq']);
const presigned: { text: string; hash?: string }[] = [];
if (key) for (let i = 0; i < Number(values.presign); i++) presigned.push(payloadOf(startSeq + i));
/** Hash of the canonical line of the last reading sent (what the next run continues the chain from). */
let lastHash = values.prev!;

const client = mqtt.connect(values.url!, { clientId: device, username: device, password: values.password, reconnectPeriod: 0, protocolVersion: 4 });
await new Promise<void>((resolve, reject) => {
  client.once('connect', () => resolve());
  client.once('error', reject);
});

if (values.go) {
  process.stdout.write(JSON.stringify({ event: 'ready', device, presigned: presigned.length }) + '\n');
  await new Promise((resolve) => process.stdin.once('data', resolve));
}

let seq = startSeq;
let acked = 0;
let inflight = 0;
const lat: number[] = [];
const t0 = performance.now();
const cpu0 = process.cpuUsage();
let stopping = false;

await new Promise<void>((resolve) => {
  const pump = () => {
    while (!stopping && inflight < windowSize) {
      const s = seq++;
      let p = presigned[s - startSeq];
      if (p === undefined) {
        p = payloadOf(s);
        if (key) signedInline++;
      }
      const payload = p.text;
      if (p.hash !== undefined) lastHash = p.hash;
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
process.stdout.write(JSON.stringify({ device, acked, elapsedMs, p50: q(0.5), p99: q(0.99), nextSeq: seq, lastHash, signedInline, cpuMs: (cpu.user + cpu.system) / 1000 }) + '\n');
client.end(true);
process.exit(0);
