/**
 * Ed25519 verification of signed readings in batches (SPEC "Device signatures", docs/INGESTION.md
 * "Signed readings"). One verify costs tens of microseconds of CPU, several times the rest of a
 * reading's path, so a batch (a group commit's worth) is cut into chunks that worker threads verify
 * off the event loop; a small batch (or a verifier built with no workers) is verified inline, where a
 * round trip to a worker would cost more than it saves. The event loop runs every check of the one
 * rule (domain/ed25519.ts) and packs each chunk into bytes that move to the worker, which only runs
 * the curve arithmetic with the same backend (libsodium when its addon loads, else node:crypto).
 *
 * The verifier only answers "does this signature verify over this line with this key"; the ingest
 * path decides which readings need one (their device has a key) and rejects `bad_signature`.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { Logger } from '../domain/logger.ts';
import { ed25519, keyAcceptable, SIGNATURE_BYTES, sigAcceptable, type Ed25519Backend } from '../domain/ed25519.ts';
import { publicKeyBytes, SIG_RE } from '../domain/signature.ts';

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
  /**
   * The calling thread verifies an equal share of each batch while the workers verify theirs (default
   * false: the event loop only packs and hands over).
   */
  shareInline?: boolean;
  /** The Ed25519 backend (default: the process's, domain/ed25519.ts: libsodium when it loads). */
  backend?: Ed25519Backend;
  /** Told once when the backend is node:crypto because libsodium did not load. */
  logger?: Logger;
}

export interface SignatureVerifier {
  /** One boolean per item, in order: whether the signature verifies. Never rejects for a bad key or sig. */
  verify(items: readonly VerifyItem[]): Promise<boolean[]>;
  readonly workers: number;
  /** Which library computes the verifies. */
  readonly backend: Ed25519Backend['name'];
  close(): Promise<void>;
}

/**
 * A chunk of items as bytes, built on the event loop and moved (not copied) to a worker: the distinct
 * keys (32 bytes each), the signatures (64 bytes each), the lines' UTF-8 bytes, and per item [key index,
 * line offset, line length]. Every check but the curve arithmetic is done here, once, whatever the
 * backend (domain/ed25519.ts): an item that fails one has key index -1 and is false without a verify.
 */
interface Packed {
  keys: Buffer;
  sigs: Buffer;
  msgs: Buffer;
  meta: Int32Array;
}

/** Acceptable raw keys by key text (null: not a key any signature verifies under). Bounded. */
const RAW_KEYS = new Map<string, Buffer | null>();

function rawKey(text: string): Buffer | null {
  let k = RAW_KEYS.get(text);
  if (k === undefined) {
    const b = typeof text === 'string' ? publicKeyBytes(text) : undefined;
    k = b && keyAcceptable(b) ? b : null;
    if (RAW_KEYS.size >= 50_000) RAW_KEYS.clear();
    RAW_KEYS.set(text, k);
  }
  return k;
}

function pack(items: readonly VerifyItem[]): Packed {
  const n = items.length;
  let chars = 0;
  for (const x of items) chars += typeof x.line === 'string' ? x.line.length : 0;
  const sigs = Buffer.allocUnsafeSlow(n * SIGNATURE_BYTES);
  const msgs = Buffer.allocUnsafeSlow(Math.max(1, chars * 3)); // UTF-8: at most 3 bytes per UTF-16 unit
  const meta = new Int32Array(n * 3);
  const index = new Map<Buffer, number>();
  const distinct: Buffer[] = [];
  let off = 0;
  for (let i = 0; i < n; i++) {
    const x = items[i];
    meta[i * 3] = -1;
    const key = rawKey(x.key);
    if (key === null || typeof x.sig !== 'string' || !SIG_RE.test(x.sig) || typeof x.line !== 'string') continue;
    sigs.write(x.sig, i * SIGNATURE_BYTES, SIGNATURE_BYTES, 'base64');
    if (!sigAcceptable(sigs, i * SIGNATURE_BYTES)) continue;
    let ki = index.get(key);
    if (ki === undefined) {
      ki = distinct.length;
      distinct.push(key);
      index.set(key, ki);
    }
    const len = msgs.write(x.line, off);
    meta[i * 3] = ki;
    meta[i * 3 + 1] = off;
    meta[i * 3 + 2] = len;
    off += len;
  }
  const keys = Buffer.allocUnsafeSlow(Math.max(1, distinct.length * 32));
  distinct.forEach((k, i) => k.copy(keys, i * 32));
  return { keys, sigs, msgs, meta };
}

/** Verifies a packed chunk with `verifyRaw` (the same loop as the worker's, on this thread). */
function verifyPacked(p: Packed, backend: Ed25519Backend): boolean[] {
  const n = p.meta.length / 3;
  const out: boolean[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const ki = p.meta[i * 3];
    if (ki < 0) {
      out[i] = false;
      continue;
    }
    const off = p.meta[i * 3 + 1];
    out[i] = backend.verifyRaw(p.sigs.subarray(i * 64, i * 64 + 64), p.msgs.subarray(off, off + p.meta[i * 3 + 2]), p.keys.subarray(ki * 32, ki * 32 + 32));
  }
  return out;
}

