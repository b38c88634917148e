/**
 * Ingest benchmark (not a test):
 * `tsx bench/ingest.ts [--publishers 3] [--duration-ms 6000] [--rounds 5] [--stall-ms 30000]`.
 * With the same publisher processes for every broker (mqtt.js 5, QoS 1, `window` messages in flight
 * each), `rounds` times in turn:
 *   1. our broker: auth + validation + SQLite group commit + PUBACK after durable (own process);
 *   2. raw aedes 1.2: no auth, no storage (own process);
 *   3. Mosquitto (Debian binary), raw QoS 1 (skipped with a note when absent);
 * then 4. our broker with every commit stalled for `stallMs`: peak RSS of the broker process while
 * QoS 1 publishers and a QoS 0 flooder keep sending (back-pressure must bound it).
 * Prints readings/s and p50/p99 publish-to-PUBACK latency (medians over the rounds), the ratio
 * ours / raw aedes (target >= 0.5: the median of each round's ratio, since this machine's speed
 * drifts by tens of percent within minutes; the range is printed too), and the RSS.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { openDatabase } from '../store/sqlite/db.ts';
import { MOSQUITTO, startMosquitto } from '../test/helpers/servers.ts';
import { openSqliteStores } from '../store/sqlite/stores.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');

export interface BenchIngestOptions {
  publishers?: number;
  /** Length of each side of each round. */
  durationMs?: number;
  window?: number;
  stallMs?: number;
  /** Rounds of (ours, raw aedes, mosquitto), interleaved; the figures are medians over them. */
  rounds?: number;
  /** Called with a line after each round. */
  progress?: (line: string) => void;
}

export interface Throughput {
  readingsPerSec: number;
  p50Ms: number | null;
  p99Ms: number | null;
}

export interface RoundResult {
  ours: Throughput;
  rawAedes: Throughput;
  mosquitto?: Throughput;
  ratio: number;
}

export interface BenchIngestResult {
  ours: Throughput;
  rawAedes: Throughput;
  mosquitto?: Throughput;
  /** Median over the rounds of ours / raw aedes measured back to back. */
  ratioOursToRawAedes: number;
  ratioRange: [number, number];
  rounds: RoundResult[];
  stall: { rssBeforeMb: number; rssPeakDuringStallMb: number; ackedDuringStall: number; stallMs: number };
}

function tsxNode(script: string, args: string[], stdio: 'pipe' | 'ignore' = 'pipe'): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', path.join(here, script), ...args], { cwd: root, stdio: ['ignore', stdio, 'inherit'] });
}

function firstJsonLine<T>(child: ChildProcess, pred: (v: Record<string, unknown>) => boolean): Promise<T> {
  const rl = readline.createInterface({ input: child.stdout! });
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`child exited (${code}) before reporting`)));
    rl.on('line', (line) => {
      try {
        const v = JSON.parse(line) as Record<string, unknown>;
        if (pred(v)) resolve(v as T);
      } catch {
        // not ours
      }
    });
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

interface PubReport {
  device: string;
  acked: number;
  elapsedMs: number;
  p50: number | null;
  p99: number | null;
  nextSeq: number;
}

async function runPublishers(url: string, devices: { id: string; password?: string; startSeq: number }[], durationMs: number, window: number, qos = 1): Promise<PubReport[]> {
  const children = devices.map((d) => {
    const args = ['--url', url, '--device', d.id, '--duration-ms', String(durationMs), '--window', String(window), '--qos', String(qos), '--start-seq', String(d.startSeq)];
    // One argument: a generated password may begin with '-', which parseArgs would take for an option.
    if (d.password) args.push(`--password=${d.password}`);
    return tsxNode('ingest-publisher.ts', args);
  });
  return Promise.all(children.map((c) => firstJsonLine<PubReport>(c, (v) => typeof v.acked === 'number')));
}

