/**
 * Device secrets (MQTT passwords): 192 random bits, stored only as a keyed hash record
 * `hs256$<salt>$<mac>` (base64url) where mac = HMAC-SHA256(key = a 16-byte random per-record salt,
 * message = the secret), compared with timingSafeEqual. One HMAC costs about a microsecond.
 *
 * Why a fast hash: a slow password hash (scrypt, bcrypt) protects low-entropy human passwords from
 * offline guessing. A device secret is 192 random bits: inverting its hash means searching 2^192
 * values whatever the hash speed, so scrypt bought nothing, and it let anyone without a login make
 * the broker spend ~50 ms of CPU per CONNECT (issue 10 item 11). Why no server-side pepper: it would
 * not make a 2^192 search any harder, and it would be one more secret file that every process opening
 * the database must share and that a backup must never lose (losing it locks out every device). The
 * per-record salt keeps equal secrets (there are none in practice) from having equal records.
 *
 * Records written before this change are `scrypt$N$r$p$salt$hash`. They still verify (async scrypt,
 * off the event loop) but only for a known device whose password has the shape of a generated secret
 * (never for an unknown user or a malformed password), and on the first successful login the record
 * is replaced by an `hs256` one (compare-and-set, so a rotation meanwhile wins). The broker bounds how
 * many such slow checks run at once (broker/broker.ts, `maxPendingLogins`).
 */
import crypto from 'node:crypto';
import { promisify } from 'node:util';
import type { DeviceCredentials, FacilityRegistry } from './types.ts';

/** 24 random bytes = 192 bits, 32 base64url characters. */
const SECRET_BYTES = 24;
/** The shape of every secret generateSecret has ever produced. */
const SECRET_RE = /^[A-Za-z0-9_-]{32}$/;
const SALT_BYTES = 16;
const MAC_BYTES = 32;
/** Longer passwords are refused without hashing (CONNECT passwords are attacker-controlled). */
const MAX_PASSWORD_BYTES = 1024;
export const HMAC_PREFIX = 'hs256$';

/** A fresh device password: 192 random bits, base64url. */
export function generateSecret(): string {
  return crypto.randomBytes(SECRET_BYTES).toString('base64url');
}

function mac(salt: Buffer, password: string | Buffer): Buffer {
  return crypto.createHmac('sha256', salt).update(password).digest();
}

/** The stored record of `password` (fast: safe on the event loop, at registration and rotation). */
export function hashSecretSync(password: string): string {
  const salt = crypto.randomBytes(SALT_BYTES);
  return `${HMAC_PREFIX}${salt.toString('base64url')}$${mac(salt, password).toString('base64url')}`;
}

/** Same as hashSecretSync (kept async for callers that await it). */
export async function hashSecret(password: string): Promise<string> {
  return hashSecretSync(password);
}

/** Whether `record` is a current (fast) record; false for legacy scrypt or malformed ones. */
export function isCurrentRecord(record: string): boolean {
  return parseHmac(record) !== undefined;
}

function parseHmac(record: string): { salt: Buffer; mac: Buffer } | undefined {
  if (!record.startsWith(HMAC_PREFIX)) return undefined;
  const parts = record.split('$');
  if (parts.length !== 3) return undefined;
  const salt = Buffer.from(parts[1], 'base64url');
  const m = Buffer.from(parts[2], 'base64url');
  if (salt.length < 16 || m.length !== MAC_BYTES) return undefined;
  return { salt, mac: m };
}

// Legacy scrypt records ---------------------------------------------------------------------------

const SCRYPT_N = 16384;
const scryptAsync = promisify(crypto.scrypt) as (
  password: crypto.BinaryLike,
  salt: crypto.BinaryLike,
  keylen: number,
  options: crypto.ScryptOptions,
) => Promise<Buffer>;

function scryptOptions(N: number, r: number, p: number): crypto.ScryptOptions {
  return { N, r, p, maxmem: 128 * N * r * p + 16 * 1024 * 1024 };
}

interface ScryptRecord {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  hash: Buffer;
}

