/**
 * `npm run start:cluster` end to end: the real servers (PostgreSQL, Mosquitto, anvil) and the 8
 * processes as children, a small fleet (duplicate and reordered readings injected) over both brokers
 * and Mosquitto. Midway, SIGKILL broker-1, consumer-1, the oracle holding the settlement lease and
 * gateway-2; the cluster reports each and starts it again (same port, same MQTT_CLIENT_ID). After
 * the fleet stops: every acknowledged reading is stored exactly once, every closed window is settled
 * exactly once on chain, each net equals the independent recomputation (checker.ts) over the readings
 * in the cluster's InfluxDB (written by all four ingest processes), and both gateways answer the same settlements, each verifying against the chain.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import t from 'tap';
import type { ClusterStatus } from '../../cluster/main.ts';
import { clusterMissing } from '../../cluster/main.ts';
import { rpcProvider } from '../../contracts/client/connect.ts';
import { Ledger } from '../../contracts/client/ledger.ts';
import { eventually } from '../helpers/eventually.ts';
import { requireBinary } from '../helpers/require.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { groupAlive, ROOT } from './process.ts';
import { checkAgainstRecomputation, type ApiSettlement } from './helpers.ts';
import { openStores } from '../../store/open.ts';
import { silentLogger } from '../../domain/logger.ts';
import { loadConfig } from '../../domain/config.ts';

const WINDOW_SECONDS = 4;
const GRACE_SECONDS = 1;
const DURATION_SECONDS = 45;
const DEVICES = 6;
/** Faults whose readings must still be stored exactly once (a duplicate or reordered reading is acknowledged). */
const FAULTS = 'duplicate=0.05,reorder=0.02';

interface SimSummary {
  unacked: number;
  deviceDetails: { deviceId: string; readingsAcked: number }[];
}

