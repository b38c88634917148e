/**
 * The ingest signature step (broker/signatures.ts) on payloads through the real validator and a real
 * worker-thread verifier: a keyed device's valid readings pass, a missing signature, another key's
 * signature and a value changed after signing are rejected bad_signature; an unkeyed device's
 * readings pass without signature fields.
 */
import t from 'tap';
import { checkSignatures } from '../../broker/signatures.ts';
import { validatePayload } from '../../broker/validate.ts';
import { createVerifier } from '../../broker/verify-pool.ts';
import type { Reading } from '../../domain/reading.ts';
import { canonicalLine, generateDeviceKey, lineHash, signLine } from '../../domain/signature.ts';

const NOW = Date.parse('2026-11-22T06:00:00.000Z');
const A = generateDeviceKey();
const B = generateDeviceKey();

/** A signed payload element for device `d` (value text as given). */
function element(d: string, seq: number, value: string, unit: string, prev: string, key = A.privateKey, signedValue = value): string {
  const line = canonicalLine({ deviceId: d, seq, ts: NOW - 1000 * (10 - seq), metric: 'electricity_import', value: signedValue, unit, reset: false, prev });
  return `{"seq":${seq},"ts":${NOW - 1000 * (10 - seq)},"metric":"electricity_import","value":${value},"unit":"${unit}","prev":"${prev}","sig":"${signLine(key, line)}"}`;
}

function readings(d: string, elements: string[]): Reading[] {
  const v = validatePayload(Buffer.from(`[${elements.join(',')}]`), { facilityId: 'f', deviceId: d, now: NOW });
  return v.readings;
}

t.test('keyed and unkeyed devices in one batch', async (t) => {
  const verifier = createVerifier({ workers: 1, inlineBelow: 2 });
  t.teardown(() => verifier.close());
  const l1 = canonicalLine({ deviceId: 'm1', seq: 1, ts: NOW - 9000, metric: 'electricity_import', value: '1000.50', unit: 'kWh', reset: false, prev: '' });
  const batch = [
    ...readings('m1', [
      element('m1', 1, '1000.50', 'kWh', ''), // ok (value text kept as sent)
      element('m1', 2, '1001', 'kWh', lineHash(l1)), // ok
      element('m1', 3, '1002', 'kWh', '', B.privateKey), // another key
      element('m1', 4, '1003000', 'Wh', '', A.privateKey, '1003001'), // value changed after signing
      '{"seq":5,"ts":' + (NOW - 5000) + ',"metric":"electricity_import","value":1004,"unit":"kWh"}', // no sig
    ]),
    ...readings('u1', [element('u1', 1, '7', 'kWh', '', B.privateKey)]),
  ];
  t.equal(batch.length, 6);
  const res = await checkSignatures(batch, (d) => (d === 'm1' ? A.publicKey : undefined), verifier);
  t.same(res.accepted.map((r) => `${r.deviceId}:${r.seq}`), ['m1:1', 'm1:2', 'u1:1']);
  t.same(res.rejected.map((r) => [`${r.reading.deviceId}:${r.reading.seq}`, r.reason]), [['m1:3', 'bad_signature'], ['m1:4', 'bad_signature'], ['m1:5', 'bad_signature']]);
  t.equal(res.verified, 4, 'four signatures went to the verifier (m1:5 has none)');
  t.match(res.rejected[2].detail, /must carry sig/);
  t.equal(res.accepted[0].sentValue, '1000.50', 'the sent text is kept for the audit');
  const u1 = res.accepted[2];
  t.same([u1.sig, u1.prev, u1.sentValue], [undefined, undefined, undefined], 'an unkeyed device keeps no signature fields');
  t.same(await checkSignatures([], () => A.publicKey, verifier), { accepted: [], rejected: [], verified: 0 });
});
