/**
 * The simulator's state file: per device the register values, last seq and random streams, the
 * readings not yet acknowledged (redelivered with the same seq after a restart) and the credentials
 * it registered. Written atomically (temp file + rename), mode 0600 since it holds device secrets.
 *
 * One file per id prefix by default (`simulator-state-{prefix}.json`; the prefix `sim` of `npm
 * start`'s fleet keeps `simulator-state.json`), and one process at a time: `lockState` creates
 * `{file}.lock` holding the pid; a second live simulator is refused, a lock left by a dead process
 * (or by a pid since reused) is taken over.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { RejectReason } from '../domain/reading.ts';
import type { DeviceState } from './device.ts';
import { simErrors } from './errors.ts';
import type { SimCredentials } from './plan.ts';

export const DEFAULT_STATE_PATH = path.join('data', 'simulator-state.json');

/** The state file of a fleet with this id prefix: `{dataDir}/simulator-state[-{prefix}].json`. */
export function defaultStatePath(prefix = 'sim', dataDir = 'data'): string {
  return path.join(dataDir, prefix === 'sim' ? 'simulator-state.json' : `simulator-state-${prefix}.json`);
}
export const STATE_VERSION = 1;

/** A reading message waiting for its PUBACK. The payload is UTF-8 JSON text. */
export interface PendingMessage {
  topic: string;
  seqs: number[];
  payload: string;
  /** Reason the platform will refuse it with (a fault), if any. */
  expect?: RejectReason;
}

export interface SimState {
  version: typeof STATE_VERSION;
  seed: string;
  savedAt: number;
  /** False while running: a file left with clean=false means the last run did not stop cleanly. */
  clean: boolean;
  devices: Record<string, DeviceState>;
  pending: Record<string, PendingMessage[]>;
  credentials?: SimCredentials[];
  /** Signing fleets (`--sign`): each device's Ed25519 key, the 32-byte seed in hex (secret, like the passwords). */
  keys?: Record<string, string>;
}

export function emptyState(seed: string): SimState {
  return { version: STATE_VERSION, seed, savedAt: 0, clean: true, devices: {}, pending: {} };
}

/** Reads the state file; undefined when it does not exist. Throws a clear error when it is corrupt. */
export function loadState(file: string): SimState | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw simErrors.STATE_INVALID(file, (err as Error).message);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw simErrors.STATE_INVALID(file, `not JSON (${(err as Error).message})`);
  }
  const s = data as Partial<SimState>;
  if (!s || typeof s !== 'object' || s.version !== STATE_VERSION || typeof s.devices !== 'object' || s.devices === null) {
    throw simErrors.STATE_INVALID(file, `not a version ${STATE_VERSION} simulator state`);
  }
  for (const [id, d] of Object.entries(s.devices)) {
    if (!d || !Number.isSafeInteger(d.seq) || typeof d.registers !== 'object') throw simErrors.STATE_INVALID(file, `device ${id} is malformed`);
  }
  if (s.keys !== undefined) {
    if (!s.keys || typeof s.keys !== 'object') throw simErrors.STATE_INVALID(file, 'keys is malformed');
    for (const [id, k] of Object.entries(s.keys)) if (typeof k !== 'string' || !/^[0-9a-f]{64}$/.test(k)) throw simErrors.STATE_INVALID(file, `the key of device ${id} is malformed`);
  }
  return { ...emptyState(String(s.seed ?? '')), ...s, pending: s.pending ?? {} } as SimState;
}

export function saveState(file: string, state: SimState): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(state), { mode: 0o600 });
  fs.renameSync(tmp, file);
}

/** What a lock file says about its holder. */
interface LockInfo {
  pid: number;
  host: string;
  /** When the lock was taken (ISO). */
  since: string;
  /** The holder's start time in clock ticks since boot (Linux /proc), to tell a reused pid. */
  procStart?: string;
  /** The holder's entry script, for the message. */
  script?: string;
  nonce: string;
}

