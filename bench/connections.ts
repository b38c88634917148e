/**
 * Connections benchmark (not a test): `tsx bench/connections.ts [--devices 10000] [--publishers 4]
 * [--spread-ms 20000] [--concurrency 100]`.
 * Holds `devices` authenticated device connections (MQTT 3.1.1, keepalive 60 s) on one broker process,
 * in turn:
 *   1. raw aedes 1.2 (bench/ingest-broker.ts --mode raw: no auth, no storage);
 *   2. ours: broker/main.ts's composition (bench/ingest-broker.ts --mode ours: auth against the SQLite
 *      registry, validation, group commit, PUBACK after commit), every device registered with its own
 *      generated secret.
 * The same `publishers` processes (bench/connections-publisher.ts, devices split evenly) connect every
 * device with at most `concurrency` CONNECTs outstanding per process, each socket from its own
 * 127.x.y.z source address; then every device publishes ONE reading (QoS 1), device i at i/n of
 * `spread-ms`: the "one reading a minute" load compressed into a shorter measured period (10,000
 * devices over 20 s is 500 readings/s, 3x the rate of 10,000 devices at one a minute).
 * Prints, per broker: RSS per held connection (broker RSS with every device connected minus RSS idle,
 * divided by the connections), the connect rate (connections / time from the first CONNECT to the last
 * CONNACK, authentication included), CONNECT→CONNACK p50/p99, the broker's CPU per connect, and the
 * readings' publish-to-PUBACK p50/p99; and the ratios ours / raw aedes.
 * The broker's CONNECT limiter (per source address, MQTT_CONNECT_RATE/MQTT_CONNECT_BURST) runs at its
 * defaults: each device has its own source address, as devices behind a load balancer that preserves
 * client addresses (docs/DEPLOY.md, architecture A). Needs `ulimit -n` of at least devices + 1,024 (the
 * broker process holds every connection); checked first.
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { cpuOf, jsonLines, rssMb, stop, tsxNode } from './ingest.ts';
import { committedOf } from './scale.ts';
import { openDatabase } from '../store/sqlite/db.ts';
import { openSqliteStores } from '../store/sqlite/stores.ts';
import { poll } from '../test/helpers/eventually.ts';
import { defaultOf } from '../domain/config.ts';

export interface BenchConnectionsOptions {
  devices?: number;
  publishers?: number;
  spreadMs?: number;
  concurrency?: number;
  progress?: (line: string) => void;
}

export interface HeldConnections {
  connected: number;
  refused: number;
  rssIdleMb: number;
  rssConnectedMb: number;
  rssAfterReadingsMb: number;
  rssPerConnectionKb: number;
  connectsPerSec: number;
  connackP50Ms: number;
  connackP99Ms: number;
  /** Broker process CPU (all threads) from the first CONNECT to the last CONNACK, per connection. */
  cpuUsPerConnect: number;
  acked: number;
  pubFailed: number;
  pubackP50Ms: number | null;
  pubackP99Ms: number | null;
  /** Readings in finished commits (ours only): every acknowledged reading must be there. */
  committed?: number;
}

export interface BenchConnectionsResult {
  devices: number;
  publishers: number;
  spreadMs: number;
  concurrency: number;
  openFilesLimit: number;
  registerMs: number;
  rawAedes: HeldConnections;
  ours: HeldConnections;
  /** ours / raw aedes */
  ratios: { rssPerConnection: number; connectsPerSec: number; pubackP99: number | null };
}

/** The soft limit of open files of this process (children inherit it). */
export function openFilesLimit(): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
  return !m || m[1] === 'unlimited' ? Infinity : Number(m[1]);
}

function quantile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

const r1 = (x: number) => Math.round(x * 10) / 10;

