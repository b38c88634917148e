/**
 * `npm run bench`: every benchmark in one run on this machine, each printing its figures next to a
 * baseline measured in the same run, and the ratio. `npm run bench -- gas http` runs a subset.
 * Figures are appended as JSON lines to bench/out/results.jsonl (gitignored) for docs/BENCHMARKS.md.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const BENCHES: Record<string, { file: string; fn: string; what: string }> = {
  gas: { file: './gas.ts', fn: 'benchGas', what: 'batch settlement gas per facility vs naive ERC-20 mint' },
  'gas-1155': { file: './gas-1155.ts', fn: 'benchGas1155', what: 'CreditLedger (ERC-1155 batches): settlement gas vs naive ERC-20 mint, retirement vs ERC-1155 burn' },
  settle: { file: './settle.ts', fn: 'benchSettle', what: 'settle 1,000 facilities vs one tx per facility; records in PostgreSQL vs SQLite (when installed)' },
  ingest: { file: './ingest.ts', fn: 'benchIngest', what: 'QoS 1 ingest vs raw aedes vs mosquitto; signed vs unsigned ingest' },
  scale: { file: './scale.ts', fn: 'benchScale', what: 'durable ingest: Mosquitto + 2 consumer processes vs our single broker; 1 -> 2 consumers, 1 -> 2 of our brokers on one store' },
  connections: { file: './connections.ts', fn: 'benchConnections', what: '10,000 authenticated device connections on one broker process vs raw aedes: RSS per connection, connect rate, PUBACK p99' },
  http: { file: './http.ts', fn: 'benchHttp', what: 'gateway req/s vs bare fastify' },
  audit: { file: './audit.ts', fn: 'benchAudit', what: 'offline audit of a 1,000-signed-reading bundle vs recomputing the settlement from the store' },
  store: { file: './store-commit.ts', fn: 'benchStore', what: 'SQLite group commit vs plain inserts; PostgreSQL store vs SQLite store' },
};

const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const names = wanted.length ? wanted : Object.keys(BENCHES);
const unknown = names.filter((n) => !BENCHES[n]);
if (unknown.length) {
  process.stderr.write(`unknown benchmark(s): ${unknown.join(', ')}; choose from ${Object.keys(BENCHES).join(', ')}\n`);
  process.exit(2);
}

const outDir = path.join(import.meta.dirname, 'out');
fs.mkdirSync(outDir, { recursive: true });
const machine = `${os.cpus().length} cores ${os.cpus()[0]?.model ?? ''}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}`;
process.stdout.write(`benchmarks on ${machine}, ${new Date().toISOString()}\n`);

let failed = 0;
for (const name of names) {
  const b = BENCHES[name];
  process.stdout.write(`\n=== ${name}: ${b.what}\n`);
  try {
    const mod = await import(b.file);
    const result = await mod[b.fn]({ log: (line: string) => process.stdout.write(`${line}\n`) });
    fs.appendFileSync(path.join(outDir, 'results.jsonl'), `${JSON.stringify({ name, at: new Date().toISOString(), machine, result }, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
  } catch (err) {
    failed++;
    process.stdout.write(`${name} failed: ${(err as Error).stack ?? err}\n`);
  }
}
process.exit(failed ? 1 : 0);
