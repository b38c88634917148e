/**
 * A writer process for the several-writers test of the InfluxDB store (test/store/influx-writers.test.ts):
 * `node --import tsx test/helpers/influx-writer.ts INFLUX_URL DATABASE PG_URL ROLE SEED [plain]` opens
 * an InfluxDB reading store coordinated through PostgreSQL (`plain`: without the coordinator, the old
 * one-writer-per-device mode), prints `ready`, commits its role's batches of the shared workload
 * (test/helpers/pg-writer.ts) after a line on stdin, two commits in flight, and prints its outcomes as
 * one JSON line.
 */
import { openInfluxCoordinator } from '../../store/influx/coordinator.ts';
import { openInfluxStore } from '../../store/influx/store.ts';
import { silentLogger } from '../../domain/logger.ts';
import { runChild, runWriter } from './pg-writer.ts';

async function main(): Promise<void> {
  const [url, database, pgUrl, role, seed, mode] = process.argv.slice(2);
  const coordinator = mode === 'plain' ? undefined : await openInfluxCoordinator(pgUrl);
  await runWriter(openInfluxStore({ url, database, logger: silentLogger, limits: () => undefined, coordinator }), role, seed);
}

runChild(main);
