/**
 * Ed25519 verification with one rule, whichever library computes it (SPEC "Device signatures").
 *
 * The rule is libsodium's `crypto_sign_verify_detached` (strict, cofactorless): S must be canonical
 * (< L), R and the public key must not be one of the 8 small-order points (in any encoding), the key's
 * y must be canonical (< p), then [S]B - [k]A must encode to exactly R. node:crypto (OpenSSL 3.0)
 * checks S < L and compares the same encoding but accepts small-order keys and R; the checks below
 * (`keyAcceptable`, `sigAcceptable`) are run first on every path, so both backends give one verdict and
 * what libsodium accepts, node:crypto accepts too (an auditor with node:crypto alone agrees).
 *
 * Backends: `sodium-native` (libsodium through a prebuilt addon; one verify ~2x cheaper than
 * OpenSSL 3.0's EVP path on this machine, docs/BENCHMARKS.md) when it loads, else node:crypto.
 */
import { createPublicKey, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { createRequire } from 'node:module';

export const PUBLIC_KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;

/** The group order L = 2^252 + 27742317777372353535851937790883648493, little-endian. */
const L = Uint8Array.from([
  0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x10,
]);

/**
 * Encodings of the small-order points (libsodium's ge25519_has_small_order list: 0, 1, the two of order
 * 8, p-1, p, p+1); compared with the sign bit of the last byte ignored, which covers the other order-8
 * points (their negatives) and the non-canonical encodings.
 */
const SMALL_ORDER = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
].map((h) => Buffer.from(h, 'hex'));

/** Whether the 32 bytes encode one of the small-order points (sign bit ignored). */
export function hasSmallOrder(p: Uint8Array, offset = 0): boolean {
  outer: for (const s of SMALL_ORDER) {
    for (let i = 0; i < 31; i++) if (p[offset + i] !== s[i]) continue outer;
    if ((p[offset + 31] & 0x7f) === s[31]) return true;
  }
  return false;
}

/** Whether y (the 32 bytes, sign bit ignored) is below p = 2^255 - 19. */
function yCanonical(p: Uint8Array): boolean {
  if ((p[31] & 0x7f) !== 0x7f) return true;
  for (let i = 30; i > 0; i--) if (p[i] !== 0xff) return true;
  return p[0] < 0xed;
}

/** Whether the scalar S (32 bytes little-endian at offset) is below L. */
function scalarCanonical(s: Uint8Array, offset: number): boolean {
  for (let i = 31; i >= 0; i--) {
    const a = s[offset + i];
    if (a !== L[i]) return a < L[i];
  }
  return false; // S == L
}

/** A public key libsodium would verify with: 32 bytes, y canonical, not of small order. */
export function keyAcceptable(pk: Uint8Array): boolean {
  return pk.length === PUBLIC_KEY_BYTES && yCanonical(pk) && !hasSmallOrder(pk);
}

/**
 * A signature libsodium would check: 64 bytes (at `offset` in `sig`, which may hold several), S < L,
 * R not of small order.
 */
export function sigAcceptable(sig: Uint8Array, offset = 0): boolean {
  if (sig.length < offset + SIGNATURE_BYTES) return false;
  return scalarCanonical(sig, offset + 32) && !hasSmallOrder(sig, offset);
}

export type Ed25519BackendName = 'libsodium' | 'node:crypto';

export interface Ed25519Backend {
  readonly name: Ed25519BackendName;
  /** Why node:crypto was taken when libsodium was wanted (the addon's load error). */
  readonly fallbackReason?: string;
  /** The path to require() the addon from (for worker threads), when the backend is libsodium. */
  readonly modulePath?: string;
  /**
   * The bare verify of the backend (no acceptability checks: use `verifyStrict`). `pk` 32 bytes,
   * `sig` 64 bytes; false for a key that is not a point.
   */
  verifyRaw(sig: Uint8Array, msg: Uint8Array, pk: Uint8Array): boolean;
}

export interface LoadOptions {
  /** 'auto' (default): libsodium when its addon loads, else node:crypto. */
  prefer?: 'auto' | Ed25519BackendName;
  /** Loads the addon (tests replace it to exercise the fallback). */
  load?: () => { path: string; mod: unknown };
}

interface SodiumLike {
  crypto_sign_verify_detached(sig: Uint8Array, msg: Uint8Array, pk: Uint8Array): boolean;
}

const require = createRequire(import.meta.url);

function loadSodium(): { path: string; mod: unknown } {
  const path = require.resolve('sodium-native');
  return { path, mod: require(path) };
}

/** node:crypto with KeyObjects cached by key bytes (bounded). */
function nodeBackend(fallbackReason?: string): Ed25519Backend {
  const SPKI = Buffer.from('302a300506032b6570032100', 'hex');
  const keys = new Map<string, KeyObject | null>();
  return {
    name: 'node:crypto',
    ...(fallbackReason !== undefined ? { fallbackReason } : {}),
    verifyRaw(sig, msg, pk) {
      const hex = Buffer.from(pk.buffer, pk.byteOffset, pk.byteLength).toString('hex');
      let k = keys.get(hex);
      if (k === undefined) {
        try {
          k = createPublicKey({ key: Buffer.concat([SPKI, pk]), format: 'der', type: 'spki' });
        } catch {
          k = null;
        }
        if (keys.size >= 50_000) keys.clear();
        keys.set(hex, k);
      }
      if (k === null) return false;
      try {
        return nodeVerify(null, msg, k, sig);
      } catch {
        return false;
      }
    },
  };
}

/** The backend to use, by preference; never throws (falls back to node:crypto with the reason). */
export function loadEd25519(opts: LoadOptions = {}): Ed25519Backend {
  const prefer = opts.prefer ?? 'auto';
  if (prefer === 'node:crypto') return nodeBackend();
  try {
    const { path, mod } = (opts.load ?? loadSodium)();
    const verify = (mod as Partial<SodiumLike>)?.crypto_sign_verify_detached;
    if (typeof verify !== 'function') throw new Error('sodium-native has no crypto_sign_verify_detached');
    return {
      name: 'libsodium',
      modulePath: path,
      verifyRaw: (sig, msg, pk) => {
        try {
          return verify(sig, msg, pk) === true;
        } catch {
          return false;
        }
      },
    };
  } catch (err) {
    return nodeBackend(err instanceof Error ? err.message : String(err));
  }
}

let shared: Ed25519Backend | undefined;

/** The process's backend (loaded once, 'auto'). */
export function ed25519(): Ed25519Backend {
  shared ??= loadEd25519();
  return shared;
}

/** The one rule: acceptable key and signature, then the backend's verify. */
export function verifyStrict(sig: Uint8Array, msg: Uint8Array, pk: Uint8Array, backend: Ed25519Backend = ed25519()): boolean {
  return sig.length === SIGNATURE_BYTES && keyAcceptable(pk) && sigAcceptable(sig) && backend.verifyRaw(sig, msg, pk);
}
