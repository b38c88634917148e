/** Shared setup for the broker tests: a temp SQLite registry/store, an in-process broker, mqtt.js clients. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mqtt, { type MqttClient, type IClientOptions } from 'mqtt';
import { Registry as PromRegistry } from 'prom-client';
import { buildBroker, type Broker, type BrokerLimits } from '../../broker/broker.ts';
import { buildIngestPipeline, type IngestPipeline, type IngestPipelineDeps } from '../../broker/pipeline.ts';
import { silentLogger } from '../../domain/logger.ts';
import { openDatabase, type Db } from '../../store/sqlite/db.ts';
import { openSqliteStores, type SqliteStores } from '../../store/sqlite/stores.ts';
import type { ReadingStore } from '../../store/types.ts';
import { DEFAULT_POLL_TIMEOUT_MS, poll } from '../helpers/eventually.ts';

/** Minimal tap surface the helpers use (keeps them independent of tap's exported types). */
export interface T {
  teardown(fn: () => unknown): void;
}

export const OWNER = '0x' + '11'.repeat(20);

export interface Fleet {
  dir: string;
  db: Db;
  stores: SqliteStores;
  /** deviceId -> password */
  passwords: Record<string, string>;
}

/** A temp data dir with facilities F1 (devices d1, d2, d3) and F2 (device e1). */
export function makeFleet(t: T, dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mrv-broker-'))): Fleet {
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const db = openDatabase(dir);
  t.teardown(() => db.close());
  const stores = openSqliteStores(db);
  const base = { owner: OWNER, baselineKgPerHour: '3600', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162' };
  stores.registry.createFacility({ id: 'F1', name: 'Factory one', ...base });
  stores.registry.createFacility({ id: 'F2', name: 'Factory two', ...base });
  const passwords: Record<string, string> = {};
  for (const [f, d] of [['F1', 'd1'], ['F1', 'd2'], ['F1', 'd3'], ['F2', 'e1']]) {
    passwords[d] = stores.registry.createDevice(f, d, 'meter').password;
  }
  return { dir, db, stores, passwords };
}

export interface Running {
  broker: Broker;
  pipeline: IngestPipeline;
  metrics: PromRegistry;
  port: number;
}

export async function startBroker(
  t: T,
  fleet: Fleet,
  opts: { store?: ReadingStore; pipeline?: Partial<IngestPipelineDeps>; limits?: Partial<BrokerLimits> } = {},
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
  const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(async () => {
    await broker.close();
    await pipeline.close();
  });
  if (port === undefined) throw new Error('the broker opened no plain listener');
  return { broker, pipeline, metrics, port };
}

/** Connects; resolves with the client once CONNACK 0 arrived, rejects with the CONNACK error otherwise. */
export async function connect(t: T, port: number, clientId: string, password: string | undefined, extra: IClientOptions = {}): Promise<MqttClient> {
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
    clientId,
    username: clientId,
    password,
    reconnectPeriod: 0,
    connectTimeout: 5000,
    protocolVersion: 4,
    ...extra,
  });
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
 * Polls `check` until true; for state that settles asynchronously (e.g. a log row written). The bound
 * is the shared generous one (test/helpers/eventually.ts), or `tries * everyMs` when that is longer.
 */
export async function eventually(check: () => boolean | Promise<boolean>, tries = 200, everyMs = 10): Promise<boolean> {
  return poll(check, { timeoutMs: Math.max(tries * everyMs, DEFAULT_POLL_TIMEOUT_MS), everyMs });
}
