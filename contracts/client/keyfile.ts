/**
 * A credit holder's private key in a file: made once, owner-only (0600), never overwritten. What
 * `npm run cli -- keygen` writes and `--key-file` reads; anything else that makes keys for facility
 * owners (a demo fleet, a provisioning script) can use the same two functions.
 */
import fs from 'node:fs';
import { ethers } from 'ethers';

/** Why a key file could not be made: `exists` (refused, the file may hold the only copy of a key) or `io`. */
export class KeyFileError extends Error {
  constructor(
    readonly reason: 'exists' | 'io',
    readonly file: string,
    message: string,
  ) {
    super(message);
    this.name = 'KeyFileError';
  }
}

/**
 * Writes a new random private key (0x hex and a newline) to `file`, created 0600 whatever the umask,
 * and fails with KeyFileError('exists') when the file exists (exclusive create: no race, no overwrite).
 */
export function createKeyFile(file: string): { address: string; file: string } {
  const wallet = ethers.Wallet.createRandom();
  let fd: number;
  try {
    fd = fs.openSync(file, 'wx', 0o600);
  } catch (e) {
    const exists = (e as NodeJS.ErrnoException).code === 'EEXIST';
    throw new KeyFileError(exists ? 'exists' : 'io', file, exists ? `${file} already exists` : `cannot create ${file}: ${(e as Error).message}`);
  }
  try {
    fs.fchmodSync(fd, 0o600);
    fs.writeSync(fd, `${wallet.privateKey}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return { address: wallet.address, file };
}

const KEY_RE = /^(0x)?[0-9a-fA-F]{64}$/;

/** A private key as hex text (with or without 0x), normalised to 0x…; undefined when it is not one. */
export function normaliseKey(text: string): string | undefined {
  const k = text.trim();
  return KEY_RE.test(k) ? (k.startsWith('0x') ? k : `0x${k}`) : undefined;
}

/**
 * The key in `file`, with `looseMode` set when group or others may read it (mode & 077) so the caller
 * can warn. Throws KeyFileError('io') when the file cannot be read; `key` is undefined when the file
 * does not hold a 32-byte hex key.
 */
export function readKeyFile(file: string): { key?: string; looseMode?: number } {
  let text: string;
  let mode: number;
  try {
    mode = fs.statSync(file).mode & 0o777;
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new KeyFileError('io', file, (e as NodeJS.ErrnoException).code === 'ENOENT' ? `${file} does not exist` : `cannot read ${file}: ${(e as Error).message}`);
  }
  const key = normaliseKey(text);
  return { ...(key ? { key } : {}), ...((mode & 0o077) !== 0 ? { looseMode: mode } : {}) };
}