function parseScrypt(record: string): ScryptRecord | undefined {
  const parts = record.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return undefined;
  const [N, r, p] = parts.slice(1, 4).map(Number);
  // N a power of two in [2^14, 2^20]; r, p small: refuse records that would be weak or absurdly costly.
  if (!Number.isInteger(N) || N < SCRYPT_N || N > 1 << 20 || (N & (N - 1)) !== 0) return undefined;
  if (!Number.isInteger(r) || r < 1 || r > 32 || !Number.isInteger(p) || p < 1 || p > 16) return undefined;
  const salt = Buffer.from(parts[4], 'base64');
  const hash = Buffer.from(parts[5], 'base64');
  if (salt.length < 8 || hash.length < 16) return undefined;
  return { N, r, p, salt, hash };
}

/** A legacy `scrypt$…` record as the earlier version wrote it (tests and migration checks only). */
export function legacyScryptRecord(password: string): string {
  const salt = crypto.randomBytes(16);
  const hash = crypto.scryptSync(password, salt, 32, scryptOptions(SCRYPT_N, 8, 1));
  return `scrypt$${SCRYPT_N}$8$1$${salt.toString('base64')}$${hash.toString('base64')}`;
}

/** How many scrypt verifications have run in this process (tests: unknown users never reach scrypt). */
export const legacyStats = { scryptRuns: 0 };

// Verification ------------------------------------------------------------------------------------

/** A record nobody can match: unknown devices cost one HMAC too. */
const DECOY = hashSecretSync(generateSecret());

/**
 * Whether `password` matches `record` (an `hs256` record: one HMAC and a constant-time compare; a
 * legacy scrypt record: async scrypt, only for a password shaped like a generated secret). A missing
 * or malformed record never matches.
 */
export async function verifySecret(password: string | Buffer, record: string | undefined): Promise<boolean> {
  const bytes = typeof password === 'string' ? Buffer.from(password, 'utf8') : password;
  const tooLong = bytes.length > MAX_PASSWORD_BYTES;
  const current = record === undefined ? undefined : parseHmac(record);
  if (current || record === undefined) {
    const r = current ?? parseHmac(DECOY)!;
    const same = crypto.timingSafeEqual(mac(r.salt, tooLong ? '' : bytes), r.mac);
    return same && !tooLong && current !== undefined;
  }
  const legacy = parseScrypt(record);
  if (!legacy || tooLong || !SECRET_RE.test(bytes.toString('latin1'))) return false;
  legacyStats.scryptRuns++;
  const candidate = await scryptAsync(bytes, legacy.salt, legacy.hash.length, scryptOptions(legacy.N, legacy.r, legacy.p));
  return crypto.timingSafeEqual(candidate, legacy.hash);
}

/** Whether checking `password` against `record` would run the slow legacy hash (the broker bounds those). */
export function isSlowCheck(record: string | undefined, password: string | Buffer | undefined): boolean {
  if (record === undefined || password === undefined || !record.startsWith('scrypt$')) return false;
  const text = typeof password === 'string' ? password : password.toString('latin1');
  return SECRET_RE.test(text);
}

/**
 * The broker's CONNECT check: the device's credentials when `password` is its current secret,
 * otherwise undefined (unknown device and wrong password look the same). The caller decides what a
 * suspended device or facility gets (its status is in the result). A legacy scrypt record that
 * matched is replaced by an `hs256` record when the registry can (`replaceSecretHash`); the returned
 * credentials then carry the new record.
 */
export async function verifyDeviceSecret(
  registry: Pick<FacilityRegistry, 'credentials'> & Partial<Pick<FacilityRegistry, 'replaceSecretHash'>>,
  deviceId: string,
  password: string | Buffer | undefined,
): Promise<DeviceCredentials | undefined> {
  const creds = registry.credentials(deviceId);
  const ok = await verifySecret(password ?? '', creds?.secretHash);
  if (!ok || password === undefined || !creds) return undefined;
  if (!isCurrentRecord(creds.secretHash) && registry.replaceSecretHash) {
    const text = typeof password === 'string' ? password : password.toString('utf8');
    const upgraded = hashSecretSync(text);
    if (await registry.replaceSecretHash(deviceId, creds.secretHash, upgraded)) return { ...creds, secretHash: upgraded };
  }
  return creds;
}