const why = clusterMissing('influxdb');
if (requireBinary(t, why.length > 0 ? why.join('; ') : undefined)) {
  t.test('start:cluster survives SIGKILL of a broker, a consumer, the leading oracle and a gateway', { timeout: 900_000 }, async (t) => {
    const dataDir = tmpDir(t, 'mrv-cluster-');
    // As root PostgreSQL runs as the postgres user, which must traverse to DATA_DIR.
    fs.chmodSync(dataDir, 0o755);
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) {
      if (k === 'NODE_OPTIONS' || k.startsWith('TAP') || k.startsWith('_TAP') || k.startsWith('NYC') || k.startsWith('npm_') || /^(LOG_|MQTT_|HTTP_|ANVIL_|DATA_DIR|ORACLE_|CHAIN_|DATABASE_|READINGS_|INFLUX_)/.test(k)) continue;
      env[k] = v;
    }
    const child = spawn(process.execPath, ['--import', 'tsx', 'cluster/main.ts', '--devices', String(DEVICES), '--duration', String(DURATION_SECONDS), '--faults', FAULTS], {
      cwd: ROOT,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...env, DATA_DIR: dataDir, WINDOW_SECONDS: String(WINDOW_SECONDS), GRACE_SECONDS: String(GRACE_SECONDS), ORACLE_CRON: '*/2 * * * * *', LOG_LEVEL: 'info' },
    });
    let out = '';
    child.stdout!.on('data', (b) => (out += b));
    child.stderr!.on('data', (b) => (out += b));
    let exited = false;
    const exit = new Promise<void>((resolve) => child.once('exit', () => ((exited = true), resolve())));
    const pgid = child.pid!;
    t.teardown(async () => {
      if (!exited) {
        process.kill(-pgid, 'SIGINT');
        await Promise.race([exit, new Promise((r) => setTimeout(r, 120_000))]);
      }
      if (groupAlive(pgid)) process.kill(-pgid, 'SIGKILL');
    });

    const statusFile = path.join(dataDir, 'cluster', 'status.json');
    const status = (): ClusterStatus => JSON.parse(fs.readFileSync(statusFile, 'utf8')) as ClusterStatus;
    const proc = (name: string) => status().processes.find((p) => p.name === name)!;
    const allUp = () => fs.existsSync(statusFile) && status().processes.filter((p) => p.kind !== 'simulator').every((p) => p.state === 'up');
    await eventually('the cluster to be up', () => {
      if (exited) throw new Error(`the cluster exited:\n${out}`);
      return allUp() && status().processes.filter((p) => p.kind === 'simulator').length === 3;
    }, { timeoutMs: 240_000, everyMs: 250 });
    t.match(out, /gateway-1 +pid \d+ +port \d+ +up/, 'a status line per process');

    const st = status();
    const db = new pg.Client({ connectionString: st.databaseUrl });
    await db.connect();
    // The cluster stops PostgreSQL on Ctrl-C: a connection still open then errs.
    db.on('error', () => undefined);
    let dbOpen = true;
    t.teardown(() => (dbOpen ? db.end() : undefined));
    const count = async (sql: string): Promise<number> => Number((await db.query(sql)).rows[0].n);
    // The cluster's own stores (registry and records in PostgreSQL, readings in its InfluxDB), opened as
    // any process of it opens them, for the independent recomputation of every net.
    t.ok(st.influxUrl, 'the cluster runs InfluxDB for the readings (its default)');
    const stores = await openStores(
      loadConfig({ DATA_DIR: tmpDir(t, 'mrv-cluster-check-'), DATABASE_URL: st.databaseUrl, READINGS_STORE: 'influxdb', INFLUX_URL: st.influxUrl, INFLUX_DATABASE: 'mrv' }),
      silentLogger,
    );
    let storesOpen = true;
    t.teardown(() => (storesOpen ? stores.close().catch(() => undefined) : undefined));
    /** Every reading the cluster's reading store holds for a device, in seq order. */
    const storedOf = async (deviceId: string) => {
      const mark = (await stores.readings.marks([deviceId])).get(deviceId);
      return mark ? stores.readings.consume({ deviceId, mark, before: Number.MAX_SAFE_INTEGER }) : [];
    };
    const deviceIds = async () => (await db.query('SELECT device_id FROM devices ORDER BY device_id')).rows.map((r) => r.device_id as string);
    const adminKey = fs.readFileSync(st.adminKeyFile, 'utf8').trim();
    const api = async <T>(url: string, route: string): Promise<T> => {
      const res = await fetch(`${url}${route}`, { headers: { authorization: `Bearer ${adminKey}` } });
      if (!res.ok) throw new Error(`GET ${url}${route}: ${res.status} ${await res.text()}`);
      return (await res.json()) as T;
    };

    await eventually('readings stored and a window settled', async () => (await stores.readings.marks(await deviceIds())).size > 0 && (await count("SELECT count(*) AS n FROM oracle_settlements WHERE state = 'confirmed'")) > 0, { timeoutMs: 120_000, everyMs: 500 });

    // Midway: the leading oracle is the lease holder (hostname:pid:nonce), held while it settles a run.
    let holder = '';
    await eventually('an oracle to hold the lease', async () => {
      holder = ((await db.query('SELECT holder FROM oracle_lease')).rows[0]?.holder as string | undefined) ?? '';
      return holder !== '';
    }, { timeoutMs: 60_000, everyMs: 10 });
    const leaderPid = Number(holder.split(':')[1]);
    const leader = st.processes.find((p) => p.kind === 'oracle' && p.pid === leaderPid);
    t.ok(leader, `the lease holder ${holder} is one of the oracles`);
    const victims = ['broker-1', 'consumer-1', leader!.name, 'gateway-2'];
    const before = new Map(victims.map((n) => [n, proc(n)]));
    for (const n of victims) process.kill(before.get(n)!.pid!, 'SIGKILL');
    await eventually('every killed process reported and back up', () => victims.every((n) => proc(n).restarts >= 1 && proc(n).state === 'up' && proc(n).pid !== before.get(n)!.pid), { timeoutMs: 120_000, everyMs: 250 });
    for (const n of victims) t.match(out, new RegExp(`${n} +pid ${before.get(n)!.pid} .*exited \\(killed by SIGKILL\\)`), `${n}: its death is reported`);
    t.equal(proc('consumer-1').pid !== before.get('consumer-1')!.pid, true, 'consumer-1 runs again');

    await eventually('the fleet to stop', () => status().processes.filter((p) => p.kind === 'simulator').every((p) => p.state === 'exited'), { timeoutMs: 300_000, everyMs: 500 });
    for (const k of [1, 2, 3]) t.match(proc(`sim-${k}`).exit, 'exit code 0', `sim-${k} ended well`);

    // Every acknowledged reading stored exactly once.
    const summaries = [1, 2, 3].map((k) => {
      const log = fs.readFileSync(path.join(dataDir, 'cluster', 'logs', `sim-${k}.log`), 'utf8');
      const line = log.split('\n').reverse().find((l) => l.startsWith('{"devices"'));
      return JSON.parse(line!) as SimSummary;
    });
    const acked = new Map(summaries.flatMap((s) => s.deviceDetails.map((d) => [d.deviceId, d.readingsAcked] as const)));
    t.equal(acked.size, DEVICES, 'every device reported');
    t.equal(summaries.reduce((n, s) => n + s.unacked, 0), 0, 'nothing left unacknowledged');
    const rows: { deviceId: string; n: number; d: number }[] = [];
    let lastTs = 0;
    for (const d of await deviceIds()) {
      const list = await storedOf(d);
      if (list.length > 0) rows.push({ deviceId: d, n: list.length, d: new Set(list.map((r) => r.seq)).size });
      for (const r of list) lastTs = Math.max(lastTs, r.ts);
    }
    const stored = new Map(rows.map((r) => [r.deviceId, r.n]));
    t.same(rows.filter((r) => r.n !== r.d), [], 'no reading stored twice');
    t.same(Object.fromEntries(stored), Object.fromEntries(acked), 'every acknowledged reading stored, per device');

    // Every closed window settled exactly once on chain: wait for the window after the last reading.
    const facilities = (await db.query('SELECT id FROM facilities ORDER BY id')).rows.map((r) => r.id as string);
    const needEnd = (Math.floor(lastTs / (WINDOW_SECONDS * 1000)) + 1) * WINDOW_SECONDS * 1000;
    const g1 = proc('gateway-1').url!;
    const g2 = proc('gateway-2').url!;
    await eventually('every window settled', async () => {
      for (const f of facilities) {
        const { items } = await api<{ items: ApiSettlement[] }>(g1, `/v1/settlements?facilityId=${f}&limit=1000`);
        if (!items.some((s) => Date.parse(s.windowEnd) >= needEnd)) return false;
      }
      return true;
    }, { timeoutMs: 180_000, everyMs: 500 });

    const provider = rpcProvider(st.rpcUrl);
    const ledger = Ledger.readOnlyAt(st.contractAddress, provider);
    for (const f of facilities) {
      const a = (await api<{ items: ApiSettlement[] }>(g1, `/v1/settlements?facilityId=${f}&limit=1000`)).items;
      const b = (await api<{ items: ApiSettlement[] }>(g2, `/v1/settlements?facilityId=${f}&limit=1000`)).items;
      const upTo = (list: ApiSettlement[]) => list.filter((s) => Date.parse(s.windowEnd) <= needEnd).map((s) => [s.id, s.windowStart, s.netGrams]).sort();
      t.ok(upTo(a).length >= 2, `${f}: several windows settled (${upTo(a).length})`);
      t.same(upTo(b), upTo(a), `${f}: both gateways answer the same settlements`);
      const onChain = (await ledger.settlements({ facilityId: f })).filter((s) => s.windowStart < needEnd);
      const perWindow = new Map<number, number>();
      for (const s of onChain) perWindow.set(s.windowStart, (perWindow.get(s.windowStart) ?? 0) + 1);
      t.same([...perWindow.values()].filter((n) => n !== 1), [], `${f}: every window settled exactly once on chain`);
      t.equal(perWindow.size, upTo(a).length, `${f}: chain and records agree`);
      let mismatches = 0;
      for (const s of a.filter((s) => Date.parse(s.windowEnd) <= needEnd)) if (!(await api<{ match: boolean }>(g2, `/v1/settlements/${s.id}/verify`)).match) mismatches++;
      t.equal(mismatches, 0, `${f}: every settlement verifies against the chain`);
      const settled = a.filter((s) => Date.parse(s.windowEnd) <= needEnd).sort((x, y) => Date.parse(x.windowStart) - Date.parse(y.windowStart));
      await checkAgainstRecomputation(t, stores, f, settled);
    }

    storesOpen = false;
    await stores.close();

    // Ctrl-C stops everything.
    dbOpen = false;
    await db.end();
    provider.destroy();
    process.kill(child.pid!, 'SIGINT');
    await exit;
    t.match(out, /cluster stopped/, 'Ctrl-C stops the cluster');
    t.equal(child.exitCode, 0, 'and it exits 0');
  });
}
