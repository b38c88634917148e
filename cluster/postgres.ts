/**
 * Starts a PostgreSQL 15 server (Debian's binaries in /usr/lib/postgresql/15/bin) as a child of this
 * process, for a test file (throwaway) or `npm run start:cluster` (kept in `opts.dir` under DATA_DIR):
 * `initdb` into a temp dir, `pg_ctl start` on a free port on 127.0.0.1 with the unix socket in the
 * same dir, fsync on (the default, stated explicitly: commit latency and durability are
 * real). As root the binaries run as the `postgres` OS user (`runuser -u postgres --`; initdb refuses
 * root), in a temp dir owned by that user. `createDatabase()` gives each test a fresh, empty database;
 * `stop()` stops the server (`pg_ctl stop -m fast`) and removes the directory. A process that ends
 * without calling stop() still stops its clusters and removes their directories (on `exit` and on
 * SIGTERM / SIGINT / SIGHUP: `pg_ctl stop -m immediate`); only SIGKILL leaves one behind.
 *
 * `postgresMissing()` says why the binaries cannot be used; tests skip with that reason, or fail when
 * `process.env.CI` is set (see `requirePostgres`), as test/helpers/influxd.ts does for influxd.
 */
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createDatabase } from '../store/postgres/admin.ts';
import { freePort } from './servers.ts';

const run = promisify(execFile);

export const PG_BIN_DIR = '/usr/lib/postgresql/15/bin';
const RUNUSER = '/usr/sbin/runuser';
const PG_USER = 'postgres';

export interface PostgresCluster {
  /** postgres://postgres@127.0.0.1:PORT/postgres (the maintenance database). */
  url: string;
  port: number;
  /** The temp dir (data in `data/`, the unix socket and the server log beside it). */
  dir: string;
  /** Creates an empty database and returns its connection string. */
  createDatabase(name?: string): Promise<string>;
  /** Stops the server and deletes the temp dir (a kept `dir` stays). */
  stop(): Promise<void>;
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** uid and gid of the `postgres` OS user, from /etc/passwd. */
function pgUserIds(): { uid: number; gid: number } | undefined {
  try {
    const line = fs
      .readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`${PG_USER}:`));
    if (!line) return undefined;
    const [, , uid, gid] = line.split(':');
    return { uid: Number(uid), gid: Number(gid) };
  } catch {
    return undefined;
  }
}

/** Why a PostgreSQL cluster cannot be started here, or undefined when it can. */
export function postgresMissing(): string | undefined {
  for (const bin of ['initdb', 'pg_ctl', 'postgres']) {
    try {
      fs.accessSync(path.join(PG_BIN_DIR, bin), fs.constants.X_OK);
    } catch {
      return `${PG_BIN_DIR}/${bin} not found (Debian package "postgresql-15"); the PostgreSQL tests need a real server`;
    }
  }
  if (isRoot()) {
    if (!fs.existsSync(RUNUSER)) return `${RUNUSER} not found: as root the PostgreSQL binaries run as the ${PG_USER} user through it`;
    if (!pgUserIds()) return `no "${PG_USER}" OS user: as root initdb must run as that user`;
  }
  return undefined;
}

/** argv that runs a PostgreSQL binary as the postgres user when we are root, as ourselves otherwise. */
function asPgUser(bin: string, args: string[]): [string, string[]] {
  const full = path.join(PG_BIN_DIR, bin);
  return isRoot() ? [RUNUSER, ['-u', PG_USER, '--', full, ...args]] : [full, args];
}

/** Data dirs of running clusters, by their dir, and whether the dir is removed at the end (temp dirs). */
const live = new Map<string, { data: string; temp: boolean }>();
let exitHook = false;
let signalHook = false;

/** pg_ctl stop -m immediate and removal of the temp dir, for every cluster still running. */
function stopAllNow(): void {
  for (const [dir, { data, temp }] of live) {
    const [cmd, args] = asPgUser('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
    spawnSync(cmd, args, { stdio: 'ignore', timeout: 10_000 });
    if (temp) fs.rmSync(dir, { recursive: true, force: true });
  }
  live.clear();
}

/**
 * A process that ends without stop() (an exception, a signal) still stops its clusters: on `exit`,
 * and on SIGTERM / SIGINT / SIGHUP, after which the signal is raised again if nothing else handles it.
 */
function installExitHook(signals: boolean): void {
  if (!exitHook) process.on('exit', stopAllNow);
  exitHook = true;
  if (!signals || signalHook) return;
  signalHook = true;
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.once(sig, () => {
      stopAllNow();
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    });
  }
}