/**
 * The worker (plain JavaScript, evaluated, so it runs whatever loader the parent uses): the loop of
 * verifyPacked with libsodium (the addon's path in workerData) or, when that is absent or does not
 * load, node:crypto with KeyObjects cached by key.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
let verifyRaw;
if (workerData && workerData.sodiumPath) {
  try {
    const s = require(workerData.sodiumPath);
    verifyRaw = (sig, msg, pk) => { try { return s.crypto_sign_verify_detached(sig, msg, pk) === true; } catch { return false; } };
  } catch { verifyRaw = undefined; }
}
if (!verifyRaw) {
  const { createPublicKey, verify } = require('node:crypto');
  const SPKI = Buffer.from('302a300506032b6570032100', 'hex');
  const keys = new Map();
  verifyRaw = (sig, msg, pk) => {
    const hex = Buffer.from(pk.buffer, pk.byteOffset, pk.byteLength).toString('hex');
    let k = keys.get(hex);
    if (k === undefined) {
      try { k = createPublicKey({ key: Buffer.concat([SPKI, pk]), format: 'der', type: 'spki' }); } catch { k = null; }
      if (keys.size >= 50000) keys.clear();
      keys.set(hex, k);
    }
    if (k === null) return false;
    try { return verify(null, msg, k, sig); } catch { return false; }
  };
}
parentPort.on('message', (m) => {
  const keys = Buffer.from(m.keys), sigs = Buffer.from(m.sigs), msgs = Buffer.from(m.msgs), meta = new Int32Array(m.meta);
  const n = meta.length / 3;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const ki = meta[i * 3];
    if (ki < 0) continue;
    const off = meta[i * 3 + 1];
    out[i] = verifyRaw(sigs.subarray(i * 64, i * 64 + 64), msgs.subarray(off, off + meta[i * 3 + 2]), keys.subarray(ki * 32, ki * 32 + 32)) ? 1 : 0;
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

  constructor(sodiumPath: string | undefined) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { sodiumPath } });
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
    const p = pack(chunk);
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve, reject });
      // The ArrayBuffers move to the worker (allocUnsafeSlow: each Buffer owns its whole ArrayBuffer).
      const bufs = { id, keys: p.keys.buffer as ArrayBuffer, sigs: p.sigs.buffer as ArrayBuffer, msgs: p.msgs.buffer as ArrayBuffer, meta: p.meta.buffer as ArrayBuffer };
      this.worker.postMessage(bufs, [bufs.keys, bufs.sigs, bufs.msgs, bufs.meta]);
    });
  }
}

/** Verifies inline, on this thread (the small-batch path, also used by tests and tools). */
export function verifyInline(items: readonly VerifyItem[], backend: Ed25519Backend = ed25519()): boolean[] {
  return items.length === 0 ? [] : verifyPacked(pack(items), backend);
}

export function createVerifier(opts: VerifierOptions = {}): SignatureVerifier {
  const size = opts.workers ?? Math.max(1, availableParallelism() - 1);
  if (!Number.isSafeInteger(size) || size < 0) throw new TypeError(`workers must be a non-negative integer, got ${size}`);
  const inlineBelow = opts.inlineBelow ?? 16;
  const backend = opts.backend ?? ed25519();
  const shareInline = opts.shareInline ?? false;
  if (backend.fallbackReason !== undefined) {
    opts.logger?.warn({ reason: backend.fallbackReason }, 'libsodium (sodium-native) did not load: Ed25519 signatures are verified with node:crypto (about twice the CPU per reading)');
  }
  const sodiumPath = backend.name === 'libsodium' ? backend.modulePath : undefined;
  const pool: (PoolWorker | undefined)[] = new Array(size).fill(undefined);
  let nextId = 1;
  let closed = false;

  const workerAt = (i: number): PoolWorker => {
    let w = pool[i];
    if (!w || w.dead) {
      w = new PoolWorker(sodiumPath);
      pool[i] = w;
    }
    return w;
  };

  return {
    workers: size,
    backend: backend.name,
    async verify(items) {
      if (closed) throw new Error('signature verifier closed');
      if (size === 0 || items.length < inlineBelow) return verifyInline(items, backend);
      // One chunk per worker (and one for this thread with shareInline); the least busy workers first
      // when there are fewer chunks than workers.
      const n = Math.min(size + (shareInline ? 1 : 0), Math.ceil(items.length / Math.max(1, inlineBelow)));
      const per = Math.ceil(items.length / n);
      const order = pool.map((_, i) => i).sort((a, b) => (pool[a]?.pending.size ?? 0) - (pool[b]?.pending.size ?? 0));
      const parts: Promise<Uint8Array | boolean[]>[] = [];
      const toWorkers = shareInline ? n - 1 : n;
      for (let c = 0; c < toWorkers; c++) parts.push(workerAt(order[c]).run(nextId++, items.slice(c * per, (c + 1) * per)));
      // This thread's share, verified while the workers run theirs.
      if (toWorkers < n) parts.push(Promise.resolve(verifyInline(items.slice(toWorkers * per), backend)));
      const outs = await Promise.all(parts);
      const result: boolean[] = [];
      for (const out of outs) for (const v of out) result.push(v === 1 || v === true);
      return result;
    },
    async close() {
      closed = true;
      await Promise.all(pool.map((w) => w?.worker.terminate()));
    },
  };
}
