/**
 * The worker thread of store/sqlite/commit-thread.ts: its own connection to the SQLite file (the
 * same pragmas as every other: WAL, synchronous=FULL, busy_timeout) and a SqliteReadingStore on it,
 * committing each batch it is sent, in the order sent, and answering with the outcomes once the
 * COMMIT returned (so after the WAL was synced: PUBACKs stay after durability). The limits of the
 * batch's devices come with the batch (the main thread reads them from its registry).
 */
import path from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { silentLogger } from '../../domain/logger.ts';
import type { Reading } from '../../domain/reading.ts';
import type { DeviceLimits } from '../types.ts';
import { openDatabase } from './db.ts';
import { SqliteReadingStore } from './readings.ts';

export interface CommitRequest {
  id: number;
  readings: Reading[];
  limits: [string, DeviceLimits | undefined][];
}

const port = parentPort;
if (!port) throw new Error('store/sqlite/commit-worker.ts runs as a worker thread');
const file = (workerData as { file: string }).file;
const db = openDatabase(path.dirname(file), path.basename(file));
let limits = new Map<string, DeviceLimits | undefined>();
const store = new SqliteReadingStore(db, silentLogger, (deviceId) => limits.get(deviceId));

port.on('message', (m: CommitRequest | { close: true }) => {
  if ('close' in m) {
    db.close();
    port.postMessage({ closed: true });
    return;
  }
  limits = new Map(m.limits);
  store.commitNow(m.readings).then(
    (outcomes) => port.postMessage({ id: m.id, outcomes }),
    (err: Error) => port.postMessage({ id: m.id, error: err.message }),
  );
});
port.postMessage({ ready: true });
