/**
 * Device signatures (SPEC "Device signatures", docs/INGESTION.md "Signed readings"): the canonical
 * line a device signs, its SHA-256 hash (the hash chain's link), Ed25519 public keys (32 bytes, hex or
 * base64) as cached KeyObjects, and sign/verify with node:crypto (no dependency).
 *
 * Canonical line (UTF-8): `{deviceId}|{seq}|{ts as epoch ms}|{metric}|{value as sent, decimal text}|
 * {unit as sent}|{reset ? 1 : 0}|{prev}` where `prev` is the hex SHA-256 of the device's previous
 * canonical line by seq ('' for its first reading after the key was set).
 *
 * Verification follows one rule whatever computes it (domain/ed25519.ts: libsodium's strict checks,
 * libsodium when its addon loads, else node:crypto); signing uses node:crypto.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { keyAcceptable, verifyStrict } from './ed25519.ts';
import type { Reading } from './reading.ts';

/** The fields a device signs. `value` and `unit` are exactly as sent (not normalised). */
export interface LineFields {
  deviceId: string;
  seq: number;
  /** epoch ms (an ISO ts is signed as the epoch ms it parses to, sub-millisecond digits dropped). */
  ts: number;
  metric: string;
  /** The JSON number text of `value` as it appears in the payload, e.g. "81234.50". */
  value: string;
  unit: string;
  reset: boolean;
  /** hex SHA-256 (64 lowercase hex) of the previous canonical line by seq, or ''. */
  prev: string;
}

/** Exactly 64 lowercase hex digits, or '' (first reading after the key was set). */
export const PREV_RE = /^(?:[0-9a-f]{64})?$/;
/**
 * Canonical standard base64 of 64 bytes (an Ed25519 signature): 86 characters and `==`, the last
 * character one whose 4 unused bits are zero, so one signature has exactly one text.
 */
export const SIG_RE = /^[A-Za-z0-9+/]{85}[AQgw]==$/;

export function canonicalLine(f: LineFields): string {
  return `${f.deviceId}|${f.seq}|${f.ts}|${f.metric}|${f.value}|${f.unit}|${f.reset ? 1 : 0}|${f.prev}`;
}

/** The canonical line of a stored signed reading, or undefined when it carries no signature. */
export function readingLine(r: Reading): string | undefined {
  if (r.sig === undefined) return undefined;
  return canonicalLine({
    deviceId: r.deviceId,
    seq: r.seq,
    ts: r.ts,
    metric: r.metric,
    value: r.sentValue ?? r.value,
    unit: r.sentUnit ?? r.unit,
    reset: r.reset,
    prev: r.prev ?? '',
  });
}

/** hex SHA-256 of the line's UTF-8 bytes: what the next reading by seq carries as `prev`. */
export function lineHash(line: string): string {
  return createHash('sha256').update(line, 'utf8').digest('hex');
}

// ----- keys

const SPKI_ED25519 = Buffer.from('302a300506032b6570032100', 'hex');
const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');
const HEX64_RE = /^[0-9a-fA-F]{64}$/;
const B64_32_RE = /^[A-Za-z0-9+/]{43}=?$/;
const B64URL_32_RE = /^[A-Za-z0-9_-]{43}$/;

/**
 * The 32 raw bytes of an Ed25519 public key given as 64 hex digits or base64 (standard, or URL-safe
 * without padding) of 32 bytes; undefined for anything else.
 */
export function publicKeyBytes(text: string): Buffer | undefined {
  if (typeof text !== 'string') return undefined;
  if (HEX64_RE.test(text)) return Buffer.from(text, 'hex');
  if (B64_32_RE.test(text)) {
    const b = Buffer.from(text, 'base64');
    return b.length === 32 ? b : undefined;
  }
  if (B64URL_32_RE.test(text)) {
    const b = Buffer.from(text, 'base64url');
    return b.length === 32 ? b : undefined;
  }
  return undefined;
}

/** The canonical form of a public key: 64 lowercase hex digits; undefined when it is not one. */
export function normalisePublicKey(text: string): string | undefined {
  const b = publicKeyBytes(text);
  if (!b) return undefined;
  // A key no signature can verify under (small order, non-canonical: domain/ed25519.ts) is no key.
  if (!keyAcceptable(b)) return undefined;
  // Reject bytes that are not a point node:crypto accepts (it validates on import).
  try {
    keyObject(b.toString('hex'));
  } catch {
    return undefined;
  }
  return b.toString('hex');
}

/** Parsed keys by canonical hex. Bounded: a flood of distinct keys clears it (they are cheap to rebuild). */
const KEY_CACHE = new Map<string, KeyObject>();
const KEY_CACHE_MAX = 50_000;

/** The KeyObject of a public key (hex or base64 text), cached per key. Throws TypeError when invalid. */
export function publicKeyObject(text: string): KeyObject {
  const hit = KEY_CACHE.get(text);
  if (hit) return hit;
  const b = publicKeyBytes(text);
  if (!b) throw new TypeError('public key must be 32 bytes, hex or base64');
  const k = keyObject(b.toString('hex'));
  if (KEY_CACHE.size >= KEY_CACHE_MAX) KEY_CACHE.clear();
  KEY_CACHE.set(text, k);
  return k;
}

function keyObject(hex: string): KeyObject {
  const hit = KEY_CACHE.get(hex);
  if (hit) return hit;
  const k = createPublicKey({ key: Buffer.concat([SPKI_ED25519, Buffer.from(hex, 'hex')]), format: 'der', type: 'spki' });
  if (KEY_CACHE.size >= KEY_CACHE_MAX) KEY_CACHE.clear();
  KEY_CACHE.set(hex, k);
  return k;
}

