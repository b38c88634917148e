/**
 * Audit of a settlement of 1,000 signed readings (issue 13 "Performance"): the offline audit an
 * auditor runs on the settlement's bundle (audit/audit.ts: schema check of the JSON, every signature,
 * every hash chain, the factor set's hash, net and evidence root recomputed) next to the platform
 * recomputing the same settlement from its store (oracle/inputs.ts recordedWindowInputs + evaluate, the
 * path of `/v1/settlements/{id}/verify`), and to that verify call itself (recompute + the chain's
 * record), in alternating rounds.
 *
 * Setup, all real: a SQLite store (store/sqlite), `devices` meters registered with Ed25519 keys, each
 * sending a hash-chained signed reading before the window, readings/devices signed readings in the
 * window and one after it; the oracle (oracle/oracle.ts) settles windows 0 and 1 on the CreditLedger
 * (in-process Hardhat); the bundle of window 1 is built from the store and the settlement record as
 * the bundle route does (audit/bundle.ts createBundle, the chain context of each device read from the
 * store).
 * Prints the wall time of each (median of the rounds, and the first, cold, audit), the ratio
 * audit / recompute, the bundle's size and the signatures checked.
 * Run: `npx tsx bench/audit.ts [--readings 1000] [--devices 4] [--rounds 7]` or `npm run bench -- audit`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { auditOffline } from '../audit/audit.ts';
import { chainContext, createBundle, parseBundle, type BundleDeviceKey } from '../audit/bundle.ts';
import { Ledger, startHardhatChain } from '../contracts/client/index.ts';
import { silentLogger } from '../domain/logger.ts';
import type { Reading } from '../domain/reading.ts';
import { canonicalLine, generateDeviceKey, lineHash, signLine } from '../domain/signature.ts';
import { evaluate, recordedWindowInputs } from '../oracle/inputs.ts';
import { bundleSettlement } from '../oracle/audit.ts';
import { buildOracle } from '../oracle/oracle.ts';
import { openDatabase } from '../store/sqlite/db.ts';
import { openSqliteStores } from '../store/sqlite/stores.ts';
import type { ReadingStore, Settlement } from '../store/types.ts';

const W = 3_600_000;
const T0 = Date.UTC(2026, 0, 1);
const GRACE = 300_000;
const FACILITY = 'AUDITBENCH';

export interface BenchAuditOptions {
  /** Signed readings the settlement counts (spread over the devices). */
  readings?: number;
  devices?: number;
  rounds?: number;
  log?: (line: string) => void;
}

export interface BenchAuditResult {
  readings: number;
  devices: number;
  rounds: number;
  bundleBytes: number;
  /** Signatures the audit checked (the counted readings and their chain context). */
  signaturesChecked: number;
  /** Building the bundle from the store and the record (what the bundle route does), median ms. */
  bundleBuildMs: number;
  /** The offline audit: parse + schema check, then auditOffline; median ms. */
  auditMs: number;
  auditParseMs: number;
  /** The first audit in this process (cold: JIT, key objects). */
  auditFirstMs: number;
  /** Recompute from the store: recordedWindowInputs + evaluate; median ms. */
  recomputeMs: number;
  /** The oracle's verify (recompute + the chain's settlement), median ms. */
  verifyMs: number;
  /** auditMs / recomputeMs. */
  ratioAuditToRecompute: number;
  ratioAuditToVerify: number;
}

/** A device's readings signed in seq order, each over the previous one's canonical line (hash chain). */
function signChain(seed: string, rs: Reading[]): Reading[] {
  let prev = '';
  return rs.map((r) => {
    const line = canonicalLine({ deviceId: r.deviceId, seq: r.seq, ts: r.ts, metric: r.metric, value: r.value, unit: r.unit, reset: r.reset, prev });
    const out: Reading = { ...r, sig: signLine(seed, line), prev };
    prev = lineHash(line);
    return out;
  });
}

/**
 * The audit bundle of a recorded settlement, from the store: its recorded inputs, the devices' keys
 * (set at registration here), each signed device's chain context (the stored reading just below each
 * counted one by seq that the settlement did not count; seqs are contiguous in this bench, so that is
 * seq - 1).
 */