/** One broker process: connect every device, publish one reading each, measure. */
async function hold(mode: 'raw' | 'ours', dir: string, files: string[], o: Required<Omit<BenchConnectionsOptions, 'progress'>>): Promise<HeldConnections> {
  const children: ChildProcess[] = [];
  try {
    const broker = tsxNode('ingest-broker.ts', ['--mode', mode, '--data-dir', dir], { ipc: true });
    children.push(broker);
    const port = (await jsonLines(broker).next<{ mqttPort: number }>((v) => v.event === 'listening')).mqttPort;
    const pubs = files.map((f, p) => {
      const args = ['--port', String(port), '--devices', f, '--net', String(20 + p), '--concurrency', String(o.concurrency), '--spread-ms', String(o.spreadMs), '--slot', String(p), '--slots', String(files.length)];
      const child = tsxNode('connections-publisher.ts', args, { stdin: true });
      children.push(child);
      return { child, lines: jsonLines(child) };
    });
    await Promise.all(pubs.map((p) => p.lines.next((v) => v.event === 'ready')));
    const rssIdleMb = rssMb(broker.pid!);

    const cpu0 = await cpuOf(broker);
    for (const p of pubs) p.child.stdin!.write('connect\n');
    const conns = await Promise.all(pubs.map((p) => p.lines.next<{ ok: number; refused: number; firstAt: number; lastAt: number; connackMs: number[] }>((v) => v.event === 'connected')));
    const cpuConnect = (await cpuOf(broker)) - cpu0;
    const rssConnectedMb = rssMb(broker.pid!);
    const connected = conns.reduce((s, c) => s + c.ok, 0);
    const refused = conns.reduce((s, c) => s + c.refused, 0);
    const seconds = (Math.max(...conns.map((c) => c.lastAt)) - Math.min(...conns.map((c) => c.firstAt))) / 1000;
    const connack = conns.flatMap((c) => c.connackMs).sort((a, b) => a - b);

    for (const p of pubs) p.child.stdin!.write('publish\n');
    const pubsDone = await Promise.all(pubs.map((p) => p.lines.next<{ acked: number; failed: number; pubackMs: number[] }>((v) => v.event === 'published')));
    const rssAfterReadingsMb = rssMb(broker.pid!);
    const acked = pubsDone.reduce((s, c) => s + c.acked, 0);
    const puback = pubsDone.flatMap((c) => c.pubackMs).sort((a, b) => a - b);
    let committed: number | undefined;
    if (mode === 'ours') {
      // A PUBACK of ours follows the commit; the commit counter may trail it by a tick.
      await poll(async () => (committed = await committedOf(broker)) >= acked, { timeoutMs: 10_000 });
    }
    return {
      connected,
      refused,
      rssIdleMb: Math.round(rssIdleMb),
      rssConnectedMb: Math.round(rssConnectedMb),
      rssAfterReadingsMb: Math.round(rssAfterReadingsMb),
      rssPerConnectionKb: connected ? r1(((rssConnectedMb - rssIdleMb) * 1024) / connected) : NaN,
      connectsPerSec: Math.round(connected / seconds),
      connackP50Ms: r1(quantile(connack, 0.5)),
      connackP99Ms: r1(quantile(connack, 0.99)),
      cpuUsPerConnect: connected ? Math.round(cpuConnect / connected) : NaN,
      acked,
      pubFailed: pubsDone.reduce((s, c) => s + c.failed, 0),
      pubackP50Ms: puback.length ? r1(quantile(puback, 0.5)) : null,
      pubackP99Ms: puback.length ? r1(quantile(puback, 0.99)) : null,
      ...(committed !== undefined ? { committed } : {}),
    };
  } finally {
    for (const c of children.reverse()) await stop(c);
  }
}

export async function benchConnections(opts: BenchConnectionsOptions & { log?: (line: string) => void } = {}): Promise<BenchConnectionsResult> {
  const result = await runConnectionsBench({ progress: opts.log, ...opts });
  for (const line of formatConnections(result)) opts.log?.(line);
  return result;
}

