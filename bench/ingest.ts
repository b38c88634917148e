/**
 * Ingest benchmark (not a test):
 * `tsx bench/ingest.ts [--publishers 3] [--duration-ms 6000] [--rounds 5] [--stall-ms 30000] [--unsigned-only]
 *  [--ed25519 libsodium|node:crypto] [--verifier-workers N] [--verifier-share]` (the last three: our
 *  broker's signature verifier, default libsodium when it loads, cores - 1 threads, no share inline).
 * With the same publisher processes for every broker (mqtt.js 5, QoS 1, `window` messages in flight
 * each, one reading per message), `rounds` times in turn:
 *   1. our broker: auth + validation + SQLite group commit + PUBACK after durable (own process),
 *      devices without keys (unsigned readings);
 *   2. the same broker process, devices registered with Ed25519 keys: every reading signed (canonical
 *      line with the hash chain's prev), verified at ingest by the composition's worker-thread
 *      verifier (broker/verify-pool.ts, cores - 1 threads); the readings are pre-signed by each
 *      publisher before the clock starts (a meter signs on its own hardware);
 *   3. raw aedes 1.2: no auth, no storage (own process);
 *   4. Mosquitto (Debian binary), raw QoS 1 (skipped with a note when absent);
 * then 5. our broker with every commit stalled for `stallMs`: peak RSS of the broker process while
 * QoS 1 publishers and a QoS 0 flooder keep sending (back-pressure must bound it).
 * Every publisher of a run connects (and pre-signs) first and all start together.
 * Prints readings/s and p50/p99 publish-to-PUBACK latency (medians over the rounds), the ratios
 * ours / raw aedes (target >= 0.5) and signed / unsigned (target >= 0.25), each the median of the
 * rounds' ratios (this machine's speed drifts by tens of percent within minutes; the range is printed
 * too), the broker process's CPU per reading (process.cpuUsage, all its threads, during the run
 * divided by the readings acknowledged), and the RSS.
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
import { generateDeviceKey } from '../domain/signature.ts';

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
  /** Measure signed ingest too (default true). */
  signed?: boolean;
  /** Our broker's Ed25519 backend (default: libsodium when it loads). */
  ed25519?: 'libsodium' | 'node:crypto';
  /** Our broker's verifier threads (default: cores - 1). */
  verifierWorkers?: number;
  /** Our broker's event loop verifies a share of each batch too. */
  verifierShare?: boolean;
  /** Called with a line after each round. */
  progress?: (line: string) => void;
}

export interface Throughput {
  readingsPerSec: number;
  p50Ms: number | null;
  p99Ms: number | null;
  /** CPU of the broker process (all threads) during the run, per reading acknowledged; absent for mosquitto. */
  cpuUsPerReading?: number;
}

export interface RoundResult {
  ours: Throughput;
  /** Our broker, every reading signed and verified. */
  signed?: Throughput;
  rawAedes: Throughput;
  mosquitto?: Throughput;
  ratio: number;
  /** signed / ours (unsigned). */
  signedRatio?: number;
}

export interface BenchIngestResult {
  ours: Throughput;
  signed?: Throughput;
  rawAedes: Throughput;
  mosquitto?: Throughput;
  /** Median over the rounds of ours / raw aedes measured back to back. */
  ratioOursToRawAedes: number;
  ratioRange: [number, number];
  /** Median over the rounds of signed / unsigned, both through our broker, back to back. */
  ratioSignedToUnsigned?: number;
  signedRatioRange?: [number, number];
  /** Signed readings the publishers had to sign during a run (pre-signed ran out); 0 expected. */
  signedInline?: number;
  /** Signature verifier worker threads in our broker (its default: cores - 1, at least 1). */
  verifierWorkers?: number;
  /** The Ed25519 backend asked of our broker ('default': libsodium when it loads). */
  ed25519?: string;
  rounds: RoundResult[];
  stall: { rssBeforeMb: number; rssPeakDuringStallMb: number; ackedDuringStall: number; stallMs: number };
}

