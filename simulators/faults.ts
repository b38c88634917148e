/**
 * Fault injection: the `--faults` grammar, the tally of what was injected, and the garbage payloads.
 * Rates are per message (one reading for single-register devices); badauth and spoof are counts.
 */
import type { RejectReason } from '../domain/reading.ts';
import { simErrors } from './errors.ts';

export interface FaultRates {
  /** The reading is generated (seq used, register moves on) but never sent. */
  drop: number;
  /** The same bytes are published a second time (same seq, same content). */
  duplicate: number;
  /** Two consecutive messages are swapped: the lower seq arrives second and is refused. */
  reorder: number;
  /** The reading's ts lies in a window that is already settled. */
  late: number;
  /** A non-JSON or invalid payload is published besides the reading (it uses no seq). */
  garbage: number;
  /** A register restarts near 0, flagged `reset: true`. */
  reset: number;
  /** The ts is shifted by a few minutes; beyond +5 min the platform refuses it. */
  skew: number;
  /**
   * The message's signatures do not verify (signed over another line): refused `bad_signature`.
   * Needs signing on (`--sign`); the next reading's `prev` still names it, so the device's hash
   * chain on the platform is broken there, as for a dropped reading.
   */
  badsig: number;
  /** Connects with a wrong password (count). */
  badauth: number;
  /** Publishes to another device's topic (count). */
  spoof: number;
}

export const NO_FAULTS: FaultRates = { drop: 0, duplicate: 0, reorder: 0, late: 0, garbage: 0, reset: 0, skew: 0, badsig: 0, badauth: 0, spoof: 0 };
const RATE_KINDS = ['drop', 'duplicate', 'reorder', 'late', 'garbage', 'reset', 'skew', 'badsig'] as const;
const COUNT_KINDS = ['badauth', 'spoof'] as const;

/** Parses `drop=0.05,duplicate=0.05,...,badauth=1,spoof=1`. Throws with a readable message. */
export function parseFaults(spec: string | undefined): FaultRates {
  const out: FaultRates = { ...NO_FAULTS };
  if (!spec || !spec.trim()) return out;
  for (const part of spec.split(',')) {
    const item = part.trim();
    if (!item) continue;
    const m = /^([a-z]+)=([0-9]*\.?[0-9]+(?:e-?\d+)?)$/i.exec(item);
    if (!m) throw simErrors.USAGE(`--faults: expected name=number, got ${JSON.stringify(item)}`);
    const name = m[1].toLowerCase();
    const v = Number(m[2]);
    if ((RATE_KINDS as readonly string[]).includes(name)) {
      if (!(v >= 0 && v <= 1)) throw simErrors.USAGE(`--faults: ${name} is a rate per reading, between 0 and 1`);
      out[name as (typeof RATE_KINDS)[number]] = v;
    } else if ((COUNT_KINDS as readonly string[]).includes(name)) {
      if (!Number.isInteger(v) || v < 0) throw simErrors.USAGE(`--faults: ${name} is a count (a whole number)`);
      out[name as (typeof COUNT_KINDS)[number]] = v;
    } else {
      throw simErrors.USAGE(`--faults: unknown fault ${JSON.stringify(name)} (known: ${[...RATE_KINDS, ...COUNT_KINDS].join(', ')})`);
    }
  }
  if (out.drop + out.late + out.skew + out.reset + out.badsig > 1) throw simErrors.USAGE('--faults: drop + late + skew + reset + badsig must not exceed 1');
  if (out.duplicate + out.reorder > 1) throw simErrors.USAGE('--faults: duplicate + reorder must not exceed 1');
  return out;
}

