/**
 * Start-up guards of `npm start`: one instance per DATA_DIR (a pid lock file, stale locks replaced)
 * and the ports it will listen on free, each refusal naming the setting to change or the running
 * instance's pid instead of failing later with "address already in use".
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { errors } from './errors.ts';
import type { Logger } from './logger.ts';

/** The lock file's name under DATA_DIR. */
export const LOCK_FILE = 'carbon-mrv.pid';

interface LockContent {
  pid: number;
  host: string;
  startedAt: string;
}

export interface InstanceLock {
  file: string;
  /** Removes the lock file if it is still this process's. */
  release(): void;
}

function errnoCode(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

/**
 * Whether `pid` may be a running carbon-mrv: this process, or a live process that (where /proc
 * tells) runs node. A pid recycled by another program after a crash counts as gone.
 */
export function processRunning(pid: number): boolean {
  if (pid === process.pid) return true;
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if (errnoCode(e) !== 'EPERM') return false;
  }
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('node');
  } catch (e) {
    return errnoCode(e) !== 'ENOENT';
  }
}

function readLock(file: string): LockContent | undefined {
  try {
    const v = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<LockContent>;
    return typeof v.pid === 'number' ? { pid: v.pid, host: String(v.host ?? ''), startedAt: String(v.startedAt ?? '') } : undefined;
  } catch {
    return undefined;
  }
}

function releaseIfMine(file: string): void {
  if (readLock(file)?.pid === process.pid) fs.rmSync(file, { force: true });
}

/**
 * Takes DATA_DIR's lock: `DATA_DIR/carbon-mrv.pid` holding this process's pid. The file appears
 * whole (written aside, then hard-linked into place, which fails if it exists). A lock whose process
 * is gone (a crash, kill -9) is replaced with a warning; a live one stops the start with
 * ALREADY_RUNNING naming its pid. Released by `release()` or, failing that, when the process exits.
 */
export function acquireInstanceLock(dataDir: string, opts: { logger?: Logger } = {}): InstanceLock {
  const file = path.join(dataDir, LOCK_FILE);
  const mine: LockContent = { pid: process.pid, host: os.hostname(), startedAt: new Date().toISOString() };
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(mine)}\n`, { mode: 0o600 });
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        fs.linkSync(tmp, file);
        break;
      } catch (e) {
        if (errnoCode(e) !== 'EEXIST' || attempt >= 3) throw e;
      }
      const held = readLock(file);
      if (held && (held.host !== mine.host || processRunning(held.pid))) throw errors.ALREADY_RUNNING(held.pid, dataDir, file);
      opts.logger?.warn({ lockFile: file, stalePid: held?.pid ?? null }, `replacing a stale lock file (pid ${held?.pid ?? 'unknown'} is not running)`);
      fs.rmSync(file, { force: true });
    }
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  const onExit = () => releaseIfMine(file);
  process.once('exit', onExit);
  return {
    file,
    release() {
      process.off('exit', onExit);
      releaseIfMine(file);
    },
  };
}

export interface PortSetting {
  /** The setting that chose the port (MQTT_PORT, HTTP_PORT, ANVIL_PORT, …). */
  setting: string;
  host: string;
  port: number;
}

/** Whether something already listens on host:port (tries to listen there and closes at once). */
export function portInUse(host: string, port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', (e) => (errnoCode(e) === 'EADDRINUSE' ? resolve(true) : reject(e)));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(false)));
  });
}

/**
 * Checks, before anything starts, that the configured ports are distinct and free; port 0 (any free
 * port) is skipped. Throws PORT_IN_USE naming the setting to change, or CONFIG_INVALID.
 */
export async function assertPortsFree(ports: PortSetting[]): Promise<void> {
  const fixed = ports.filter((p) => p.port !== 0);
  for (let i = 0; i < fixed.length; i++) {
    const twin = fixed.slice(i + 1).find((p) => p.port === fixed[i].port);
    if (twin) throw errors.CONFIG_INVALID(`${fixed[i].setting} and ${twin.setting} are both ${twin.port}: give each its own port`);
  }
  for (const p of fixed) {
    let used: boolean;
    try {
      used = await portInUse(p.host, p.port);
    } catch (e) {
      const why = errnoCode(e) === 'EACCES' ? 'permission denied (ports below 1024 need privileges)' : (e as Error).message;
      throw errors.CONFIG_INVALID(`${p.setting}=${p.port}: cannot listen on ${p.host}:${p.port}: ${why}`);
    }
    if (used) throw errors.PORT_IN_USE(p.setting, p.host, p.port);
  }
}

/**
 * A listen failure said in terms of the setting: EADDRINUSE (or anvil's "Address already in use")
 * becomes PORT_IN_USE; anything else is returned unchanged. For the race the pre-check cannot close.
 */
export function explainListenError(err: unknown, p: PortSetting | undefined): unknown {
  if (!p) return err;
  const inUse = errnoCode(err) === 'EADDRINUSE' || (err instanceof Error && /address already in use/i.test(err.message));
  return inUse && p.port !== 0 ? errors.PORT_IN_USE(p.setting, p.host, p.port) : err;
}