export function tsxNode(script: string, args: string[], opts: { stdin?: boolean; ipc?: boolean } = {}): ChildProcess {
  const stdio: ('ignore' | 'pipe' | 'inherit' | 'ipc')[] = [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'inherit'];
  if (opts.ipc) stdio.push('ipc');
  return spawn(process.execPath, ['--import', 'tsx', path.join(here, script), ...args], { cwd: root, stdio });
}

/** The JSON lines a child prints on stdout, taken one at a time by predicate (each line once). */
export function jsonLines(child: ChildProcess): { next<T>(pred: (v: Record<string, unknown>) => boolean): Promise<T> } {
  const seen: Record<string, unknown>[] = [];
  const waiters: { pred: (v: Record<string, unknown>) => boolean; resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void }[] = [];
  let ended = false;
  const rl = readline.createInterface({ input: child.stdout! });
  rl.on('line', (line) => {
    let v: Record<string, unknown>;
    try {
      v = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return; // not ours
    }
    const i = waiters.findIndex((w) => w.pred(v));
    if (i >= 0) waiters.splice(i, 1)[0].resolve(v);
    else seen.push(v);
  });
  rl.on('close', () => {
    ended = true;
    for (const w of waiters.splice(0)) w.reject(new Error(`child exited (${child.exitCode ?? child.signalCode}) before reporting`));
  });
  return {
    next<T>(pred: (v: Record<string, unknown>) => boolean): Promise<T> {
      const i = seen.findIndex(pred);
      if (i >= 0) return Promise.resolve(seen.splice(i, 1)[0] as T);
      if (ended) return Promise.reject(new Error(`child exited (${child.exitCode ?? child.signalCode}) before reporting`));
      return new Promise<T>((resolve, reject) => waiters.push({ pred, resolve: resolve as (v: Record<string, unknown>) => void, reject }));
    },
  };
}

/** The broker process's CPU so far (µs, user + system, all threads), asked over its IPC channel. */
export function cpuOf(broker: ChildProcess): Promise<number> {
  return new Promise((resolve) => {
    const on = (m: unknown) => {
      const v = m as { event?: string; cpu?: { user: number; system: number } };
      if (v?.event !== 'cpu' || !v.cpu) return;
      broker.off('message', on);
      resolve(v.cpu.user + v.cpu.system);
    };
    broker.on('message', on);
    broker.send('cpu');
  });
}