/** Raw key bytes by key text (hex or base64), null for text that is not 32 bytes. Bounded like KEY_CACHE. */
const RAW_CACHE = new Map<string, Buffer | null>();

/**
 * Whether `sig` (base64 of 64 bytes) is `key`'s Ed25519 signature over the line's UTF-8 bytes. False
 * (never a throw) for a malformed key or signature.
 */
export function verifyLine(key: string | KeyObject, line: string, sig: string): boolean {
  if (typeof sig !== 'string' || !SIG_RE.test(sig)) return false;
  let raw: Buffer | null | undefined;
  if (typeof key === 'string') {
    raw = RAW_CACHE.get(key);
    if (raw === undefined) {
      raw = publicKeyBytes(key) ?? null;
      if (RAW_CACHE.size >= KEY_CACHE_MAX) RAW_CACHE.clear();
      RAW_CACHE.set(key, raw);
    }
  } else {
    if (key.asymmetricKeyType !== 'ed25519') return false;
    try {
      raw = key.export({ format: 'der', type: 'spki' }).subarray(-32);
    } catch {
      return false;
    }
  }
  if (!raw) return false;
  return verifyStrict(Buffer.from(sig, 'base64'), Buffer.from(line, 'utf8'), raw);
}

// ----- signing (devices, simulators, tests)

export interface DeviceKeyPair {
  /** 64 hex: what the device registers as `publicKey`. */
  publicKey: string;
  /** 64 hex: the 32-byte Ed25519 seed (keep it secret; simulators keep it in their state file). */
  privateKey: string;
}

export function generateDeviceKey(): DeviceKeyPair {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const pub = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  const seed = privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(-32);
  return { publicKey: pub.toString('hex'), privateKey: seed.toString('hex') };
}

const PRIVATE_CACHE = new Map<string, KeyObject>();

/** The private KeyObject of a 64-hex seed (cached). */
export function privateKeyObject(seedHex: string): KeyObject {
  let k = PRIVATE_CACHE.get(seedHex);
  if (!k) {
    if (!HEX64_RE.test(seedHex)) throw new TypeError('private key must be a 32-byte seed in hex');
    k = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, Buffer.from(seedHex, 'hex')]), format: 'der', type: 'pkcs8' });
    if (PRIVATE_CACHE.size >= 10_000) PRIVATE_CACHE.clear();
    PRIVATE_CACHE.set(seedHex, k);
  }
  return k;
}

/** The public key (64 hex) of a seed. */
export function publicKeyOf(seedHex: string): string {
  return createPublicKey(privateKeyObject(seedHex)).export({ format: 'der', type: 'spki' }).subarray(-32).toString('hex');
}

/** base64 Ed25519 signature of the line by the seed's key. */
export function signLine(seedHex: string | KeyObject, line: string): string {
  const k = typeof seedHex === 'string' ? privateKeyObject(seedHex) : seedHex;
  return sign(null, Buffer.from(line, 'utf8'), k).toString('base64');
}

// ----- hash chain

/** One signed reading as the chain check needs it (a stored Reading with sig fits). */
export interface ChainReading {
  seq: number;
  /** Its canonical line (readingLine). */
  line: string;
  /** The prev it signed over ('' for a chain start). */
  prev: string;
}

export type ChainBreakReason =
  /** prev names a line that is not among the readings given (an omitted or changed reading). */
  | 'prev_missing'
  /** prev is the hash of a reading given, but not of the one just below by seq (a reading between was inserted, or seqs reordered). */
  | 'prev_not_previous'
  /** Two different readings with the same seq. */
  | 'duplicate_seq';

export interface ChainBreak {
  seq: number;
  reason: ChainBreakReason;
}

export interface ChainCheck {
  unbroken: boolean;
  breaks: ChainBreak[];
  /** Seqs of used readings with prev '' (the device started a chain there: its first reading, or a new key). */
  starts: number[];
}

/**
 * The hash-chain check of one device over `used` (the signed readings a settlement counted) with
 * `context` (other signed readings of the device, typically each used reading's predecessor by seq
 * that the settlement did not itself count: the previous settlement's last reading, neighbours of a
 * late one). For every used reading with a non-empty prev, the reading just below it by seq among
 * used ∪ context must exist and its line must hash to prev. A used reading with prev '' is a chain
 * start (the device signed that its key was just set). Pure.
 */
export function checkChain(used: readonly ChainReading[], context: readonly ChainReading[] = []): ChainCheck {
  const bySeq = new Map<number, ChainReading>();
  const breaks: ChainBreak[] = [];
  for (const r of [...used, ...context]) {
    const had = bySeq.get(r.seq);
    if (had && had.line !== r.line) breaks.push({ seq: r.seq, reason: 'duplicate_seq' });
    else bySeq.set(r.seq, r);
  }
  const seqs = [...bySeq.keys()].sort((a, b) => a - b);
  const index = new Map<number, number>();
  seqs.forEach((s, i) => index.set(s, i));
  const hashes = new Map<string, number>();
  for (const s of seqs) hashes.set(lineHash((bySeq.get(s) as ChainReading).line), s);
  const starts: number[] = [];
  for (const r of [...used].sort((a, b) => a.seq - b.seq)) {
    if (r.prev === '') {
      starts.push(r.seq);
      continue;
    }
    const i = index.get(r.seq) as number;
    const below = i > 0 ? bySeq.get(seqs[i - 1]) : undefined;
    if (below && lineHash(below.line) === r.prev) continue;
    const named = hashes.get(r.prev);
    breaks.push({ seq: r.seq, reason: named !== undefined && named < r.seq ? 'prev_not_previous' : 'prev_missing' });
  }
  breaks.sort((a, b) => a.seq - b.seq);
  return { unbroken: breaks.length === 0, breaks, starts };
}
