/**
 * Bench-only broker process for bench/ingest.ts (not product code).
 *   --mode ours  our ingest service (auth, validation, SQLite group commit, PUBACK after durable) on
 *                --data-dir; SIGUSR2 stalls every commit for --stall-ms (injected store stall).
 *   --mode raw   plain aedes 1.2, no auth, no storage.
 *   --mqtt-url URL (with --mode ours): no broker of ours; a consumer of that external broker's shared
 *                subscription (MQTT_URL) with client ids --client-id-N (MQTT_CLIENT_ID) feeds the same pipeline.
 *   --diagnostics  every 2 s on stderr: readings per batch, event-loop utilisation, CPU per reading.
 *   --ed25519 libsodium|node:crypto  the signature verifier's backend (default: libsodium if it loads).
 *   --verifier-workers N  its worker threads (default: cores - 1).
 *   --verifier-share  the event loop verifies a share of each batch too.
 * Prints `{"event":"listening","mqttPort":N}` on stdout once ready; SIGTERM stops it. Started with an
 * IPC channel, it answers the message 'cpu' with `{ event: 'cpu', cpu: process.cpuUsage() }`: the
 * whole process's CPU (main thread, the signature verifier's worker threads, libuv's pool), and
 * 'committed' with `{ event: 'committed', readings }`: readings stored by a finished commit so far
 * (bench/scale.ts counts durable readings behind an external broker with it).
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Aedes } from 'aedes';
import { composeIngest, composeStores, composition } from '../compose.ts';
import { loadConfig } from '../domain/config.ts';
import { loadEd25519, type Ed25519BackendName } from '../domain/ed25519.ts';
import { createLogger } from '../domain/logger.ts';
import type { Reading } from '../domain/reading.ts';
import type { ReadingStore } from '../store/types.ts';

const { values } = parseArgs({
  options: {
    mode: { type: 'string', default: 'ours' },
    'data-dir': { type: 'string' },
    'stall-ms': { type: 'string', default: '30000' },
    diagnostics: { type: 'boolean', default: false },
    'mqtt-url': { type: 'string' },
    'client-id': { type: 'string', default: 'mrv-bench' },
    ed25519: { type: 'string' },
    'verifier-workers': { type: 'string' },
    'verifier-share': { type: 'boolean' },
  },
});

/** Readings in commits that resolved (stored, duplicates and rejected alike). */
let committed = 0;
process.on('message', (m) => {
  if (m === 'cpu') process.send?.({ event: 'cpu', cpu: process.cpuUsage() });
  if (m === 'committed') process.send?.({ event: 'committed', readings: committed });
});

function announce(port: number | undefined): void {
  process.stdout.write(JSON.stringify({ event: 'listening', mqttPort: port, pid: process.pid }) + '\n');
}

if (values.mode === 'raw') {
  const aedes = new Aedes();
  await aedes.listen();
  const server = net.createServer({ noDelay: true }, (s) => aedes.handle(s));
  server.listen(0, '127.0.0.1', () => announce((server.address() as net.AddressInfo).port));
  process.on('SIGTERM', () => aedes.close(() => server.close(() => process.exit(0))));
} else {
  const stallMs = Number(values['stall-ms']);
  let gate: Promise<void> | undefined;
  process.on('SIGUSR2', () => {
    gate = new Promise((r) => setTimeout(() => ((gate = undefined), r()), stallMs));
  });
  const stats = { batches: 0, readings: 0 };
  /** Before a batch reaches the store: wait out a stall, count it. */
  const hold = async (rs: Reading[]) => {
    if (gate) await gate;
    stats.batches++;
    stats.readings += rs.length;
  };
  // The stall holds every batch before it reaches the store, whichever entry point the pipeline uses.
  const stalling = (store: ReadingStore): ReadingStore =>
    Object.assign(Object.create(store) as ReadingStore, {
      commit: async (rs: Reading[]) => {
        await hold(rs);
        const out = await store.commit(rs);
        committed += rs.length;
        return out;
      },
      stage: store.stage
        ? async (rs: Reading[]) => {
            await hold(rs);
            const staged = await store.stage!(rs);
            void staged.done.then(() => (committed += rs.length), () => {});
            return staged;
          }
        : undefined,
    });
  if (values.diagnostics) {
    // For tuning: every 2 s on stderr, batch size, event-loop utilisation and CPU per reading.
    let elu = performance.eventLoopUtilization();
    let cpu = process.cpuUsage();
    setInterval(() => {
      const e = performance.eventLoopUtilization(elu);
      const c = process.cpuUsage(cpu);
      elu = performance.eventLoopUtilization();
      cpu = process.cpuUsage();
      if (stats.batches) {
        process.stderr.write(
          `batches ${stats.batches}, ${(stats.readings / stats.batches).toFixed(0)} readings each; event loop busy ${(e.utilization * 100).toFixed(0)}%; CPU ${((c.user + c.system) / stats.readings).toFixed(1)} us/reading\n`,
        );
      }
      stats.batches = stats.readings = 0;
    }, 2000).unref();
  }
  const external = values['mqtt-url'] ? { mqttUrl: values['mqtt-url'], mqttClientId: values['client-id'] } : {};
  const config = loadConfig({}, { dataDir: values['data-dir'], mqttPort: 0, ...external });
  // broker/main.ts's pick, with the stalling store passed in place of the opened one.
  const c = composition(config, createLogger('warn'));
  const stores = await composeStores(c);
  const ingest = await composeIngest(c, { ...stores, readings: stalling(stores.readings) }, {
    // One device per publisher sends thousands of messages a second: lift the per-device limit (the
    // token bucket still runs).
    pipeline: { rateLimit: { perSecond: 1e9, burst: 1e9 } },
    verifier: {
      ...(values.ed25519 ? { backend: loadEd25519({ prefer: values.ed25519 as Ed25519BackendName }) } : {}),
      ...(values['verifier-workers'] !== undefined ? { workers: Number(values['verifier-workers']) } : {}),
      ...(values['verifier-share'] !== undefined ? { shareInline: values['verifier-share'] } : {}),
    },
  });
  announce(ingest.mqttPort);
  process.on('SIGTERM', () => c.parts.stop().then(() => process.exit(0)));
}
