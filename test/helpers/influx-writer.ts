/**
 * A writer process for the several-writers test of the InfluxDB store (test/store/influx-writers.test.ts):
 * `node --import tsx test/helpers/influx-writer.ts INFLUX_URL DATABASE PG_URL ROLE SEED [plain]` opens
 * an InfluxDB reading store coordinated through PostgreSQL (`plain`: without the coordinator, the old
 * one-writer-per-device mode), prints `ready`, commits its role's batches of the shared workload
 * (test/helpers/pg-writer.ts) after a line on stdin, two commits in flight, and prints its outcomes as
 * one JSON line.
 */
import readline from 'node:readline';
import { openInfluxCoordinator } from '../../store/influx/coordinator.ts';
import { openInfluxStore } from '../../store/influx/store.ts';
import { silentLogger } from '../../domain/logger.ts';
import { batchesFor, DEFAULT_WORKLOAD, describe, type Outcome } from './pg-writer.ts';

async function main(): Promise<void> {
  const [url, database, pgUrl, role, seed, mode] = process.argv.slice(2);
  const coordinator = mode === 'plain' ? undefined : await openInfluxCoordinator(pgUrl);
  const store = openInfluxStore({ url, database, logger: silentLogger, limits: () => undefined, coordinator });
  const batches = batchesFor(role as 'a' | 'b', { ...DEFAULT_WORKLOAD, seed: Number(seed) });
  process.stdout.write('ready\n');
  const rl = readline.createInterface({ input: process.stdin });
  await new Promise<void>((resolve) => rl.once('line', () => resolve()));
  rl.close();
  const outcomes: Outcome[] = [];
  let next = 0;
  const worker = async () => {
    while (next < batches.length) {
      const batch = batches[next++];
      const out = await store.commit(batch);
      batch.forEach((r, i) => outcomes.push(describe(r, out[i])));
    }
  };
  await Promise.all([worker(), worker()]);
  await store.close();
  process.stdout.write(`${JSON.stringify(outcomes)}\n`);
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
