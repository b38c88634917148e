/**
 * Starts a real InfluxDB 1.x server (Debian's influxd) as a child process, for a test (temp dir) or
 * `npm run start:cluster` (kept in `opts.dir` under DATA_DIR): its own config file in a temp dir,
 * free ports on 127.0.0.1 (HTTP and the RPC bind-address), reporting and the _internal monitor store
 * disabled. `stop()` / `start()` restart it on the same directories (outage tests); `close()` stops it
 * and removes the directory (a kept `dir` stays).
 *
 * `influxdMissing()` says why the binary cannot be used; tests skip with that reason, or fail when
 * CI is set (see `requireBinary` in test/helpers/require.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { freePort, pollUntil } from './servers.ts';

export const INFLUXD_BIN = '/usr/bin/influxd';

export interface Influxd {
  /** http://127.0.0.1:PORT */
  url: string;
  /** A database created at start. */
  database: string;
  /** Creates another database (fresh state per subtest). */
  createDatabase(name: string): Promise<void>;
  /** Runs an InfluxQL statement (POST /query) and returns the parsed JSON. */
  query(q: string, db?: string, epoch?: string): Promise<InfluxResponse>;
  /** Stops the server (SIGTERM, waits for exit); the data stays. */
  stop(): Promise<void>;
  /** Starts it again on the same port and directories and waits for /ping. */
  start(): Promise<void>;
  /** Stops it and deletes the temp dir. */
  close(): Promise<void>;
  readonly running: boolean;
}

export interface InfluxResponse {
  results?: { statement_id: number; error?: string; series?: { name: string; tags?: Record<string, string>; columns: string[]; values: unknown[][] }[] }[];
  error?: string;
}

/** Why influxd cannot be used here, or undefined when it can. */
export function influxdMissing(): string | undefined {
  try {
    fs.accessSync(INFLUXD_BIN, fs.constants.X_OK);
    return undefined;
  } catch {
    return `${INFLUXD_BIN} not found (Debian package "influxdb"); the InfluxDB tests need a real 1.x server`;
  }
}




function configText(dir: string, httpPort: number, rpcPort: number): string {
  return `reporting-disabled = true
bind-address = "127.0.0.1:${rpcPort}"

[meta]
  dir = "${dir}/meta"
  logging-enabled = false

[data]
  dir = "${dir}/data"
  wal-dir = "${dir}/wal"
  query-log-enabled = false
  trace-logging-enabled = false

[coordinator]
  log-queries-after = "0s"

[retention]
  enabled = false

[shard-precreation]
  enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:${httpPort}"
  auth-enabled = false
  log-enabled = false
  write-tracing = false
  pprof-enabled = false

[logging]
  level = "error"
  suppress-logo = true

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false
`;
}

export async function startInfluxd(opts: { database?: string; dir?: string } = {}): Promise<Influxd> {
  const why = influxdMissing();
  if (why) throw new Error(why);
  const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'mrv-influxd-'));
  fs.mkdirSync(dir, { recursive: true });
  const removeDir = (d: string) => {
    if (opts.dir === undefined) fs.rmSync(d, { recursive: true, force: true });
  };
  const database = opts.database ?? 'mrv_test';
  let httpPort = 0;
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let stderr = '';
  const configFile = path.join(dir, 'influxdb.conf');

  const url = () => `http://127.0.0.1:${httpPort}`;

  async function ping(): Promise<boolean> {
    try {
      const res = await fetch(`${url()}/ping`, { signal: AbortSignal.timeout(1000) });
      return res.status === 204;
    } catch {
      return false;
    }
  }

  async function launch(): Promise<void> {
    stderr = '';
    const proc = spawn(INFLUXD_BIN, ['run', '-config', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    proc.stderr?.on('data', (b: Buffer) => {
      stderr = (stderr + b.toString()).slice(-4000);
    });
    exited = new Promise((resolve) => proc.once('exit', () => resolve()));
    let dead = false;
    void exited.then(() => {
      dead = true;
    });
    // A generous bound: a busy machine only makes the start slower.
    const up = await pollUntil(
      async () => {
        if (dead) throw new Error(`influxd exited at start: ${stderr}`);
        return ping();
      },
      60_000,
    );
    if (up) return;
    proc.kill('SIGKILL');
    throw new Error(`influxd did not answer /ping within 60 s: ${stderr}`);
  }

  async function firstStart(): Promise<void> {
    // Ports are picked then released, so another process could take one in between: retry a few times.
    let lastErr: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      httpPort = await freePort();
      const rpcPort = await freePort();
      fs.writeFileSync(configFile, configText(dir, httpPort, rpcPort));
      try {
        await launch();
        return;
      } catch (err) {
        lastErr = err;
      }
    }
    throw lastErr;
  }

  async function stop(): Promise<void> {
    const proc = child;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
    child = undefined;
  }

  async function query(q: string, db?: string, epoch?: string): Promise<InfluxResponse> {
    const params = new URLSearchParams({ q });
    if (db) params.set('db', db);
    if (epoch) params.set('epoch', epoch);
    const res = await fetch(`${url()}/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: params.toString(),
    });
    const body = (await res.json()) as InfluxResponse;
    if (!res.ok || body.error) throw new Error(`influx query failed (${res.status}): ${body.error ?? ''}`);
    const stmtErr = body.results?.find((r) => r.error);
    if (stmtErr) throw new Error(`influx statement failed: ${stmtErr.error}`);
    return body;
  }

  async function createDatabase(name: string): Promise<void> {
    await query(`CREATE DATABASE "${name.replace(/[\\"]/g, (c) => '\\' + c)}"`);
  }

  try {
    await firstStart();
    await createDatabase(database);
  } catch (err) {
    await stop();
    removeDir(dir);
    throw err;
  }

  return {
    get url() {
      return url();
    },
    database,
    createDatabase,
    query,
    stop,
    start: launch,
    async close() {
      await stop();
      removeDir(dir);
    },
    get running() {
      return child !== undefined && child.exitCode === null && child.signalCode === null;
    },
  };
}