async function runConnectionsBench(opts: BenchConnectionsOptions): Promise<BenchConnectionsResult> {
  const o = { devices: opts.devices ?? 10_000, publishers: opts.publishers ?? 4, spreadMs: opts.spreadMs ?? 20_000, concurrency: opts.concurrency ?? 100 };
  const limit = openFilesLimit();
  const need = o.devices + 1024;
  if (limit < need) {
    throw new Error(
      `open files limit (ulimit -n) is ${limit}: holding ${o.devices.toLocaleString('en')} connections needs at least ${need.toLocaleString('en')} in the broker process; raise it (ulimit -n ${need}, or LimitNOFILE= for a service) or pass --devices ${Math.max(0, limit - 1024)}`,
    );
  }
  if (o.devices / o.publishers > 250 * 254) throw new Error('at most 63,500 devices per publisher process (source addresses 127.x.1-254.1-250)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mrv-bench-connections-'));
  try {
    const t0 = performance.now();
    const db = openDatabase(dir);
    const { registry } = openSqliteStores(db);
    registry.createFacility({ id: 'BENCH', name: 'bench', owner: '0x' + '22'.repeat(20), baselineKgPerHour: '3600', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162' });
    const fleet = db.transaction(() => Array.from({ length: o.devices }, (_, i) => ({ id: `conn${i}`, password: registry.createDevice('BENCH', `conn${i}`, 'meter').password })))();
    db.close();
    const registerMs = Math.round(performance.now() - t0);
    const files = Array.from({ length: o.publishers }, (_, p) => {
      const f = path.join(dir, `devices-${p}.json`);
      fs.writeFileSync(f, JSON.stringify(fleet.filter((_d, i) => i % o.publishers === p)));
      return f;
    });
    opts.progress?.(`  ${o.devices.toLocaleString('en')} devices registered in ${registerMs} ms; open files limit ${limit}`);
    const rawAedes = await hold('raw', dir, files, o);
    opts.progress?.(`  raw aedes: ${rawAedes.connected} connected (${rawAedes.refused} refused), ${rawAedes.connectsPerSec}/s`);
    const ours = await hold('ours', dir, files, o);
    opts.progress?.(`  ours: ${ours.connected} connected (${ours.refused} refused), ${ours.connectsPerSec}/s`);
    const ratio = (a: number | null, b: number | null) => (a === null || b === null || b === 0 ? null : Math.round((a / b) * 100) / 100);
    return {
      ...o,
      openFilesLimit: limit,
      registerMs,
      rawAedes,
      ours,
      ratios: {
        rssPerConnection: ratio(ours.rssPerConnectionKb, rawAedes.rssPerConnectionKb) ?? NaN,
        connectsPerSec: ratio(ours.connectsPerSec, rawAedes.connectsPerSec) ?? NaN,
        pubackP99: ratio(ours.pubackP99Ms, rawAedes.pubackP99Ms),
      },
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Human lines for a result (printed by `npm run bench` and when this file is run directly). */
export function formatConnections(r: BenchConnectionsResult): string[] {
  const fmt = (h: HeldConnections) =>
    [
      `${h.connected.toLocaleString('en')} held (${h.refused} refused); RSS ${h.rssIdleMb} MB idle -> ${h.rssConnectedMb} MB connected (${h.rssPerConnectionKb} KB per connection) -> ${h.rssAfterReadingsMb} MB after the readings`,
      `      connect ${h.connectsPerSec.toLocaleString('en')}/s (CONNECT->CONNACK p50 ${h.connackP50Ms} ms, p99 ${h.connackP99Ms} ms; broker CPU ${h.cpuUsPerConnect} µs per connect)`,
      `      readings ${h.acked.toLocaleString('en')} acked (${h.pubFailed} failed${h.committed !== undefined ? `, ${h.committed.toLocaleString('en')} committed` : ''}): PUBACK p50 ${h.pubackP50Ms} ms, p99 ${h.pubackP99Ms} ms`,
    ].join('\n');
  return [
    `connections benchmark: ${r.devices.toLocaleString('en')} devices, MQTT 3.1.1 keepalive 60 s, over ${r.publishers} publisher processes (${r.concurrency} CONNECTs outstanding each), each socket from its own 127.x.y.z address`,
    `  one reading per device (QoS 1), staggered over ${r.spreadMs / 1000} s (${Math.round(r.devices / (r.spreadMs / 1000))} readings/s; a whole minute at one reading each is ${Math.round(r.devices / 60)}/s)`,
    `  ours: CONNECT limiter at MQTT_CONNECT_RATE=${defaultOf('mqttConnectRate')} MQTT_CONNECT_BURST=${defaultOf('mqttConnectBurst')} per source address (defaults; client addresses preserved as behind a transparent load balancer, docs/DEPLOY.md)`,
    `  raw aedes (no auth, no storage): ${fmt(r.rawAedes)}`,
    `  ours (auth vs SQLite registry, group commit, PUBACK after commit): ${fmt(r.ours)}`,
    `  ratios ours / raw aedes: RSS per connection ${r.ratios.rssPerConnection}x, connect rate ${r.ratios.connectsPerSec}x, PUBACK p99 ${r.ratios.pubackP99}x`,
  ];
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const { values } = parseArgs({
    options: {
      devices: { type: 'string' },
      publishers: { type: 'string' },
      'spread-ms': { type: 'string' },
      concurrency: { type: 'string' },
    },
  });
  const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  const r = await runConnectionsBench({
    devices: num(values.devices),
    publishers: num(values.publishers),
    spreadMs: num(values['spread-ms']),
    concurrency: num(values.concurrency),
    progress: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write([...formatConnections(r), JSON.stringify(r)].join('\n') + '\n');
}
