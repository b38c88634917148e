/**
 * Bench-only broker process for bench/ingest.ts (not product code).
 *   --mode ours  our ingest service (auth, validation, SQLite group commit, PUBACK after durable) on
 *                --data-dir; SIGUSR2 stalls every commit for --stall-ms (injected store stall).
 *   --mode raw   plain aedes 1.2, no auth, no storage.
 * Prints `{"event":"listening","mqttPort":N}` on stdout once ready; SIGTERM stops it.
 */
import net from 'node:net';
import { parseArgs } from 'node:util';
import { Aedes } from 'aedes';
import { startIngest } from '../broker/main.ts';
import { loadConfig } from '../domain/config.ts';
import { createLogger } from '../domain/logger.ts';
import type { ReadingStore } from '../store/types.ts';

const { values } = parseArgs({
  options: { mode: { type: 'string', default: 'ours' }, 'data-dir': { type: 'string' }, 'stall-ms': { type: 'string', default: '30000' } },
});

function announce(port: number): void {
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
  const wrapStore = (store: ReadingStore): ReadingStore =>
    Object.assign(Object.create(store) as ReadingStore, {
      commit: async (rs: Parameters<ReadingStore['commit']>[0]) => {
        if (gate) await gate;
        return store.commit(rs);
      },
    });
  const config = loadConfig({}, { dataDir: values['data-dir'], mqttPort: 0 });
  const service = await startIngest(config, {
    logger: createLogger('warn'),
    wrapStore,
    // One device per publisher sends thousands of messages a second: lift the per-device limit (the
    // token bucket still runs).
    pipeline: { rateLimit: { perSecond: 1e9, burst: 1e9 } },
  });
  announce(service.mqttPort!);
  process.on('SIGTERM', () => service.close().then(() => process.exit(0)));
}
