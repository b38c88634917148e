/**
 * Scale-out ingest benchmark (not a test): `tsx bench/scale.ts [--publishers 4] [--duration-ms 6000] [--rounds 3]`.
 * Durable readings per second (committed to the store, which is what a PUBACK of ours means) with the
 * same publisher processes (bench/ingest-publisher.ts: one device each, QoS 1, `window` messages in
 * flight, one reading per message), `rounds` times in turn:
 *   1. ours x1: one broker process of ours (bench/ingest-broker.ts: auth, validation, SQLite group
 *      commit, PUBACK after durable), every publisher on it;
 *   2. ours x2: two broker processes on the SAME SQLite file (WAL, BEGIN IMMEDIATE per batch, busy
 *      timeout: several writers are safe, they take the write lock in turn), publishers split over them;
 *   3. consumers x1: Mosquitto (Debian's), publishers on it, one consumer process of ours
 *      (MQTT_URL: 4 connections in the shared subscription, many messages in flight each) storing
 *      into the same file;
 *   4. consumers x2: another Mosquitto, two consumer processes sharing its subscription.
 * (Two Mosquittos, because a stopped member of a shared subscription with a persistent session keeps
 * receiving its share at Mosquitto 2.0: the 1-consumer and 2-consumer groups must not mix.)
 *
 * Behind Mosquitto the publishers' PUBACKs come from Mosquitto on receipt, not after storage, so the
 * figure of every configuration is counted where the readings land: the ingest processes report the
 * readings of their finished commits (IPC 'committed'). `readingsPerSec` is counted over the
 * publishing window; `endToEndPerSec` is every reading the publishers got acknowledged divided by the
 * time from the start until the last of them was committed (behind Mosquitto, the backlog drains
 * after the publishers stop; the next run starts only once it has; the rate of that drain, the
 * consumers without the publishers on the cores, is printed too). CPU per reading: our ingest
 * processes' `process.cpuUsage()` (IPC 'cpu', all threads) and Mosquitto's /proc times over the same
 * window, divided by the readings committed in it; it depends less on the machine's load than
 * readings/s and gives the capacity per core in docs/DEPLOY.md. On this 2-core machine the
 * publishers, Mosquitto and the ingest processes share the cores: figures are indicative, ratios
 * measured back to back are what compares.
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { cpuOf, jsonLines, median, round2, runPublishers, stop, tsxNode, type PubDevice, type PubRun } from './ingest.ts';
import { openDatabase } from '../store/sqlite/db.ts';
import { openSqliteStores } from '../store/sqlite/stores.ts';
import { poll } from '../test/helpers/eventually.ts';
import { MOSQUITTO, startMosquitto } from '../test/helpers/servers.ts';

export interface BenchScaleOptions {
  publishers?: number;
  durationMs?: number;
  window?: number;
  rounds?: number;
  progress?: (line: string) => void;
}

export interface ScaleRun {
  /** Readings committed per second during the publishing window, all ingest processes together. */
  readingsPerSec: number;
  /** Readings acknowledged to the publishers / (start → the last of them committed). */
  endToEndPerSec: number;
  /**
   * Behind Mosquitto: readings/s committed while the backlog drained after the publishers stopped
   * (the consumers without publishers on the cores); null when under 1,000 readings were left.
   */
  drainPerSec: number | null;
  /** Publish → PUBACK p99 at the publishers (ms): durable for ours, Mosquitto's receipt behind it. */
  p99Ms: number | null;
  /** Readings/s each ingest process committed during the window. */
  perProcess: number[];
  /** CPU of the ingest processes (all threads) during the window per reading committed, µs. */
  cpuUsPerReading: number | null;
  /** Mosquitto's CPU during the window per reading committed, µs (behind Mosquitto only). */
  mosquittoCpuUsPerReading?: number | null;
}

export type ScaleConfig = 'ours1' | 'ours2' | 'consumers1' | 'consumers2';

export interface BenchScaleResult {
  publishers: number;
  /** Medians over the rounds. */
  ours1: ScaleRun;
  ours2: ScaleRun;
  consumers1?: ScaleRun;
  consumers2?: ScaleRun;
  /** Median over the rounds of consumers x2 / ours x1 (durable readings/s in the window); target >= 0.5. */
  ratioConsumers2ToOurs1?: number;
  ratioRange?: [number, number];
  /** Median of ours x2 / ours x1 and consumers x2 / consumers x1. */
  scalingOurs: number;
  scalingConsumers?: number;
  rounds: Partial<Record<ScaleConfig, ScaleRun>>[];
}

