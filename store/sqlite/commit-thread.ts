/**
 * The SQLite reading store's commits on a worker thread (store/sqlite/commit-worker.ts), so that the
 * broker's event loop keeps reading, validating and batching while a batch commits. A commit on the
 * main thread blocks it for the whole transaction: measured on the store bench, 41% of that thread's
 * time was the COMMIT's WAL fsync and 28% the per-reading INSERTs, time in which no MQTT packet was
 * read.
 *
 * Batches go to the worker in the order commit() is called and it commits them one at a time, in
 * that order, on its own connection to the same file (SQLite serialises it with the main
 * connection's writes: registry, rejections, records; busy_timeout on both). A commit resolves with
 * the worker's outcomes after its COMMIT returned. If the worker dies, the batches it held reject
 * (STORE_UNAVAILABLE at the store: nothing of them was acknowledged; a transaction cut short is
 * rolled back by SQLite) and the next commit starts a new worker.
 *
 * The worker runs our TypeScript: its bootstrap registers tsx's loader (the one `npm start` and the
 * tests run under) before importing the entry.
 */
import { Worker } from 'node:worker_threads';
import type { Reading } from '../../domain/reading.ts';
import type { CommitOutcome, DeviceLimits } from '../types.ts';
import type { CommitRequest } from './commit-worker.ts';

const ENTRY = new URL('./commit-worker.ts', import.meta.url).href;
const BOOTSTRAP = `
import('tsx/esm/api')
  .then(({ register }) => { register(); return import(${JSON.stringify(ENTRY)}); })
  .catch((err) => { throw err; });
`;

interface Pending {
  resolve: (out: CommitOutcome[]) => void;
  reject: (err: Error) => void;
}

type Reply = { ready: true } | { closed: true } | { id: number; outcomes: CommitOutcome[] } | { id: number; error: string };

export class CommitThread {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;

  constructor(private readonly file: string) {}

  /** Commits `readings` on the worker; `limits` are those of the batch's devices. */
  commit(readings: Reading[], limits: Map<string, DeviceLimits | undefined>): Promise<CommitOutcome[]> {
    if (this.closed) return Promise.reject(new Error('commit thread closed'));
    const worker = this.worker ?? this.start();
    const id = this.nextId++;
    return new Promise<CommitOutcome[]>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const msg: CommitRequest = { id, readings, limits: [...limits] };
      worker.ref();
      worker.postMessage(msg);
    });
  }

  /** Batches sent and not answered yet. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Lets the batches sent finish, then ends the worker (its connection closed). */
  async close(): Promise<void> {
    this.closed = true;
    const w = this.worker;
    if (!w) return;
    await Promise.allSettled([...this.pending.values()].map((p) => new Promise<void>((r) => {
      const { resolve, reject } = p;
      p.resolve = (out) => { resolve(out); r(); };
      p.reject = (err) => { reject(err); r(); };
    })));
    // The worker closes its connection and says so; then it is ended (the loader it registered keeps
    // its event loop alive).
    const closed = new Promise<void>((r) => {
      w.once('exit', () => r());
      w.on('message', (m: Reply) => {
        if ('closed' in m) r();
      });
    });
    w.ref();
    w.postMessage({ close: true });
    await closed;
    await w.terminate();
  }

  /** Kills the worker as a crash would (tests). */
  async kill(): Promise<void> {
    await this.worker?.terminate();
  }

  private start(): Worker {
    const w = new Worker(BOOTSTRAP, { eval: true, workerData: { file: this.file } });
    this.worker = w;
    w.unref();
    w.on('message', (m: Reply) => {
      if ('ready' in m || 'closed' in m) return;
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (this.pending.size === 0) w.unref();
      if ('error' in m) p.reject(new Error(m.error));
      else p.resolve(m.outcomes);
    });
    const fail = (err: Error) => {
      if (this.worker === w) this.worker = undefined;
      const held = [...this.pending.values()];
      this.pending.clear();
      for (const p of held) p.reject(err);
    };
    w.on('error', fail);
    w.on('exit', (code) => fail(new Error(`SQLite commit thread exited (${code})`)));
    return w;
  }
}
