/** Shared setup for the broker tests: a temp SQLite registry/store, an in-process broker, mqtt.js clients. */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import mqtt, { type MqttClient, type IClientOptions } from 'mqtt';
import { Registry as PromRegistry } from 'prom-client';
import { buildBroker, type Broker, type BrokerLimits } from '../../broker/broker.ts';
import { buildIngestPipeline, type IngestPipeline, type IngestPipelineDeps } from '../../broker/pipeline.ts';
import { silentLogger } from '../../domain/logger.ts';
import { openDatabase, type Db } from '../../store/sqlite/db.ts';
import { openSqliteStores, type SqliteStores } from '../../store/sqlite/stores.ts';
import type { ReadingStore } from '../../store/types.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { registerFleet } from '../helpers/fixtures.ts';
import { inMemoryClient, type ConnectionHandler } from '../helpers/duplex.ts';

/** Minimal tap surface the helpers use (keeps them independent of tap's exported types). */
export interface T {
  teardown(fn: () => unknown): void;
}

export interface Fleet {
  dir: string;
  db: Db;
  stores: SqliteStores;
  /** deviceId -> password */
  passwords: Record<string, string>;
}

/** A temp data dir with facilities F1 (devices d1, d2, d3) and F2 (device e1). */
export function makeFleet(t: T, dir = tmpDir(t, 'mrv-broker-')): Fleet {
  const db = openDatabase(dir);
  t.teardown(() => db.close());
  const stores = openSqliteStores(db);
  const passwords = registerFleet(stores.registry, { F1: ['d1', 'd2', 'd3'], F2: ['e1'] });
  return { dir, db, stores, passwords };
}

export interface Running {
  broker: Broker;
  pipeline: IngestPipeline;
  metrics: PromRegistry;
  /** The plain TCP listener's port (0 when started in memory only: `connect` through `broker` then). */
  port: number;
}

/**
 * A broker over the fleet's registry and store. It listens on a free TCP port, or with `inMemory`
 * opens no listener at all: clients then connect through `broker.handle` (test/helpers/duplex.ts).
 */
export async function startBroker(
  t: T,
  fleet: Fleet,
  opts: { store?: ReadingStore; pipeline?: Partial<IngestPipelineDeps>; limits?: Partial<BrokerLimits>; inMemory?: boolean } = {},
): Promise<Running> {
  const metrics = new PromRegistry();
  const pipeline = buildIngestPipeline({
    store: opts.store ?? fleet.stores.readings,
    registry: fleet.stores.registry,
    logger: silentLogger,
    metrics,
    ...opts.pipeline,
  });
  const broker = buildBroker({ registry: fleet.stores.registry, pipeline, logger: silentLogger, metrics, limits: opts.limits });
  t.teardown(async () => {
    await broker.close();
    await pipeline.close();
  });
  if (opts.inMemory) {
    await broker.start();
    return { broker, pipeline, metrics, port: 0 };
  }
  const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });
  if (port === undefined) throw new Error('the broker opened no plain listener');
  return { broker, pipeline, metrics, port };
}

/**
 * Connects over TCP to `to` (a port) or in memory to `to` (a broker: its `handle`); resolves with the
 * client once CONNACK 0 arrived, rejects with the CONNACK error otherwise.
 */
export async function connect(t: T, to: number | ConnectionHandler, clientId: string, password: string | undefined, extra: IClientOptions = {}): Promise<MqttClient> {
  const options: IClientOptions = { clientId, username: clientId, password, reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 4, ...extra };
  const client = typeof to === 'number' ? mqtt.connect(`mqtt://127.0.0.1:${to}`, options) : inMemoryClient(to, options);
  t.teardown(() => client.end(true));
  return new Promise((resolve, reject) => {
    client.once('connect', () => resolve(client));
    client.once('error', (err) => reject(err));
    client.once('close', () => reject(new Error('closed before CONNACK')));
  });
}

/** The CONNACK return code of a refused connection (mqtt.js puts it on the error as `code`). */
export async function refusedCode(p: Promise<unknown>): Promise<number | string | undefined> {
  try {
    await p;
    return 'connected';
  } catch (err) {
    return (err as { code?: number }).code;
  }
}

/** Readings' ts: two hours ago plus one second per seq, so ts never decreases along seq (SPEC) and the same seq has the same ts. */
const READING_T0 = Date.now() - 2 * 3_600_000;

export function reading(seq: number, value: string | number, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ seq, ts: new Date(READING_T0 + seq * 1000).toISOString(), metric: 'electricity_import', value: Number(value), unit: 'kWh', ...extra });
}

export function topic(f: string, d: string, kind: 'readings' | 'status' = 'readings'): string {
  return `facilities/${f}/devices/${d}/${kind}`;
}

/** Resolves when the client's connection closes. */
export function closed(client: MqttClient): Promise<void> {
  return new Promise((resolve) => {
    if (!client.connected) return resolve();
    client.once('close', () => resolve());
  });
}

/** Current value of a counter/gauge (optionally one label set) on a prom registry. */
export async function metric(reg: PromRegistry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = reg.getSingleMetric(name);
  if (!m) return 0;
  const data = await m.get();
  let sum = 0;
  for (const v of data.values) {
    if (Object.entries(labels).every(([k, val]) => (v.labels as Record<string, unknown>)[k] === val)) sum += v.value;
  }
  return sum;
}

/**
 * The broker in its own OS process (`broker/main.ts`, as `npm run start:broker`; node with the tsx
 * loader, so a signal hits the broker itself): MQTT on a free port, no external broker or InfluxDB,
 * `env` on top. Resolves with the port of its 'listening' line; killed at teardown.
 */
export async function startBrokerProcess(t: T, env: Record<string, string>): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'broker/main.ts'], {
    cwd: path.resolve(import.meta.dirname, '..', '..'),
    env: { ...process.env, MQTT_PORT: '0', MQTT_URL: '', INFLUX_URL: '', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`broker exited early (${code})`)));
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const msg = JSON.parse(line) as { event?: string; mqttPort?: number };
        if (msg.event === 'listening' && typeof msg.mqttPort === 'number') resolve(msg.mqttPort);
      } catch {
        // other output
      }
    });
  });
  return { child, port };
}