export interface StateLock {
  file: string;
  release(): void;
}

function procStart(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // fields after "(comm)"; starttime is field 22 overall, the 20th after the comm
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function readLock(lock: string): LockInfo | undefined {
  try {
    const data = JSON.parse(fs.readFileSync(lock, 'utf8')) as Partial<LockInfo>;
    return Number.isSafeInteger(data.pid) && (data.pid as number) > 0 ? (data as LockInfo) : undefined;
  } catch {
    return undefined; // unreadable or half written: judged by its age below
  }
}

/** Whether the lock's holder may still be running (true when it cannot be told: another host). */
function holderLive(info: LockInfo): boolean {
  if (info.host !== os.hostname()) return true;
  try {
    process.kill(info.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  // alive (or EPERM: alive, another user's): the same process only if it started at the same time
  const now = procStart(info.pid);
  return !(info.procStart && now && now !== info.procStart);
}

function describeHolder(info: LockInfo | undefined): string {
  if (!info) return 'lock file being written';
  const where = info.host === os.hostname() ? 'on this host' : `on host ${info.host}`;
  return `pid ${info.pid} ${where}${info.script ? `, ${info.script}` : ''}, since ${info.since}`;
}

/**
 * Takes `{file}.lock` for this process or throws SIM_STATE_LOCKED naming the holder. A stale lock
 * (holder gone or pid reused) is moved aside atomically and replaced; `onStale` hears about it.
 * The lock goes with release() or, at the latest, when the process exits.
 */
export function lockState(file: string, onStale?: (holder: string) => void): StateLock {
  const lock = `${file}.lock`;
  fs.mkdirSync(path.dirname(path.resolve(lock)), { recursive: true });
  const mine: LockInfo = {
    pid: process.pid,
    host: os.hostname(),
    since: new Date().toISOString(),
    ...(procStart(process.pid) ? { procStart: procStart(process.pid) } : {}),
    ...(process.argv[1] ? { script: path.relative(process.cwd(), process.argv[1]) || process.argv[1] } : {}),
    nonce: crypto.randomBytes(8).toString('hex'),
  };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      fs.writeFileSync(lock, JSON.stringify(mine), { flag: 'wx', mode: 0o600 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw simErrors.STATE_INVALID(file, `cannot create its lock ${lock}: ${(err as Error).message}`);
      const holder = readLock(lock);
      if (holder ? holderLive(holder) : lockYoung(lock)) throw simErrors.STATE_LOCKED(file, lock, describeHolder(holder));
      takeOver(lock, holder);
      onStale?.(describeHolder(holder));
      continue;
    }
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      process.off('exit', release);
      // only our own lock: never one a later process took over
      if (readLock(lock)?.nonce === mine.nonce) fs.rmSync(lock, { force: true });
    };
    process.on('exit', release);
    return { file: lock, release };
  }
  throw simErrors.STATE_LOCKED(file, lock, describeHolder(readLock(lock)));
}

/** A lock without readable content is a holder still writing it, unless it is older than a few seconds. */
function lockYoung(lock: string): boolean {
  try {
    return Date.now() - fs.statSync(lock).mtimeMs < 5000;
  } catch {
    return false;
  }
}

/**
 * Removes a stale lock: renamed aside first (atomic), then checked to be the one judged stale; a lock
 * another starter created in the meantime is put back.
 */
function takeOver(lock: string, stale: LockInfo | undefined): void {
  const aside = `${lock}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.stale`;
  try {
    fs.renameSync(lock, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // someone else removed it
    throw err;
  }
  const moved = readLock(aside);
  if (moved && moved.nonce !== stale?.nonce) {
    try {
      fs.linkSync(aside, lock); // put the fresh one back; EEXIST: yet another lock took its place
    } catch {
      /* the next attempt sees whatever is there */
    }
  }
  fs.rmSync(aside, { force: true });
}
