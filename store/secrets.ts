/**
 * Device secrets: generated with >= 128 bits of randomness, stored only as a salted scrypt record
 * `scrypt$N$r$p$salt$hash` (salt and hash base64), verified with async scrypt and timingSafeEqual.
 */
import crypto from 'node:crypto';
import { promisify } from 'node:util';
import type { DeviceCredentials, Registry } from './types.ts';

export const SCRYPT_N = 16384;
export const SCRYPT_R = 8;
export const SCRYPT_P = 1;
const KEY_LEN = 32;
const SALT_LEN = 16;
/** 24 random bytes = 192 bits, 32 base64url characters. */
const SECRET_BYTES = 24;
/** Longer passwords are refused without hashing (CONNECT passwords are attacker-controlled). */
const MAX_PASSWORD_BYTES = 1024;

const scryptAsync = promisify(crypto.scrypt) as (
  password: crypto.BinaryLike,
  salt: crypto.BinaryLike,
  keylen: number,
  options: crypto.ScryptOptions,
) => Promise<Buffer>;

/** A fresh device password: 192 random bits, base64url. */
export function generateSecret(): string {
  return crypto.randomBytes(SECRET_BYTES).toString('base64url');
}

function options(N: number, r: number, p: number): crypto.ScryptOptions {
  return { N, r, p, maxmem: 128 * N * r * p + 16 * 1024 * 1024 };
}

function format(N: number, r: number, p: number, salt: Buffer, hash: Buffer): string {
  return `scrypt$${N}$${r}$${p}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

/** Hashes synchronously (registration and rotation only: ~50 ms of CPU). */
export function hashSecretSync(password: string): string {
  const salt = crypto.randomBytes(SALT_LEN);
  const hash = crypto.scryptSync(password, salt, KEY_LEN, options(SCRYPT_N, SCRYPT_R, SCRYPT_P));
  return format(SCRYPT_N, SCRYPT_R, SCRYPT_P, salt, hash);
}

export async function hashSecret(password: string): Promise<string> {
  const salt = crypto.randomBytes(SALT_LEN);
  const hash = await scryptAsync(password, salt, KEY_LEN, options(SCRYPT_N, SCRYPT_R, SCRYPT_P));
  return format(SCRYPT_N, SCRYPT_R, SCRYPT_P, salt, hash);
}

interface ParsedRecord {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  hash: Buffer;
}

function parseRecord(record: string): ParsedRecord | undefined {
  const parts = record.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return undefined;
  const [N, r, p] = parts.slice(1, 4).map(Number);
  // N a power of two >= 2^14; r, p small: refuse records that would be weak or absurdly costly.
  if (!Number.isInteger(N) || N < SCRYPT_N || N > 1 << 20 || (N & (N - 1)) !== 0) return undefined;
  if (!Number.isInteger(r) || r < 1 || r > 32 || !Number.isInteger(p) || p < 1 || p > 16) return undefined;
  const salt = Buffer.from(parts[4], 'base64');
  const hash = Buffer.from(parts[5], 'base64');
  if (salt.length < 8 || hash.length < 16) return undefined;
  return { N, r, p, salt, hash };
}

/** A record of a random password nobody knows, hashed once: unknown devices cost the same scrypt. */
let decoy: string | undefined;
function decoyRecord(): string {
  decoy ??= format(SCRYPT_N, SCRYPT_R, SCRYPT_P, crypto.randomBytes(SALT_LEN), crypto.randomBytes(KEY_LEN));
  return decoy;
}

/** Whether `password` matches the scrypt `record`, in constant time. A malformed record never matches. */
export async function verifySecret(password: string, record: string | undefined): Promise<boolean> {
  const parsed = parseRecord(record ?? decoyRecord()) ?? parseRecord(decoyRecord())!;
  const tooLong = Buffer.byteLength(password) > MAX_PASSWORD_BYTES;
  const candidate = await scryptAsync(
    tooLong ? '' : password,
    parsed.salt,
    parsed.hash.length,
    options(parsed.N, parsed.r, parsed.p),
  );
  const same = crypto.timingSafeEqual(candidate, parsed.hash);
  return same && !tooLong && record !== undefined && parseRecord(record) !== undefined;
}

/**
 * The broker's CONNECT check: the device's credentials when `password` is its current secret,
 * otherwise undefined (unknown device and wrong password look the same and cost the same).
 * The caller decides what a suspended device or facility gets (its status is in the result).
 */
export async function verifyDeviceSecret(
  registry: Pick<Registry, 'credentials'>,
  deviceId: string,
  password: string | Buffer | undefined,
): Promise<DeviceCredentials | undefined> {
  const creds = registry.credentials(deviceId);
  const pw = password === undefined ? '' : typeof password === 'string' ? password : password.toString('utf8');
  const ok = await verifySecret(pw, creds?.secretHash);
  return ok && password !== undefined && creds ? creds : undefined;
}
