/**
 * Owner keys of simulated facilities: one key file per facility, `{dir}/{facilityId}.key` (normally
 * `$DATA_DIR/keys/`), made once owner-only (0600) with contracts/client/keyfile.ts and reused on every
 * later run, so the demo's credits belong to an address whose key is on this machine and can be
 * retired with `npm run cli -- retire --key-file $DATA_DIR/keys/<facilityId>.key`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { addressOfKey } from '../contracts/client/crypto.ts';
import { KeyFileError, createKeyFile, readKeyFile } from '../contracts/client/keyfile.ts';
import { simErrors } from './errors.ts';

/** The key file of a facility's owner in `dir`. */
export function ownerKeyPath(dir: string, facilityId: string): string {
  return path.join(dir, `${facilityId}.key`);
}

/**
 * The owner address of `facilityId`: the key in `{dir}/{facilityId}.key`, created (0600, in a 0700
 * directory) when there is none. A file that does not hold a key is an error, never overwritten.
 */
export function facilityOwnerKey(dir: string, facilityId: string): { address: string; file: string; created: boolean } {
  const file = ownerKeyPath(dir, facilityId);
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw simErrors.USAGE(`cannot create the owner key directory ${dir}: ${(err as Error).message}`);
  }
  for (let attempt = 0; attempt < 2; attempt++) {
    if (fs.existsSync(file)) {
      let key: string | undefined;
      try {
        ({ key } = readKeyFile(file));
      } catch (err) {
        throw simErrors.USAGE(`owner key of ${facilityId}: ${(err as Error).message}`);
      }
      if (!key) throw simErrors.USAGE(`owner key of ${facilityId}: ${file} does not hold a private key (0x and 64 hex digits); move it away to make a new one`);
      return { address: addressOfKey(key), file, created: false };
    }
    try {
      const made = createKeyFile(file);
      return { address: made.address, file, created: true };
    } catch (err) {
      // another simulator made it between the check and the create: read theirs
      if (err instanceof KeyFileError && err.reason === 'exists') continue;
      throw simErrors.USAGE(`owner key of ${facilityId}: ${(err as Error).message}`);
    }
  }
  throw simErrors.USAGE(`owner key of ${facilityId}: ${file} could not be read or made`);
}