export function firstJsonLine<T>(child: ChildProcess, pred: (v: Record<string, unknown>) => boolean): Promise<T> {
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

export async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

export function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

export interface PubReport {
  device: string;
  acked: number;
  elapsedMs: number;
  p50: number | null;
  p99: number | null;
  nextSeq: number;
  /** Hash of the last canonical line sent (signed devices): the next run's prev. */
  lastHash: string;
  signedInline: number;
}

export interface PubDevice {
  id: string;
  password?: string;
  startSeq: number;
  /** Ed25519 seed (64 hex): sign every reading. */
  key?: string;
  /** The hash chain's prev for the first reading. */
  prev?: string;
  /** Readings to sign before the clock starts. */
  presign?: number;
}

export interface PubRun {
  reports: PubReport[];
  /** The broker's CPU (µs, all threads) from the start signal to the last report; when a broker process was given. */
  cpuUs?: number;
}

/**
 * One run: a publisher process per device; all connect (and pre-sign) first, then start together; the
 * broker's CPU is sampled around the run when its process is given; `beforeStart` runs between.
 */
export async function runPublishers(url: string, devices: PubDevice[], durationMs: number, window: number, qos = 1, broker?: ChildProcess, beforeStart?: () => Promise<void>): Promise<PubRun> {
  const children = devices.map((d) => {
    const args = ['--url', url, '--device', d.id, '--duration-ms', String(durationMs), '--window', String(window), '--qos', String(qos), '--start-seq', String(d.startSeq), '--go'];
    // One argument: a generated password may begin with '-', which parseArgs would take for an option.
    if (d.password) args.push(`--password=${d.password}`);
    if (d.key) args.push('--key', d.key, `--prev=${d.prev ?? ''}`, '--presign', String(d.presign ?? 0));
    return tsxNode('ingest-publisher.ts', args, { stdin: true });
  });
  const lines = children.map(jsonLines);
  await Promise.all(lines.map((l) => l.next((v) => v.event === 'ready')));
  await beforeStart?.();
  const cpu0 = broker ? await cpuOf(broker) : 0;
  for (const c of children) c.stdin!.end('go\n');
  const reports = await Promise.all(lines.map((l) => l.next<PubReport>((v) => typeof v.acked === 'number')));
  return broker ? { reports, cpuUs: (await cpuOf(broker)) - cpu0 } : { reports };
}

export function summarise(run: PubRun): Throughput {
  const { reports } = run;
  const readingsPerSec = reports.reduce((s, r) => s + r.acked / (r.elapsedMs / 1000), 0);
  const p99s = reports.map((r) => r.p99).filter((x): x is number => x !== null);
  const p50s = reports.map((r) => r.p50).filter((x): x is number => x !== null);
  const acked = reports.reduce((s, r) => s + r.acked, 0);
  const out: Throughput = { readingsPerSec: Math.round(readingsPerSec), p50Ms: p50s.length ? Math.max(...p50s) : null, p99Ms: p99s.length ? Math.max(...p99s) : null };
  if (run.cpuUs !== undefined && acked > 0) out.cpuUsPerReading = Math.round((run.cpuUs / acked) * 10) / 10;
  return out;
}

/** The fastest publisher's readings/s in a run. */
function fastestPublisher(run: PubRun): number {
  return Math.max(0, ...run.reports.map((r) => r.acked / (r.elapsedMs / 1000)));
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
  const withSigned = opts.signed ?? true;
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
    // Signed fleet: one device per publisher, registered with its Ed25519 public key.
    const signedPubs: PubDevice[] = withSigned
      ? Array.from({ length: publishers }, (_, i) => {
          const id = `sbench${i}`;
          const key = generateDeviceKey();
          return { id, password: registry.createDevice('BENCH', id, 'meter', { publicKey: key.publicKey }).password, startSeq: 1, key: key.privateKey, prev: '' };
        })
      : [];
    db.close();
    const pubs: PubDevice[] = devices.slice(0, publishers);
    const flooder = devices[publishers];

    // The three brokers run side by side (idle when not measured); rounds alternate between them, so a
    // drift in the machine's speed during the run hits all three alike.
    const verifierArgs = [...(opts.ed25519 ? ['--ed25519', opts.ed25519] : []), ...(opts.verifierWorkers !== undefined ? ['--verifier-workers', String(opts.verifierWorkers)] : []), ...(opts.verifierShare ? ['--verifier-share'] : [])];
    const ours = tsxNode('ingest-broker.ts', ['--mode', 'ours', '--data-dir', dir, '--stall-ms', String(stallMs), ...verifierArgs], { ipc: true });
    children.push(ours);
    const oursPort = (await firstJsonLine<{ mqttPort: number }>(ours, (v) => v.event === 'listening')).mqttPort;
    const raw = tsxNode('ingest-broker.ts', ['--mode', 'raw'], { ipc: true });
    children.push(raw);
    const rawPort = (await firstJsonLine<{ mqttPort: number }>(raw, (v) => v.event === 'listening')).mqttPort;
    let mosqUrl: string | undefined;
    if (MOSQUITTO) {
      const mosq = await startMosquitto(dir, ['max_inflight_messages 0', 'max_queued_messages 100000']);
      children.push(mosq.proc);
      mosqUrl = mosq.url;
    }
    const anonymous = pubs.map((d) => ({ id: d.id, startSeq: 1 }));

    const oursUrl = `mqtt://127.0.0.1:${oursPort}`;

    const perRound: RoundResult[] = [];
    let signedInline = 0;
    let fastestSigned = 0;
    for (let r = 0; r < rounds; r++) {
      const oursRun = await runPublishers(oursUrl, pubs, durationMs, window, 1, ours);
      oursRun.reports.forEach((rep, i) => (pubs[i].startSeq = rep.nextSeq));
      const o = summarise(oursRun);
      let s: Throughput | undefined;
      if (withSigned) {
        // Pre-sign what the fastest publisher could send: signed ingest is not faster than unsigned
        // (measured just before), nor much faster than the fastest signed run so far.
        let expected = fastestPublisher(oursRun);
        if (fastestSigned > 0) expected = Math.min(expected, 1.5 * fastestSigned);
        const presign = Math.ceil((expected * durationMs) / 1000) + 2 * window;
        const signedRun = await runPublishers(oursUrl, signedPubs.map((d) => ({ ...d, presign })), durationMs, window, 1, ours);
        signedRun.reports.forEach((rep, i) => {
          signedPubs[i].startSeq = rep.nextSeq;
          signedPubs[i].prev = rep.lastHash;
          signedInline += rep.signedInline;
        });
        fastestSigned = Math.max(fastestSigned, fastestPublisher(signedRun));
        s = summarise(signedRun);
      }
      const w = summarise(await runPublishers(`mqtt://127.0.0.1:${rawPort}`, anonymous, durationMs, window, 1, raw));
      const m = mosqUrl ? summarise(await runPublishers(mosqUrl, anonymous, durationMs, window)) : undefined;
      const row: RoundResult = { ours: o, rawAedes: w, mosquitto: m, ratio: round2(o.readingsPerSec / w.readingsPerSec) };
      if (s) {
        row.signed = s;
        row.signedRatio = round2(s.readingsPerSec / o.readingsPerSec);
      }
      perRound.push(row);
      opts.progress?.(
        `  round ${r + 1}/${rounds}: ours ${o.readingsPerSec.toLocaleString('en')}/s (${o.cpuUsPerReading} µs CPU)${s ? `, signed ${s.readingsPerSec.toLocaleString('en')}/s (${s.cpuUsPerReading} µs CPU)` : ''}, raw aedes ${w.readingsPerSec.toLocaleString('en')}/s (${w.cpuUsPerReading} µs CPU)${m ? `, mosquitto ${m.readingsPerSec.toLocaleString('en')}/s` : ''}; ours/raw ${row.ratio}${row.signedRatio !== undefined ? `, signed/unsigned ${row.signedRatio}` : ''}`,
      );
    }
    await stop(raw);

    // Stall (our broker): commits held for stallMs while QoS 1 publishers and a QoS 0 flooder keep sending.
    // The stall starts once both groups of publishers are connected, just before they start.
    let rssBefore = NaN;
    let peak = 0;
    let sampler: NodeJS.Timeout | undefined;
    let waiting = 2;
    let startStall!: () => void;
    const stalled = new Promise<void>((resolve) => (startStall = resolve));
    const bothReady = async () => {
      if (--waiting === 0) {
        rssBefore = peak = rssMb(ours.pid!);
        ours.kill('SIGUSR2');
        sampler = setInterval(() => (peak = Math.max(peak, rssMb(ours.pid!) || 0)), 200);
        startStall();
      }
      await stalled;
    };
    // Publishers stop (and report) before the stall ends, so their PUBACK count is the stall's.
    const stallRun = Math.max(1000, stallMs - 6000);
    const [stallQos1] = await Promise.all([
      runPublishers(oursUrl, pubs, stallRun, window, 1, undefined, bothReady),
      runPublishers(oursUrl, [flooder], stallRun, 900, 0, undefined, bothReady),
    ]);
    clearInterval(sampler);
    const ackedDuringStall = stallQos1.reports.reduce((s, rep) => s + rep.acked, 0);
    await stop(ours);

    const mosqRounds = perRound.map((x) => x.mosquitto).filter((x): x is Throughput => x !== undefined);
    const ratios = perRound.map((x) => x.ratio);
    const signedRounds = perRound.map((x) => x.signed).filter((x): x is Throughput => x !== undefined);
    const signedRatios = perRound.map((x) => x.signedRatio).filter((x): x is number => x !== undefined);
    return {
      ours: medianThroughput(perRound.map((x) => x.ours)),
      ...(signedRounds.length
        ? {
            signed: medianThroughput(signedRounds),
            ratioSignedToUnsigned: median(signedRatios),
            signedRatioRange: [Math.min(...signedRatios), Math.max(...signedRatios)] as [number, number],
            signedInline,
            verifierWorkers: opts.verifierWorkers ?? Math.max(1, os.availableParallelism() - 1),
            ed25519: opts.ed25519 ?? 'default',
          }
        : {}),
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

export function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Medians of each figure over the rounds. */
export function medianThroughput(ts: Throughput[]): Throughput {
  const pick = (f: (t: Throughput) => number | null) => {
    const xs = ts.map(f).filter((x): x is number => x !== null);
    return xs.length ? median(xs) : null;
  };
  const out: Throughput = { readingsPerSec: Math.round(median(ts.map((t) => t.readingsPerSec))), p50Ms: pick((t) => t.p50Ms), p99Ms: pick((t) => t.p99Ms) };
  const cpu = pick((t) => t.cpuUsPerReading ?? null);
  if (cpu !== null) out.cpuUsPerReading = cpu;
  return out;
}

/** Human lines for a result (printed by `npm run bench` and when this file is run directly). */
export function formatIngest(r: BenchIngestResult): string[] {
  const fmt = (t?: Throughput) =>
    t ? `${t.readingsPerSec.toLocaleString('en')} readings/s (p50 ${t.p50Ms?.toFixed(1)} ms, p99 ${t.p99Ms?.toFixed(1)} ms)${t.cpuUsPerReading !== undefined ? `, broker CPU ${t.cpuUsPerReading} µs/reading` : ''}` : 'skipped (no mosquitto binary)';
  const signed = r.signed
    ? [
        `  ours, every reading signed (Ed25519 ${r.ed25519 === 'default' || r.ed25519 === undefined ? '' : `${r.ed25519}, `}${r.verifierWorkers} verifier thread${r.verifierWorkers === 1 ? '' : 's'}): ${fmt(r.signed)}`,
        `  ratio signed / unsigned (ours): ${r.ratioSignedToUnsigned} (median of the rounds' ratios; range ${r.signedRatioRange?.[0]}-${r.signedRatioRange?.[1]}; target >= 0.25)`,
        `  CPU per reading, broker process incl. worker threads: unsigned ${r.ours.cpuUsPerReading} µs, signed ${r.signed.cpuUsPerReading} µs (+${round2((r.signed.cpuUsPerReading ?? 0) - (r.ours.cpuUsPerReading ?? 0))}), raw aedes ${r.rawAedes.cpuUsPerReading} µs`,
        ...(r.signedInline ? [`  note: ${r.signedInline} signed readings were signed during a run (pre-signed ran out): the publishers took CPU from the broker`] : []),
      ]
    : [];
  return [
    `ingest benchmark (QoS 1, one device per publisher process, one reading per message; medians of ${r.rounds.length} interleaved rounds)`,
    `  ours (auth+validation+SQLite group commit, PUBACK after durable): ${fmt(r.ours)}`,
    `  raw aedes (no auth, no storage):                                 ${fmt(r.rawAedes)}`,
    `  mosquitto (raw):                                                 ${fmt(r.mosquitto)}`,
    `  ratio ours / raw aedes: ${r.ratioOursToRawAedes} (median of the rounds' ratios; range ${r.ratioRange[0]}-${r.ratioRange[1]}; target >= 0.5)`,
    ...signed,
    `  store stalled ${r.stall.stallMs / 1000} s: broker RSS ${r.stall.rssBeforeMb} MB before, peak ${r.stall.rssPeakDuringStallMb} MB during; ${r.stall.ackedDuringStall} PUBACKs during the stall`,
  ];
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const { values } = parseArgs({
    options: {
      publishers: { type: 'string' },
      'duration-ms': { type: 'string' },
      window: { type: 'string' },
      'stall-ms': { type: 'string' },
      rounds: { type: 'string' },
      'unsigned-only': { type: 'boolean', default: false },
      ed25519: { type: 'string' },
      'verifier-workers': { type: 'string' },
      'verifier-share': { type: 'boolean', default: false },
    },
  });
  const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  const r = await runIngestBench({
    publishers: num(values.publishers),
    durationMs: num(values['duration-ms']),
    window: num(values.window),
    stallMs: num(values['stall-ms']),
    rounds: num(values.rounds),
    signed: !values['unsigned-only'],
    ed25519: values.ed25519 as BenchIngestOptions['ed25519'],
    verifierWorkers: num(values['verifier-workers']),
    verifierShare: values['verifier-share'],
    progress: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write([...formatIngest(r), JSON.stringify(r)].join('\n') + '\n');
}
