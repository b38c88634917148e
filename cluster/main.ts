/**
 * `npm run start:cluster`: the scale-out topology of SPEC "Scale-out" (docs/DEPLOY.md) on one machine.
 * Starts, as child processes with their data under DATA_DIR/cluster: PostgreSQL (registry, keys,
 * rejections, oracle records, lease; the readings with `--readings postgres`), Mosquitto (the external
 * broker), InfluxDB for the readings (the default: every ingest process writes it, each device's commits
 * serialised through PostgreSQL, store/influx/coordinator.ts), a local anvil with the ledger deployed
 * once (the composition's local chain, in this process), then 2 consumers of Mosquitto (MQTT_CLIENT_ID
 * cluster-consumer-1/-2), 2 of our brokers, 2 oracles (one settles at a time: the lease), 2 gateways,
 * and the simulated fleet split in three: over each of our brokers and over Mosquitto.
 *
 * A status line per process (name, pid, port, up / exited) at start and on every change; the same,
 * with the URLs and the admin key file, in DATA_DIR/cluster/status.json. A child that dies is reported
 * and started again with the same settings (same port, same MQTT_CLIENT_ID); a simulator that ends is
 * not. SIGTERM (or SIGINT) stops everything in order: simulators, gateways, oracles, ingest, then the
 * servers. Ctrl-C in a terminal also reaches every child at once (one process group): each stops on
 * its own, and nothing acknowledged is lost, since a reading is acknowledged only after its commit.
 * Each child's output goes to DATA_DIR/cluster/logs/NAME.log.
 */
import { createDatabase } from '../store/postgres/admin.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { anvilBinary } from '../contracts/client/chain.ts';
import { startLocalChain, type LocalChain } from '../contracts/client/local.ts';
import { loadConfig } from '../domain/config.ts';
import { errors } from '../domain/errors.ts';
import { createLogger } from '../domain/logger.ts';
import { isEntryPoint, runMain } from '../domain/process.ts';
import { influxdMissing, startInfluxd, type Influxd } from './influxd.ts';
import { postgresMissing, startPostgres, type PostgresCluster } from './postgres.ts';
import { freePort, mosquittoMissing, startMosquitto, type Mosquitto } from './servers.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export const USAGE = `Usage: npm run start:cluster -- [--devices N] [--rate R] [--faults SPEC] [--duration SEC] [--readings influxdb|postgres]

  --devices N      simulated devices in all, split over broker-1, broker-2 and Mosquitto (default
                   $SIMULATED_DEVICES, at least 3)
  --rate R         readings per second per device (default 1)
  --faults SPEC    the simulators' fault injection (npm run simulate -- --help)
  --duration SEC   the simulators stop after SEC seconds (the cluster keeps running)
  --readings B     where the readings go: influxdb (default) or postgres