async function bundleOf(readings: ReadingStore, s: Settlement, keys: Record<string, BundleDeviceKey[]>) {
  const input = await recordedWindowInputs(readings, s);
  const context: Record<string, Reading[]> = {};
  for (const d of input.devices) context[d.deviceId] = await chainContext(d.readings, (seq) => readings.get(d.deviceId, seq - 1));
  return createBundle({
    input,
    keys,
    context,
    settlement: bundleSettlement(s),
    methodologyVersion: s.inputs.methodologyVersion,
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

const r1 = (x: number) => Math.round(x * 10) / 10;

export async function benchAudit(opts: BenchAuditOptions = {}): Promise<BenchAuditResult> {
  const log = opts.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const total = opts.readings ?? 1000;
  const nDevices = Math.max(1, Math.min(opts.devices ?? 4, total));
  const rounds = Math.max(1, opts.rounds ?? 7);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-audit-'));
  const chain = await startHardhatChain();
  const db = openDatabase(dir);
  try {
    const ledger = await Ledger.deploy(chain.signers[0], { windowSeconds: W / 1000 });
    const stores = openSqliteStores(db, { clock: () => T0 });
    stores.registry.createFacility({ id: FACILITY, name: 'audit bench', owner: '0x' + '33'.repeat(20), baselineKgPerHour: '3600', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162', createdAt: T0 });
    const keys: Record<string, BundleDeviceKey[]> = {};
    const all: Reading[] = [];
    for (let d = 0; d < nDevices; d++) {
      const deviceId = `m${d}`;
      const key = generateDeviceKey();
      const { device } = stores.registry.createDevice(FACILITY, deviceId, 'meter', { publicKey: key.publicKey });
      keys[deviceId] = [{ publicKey: key.publicKey, setAt: device.createdAt }];
      // This device's share of the window's readings, evenly spread; one before (window 0), one after.
      const n = Math.floor(total / nDevices) + (d < total % nDevices ? 1 : 0);
      const rs: Reading[] = [];
      const at = (seq: number, ts: number): Reading => ({ facilityId: FACILITY, deviceId, seq, ts, metric: 'electricity_import', value: String(1000 + seq * 0.25), unit: 'kWh', reset: false, receivedAt: ts });
      rs.push(at(1, T0 + W / 2));
      for (let i = 0; i < n; i++) rs.push(at(2 + i, T0 + W + Math.floor(((i + 0.5) * W) / n)));
      rs.push(at(n + 2, T0 + 2 * W + W / 2));
      all.push(...signChain(key.privateKey, rs));
    }
    all.sort((a, b) => a.ts - b.ts);
    for (let i = 0; i < all.length; i += 500) await stores.readings.commit(all.slice(i, i + 500));

    const oracle = buildOracle({ db, readings: stores.readings, registry: stores.registry, ledger, logger: silentLogger, windowMs: W, graceMs: GRACE, lease: false });
    const closeOf = (k: number) => T0 + (k + 1) * W + GRACE;
    await oracle.runOnce(closeOf(0));
    await oracle.runOnce(closeOf(1));
    const s = oracle.listSettlements({ facilityId: FACILITY }).find((x) => x.windowStart === T0 + W);
    if (!s) throw new Error('window 1 was not settled');
    const counted = s.inputs.devices.reduce((n, d) => n + d.consumedCount, 0);
    if (counted !== total) throw new Error(`the settlement counted ${counted} readings, expected ${total}`);

    const buildMs: number[] = [];
    const auditMs: number[] = [];
    const parseMs: number[] = [];
    const recomputeMs: number[] = [];
    const verifyMs: number[] = [];
    let text = '';
    let signatures = 0;
    for (let r = 0; r < rounds; r++) {
      let t = performance.now();
      text = JSON.stringify(await bundleOf(stores.readings, s, keys));
      buildMs.push(performance.now() - t);

      // The auditor: the bundle's text in, a report out.
      t = performance.now();
      const bundle = parseBundle(text);
      const parsed = performance.now();
      const report = auditOffline(bundle);
      auditMs.push(performance.now() - t);
      parseMs.push(parsed - t);
      if (report.findings.length > 0 || report.recomputed?.evidenceRoot.toLowerCase() !== s.evidenceRoot.toLowerCase()) {
        throw new Error(`the audit of an untouched bundle found ${JSON.stringify(report.findings.slice(0, 3))}`);
      }
      signatures = bundle.devices.reduce((n, d) => n + d.readings.length + d.context.length, 0);

      // The platform: recompute from the store.
      t = performance.now();
      const { evidence } = evaluate(await recordedWindowInputs(stores.readings, s));
      recomputeMs.push(performance.now() - t);
      if (evidence.root.toLowerCase() !== s.evidenceRoot.toLowerCase()) throw new Error('the recomputation does not match the record');

      t = performance.now();
      const v = await oracle.verify(s.id);
      verifyMs.push(performance.now() - t);
      if (!v.match) throw new Error(`verify does not match: ${JSON.stringify(v)}`);
    }
    await oracle.close();

    const result: BenchAuditResult = {
      readings: total,
      devices: nDevices,
      rounds,
      bundleBytes: Buffer.byteLength(text),
      signaturesChecked: signatures,
      bundleBuildMs: r1(median(buildMs)),
      auditMs: r1(median(auditMs)),
      auditParseMs: r1(median(parseMs)),
      auditFirstMs: r1(auditMs[0]),
      recomputeMs: r1(median(recomputeMs)),
      verifyMs: r1(median(verifyMs)),
      ratioAuditToRecompute: Math.round((median(auditMs) / median(recomputeMs)) * 100) / 100,
      ratioAuditToVerify: Math.round((median(auditMs) / median(verifyMs)) * 100) / 100,
    };
    log(`audit of one settlement of ${total} signed readings (${nDevices} devices, SQLite store, settled on CreditLedger/Hardhat); medians of ${rounds} alternating rounds`);
    log(`  bundle: ${(result.bundleBytes / 1024).toFixed(0)} KiB, ${signatures} signatures (counted readings + chain context); built from the store in ${result.bundleBuildMs} ms`);
    log(`  offline audit (npm run audit's work without the chain): ${result.auditMs} ms (parse + schema ${result.auditParseMs} ms); first run in this process ${result.auditFirstMs} ms`);
    log(`  recompute from the store (recordedWindowInputs + evaluate): ${result.recomputeMs} ms`);
    log(`  oracle verify (recompute + the chain's record):            ${result.verifyMs} ms`);
    log(`  ratio audit / recompute: ${result.ratioAuditToRecompute}x; audit / verify: ${result.ratioAuditToVerify}x`);
    return result;
  } finally {
    db.close();
    await chain.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({ options: { readings: { type: 'string' }, devices: { type: 'string' }, rounds: { type: 'string' } } });
  const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  const r = await benchAudit({ readings: num(values.readings), devices: num(values.devices), rounds: num(values.rounds) });
  process.stdout.write(`${JSON.stringify(r)}\n`);
}
