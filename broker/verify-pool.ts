/**
 * Ed25519 verification of signed readings in batches (SPEC "Device signatures", docs/INGESTION.md
 * "Signed readings"). One verify costs tens of microseconds of CPU, several times the rest of a
 * reading's path, so a batch (a group commit's worth) is cut into chunks that worker threads verify
 * off the event loop; a small batch (or a verifier built with no workers) is verified inline, where a
 * round trip to a worker would cost more than it saves. Keys are parsed once per thread and cached.
 *
 * The verifier only answers "does this signature verify over this line with this key"; the ingest
 * path decides which readings need one (their device has a key) and rejects `bad_signature`.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { verifyLine } from '../domain/signature.ts';

export interface VerifyItem {
  /** The device's public key: 64 hex or base64 of 32 bytes. */
  key: string;
  /** The canonical line (domain/signature.ts canonicalLine / readingLine). */
  line: string;
  /** base64 signature as sent. */
  sig: string;
}

export interface VerifierOptions {
  /** Worker threads (default: available cores - 1, at least 1; 0 verifies everything inline). */
  workers?: number;
  /** Batches smaller than this are verified inline (default 16). */
  inlineBelow?: number;
}

export interface SignatureVerifier {
  /** One boolean per item, in order: whether the signature verifies. Never rejects for a bad key or sig. */
  verify(items: readonly VerifyItem[]): Promise<boolean[]>;
  readonly workers: number;
  close(): Promise<void>;
}

/**
 * The worker (plain JavaScript, evaluated, so it runs whatever loader the parent uses). It mirrors
 * domain/signature.ts verifyLine: a malformed key or signature is `false`, never an error.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createPublicKey, verify } = require('node:crypto');
const SPKI = Buffer.from('302a300506032b6570032100', 'hex');
const SIG_RE = /^[A-Za-z0-9+/]{85}[AQgw]==$/;
const HEX_RE = /^[0-9a-fA-F]{64}$/;
const B64_RE = /^[A-Za-z0-9+/]{43}=?$/;
const B64URL_RE = /^[A-Za-z0-9_-]{43}$/;
const keys = new Map();
function keyOf(text) {
  let k = keys.get(text);
  if (k !== undefined) return k;
  let raw;
  if (HEX_RE.test(text)) raw = Buffer.from(text, 'hex');
  else if (B64_RE.test(text)) raw = Buffer.from(text, 'base64');
  else if (B64URL_RE.test(text)) raw = Buffer.from(text, 'base64url');
  k = null;
  if (raw && raw.length === 32) {
    try { k = createPublicKey({ key: Buffer.concat([SPKI, raw]), format: 'der', type: 'spki' }); } catch { k = null; }
  }
  if (keys.size >= 50000) keys.clear();
  keys.set(text, k);
  return k;
}
parentPort.on('message', (m) => {
  const out = new Uint8Array(m.lines.length);
  for (let i = 0; i < m.lines.length; i++) {
    const k = typeof m.keys[i] === 'string' ? keyOf(m.keys[i]) : null;
    const sig = m.sigs[i];
    if (!k || typeof sig !== 'string' || !SIG_RE.test(sig)) continue;
    try { out[i] = verify(null, Buffer.from(m.lines[i], 'utf8'), k, Buffer.from(sig, 'base64')) ? 1 : 0; } catch { out[i] = 0; }
  }
  parentPort.postMessage({ id: m.id, out }, [out.buffer]);
});
`;

interface Pending {
  resolve: (out: Uint8Array) => void;
  reject: (err: Error) => void;
}

class PoolWorker {
  readonly worker: Worker;
  readonly pending = new Map<number, Pending>();
  dead = false;

  constructor() {
    this.worker = new Worker(WORKER_SOURCE, { eval: true });
    this.worker.unref();
    this.worker.on('message', (m: { id: number; out: Uint8Array }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (this.pending.size === 0) this.worker.unref();
      p.resolve(m.out);
    });
    const fail = (err: Error) => {
      this.dead = true;
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`signature worker exited (${code})`)));
  }

  run(id: number, chunk: readonly VerifyItem[]): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, keys: chunk.map((x) => x.key), lines: chunk.map((x) => x.line), sigs: chunk.map((x) => x.sig) });
    });
  }
}

/** Verifies inline, one item after the other (the small-batch path, also used by tests and tools). */
export function verifyInline(items: readonly VerifyItem[]): boolean[] {
  return items.map((x) => verifyLine(x.key, x.line, x.sig));
}

export function createVerifier(opts: VerifierOptions = {}): SignatureVerifier {
  const size = opts.workers ?? Math.max(1, availableParallelism() - 1);
  if (!Number.isSafeInteger(size) || size < 0) throw new TypeError(`workers must be a non-negative integer, got ${size}`);
  const inlineBelow = opts.inlineBelow ?? 16;
  const pool: (PoolWorker | undefined)[] = new Array(size).fill(undefined);
  let nextId = 1;
  let closed = false;

  const workerAt = (i: number): PoolWorker => {
    let w = pool[i];
    if (!w || w.dead) {
      w = new PoolWorker();
      pool[i] = w;
    }
    return w;
  };

  return {
    workers: size,
    async verify(items) {
      if (closed) throw new Error('signature verifier closed');
      if (size === 0 || items.length < inlineBelow) return verifyInline(items);
      // One chunk per worker; the least busy workers first when there are fewer chunks than workers.
      const n = Math.min(size, Math.ceil(items.length / Math.max(1, inlineBelow)));
      const per = Math.ceil(items.length / n);
      const order = pool.map((_, i) => i).sort((a, b) => (pool[a]?.pending.size ?? 0) - (pool[b]?.pending.size ?? 0));
      const parts: Promise<Uint8Array>[] = [];
      for (let c = 0; c < n; c++) parts.push(workerAt(order[c]).run(nextId++, items.slice(c * per, (c + 1) * per)));
      const outs = await Promise.all(parts);
      const result: boolean[] = [];
      for (const out of outs) for (const v of out) result.push(v === 1);
      return result;
    },
    async close() {
      closed = true;
      await Promise.all(pool.map((w) => w?.worker.terminate()));
    },
  };
}
