/**
 * The signature step of ingest (SPEC "Device signatures"), for one batch of validated readings: a
 * reading of a device with a public key must carry a `sig` that verifies over its canonical line,
 * else it is rejected `bad_signature`; a reading of a device without a key keeps no signature fields
 * (an unverifiable signature must never reach the evidence or an audit bundle as if it meant
 * something). Stateless and independent of the store: the pipeline calls it between validation and
 * commit, with the registry's key lookup and a shared verifier (broker/verify-pool.ts).
 */
import type { Reading } from '../domain/reading.ts';
import { readingLine } from '../domain/signature.ts';
import type { SignatureVerifier, VerifyItem } from './verify-pool.ts';

export interface SignatureRejection {
  reading: Reading;
  reason: 'bad_signature';
  detail: string;
}

export interface SignatureCheck {
  /** Readings that pass (unsigned devices' readings stripped of signature fields), in input order. */
  accepted: Reading[];
  rejected: SignatureRejection[];
  /** Signatures handed to the verifier (0: nothing was verified). */
  verified: number;
}

/** Drops the signature fields of a reading (devices without a key). */
function unsigned(r: Reading): Reading {
  if (r.sig === undefined && r.prev === undefined && r.sentValue === undefined && r.sentUnit === undefined) return r;
  const { sig: _s, prev: _p, sentValue: _v, sentUnit: _u, ...rest } = r;
  return rest;
}

/**
 * Checks a batch. `keyOf(deviceId)`: the device's current public key (hex or base64), or undefined
 * for a device that does not sign. One verifier call for the whole batch.
 */
export async function checkSignatures(readings: readonly Reading[], keyOf: (deviceId: string) => string | undefined, verifier: SignatureVerifier): Promise<SignatureCheck> {
  const verdict: (SignatureRejection | Reading | number)[] = [];
  const items: VerifyItem[] = [];
  for (const r of readings) {
    const key = keyOf(r.deviceId);
    if (key === undefined) {
      verdict.push(unsigned(r));
    } else if (r.sig === undefined) {
      verdict.push({ reading: r, reason: 'bad_signature', detail: 'the device has a public key: every reading must carry sig' });
    } else {
      verdict.push(items.length);
      items.push({ key, line: readingLine(r) as string, sig: r.sig });
    }
  }
  const ok = items.length > 0 ? await verifier.verify(items) : [];
  const out: SignatureCheck = { accepted: [], rejected: [], verified: items.length };
  readings.forEach((r, i) => {
    const v = verdict[i];
    if (typeof v === 'number') {
      if (ok[v]) out.accepted.push(r);
      else out.rejected.push({ reading: r, reason: 'bad_signature', detail: `signature does not verify over ${JSON.stringify(items[v].line).slice(0, 300)} with the device's key` });
    } else if ('reason' in v) {
      out.rejected.push(v);
    } else {
      out.accepted.push(v);
    }
  });
  return out;
}