/** Asks an ingest process (bench/ingest-broker.ts) how many readings its finished commits held. */
export function committedOf(proc: ChildProcess): Promise<number> {
  return new Promise((resolve) => {
    const on = (m: unknown) => {
      const v = m as { event?: string; readings?: number };
      if (v?.event !== 'committed' || typeof v.readings !== 'number') return;
      proc.off('message', on);
      resolve(v.readings);
    };
    proc.on('message', on);
    proc.send('committed');
  });
}

async function committedAll(procs: ChildProcess[]): Promise<number[]> {
  return Promise.all(procs.map(committedOf));
}

/** CPU (µs, user + system) a process used so far, from /proc (Mosquitto has no IPC channel). */
function procCpuUs(pid: number): number {
  try {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    // utime and stime are fields 14 and 15 of the whole line (11 and 12 after the command), in clock ticks (100/s).
    return ((Number(fields[11]) + Number(fields[12])) * 1e6) / 100;
  } catch {
    return NaN;
  }
}

async function cpuAll(procs: ChildProcess[], mosquittoPid?: number): Promise<{ ingest: number; mosquitto: number }> {
  const xs = await Promise.all(procs.map(cpuOf));
  return { ingest: xs.reduce((a, b) => a + b, 0), mosquitto: mosquittoPid ? procCpuUs(mosquittoPid) : NaN };
}

/** An ingest process of ours (broker, or consumer of `mqttUrl`); resolves once it listens or is subscribed. */
async function startIngest(dir: string, extra: string[]): Promise<{ proc: ChildProcess; port?: number }> {
  const proc = tsxNode('ingest-broker.ts', ['--mode', 'ours', '--data-dir', dir, ...extra], { ipc: true });
  const lines = jsonLines(proc);
  const v = await lines.next<{ mqttPort?: number }>((x) => x.event === 'listening');
  return { proc, port: v.mqttPort };
}

export async function benchScale(opts: BenchScaleOptions & { log?: (line: string) => void } = {}): Promise<BenchScaleResult> {
  const result = await runScaleBench({ progress: opts.log, ...opts });
  for (const line of formatScale(result)) opts.log?.(line);
  return result;
}

