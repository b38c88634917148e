/**
 * How much an Ed25519 verify costs here, inline and through the worker pool (broker/verify-pool.ts),
 * with each backend (domain/ed25519.ts: libsodium through sodium-native, node:crypto), side by side.
 * A measurement to read, not a test: `npx tsx bench/verify-signatures.ts [readings] [batch]`.
 * Prints wall µs per verify, process CPU µs per verify (all threads) and the main event loop's busy µs
 * per verify (event-loop utilisation: what ingest pays on its thread).
 */
import { performance } from 'node:perf_hooks';
import { createVerifier, verifyInline, type VerifyItem } from '../broker/verify-pool.ts';
import { loadEd25519 } from '../domain/ed25519.ts';
import { canonicalLine, generateDeviceKey, signLine } from '../domain/signature.ts';

const total = Number(process.argv[2] ?? 20_000);
const batch = Number(process.argv[3] ?? 500);
const devices = Array.from({ length: 100 }, () => generateDeviceKey());
const items: VerifyItem[] = [];
for (let i = 0; i < total; i++) {
  const d = devices[i % devices.length];
  const line = canonicalLine({ deviceId: `d${i % 100}`, seq: i, ts: 1_800_000_000_000 + i, metric: 'electricity_import', value: `${1000 + i}.5`, unit: 'kWh', reset: false, prev: 'ab'.repeat(32) });
  items.push({ key: d.publicKey, line, sig: signLine(d.privateKey, line) });
}

async function measure(name: string, run: (xs: VerifyItem[]) => Promise<boolean[]> | boolean[]): Promise<void> {
  await run(items.slice(0, 1000)); // warm up
  const cpu0 = process.cpuUsage();
  const elu0 = performance.eventLoopUtilization();
  const t0 = process.hrtime.bigint();
  let ok = 0;
  for (let i = 0; i < items.length; i += batch) for (const v of await run(items.slice(i, i + batch))) if (v) ok++;
  const wallUs = Number(process.hrtime.bigint() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const elu = performance.eventLoopUtilization(elu0);
  if (ok !== items.length) throw new Error(`${name}: ${items.length - ok} signatures failed`);
  console.log(`${name.padEnd(30)} wall ${(wallUs / items.length).toFixed(1)} µs/verify, CPU ${((cpu.user + cpu.system) / items.length).toFixed(1)} µs/verify, event loop busy ${((elu.active * 1000) / items.length).toFixed(1)} µs/verify (${total} readings, batches of ${batch})`);
}

for (const name of ['libsodium', 'node:crypto'] as const) {
  const backend = loadEd25519({ prefer: name });
  if (backend.name !== name) {
    console.log(`${name}: not available (${backend.fallbackReason})`);
    continue;
  }
  await measure(`${name} inline`, (xs) => verifyInline(xs, backend));
  for (const workers of [1, 2]) {
    const pool = createVerifier({ workers, inlineBelow: 16, backend });
    await measure(`${name} pool (${workers} worker${workers > 1 ? 's' : ''})`, (xs) => pool.verify(xs));
    await pool.close();
  }
}