Settings from the environment: DATA_DIR, WINDOW_SECONDS, GRACE_SECONDS, ORACLE_CRON, LOG_LEVEL.`;

/** Debian packages behind the servers the cluster starts, and why each is missing (undefined: present). */
export function clusterMissing(readings: 'postgres' | 'influxdb'): string[] {
  const why = [postgresMissing(), mosquittoMissing(), readings === 'influxdb' ? influxdMissing() : undefined];
  if (!anvilBinary()) why.push('anvil binary not found (npm package @foundry-rs/anvil-linux-amd64, an optional dependency)');
  return why.filter((w): w is string => w !== undefined);
}

type Kind = 'consumer' | 'broker' | 'oracle' | 'gateway' | 'simulator';

interface Child {
  name: string;
  kind: Kind;
  script: string;
  args: string[];
  env: Record<string, string>;
  port?: number;
  url?: string;
  proc?: ChildProcess;
  pid?: number;
  state: 'starting' | 'up' | 'exited' | 'stopped';
  exit?: string;
  restarts: number;
}

export interface ClusterStatus {
  dataDir: string;
  databaseUrl: string;
  mqttUrl: string;
  influxUrl?: string;
  rpcUrl: string;
  contractAddress: string;
  adminKeyFile: string;
  processes: { name: string; kind: Kind; pid?: number; port?: number; url?: string; state: string; exit?: string; restarts: number }[];
}

function readKey(file: string): string {
  return fs.readFileSync(file, 'utf8').trim();
}

/** The admin API key every gateway shares (ADMIN_API_KEY), kept 0600 in `file`. */
function adminKey(file: string): string {
  if (fs.existsSync(file)) return readKey(file);
  const key = crypto.randomBytes(32).toString('base64url');
  fs.writeFileSync(file, `${key}\n`, { mode: 0o600 });
  return key;
}

async function ensureDatabase(url: string, name: string): Promise<void> {
  await createDatabase(url, name, { ifMissing: true });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      devices: { type: 'string' },
      rate: { type: 'string' },
      faults: { type: 'string' },
      duration: { type: 'string' },
      readings: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const config = loadConfig();
  const readings = values.readings ?? 'influxdb';
  if (readings !== 'postgres' && readings !== 'influxdb') throw errors.CONFIG_INVALID(`--readings must be postgres or influxdb, got ${JSON.stringify(readings)}`);
  const missing = clusterMissing(readings);
  if (missing.length > 0) throw errors.SERVER_BINARY_MISSING(missing.join('; '));
  const devices = Math.max(3, Number(values.devices ?? config.simulatedDevices));
  if (!Number.isInteger(devices)) throw errors.CONFIG_INVALID(`--devices must be a whole number, got ${JSON.stringify(values.devices)}`);

  const logger = createLogger(config.logLevel, undefined, config.logFormat);
  const dataDir = path.resolve(config.dataDir);
  const dir = path.join(dataDir, 'cluster');
  fs.mkdirSync(path.join(dir, 'logs'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'mosquitto'), { recursive: true });
  // As root, PostgreSQL runs as the postgres user: it must be able to traverse to its directory.
  if (process.getuid?.() === 0) for (const d of [dataDir, dir]) fs.chmodSync(d, fs.statSync(d).mode | 0o711);

  const children: Child[] = [];
  let stopping = false;
  let postgres: PostgresCluster | undefined;
  let mosquitto: Mosquitto | undefined;
  let influxd: Influxd | undefined;
  let chain: LocalChain | undefined;
  let status: Omit<ClusterStatus, 'processes'> | undefined;

  const say = (line: string) => process.stdout.write(`${line}\n`);
  const statusLine = (c: Child) =>
    `${c.name.padEnd(12)} pid ${String(c.pid ?? '-').padEnd(8)} port ${String(c.port ?? '-').padEnd(6)} ${c.state}${c.exit ? ` (${c.exit})` : ''}${c.restarts ? `, restarted ${c.restarts}x` : ''}`;
  const writeStatus = () => {
    if (!status) return;
    const full: ClusterStatus = {
      ...status,
      processes: children.map((c) => ({ name: c.name, kind: c.kind, pid: c.pid, port: c.port, url: c.url, state: c.state, exit: c.exit, restarts: c.restarts })),
    };
    const file = path.join(dir, 'status.json');
    fs.writeFileSync(`${file}.tmp`, `${JSON.stringify(full, null, 2)}\n`);
    fs.renameSync(`${file}.tmp`, file);
  };
  const changed = (c: Child) => {
    say(statusLine(c));
    writeStatus();
  };

  function launch(c: Child): void {
    const log = fs.openSync(path.join(dir, 'logs', `${c.name}.log`), 'a');
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('npm_') && k !== 'NODE_OPTIONS') env[k] = v;
    const proc = spawn(process.execPath, ['--import', 'tsx', c.script, ...c.args], { cwd: ROOT, stdio: ['ignore', 'pipe', log], env: { ...env, ...c.env } });
    fs.closeSync(log);
    c.proc = proc;
    c.pid = proc.pid;
    c.state = 'starting';
    c.exit = undefined;
    let out = '';
    proc.stdout!.on('data', (b: Buffer) => {
      fs.appendFileSync(path.join(dir, 'logs', `${c.name}.log`), b);
      out = (out + b.toString()).slice(-10_000);
      if (c.state === 'starting' && (c.kind === 'simulator' || /"event":"listening"/.test(out))) {
        c.state = 'up';
        changed(c);
      }
    });
    // The oracle prints no banner: up once its process runs.
    if (c.kind === 'oracle' || c.kind === 'simulator') {
      c.state = 'up';
      changed(c);
    }
    proc.on('exit', (code, signal) => {
      if (c.proc !== proc) return;
      c.proc = undefined;
      c.exit = signal ? `killed by ${signal}` : `exit code ${code}`;
      if (stopping) {
        c.state = 'stopped';
        changed(c);
        return;
      }
      c.state = 'exited';
      changed(c);
      // A simulator that ends has run its course; anything else is started again, same settings.
      if (c.kind !== 'simulator') {
        c.restarts++;
        setTimeout(() => {
          if (!stopping) launch(c);
        }, 1000).unref();
      }
    });
  }

  async function stopKind(kinds: Kind[], signal: NodeJS.Signals): Promise<void> {
    const waits = children
      .filter((c) => kinds.includes(c.kind) && c.proc)
      .map(
        (c) =>
          new Promise<void>((resolve) => {
            const proc = c.proc!;
            proc.once('exit', () => resolve());
            proc.kill(signal);
            setTimeout(() => proc.kill('SIGKILL'), 30_000).unref();
          }),
      );
    await Promise.all(waits);
  }

  async function stopAll(): Promise<void> {
    stopping = true;
    say('stopping the cluster');
    await stopKind(['simulator'], 'SIGINT');
    await stopKind(['gateway', 'oracle'], 'SIGTERM');
    await stopKind(['broker', 'consumer'], 'SIGTERM');
    await chain?.close().catch(() => undefined);
    if (mosquitto) {
      const proc = mosquitto.proc;
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        await exited;
      }
    }
    await influxd?.stop().catch(() => undefined);
    await postgres?.stop().catch(() => undefined);
    say('cluster stopped');
  }

  let signalled = false;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      if (signalled) return;
      signalled = true;
      stopAll().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    });
  }

  try {
    postgres = await startPostgres({ dir: path.join(dir, 'postgres'), maxConnections: 500, signalHook: false });
    await ensureDatabase(postgres.url, 'mrv');
    const databaseUrl = postgres.url.replace(/\/postgres$/, '/mrv');
    say(`postgresql   port ${postgres.port}  up (${path.join(dir, 'postgres')})`);
    // Mosquitto: the consumers keep many messages in flight and nothing is dropped while one is down.
    mosquitto = await startMosquitto(path.join(dir, 'mosquitto'), ['max_inflight_messages 0', 'max_queued_messages 0']);
    if (!mosquitto.up) throw errors.BACKEND_UNAVAILABLE(`mosquitto on port ${mosquitto.port}`);
    const mq = mosquitto;
    mq.proc.on('exit', (code, signal) => {
      if (!stopping) say(`mosquitto    pid ${mq.proc.pid} port ${mq.port} exited (${signal ?? `exit code ${code}`})`);
    });
    say(`mosquitto    pid ${mq.proc.pid} port ${mq.port}  up`);
    if (readings === 'influxdb') {
      influxd = await startInfluxd({ dir: path.join(dir, 'influxdb'), database: 'mrv' });
      say(`influxd      ${influxd.url}  up`);
    }
    // Its own directory: the chain makes its data dir private (0700), which PostgreSQL must traverse.
    // Each oracle and gateway signs with its own key (same roles): their nonces never collide.
    const extraKeys = [{ name: 'oracle-2', as: 'oracle' as const }, { name: 'gateway-2', as: 'gateway' as const }];
    chain = await startLocalChain({ dataDir: path.join(dir, 'anvil'), port: await freePort(), windowSeconds: config.windowSeconds, logger, extraKeys });
    say(`anvil        ${chain.rpcUrl}  up, ledger at ${chain.address}${chain.deployed ? ' (deployed now)' : ''}`);

    const adminKeyFile = path.join(dir, 'admin-api-key');
    const common: Record<string, string> = {
      DATABASE_URL: databaseUrl,
      READINGS_STORE: readings,
      ...(influxd ? { INFLUX_URL: influxd.url, INFLUX_DATABASE: 'mrv' } : {}),
      CHAIN_RPC_URL: chain.rpcUrl,
      CONTRACT_ADDRESS: chain.address,
      ADMIN_API_KEY: adminKey(adminKeyFile),
      WINDOW_SECONDS: String(config.windowSeconds),
      GRACE_SECONDS: String(config.graceSeconds),
      ORACLE_CRON: config.oracleCron,
      LOG_LEVEL: config.logLevel,
      LOG_FORMAT: 'json',
      SIMULATED_DEVICES: '0',
    };
    const procDir = (name: string) => {
      const d = path.join(dir, 'procs', name);
      fs.mkdirSync(d, { recursive: true });
      return d;
    };
    const add = async (name: string, kind: Kind, script: string, env: Record<string, string>, portSetting?: string): Promise<Child> => {
      const port = portSetting ? await freePort() : undefined;
      const c: Child = { name, kind, script, args: [], env: { ...common, DATA_DIR: procDir(name), ...env, ...(portSetting ? { [portSetting]: String(port) } : {}) }, port, state: 'starting', restarts: 0 };
      children.push(c);
      return c;
    };
    for (const i of [1, 2]) await add(`consumer-${i}`, 'consumer', 'broker/main.ts', { MQTT_URL: mq.url, MQTT_CLIENT_ID: `cluster-consumer-${i}` });
    for (const i of [1, 2]) {
      const b = await add(`broker-${i}`, 'broker', 'broker/main.ts', { MQTT_HOST: '127.0.0.1' }, 'MQTT_PORT');
      b.url = `mqtt://127.0.0.1:${b.port}`;
    }
    const keyOf = (c: LocalChain, job: 'oracle' | 'gateway', i: number) => readKey(i === 1 ? c.files.keys[job] : c.files.extra[`${job}-${i}`]);
    for (const i of [1, 2]) await add(`oracle-${i}`, 'oracle', 'oracle/main.ts', { ORACLE_PRIVATE_KEY: keyOf(chain, 'oracle', i) });
    for (const i of [1, 2]) {
      const g = await add(`gateway-${i}`, 'gateway', 'gateway/main.ts', { GATEWAY_PRIVATE_KEY: keyOf(chain, 'gateway', i), HTTP_HOST: '127.0.0.1' }, 'HTTP_PORT');
      g.url = `http://127.0.0.1:${g.port}`;
    }
    status = { dataDir, databaseUrl, mqttUrl: mq.url, ...(influxd ? { influxUrl: influxd.url } : {}), rpcUrl: chain.rpcUrl, contractAddress: chain.address, adminKeyFile };
    for (const c of children) launch(c);
    const pollUp = async (what: Kind[]) => {
      const end = Date.now() + 180_000;
      while (children.some((c) => what.includes(c.kind) && c.state !== 'up')) {
        if (stopping) return;
        if (Date.now() > end) throw errors.BACKEND_UNAVAILABLE(`${children.filter((c) => c.state !== 'up').map((c) => c.name).join(', ')} (see ${path.join(dir, 'logs')})`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    await pollUp(['consumer', 'broker', 'oracle', 'gateway']);

    // The fleet, in three: over each of our brokers (registered through gateway-1) and over Mosquitto.
    const split = [Math.ceil(devices / 3), Math.ceil((devices - Math.ceil(devices / 3)) / 2)];
    split.push(devices - split[0] - split[1]);
    const targets = [children.find((c) => c.name === 'broker-1')!.url!, children.find((c) => c.name === 'broker-2')!.url!, mq.url];
    const api = children.find((c) => c.name === 'gateway-1')!.url!;
    for (const [k, url] of targets.entries()) {
      const name = `sim-${k + 1}`;
      const c: Child = {
        name,
        kind: 'simulator',
        script: 'simulators/main.ts',
        args: [
          '--url', url, '--api', api, '--api-key-file', adminKeyFile, '--devices', String(split[k]), '--prefix', `c${k + 1}`,
          '--state', path.join(procDir(name), 'state.json'), '--rate', values.rate ?? '1', '--quiet', '--json',
          ...(values.faults ? ['--faults', values.faults] : []), ...(values.duration ? ['--duration', values.duration] : []),
        ],
        env: { ...common, DATA_DIR: procDir(name), LOG_LEVEL: 'warn' },
        url,
        state: 'starting',
        restarts: 0,
      };
      children.push(c);
      launch(c);
    }
    writeStatus();
    say(`cluster up: gateways ${children.filter((c) => c.kind === 'gateway').map((c) => c.url).join(' ')}, admin key in ${adminKeyFile}; Ctrl-C stops it`);
  } catch (err) {
    if (!signalled) {
      signalled = true;
      await stopAll();
    }
    throw err;
  }
}

if (isEntryPoint(import.meta.url)) runMain('cluster', main);