async function runScaleBench(opts: BenchScaleOptions): Promise<BenchScaleResult> {
  const publishers = Math.max(2, opts.publishers ?? 4);
  const durationMs = opts.durationMs ?? 6_000;
  const window = opts.window ?? 100;
  const rounds = Math.max(1, opts.rounds ?? 3);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mrv-bench-scale-'));
  const children: ChildProcess[] = [];
  try {
    const db = openDatabase(dir);
    const { registry } = openSqliteStores(db);
    registry.createFacility({ id: 'BENCH', name: 'bench', owner: '0x' + '22'.repeat(20), baselineKgPerHour: '3600', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162' });
    const pubs: PubDevice[] = Array.from({ length: publishers }, (_, i) => {
      const id = `scale${i}`;
      return { id, password: registry.createDevice('BENCH', id, 'meter').password, startSeq: 1 };
    });
    db.close();

    // Every process runs from the start (idle when not measured): a drift in the machine's speed hits all alike.
    const b1 = await startIngest(dir, []);
    const b2 = await startIngest(dir, []);
    children.push(b1.proc, b2.proc);
    const oursUrls = [`mqtt://127.0.0.1:${b1.port}`, `mqtt://127.0.0.1:${b2.port}`];
    let mosq1: string | undefined;
    let mosq2: string | undefined;
    const mosqPid: Record<string, number | undefined> = {};
    const consumers1: ChildProcess[] = [];
    const consumers2: ChildProcess[] = [];
    if (MOSQUITTO) {
      // Unlimited in flight and queued: the consumers' own windows bound what they take, and no
      // message Mosquitto acknowledged is dropped (docs/DEPLOY.md).
      const conf = ['max_inflight_messages 0', 'max_queued_messages 0'];
      fs.mkdirSync(path.join(dir, 'm1'));
      fs.mkdirSync(path.join(dir, 'm2'));
      const m1 = await startMosquitto(path.join(dir, 'm1'), conf);
      const m2 = await startMosquitto(path.join(dir, 'm2'), conf);
      children.push(m1.proc, m2.proc);
      mosq1 = m1.url;
      mosq2 = m2.url;
      mosqPid[m1.url] = m1.proc.pid;
      mosqPid[m2.url] = m2.proc.pid;
      consumers1.push((await startIngest(dir, ['--mqtt-url', m1.url, '--client-id', 'bench-c1'])).proc);
      for (const id of ['bench-c2a', 'bench-c2b']) consumers2.push((await startIngest(dir, ['--mqtt-url', m2.url, '--client-id', id])).proc);
      children.push(...consumers1, ...consumers2);
    }

    /**
     * One run: publishers split round-robin over `urls`, all started together; the `procs` count the
     * committed readings. Resolves once every acknowledged reading is committed.
     */
    async function run(urls: string[], procs: ChildProcess[]): Promise<ScaleRun> {
      const groups = urls.map((_, i) => pubs.filter((_, j) => j % urls.length === i));
      let waiting = groups.length;
      let go!: () => void;
      const started = new Promise<void>((r) => (go = r));
      let c0: number[] = [];
      let t0 = 0;
      const mpid = urls.length === 1 ? mosqPid[urls[0]] : undefined;
      let cpu0 = { ingest: 0, mosquitto: NaN };
      let window1: Promise<{ c1: number[]; t1: number; cpu1: { ingest: number; mosquitto: number } }> | undefined;
      const barrier = async () => {
        if (--waiting === 0) {
          cpu0 = await cpuAll(procs, mpid);
          c0 = await committedAll(procs);
          t0 = performance.now();
          window1 = new Promise((resolve) =>
            setTimeout(async () => {
              const c1 = await committedAll(procs);
              const t1 = performance.now();
              resolve({ c1, t1, cpu1: await cpuAll(procs, mpid) });
            }, durationMs),
          );
          go();
        }
        await started;
      };
      const runs: PubRun[] = await Promise.all(groups.map((g, i) => runPublishers(urls[i], g, durationMs, window, 1, undefined, barrier)));
      const { c1, t1, cpu1 } = await window1!;
      const reports = runs.flatMap((r) => r.reports);
      for (const rep of reports) pubs.find((p) => p.id === rep.device)!.startSeq = rep.nextSeq;
      const acked = reports.reduce((s, r) => s + r.acked, 0);
      const target = c0.reduce((a, b) => a + b, 0) + acked;
      let tEnd = t1;
      // Behind Mosquitto: the backlog drains (bounded wait; a lost reading would show as a timeout).
      const reported = (await committedAll(procs)).reduce((a, b) => a + b, 0);
      const tReported = performance.now();
      let total = reported;
      const drained = await poll(
        async () => {
          total = (await committedAll(procs)).reduce((a, b) => a + b, 0);
          tEnd = performance.now();
          return total >= target;
        },
        { timeoutMs: 300_000, everyMs: 50 },
      );
      if (!drained) throw new Error(`not every acknowledged reading was committed within 5 minutes (${urls.join(', ')})`);
      const secs = (t1 - t0) / 1000;
      const perProcess = procs.map((_, i) => Math.round((c1[i] - c0[i]) / secs));
      const p99s = reports.map((r) => r.p99).filter((x): x is number => x !== null);
      const inWindow = c1.reduce((a, b) => a + b, 0) - c0.reduce((a, b) => a + b, 0);
      const perReading = (us: number) => (inWindow > 0 && Number.isFinite(us) ? Math.round((us / inWindow) * 10) / 10 : null);
      return {
        readingsPerSec: perProcess.reduce((a, b) => a + b, 0),
        endToEndPerSec: Math.round(acked / ((tEnd - t0) / 1000)),
        drainPerSec: total - reported >= 1000 ? Math.round((total - reported) / ((tEnd - tReported) / 1000)) : null,
        p99Ms: p99s.length ? Math.max(...p99s) : null,
        perProcess,
        cpuUsPerReading: perReading(cpu1.ingest - cpu0.ingest),
        ...(mpid ? { mosquittoCpuUsPerReading: perReading(cpu1.mosquitto - cpu0.mosquitto) } : {}),
      };
    }

    const perRound: Partial<Record<ScaleConfig, ScaleRun>>[] = [];
    for (let r = 0; r < rounds; r++) {
      const row: Partial<Record<ScaleConfig, ScaleRun>> = {};
      row.ours1 = await run([oursUrls[0]], [b1.proc]);
      row.ours2 = await run(oursUrls, [b1.proc, b2.proc]);
      if (mosq1 && mosq2) {
        row.consumers1 = await run([mosq1], consumers1);
        row.consumers2 = await run([mosq2], consumers2);
      }
      perRound.push(row);
      const f = (x?: ScaleRun) => (x ? `${x.readingsPerSec.toLocaleString('en')}/s` : 'skipped');
      opts.progress?.(`  round ${r + 1}/${rounds}: ours x1 ${f(row.ours1)}, ours x2 ${f(row.ours2)}, consumers x1 ${f(row.consumers1)}, consumers x2 ${f(row.consumers2)}`);
    }

    const pick = (k: ScaleConfig): ScaleRun | undefined => {
      const xs = perRound.map((x) => x[k]).filter((x): x is ScaleRun => x !== undefined);
      if (!xs.length) return undefined;
      const med = (f: (x: ScaleRun) => number) => Math.round(median(xs.map(f)));
      const medOf = (f: (x: ScaleRun) => number | null | undefined) => {
        const ys = xs.map(f).filter((y): y is number => typeof y === 'number');
        return ys.length ? median(ys) : null;
      };
      return {
        readingsPerSec: med((x) => x.readingsPerSec),
        endToEndPerSec: med((x) => x.endToEndPerSec),
        drainPerSec: medOf((x) => x.drainPerSec),
        p99Ms: medOf((x) => x.p99Ms),
        perProcess: xs[0].perProcess.map((_, i) => med((x) => x.perProcess[i])),
        cpuUsPerReading: round1(medOf((x) => x.cpuUsPerReading)),
        ...(k.startsWith('consumers') ? { mosquittoCpuUsPerReading: round1(medOf((x) => x.mosquittoCpuUsPerReading)) } : {}),
      };
    };
    const ratio = (a: ScaleConfig, b: ScaleConfig) => perRound.filter((x) => x[a] && x[b]).map((x) => round2(x[a]!.readingsPerSec / x[b]!.readingsPerSec));
    const cons = ratio('consumers2', 'ours1');
    const scalingConsumers = ratio('consumers2', 'consumers1');
    return {
      publishers,
      ours1: pick('ours1')!,
      ours2: pick('ours2')!,
      consumers1: pick('consumers1'),
      consumers2: pick('consumers2'),
      ...(cons.length ? { ratioConsumers2ToOurs1: round2(median(cons)), ratioRange: [Math.min(...cons), Math.max(...cons)] as [number, number] } : {}),
      scalingOurs: round2(median(ratio('ours2', 'ours1'))),
      ...(scalingConsumers.length ? { scalingConsumers: round2(median(scalingConsumers)) } : {}),
      rounds: perRound,
    };
  } finally {
    for (const c of children) await stop(c);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function round1(x: number | null): number | null {
  return x === null ? null : Math.round(x * 10) / 10;
}

/** Human lines for a result (printed by `npm run bench` and when this file is run directly). */
export function formatScale(r: BenchScaleResult): string[] {
  const fmt = (x?: ScaleRun) =>
    x
      ? `${x.readingsPerSec.toLocaleString('en')} durable readings/s (${x.perProcess.map((p) => p.toLocaleString('en')).join(' + ')}); end to end ${x.endToEndPerSec.toLocaleString('en')}/s${x.drainPerSec !== null ? ` (backlog drained at ${x.drainPerSec.toLocaleString('en')}/s)` : ''}; publisher PUBACK p99 ${x.p99Ms?.toFixed(1)} ms; CPU ${x.cpuUsPerReading} µs/reading in our processes${x.mosquittoCpuUsPerReading !== undefined ? ` + ${x.mosquittoCpuUsPerReading} µs in Mosquitto` : ''}`
      : 'skipped (no mosquitto binary)';
  return [
    `scale-out ingest (QoS 1, ${r.publishers} publisher processes, one device each, one reading per message, one SQLite file; medians of ${r.rounds.length} interleaved rounds)`,
    `  ours, 1 broker process:                  ${fmt(r.ours1)}`,
    `  ours, 2 broker processes:                ${fmt(r.ours2)}`,
    `  Mosquitto + 1 consumer process:          ${fmt(r.consumers1)}`,
    `  Mosquitto + 2 consumer processes:        ${fmt(r.consumers2)}`,
    ...(r.ratioConsumers2ToOurs1 !== undefined
      ? [`  ratio Mosquitto + 2 consumers / ours x1: ${r.ratioConsumers2ToOurs1} (median of the rounds' ratios; range ${r.ratioRange?.[0]}-${r.ratioRange?.[1]}; target >= 0.5)`]
      : []),
    `  scaling 1 -> 2 of our brokers: x${r.scalingOurs}${r.scalingConsumers !== undefined ? `; 1 -> 2 consumers: x${r.scalingConsumers}` : ''} (2 cores shared with the publishers${r.consumers1 ? ' and Mosquitto' : ''})`,
    `  (behind Mosquitto the publishers' PUBACK is Mosquitto's receipt; the readings/s are counted at the commits)`,
  ];
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const { values } = parseArgs({
    options: {
      publishers: { type: 'string' },
      'duration-ms': { type: 'string' },
      window: { type: 'string' },
      rounds: { type: 'string' },
    },
  });
  const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  const r = await runScaleBench({
    publishers: num(values.publishers),
    durationMs: num(values['duration-ms']),
    window: num(values.window),
    rounds: num(values.rounds),
    progress: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write([...formatScale(r), JSON.stringify(r)].join('\n') + '\n');
}