function summarise(reports: PubReport[]): Throughput {
  const readingsPerSec = reports.reduce((s, r) => s + r.acked / (r.elapsedMs / 1000), 0);
  const p99s = reports.map((r) => r.p99).filter((x): x is number => x !== null);
  const p50s = reports.map((r) => r.p50).filter((x): x is number => x !== null);
  return { readingsPerSec: Math.round(readingsPerSec), p50Ms: p50s.length ? Math.max(...p50s) : null, p99Ms: p99s.length ? Math.max(...p99s) : null };
}

export async function benchIngest(opts: BenchIngestOptions & { log?: (line: string) => void } = {}): Promise<BenchIngestResult> {
  const result = await runIngestBench({ progress: opts.log, ...opts });
  for (const line of formatIngest(result)) opts.log?.(line);
  return result;
}

async function runIngestBench(opts: BenchIngestOptions): Promise<BenchIngestResult> {
  const publishers = opts.publishers ?? 3;
  const durationMs = opts.durationMs ?? 6_000;
  const window = opts.window ?? 100;
  const stallMs = opts.stallMs ?? 30_000;
  const rounds = Math.max(1, opts.rounds ?? 5);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mrv-bench-ingest-'));
  const children: ChildProcess[] = [];
  try {
    // Fleet: one device per publisher, plus a flooder for the stall phase.
    const db = openDatabase(dir);
    const { registry } = openSqliteStores(db);
    registry.createFacility({ id: 'BENCH', name: 'bench', owner: '0x' + '22'.repeat(20), baselineKgPerHour: '3600', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162' });
    const devices = Array.from({ length: publishers + 1 }, (_, i) => {
      const id = `bench${i}`;
      return { id, password: registry.createDevice('BENCH', id, 'meter').password, startSeq: 1 };
    });
    db.close();
    const pubs = devices.slice(0, publishers);
    const flooder = devices[publishers];

    // The three brokers run side by side (idle when not measured); rounds alternate between them, so a
    // drift in the machine's speed during the run hits all three alike.
    const ours = tsxNode('ingest-broker.ts', ['--mode', 'ours', '--data-dir', dir, '--stall-ms', String(stallMs)]);
    children.push(ours);
    const oursPort = (await firstJsonLine<{ mqttPort: number }>(ours, (v) => v.event === 'listening')).mqttPort;
    const raw = tsxNode('ingest-broker.ts', ['--mode', 'raw']);
    children.push(raw);
    const rawPort = (await firstJsonLine<{ mqttPort: number }>(raw, (v) => v.event === 'listening')).mqttPort;
    let mosqUrl: string | undefined;
    if (MOSQUITTO) {
      const mosq = await startMosquitto(dir, ['max_inflight_messages 0', 'max_queued_messages 100000']);
      children.push(mosq.proc);
      mosqUrl = mosq.url;
    }
    const anonymous = pubs.map((d) => ({ id: d.id, startSeq: 1 }));

    const perRound: RoundResult[] = [];
    for (let r = 0; r < rounds; r++) {
      const oursReports = await runPublishers(`mqtt://127.0.0.1:${oursPort}`, pubs, durationMs, window);
      oursReports.forEach((rep, i) => (pubs[i].startSeq = rep.nextSeq));
      const o = summarise(oursReports);
      const w = summarise(await runPublishers(`mqtt://127.0.0.1:${rawPort}`, anonymous, durationMs, window));
      const m = mosqUrl ? summarise(await runPublishers(mosqUrl, anonymous, durationMs, window)) : undefined;
      perRound.push({ ours: o, rawAedes: w, mosquitto: m, ratio: round2(o.readingsPerSec / w.readingsPerSec) });
      opts.progress?.(`  round ${r + 1}/${rounds}: ours ${o.readingsPerSec.toLocaleString('en')}/s, raw aedes ${w.readingsPerSec.toLocaleString('en')}/s${m ? `, mosquitto ${m.readingsPerSec.toLocaleString('en')}/s` : ''}, ratio ${perRound.at(-1)!.ratio}`);
    }
    await stop(raw);

    // Stall (our broker): commits held for stallMs while QoS 1 publishers and a QoS 0 flooder keep sending.
    const rssBefore = rssMb(ours.pid!);
    ours.kill('SIGUSR2');
    let peak = rssBefore;
    const sampler = setInterval(() => (peak = Math.max(peak, rssMb(ours.pid!) || 0)), 200);
    // Publishers stop (and report) before the stall ends, so their PUBACK count is the stall's.
    const stallRun = Math.max(1000, stallMs - 6000);
    const [stallQos1] = await Promise.all([
      runPublishers(`mqtt://127.0.0.1:${oursPort}`, pubs, stallRun, window),
      runPublishers(`mqtt://127.0.0.1:${oursPort}`, [flooder], stallRun, 900, 0),
    ]);
    clearInterval(sampler);
    const ackedDuringStall = stallQos1.reduce((s, rep) => s + rep.acked, 0);
    await stop(ours);

    const mosqRounds = perRound.map((x) => x.mosquitto).filter((x): x is Throughput => x !== undefined);
    const ratios = perRound.map((x) => x.ratio);
    return {
      ours: medianThroughput(perRound.map((x) => x.ours)),
      rawAedes: medianThroughput(perRound.map((x) => x.rawAedes)),
      mosquitto: mosqRounds.length ? medianThroughput(mosqRounds) : undefined,
      ratioOursToRawAedes: median(ratios),
      ratioRange: [Math.min(...ratios), Math.max(...ratios)],
      rounds: perRound,
      stall: { rssBeforeMb: Math.round(rssBefore), rssPeakDuringStallMb: Math.round(peak), ackedDuringStall, stallMs },
    };
  } finally {
    for (const c of children) await stop(c);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Medians of each figure over the rounds. */
function medianThroughput(ts: Throughput[]): Throughput {
  const pick = (f: (t: Throughput) => number | null) => {
    const xs = ts.map(f).filter((x): x is number => x !== null);
    return xs.length ? median(xs) : null;
  };
  return { readingsPerSec: Math.round(median(ts.map((t) => t.readingsPerSec))), p50Ms: pick((t) => t.p50Ms), p99Ms: pick((t) => t.p99Ms) };
}

/** Human lines for a result (printed by `npm run bench` and when this file is run directly). */
export function formatIngest(r: BenchIngestResult): string[] {
  const fmt = (t?: Throughput) => (t ? `${t.readingsPerSec.toLocaleString('en')} readings/s (p50 ${t.p50Ms?.toFixed(1)} ms, p99 ${t.p99Ms?.toFixed(1)} ms)` : 'skipped (no mosquitto binary)');
  return [
    `ingest benchmark (QoS 1, one device per publisher process; medians of ${r.rounds.length} interleaved rounds)`,
    `  ours (auth+validation+SQLite group commit, PUBACK after durable): ${fmt(r.ours)}`,
    `  raw aedes (no auth, no storage):                                 ${fmt(r.rawAedes)}`,
    `  mosquitto (raw):                                                 ${fmt(r.mosquitto)}`,
    `  ratio ours / raw aedes: ${r.ratioOursToRawAedes} (median of the rounds' ratios; range ${r.ratioRange[0]}-${r.ratioRange[1]}; target >= 0.5)`,
    `  store stalled ${r.stall.stallMs / 1000} s: broker RSS ${r.stall.rssBeforeMb} MB before, peak ${r.stall.rssPeakDuringStallMb} MB during; ${r.stall.ackedDuringStall} PUBACKs during the stall`,
  ];
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const { values } = parseArgs({
    options: { publishers: { type: 'string' }, 'duration-ms': { type: 'string' }, window: { type: 'string' }, 'stall-ms': { type: 'string' }, rounds: { type: 'string' } },
  });
  const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  const r = await runIngestBench({
    publishers: num(values.publishers),
    durationMs: num(values['duration-ms']),
    window: num(values.window),
    stallMs: num(values['stall-ms']),
    rounds: num(values.rounds),
    progress: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write([...formatIngest(r), JSON.stringify(r)].join('\n') + '\n');
}
