/**
 * The simulator's state file: per device the register values, last seq and random streams, the
 * readings not yet acknowledged (redelivered with the same seq after a restart) and the credentials
 * it registered. Written atomically (temp file + rename), mode 0600 since it holds device secrets.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { RejectReason } from '../domain/reading.ts';
import type { DeviceState } from './device.ts';
import { simErrors } from './errors.ts';
import type { SimCredentials } from './plan.ts';

export const DEFAULT_STATE_PATH = path.join('data', 'simulator-state.json');
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
  return { ...emptyState(String(s.seed ?? '')), ...s, pending: s.pending ?? {} } as SimState;
}

export function saveState(file: string, state: SimState): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(state), { mode: 0o600 });
  fs.renameSync(tmp, file);
}
