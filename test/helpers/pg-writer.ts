/**
 * A concurrent-writers workload for the PostgreSQL reading store, shared by the in-process test (two
 * stores on two pools) and the two-process test (this file run as a child: `node --import tsx
 * test/helpers/pg-writer.ts URL ROLE SEED`, which commits its role's batches after a line on stdin
 * and prints its outcomes as one JSON line).
 *
 * Every device gets seqs 1..N in two versions, one per writer ('a' and 'b'): the same content for
 * most seqs, a different ts and value (still consistent with either version of every neighbour) for
 * every seq divisible by CONFLICT_EVERY. Metrics alternate along seq (two registers), so neighbours of
 * the same metric are two seqs apart. Each writer gets every reading of every device, shuffled (its
 * own seed), in batches that mix devices in different orders, so both write the same devices at once
 * and each seq reaches both: exactly one must store it, the other gets a duplicate or a conflict.
 */
import { pathToFileURL } from 'node:url';
import readline from 'node:readline';
import type { Reading } from '../../domain/reading.ts';
import { rng } from './rng.ts';
import type { CommitOutcome, ReadingStore } from '../../store/types.ts';

export const T0 = Date.UTC(2026, 0, 1);
export const CONFLICT_EVERY = 7;

export interface WorkloadOptions {
  devices: number;
  seqs: number;
  batch: number;
  seed: number;
}

export const DEFAULT_WORKLOAD: WorkloadOptions = { devices: 6, seqs: 120, batch: 25, seed: 1 };

/** The reading `role` sends for (device, seq). */
export function version(role: 'a' | 'b', device: number, seq: number): Reading {
  const conflict = role === 'b' && seq % CONFLICT_EVERY === 0;
  const gas = seq % 2 === 1;
  const ts = T0 + seq * 1000 + (conflict ? 1 : 0);
  return {
    facilityId: `fac-${device % 2}`,
    deviceId: `dev-${device}`,
    seq,
    ts,
    metric: gas ? 'natural_gas' : 'electricity_import',
    value: String(10 * seq + (conflict ? 1 : 0)) + (seq % 3 === 0 ? '.25' : ''),
    unit: gas ? 'm3' : 'kWh',
    reset: false,
    receivedAt: ts + (role === 'a' ? 50 : 60),
  };
}

/** The batches of one writer: every (device, seq) once, in a shuffled order. */
export function batchesFor(role: 'a' | 'b', opts: WorkloadOptions = DEFAULT_WORKLOAD): Reading[][] {
  const all: Reading[] = [];
  for (let d = 0; d < opts.devices; d++) for (let s = 1; s <= opts.seqs; s++) all.push(version(role, d, s));
  const rand = rng(opts.seed * 2 + (role === 'a' ? 0 : 1));
  // Mostly ascending per device with local disorder (what redelivery and several workers produce),
  // plus some readings sent far later (offline buffers).
  const keyed = all.map((r) => ({ r, k: r.seq + rand() * 12 + (rand() < 0.05 ? opts.seqs : 0) }));
  keyed.sort((x, y) => x.k - y.k);
  const out: Reading[][] = [];
  for (let i = 0; i < keyed.length; i += opts.batch) out.push(keyed.slice(i, i + opts.batch).map((x) => x.r));
  return out;
}

export type Outcome = { deviceId: string; seq: number; status: string };

export function describe(r: Reading, o: CommitOutcome): Outcome {
  return { deviceId: r.deviceId, seq: r.seq, status: o.status === 'rejected' ? `rejected:${o.reason}` : o.status };
}

/**
 * A writer child's part once its store is open: prints `ready`, commits `role`'s batches of the
 * workload with `seed` after a line on stdin, two batches in flight at a time (as a pipelining ingest
 * would), closes the store and prints its outcomes as one JSON line.
 */
export async function runWriter(store: Pick<ReadingStore, 'commit' | 'close'>, role: string, seed: string): Promise<void> {
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

/** Runs a writer child's main: a failure is printed to stderr and exits 1. */
export function runChild(main: () => Promise<void>): void {
  main().catch((err) => {
    process.stderr.write(`${(err as Error).stack ?? err}\n`);
    process.exit(1);
  });
}

async function main(): Promise<void> {
  const [url, role, seed] = process.argv.slice(2);
  const { openPostgresReadingStore } = await import('../../store/postgres/readings.ts');
  await runWriter(await openPostgresReadingStore(url, { limits: () => undefined }), role, seed);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) runChild(main);