let dbCounter = 0;

export interface StartPostgresOptions {
  /**
   * Keep the cluster in this directory (created when absent, initdb only on the first start; the
   * parent directories must be traversable by the postgres user when we are root). Default: a temp
   * dir removed by `stop()`.
   */
  dir?: string;
  /** max_connections (default 100). */
  maxConnections?: number;
  /**
   * Stop the server at once on SIGTERM / SIGINT / SIGHUP (default true). A caller that stops it in
   * order on those signals itself says false; the server is still stopped on `exit`.
   */
  signalHook?: boolean;
}

export async function startPostgres(opts: StartPostgresOptions = {}): Promise<PostgresCluster> {
  const why = postgresMissing();
  if (why) throw new Error(why);
  const temp = opts.dir === undefined;
  // A short path: the unix socket path (dir/.s.PGSQL.PORT) must stay under 108 bytes.
  const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'mrv-pg-'));
  fs.mkdirSync(dir, { recursive: true });
  const socketDir = dir.length <= 80 ? dir : os.tmpdir();
  const data = path.join(dir, 'data');
  const logFile = path.join(dir, 'server.log');
  const removeTemp = () => {
    if (temp) fs.rmSync(dir, { recursive: true, force: true });
  };
  if (isRoot()) {
    const ids = pgUserIds() as { uid: number; gid: number };
    fs.chownSync(dir, ids.uid, ids.gid);
  }
  fs.chmodSync(dir, 0o700);
  if (!fs.existsSync(path.join(data, 'PG_VERSION'))) try {
    // --no-sync only skips initdb's own final flush of the fresh files; the server runs with fsync on.
    const [cmd, args] = asPgUser('initdb', ['-D', data, '-A', 'trust', '-U', PG_USER, '-E', 'UTF8', '--locale=C', '--no-sync']);
    await run(cmd, args, { timeout: 120_000 });
  } catch (err) {
    removeTemp();
    throw new Error(`initdb failed: ${(err as Error).message}`);
  }

  let port = 0;
  let lastErr: unknown;
  // Ports are picked then released, so another process could take one in between: retry a few times.
  for (let attempt = 0; attempt < 3 && port === 0; attempt++) {
    const candidate = await freePort();
    const serverOpts = [
      `-p ${candidate}`,
      `-k ${socketDir}`,
      '-c listen_addresses=127.0.0.1',
      '-c fsync=on',
      '-c synchronous_commit=on',
      '-c shared_buffers=64MB',
      `-c max_connections=${opts.maxConnections ?? 100}`,
    ].join(' ');
    const [cmd, args] = asPgUser('pg_ctl', ['-D', data, '-l', logFile, '-o', serverOpts, '-w', '-t', '120', 'start']);
    try {
      live.set(dir, { data, temp });
      installExitHook(opts.signalHook ?? true);
      await run(cmd, args, { timeout: 150_000 });
      port = candidate;
    } catch (err) {
      live.delete(dir);
      let log = '';
      try {
        log = fs.readFileSync(logFile, 'utf8').slice(-2000);
      } catch {
        // no log yet
      }
      lastErr = new Error(`pg_ctl start failed: ${(err as Error).message}\n${log}`);
    }
  }
  if (port === 0) {
    removeTemp();
    throw lastErr;
  }

  const url = `postgres://${PG_USER}@127.0.0.1:${port}/postgres`;
  let stopped = false;
  return {
    url,
    port,
    dir,
    async createDatabase(name?: string): Promise<string> {
      const db = name ?? `t_${process.pid}_${++dbCounter}`;
      await createDatabase(url, db);
      return `postgres://${PG_USER}@127.0.0.1:${port}/${db}`;
    },
    async stop(): Promise<void> {
      if (stopped) return;
      stopped = true;
      const [cmd, args] = asPgUser('pg_ctl', ['-D', data, '-m', 'fast', '-w', '-t', '60', 'stop']);
      try {
        await run(cmd, args, { timeout: 90_000 });
      } catch {
        const [c2, a2] = asPgUser('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
        try {
          execFileSync(c2, a2, { stdio: 'ignore', timeout: 30_000 });
        } catch {
          // already down
        }
      }
      live.delete(dir);
      removeTemp();
    },
  };
}

