/**
 * A settlement with signed readings, computed by the real methodology and evidence code, and its
 * audit bundle: facility F, window [T0, T0 + 1 h), baseline 3600 kg/h.
 * - `m1` signs (key K1): seq 1 (previous window, the start cursor: chain context), seqs 2 and 3 in
 *   the window; seq 3 sent as 1005000 Wh (stored 1005 kWh): import 1000 -> 1005 kWh.
 * - `g1` is unsigned: natural gas 9 -> 10 m3.
 * actual = 5 x 0.5366 + 1 x 2.162 = 4.845 kg; net = 3,600,000 - 4,845 = 3,595,155 g.
 */
import { canonicalLine, generateDeviceKey, lineHash, signLine, type DeviceKeyPair } from '../../domain/signature.ts';
import type { Reading } from '../../domain/reading.ts';
import { createBundle, type AuditBundle } from '../../audit/bundle.ts';
import { buildEvidence } from '../../oracle/evidence.ts';
import { applyFactors } from '../../oracle/factors.ts';
import { METHODOLOGY_VERSION, settleWindow, type WindowInput } from '../../oracle/methodology.ts';

export const T0 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
export const W = 3_600_000;
export const KEY_SET_AT = T0 - 86_400_000;

/** Signs a chain of readings of one device (prev linked by seq order as given). */
export function signChain(key: DeviceKeyPair, rs: Omit<Reading, 'sig' | 'prev'>[], start = ''): Reading[] {
  let prev = start;
  return rs.map((r) => {
    const line = canonicalLine({ deviceId: r.deviceId, seq: r.seq, ts: r.ts, metric: r.metric, value: r.sentValue ?? r.value, unit: r.sentUnit ?? r.unit, reset: r.reset, prev });
    const out: Reading = { ...r, sig: signLine(key.privateKey, line), prev };
    prev = lineHash(line);
    return out;
  });
}

const base = { facilityId: 'F', reset: false, receivedAt: 0 };

export interface Fixture {
  key: DeviceKeyPair;
  bundle: AuditBundle;
  input: WindowInput;
  netGrams: bigint;
  root: string;
}

export function fixture(key: DeviceKeyPair = generateDeviceKey()): Fixture {
  const [m1s1, m1s2, m1s3] = signChain(key, [
    { ...base, deviceId: 'm1', seq: 1, ts: T0 - 30_000, metric: 'electricity_import', value: '1000', unit: 'kWh' },
    { ...base, deviceId: 'm1', seq: 2, ts: T0 + 1_200_000, metric: 'electricity_import', value: '1002.5', unit: 'kWh', sentValue: '1002.50' },
    { ...base, deviceId: 'm1', seq: 3, ts: T0 + 3_590_000, metric: 'electricity_import', value: '1005', unit: 'kWh', sentValue: '1005000', sentUnit: 'Wh' },
  ]);
  const input: WindowInput = {
    facilityId: 'F',
    window: { start: T0, end: T0 + W },
    baselineKgPerHour: '3600',
    factors: applyFactors(T0, {}),
    devices: [
      {
        deviceId: 'm1',
        mark: { maxSeq: 3, late: 0 },
        prev: { mark: { maxSeq: 1, late: 0 }, before: T0 },
        startCursors: [{ metric: 'electricity_import', seq: 1, ts: m1s1.ts, value: '1000' }],
        readings: [m1s2, m1s3],
        chainContext: [m1s1],
        coverage: { before: { seq: 1, ts: m1s1.ts }, lastIn: { seq: 3, ts: m1s3.ts }, after: false, between: 2, interval: false },
        reportingIntervalSeconds: 60,
      },
      {
        deviceId: 'g1',
        mark: { maxSeq: 5, late: 0 },
        prev: { mark: { maxSeq: 4, late: 0 }, before: T0 },
        startCursors: [{ metric: 'natural_gas', seq: 4, ts: T0 - 20_000, value: '9' }],
        readings: [{ ...base, deviceId: 'g1', seq: 5, ts: T0 + 3_580_000, metric: 'natural_gas', value: '10', unit: 'm3' }],
        coverage: { before: { seq: 4, ts: T0 - 20_000 }, lastIn: { seq: 5, ts: T0 + 3_580_000 }, after: false, between: 1, interval: false },
        reportingIntervalSeconds: 60,
      },
    ],
  };
  const result = settleWindow(input);
  const evidence = buildEvidence(result);
  const bundle = createBundle({
    input,
    keys: { m1: [{ publicKey: key.publicKey, setAt: KEY_SET_AT }] },
    settlement: { id: `F:${T0}`, netGrams: result.netGrams.toString(), evidenceRoot: evidence.root, complete: result.complete },
    methodologyVersion: METHODOLOGY_VERSION,
  });
  return { key, bundle, input, netGrams: result.netGrams, root: evidence.root };
}

/** A deep copy to tamper with. */
export function copy(b: AuditBundle): AuditBundle {
  return JSON.parse(JSON.stringify(b)) as AuditBundle;
}