export function formatFaults(f: FaultRates): string {
  return Object.entries(f)
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

/**
 * What was injected, in readings (a grid meter's message carries two) so it compares with the
 * platform's per-reading counters; `reorder` counts swaps, `garbage` messages (one rejection each).
 * `expectedRejections` is what the platform should refuse because of the faults, by reason.
 */
export interface FaultCounts {
  drop: number;
  duplicate: number;
  reorder: number;
  late: number;
  garbage: number;
  reset: number;
  skew: number;
  /** Skews beyond +5 min (refused as future_ts). */
  skewFuture: number;
  /** Readings sent with a signature that does not verify (refused as bad_signature). */
  badsig: number;
  badauth: { attempted: number; refused: number; accepted: number; failed: number };
  spoof: { attempted: number; sent: number; failed: number };
  expectedRejections: Partial<Record<RejectReason, number>>;
}

export function emptyFaultCounts(): FaultCounts {
  return {
    drop: 0,
    duplicate: 0,
    reorder: 0,
    late: 0,
    garbage: 0,
    reset: 0,
    skew: 0,
    skewFuture: 0,
    badsig: 0,
    badauth: { attempted: 0, refused: 0, accepted: 0, failed: 0 },
    spoof: { attempted: 0, sent: 0, failed: 0 },
    expectedRejections: {},
  };
}

export function addFaultCounts(into: FaultCounts, from: FaultCounts): FaultCounts {
  for (const k of ['drop', 'duplicate', 'reorder', 'late', 'garbage', 'reset', 'skew', 'skewFuture', 'badsig'] as const) into[k] += from[k];
  for (const k of ['attempted', 'refused', 'accepted', 'failed'] as const) into.badauth[k] += from.badauth[k];
  for (const k of ['attempted', 'sent', 'failed'] as const) into.spoof[k] += from.spoof[k];
  for (const [reason, n] of Object.entries(from.expectedRejections) as [RejectReason, number][]) {
    into.expectedRejections[reason] = (into.expectedRejections[reason] ?? 0) + n;
  }
  return into;
}

export function expectRejection(c: FaultCounts, reason: RejectReason, n = 1): void {
  c.expectedRejections[reason] = (c.expectedRejections[reason] ?? 0) + n;
}

/** Garbage variants: the bytes and the reason the platform must give. */
export const GARBAGE_KINDS = ['invalid_json', 'invalid_utf8', 'unknown_metric', 'unknown_unit', 'invalid_value', 'invalid_shape', 'invalid_ts'] as const;
export type GarbageKind = (typeof GARBAGE_KINDS)[number];

/**
 * A garbage payload built around what would have been a valid reading: `seq` is that of the reading
 * sent right after it (refused statelessly, it takes no seq), so the only thing wrong is the one
 * fault. Returns bytes and the expected reason.
 */
export function garbagePayload(kind: GarbageKind, seq: number, tsIso: string, metric: string, unit: string): { bytes: Buffer; reason: RejectReason } {
  const reading = (patch: Record<string, unknown>) => Buffer.from(JSON.stringify({ seq, ts: tsIso, metric, value: 1.5, unit, ...patch }));
  switch (kind) {
    case 'invalid_json':
      return { bytes: Buffer.from(`{"seq":${seq},"ts":"${tsIso}","metric":"${metric}","value":`), reason: 'invalid_json' };
    case 'invalid_utf8':
      return { bytes: Buffer.concat([Buffer.from(`{"seq":${seq},"metric":"`), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}')]), reason: 'invalid_utf8' };
    case 'unknown_metric':
      return { bytes: reading({ metric: 'electricity_imports' }), reason: 'unknown_metric' };
    case 'unknown_unit':
      return { bytes: reading({ unit: metric === 'natural_gas' ? 'ft3' : 'kW' }), reason: 'unknown_unit' };
    case 'invalid_value':
      return { bytes: reading({ value: '1.5' }), reason: 'invalid_value' };
    case 'invalid_shape':
      return { bytes: reading({ device: 'spoofed' }), reason: 'invalid_shape' };
    case 'invalid_ts':
      return { bytes: reading({ ts: tsIso.replace(/Z$/, '') }), reason: 'invalid_ts' };
  }
}
