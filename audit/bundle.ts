/**
 * The audit bundle (docs/METHODOLOGY.md "Audit bundle"): everything needed to recompute one
 * settlement and its evidence root offline, and to check every device signature and hash chain —
 * facility, window, baseline, factors, methodology version, per device its visibility marks, start
 * cursors, coverage facts, the readings the settlement counted (with signatures and prev), the signed
 * neighbours the hash chain needs, its public keys, and the settlement record as the platform holds
 * it. One JSON document; its schema is defined here once (TypeBox), `createBundle` builds it from the
 * methodology's input, `parseBundle` checks a hostile one.
 */
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { errors } from '../domain/errors.ts';
import { ID_PATTERN, METRIC_NAMES, type Reading } from '../domain/reading.ts';
import { REGISTER_METRICS, type DeviceWindowInput, type WindowInput } from '../oracle/methodology.ts';

export const BUNDLE_FORMAT = 'mrv-audit-bundle-1';

const Int = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
const Dec = Type.String({ pattern: '^-?(?:0|[1-9]\\d{0,59})(?:\\.\\d{1,60})?$', maxLength: 130 });
const Hex32 = Type.String({ pattern: '^0x[0-9a-fA-F]{64}$' });
const Id = Type.String({ pattern: ID_PATTERN });
const Grams = Type.String({ pattern: '^-?(?:0|[1-9]\\d{0,76})$' });

export const BundleReading = Type.Object(
  {
    seq: Int,
    /** epoch ms */
    ts: Int,
    metric: Type.Union(METRIC_NAMES.map((m) => Type.Literal(m))),
    /** Canonical decimal text in the normalised unit (what the methodology counts). */
    value: Dec,
    unit: Type.String({ maxLength: 16 }),
    reset: Type.Boolean(),
    sig: Type.Optional(Type.String({ maxLength: 128 })),
    prev: Type.Optional(Type.String({ maxLength: 64 })),
    /** Value text and unit as the device sent them (what it signed), when they differ from value/unit. */
    sentValue: Type.Optional(Type.String({ maxLength: 130 })),
    sentUnit: Type.Optional(Type.String({ maxLength: 16 })),
  },
  { additionalProperties: false },
);
export type BundleReading = Static<typeof BundleReading>;

const Mark = Type.Object({ maxSeq: Type.Integer({ minimum: -1, maximum: Number.MAX_SAFE_INTEGER }), late: Int }, { additionalProperties: false });
const SeqTs = Type.Object({ seq: Int, ts: Int }, { additionalProperties: false });
const Cursor = Type.Object(
  {
    metric: Type.Union(REGISTER_METRICS.map((m) => Type.Literal(m))),
    seq: Int,
    ts: Int,
    value: Dec,
  },
  { additionalProperties: false },
);

export const BundleDeviceKey = Type.Object(
  {
    /** 64 hex (or base64 of 32 bytes) Ed25519 public key. */
    publicKey: Type.String({ maxLength: 64 }),
    /** When the key was set (epoch ms); readings received after it must be signed. */
    setAt: Int,
  },
  { additionalProperties: false },
);
export type BundleDeviceKey = Static<typeof BundleDeviceKey>;

export const BundleDevice = Type.Object(
  {
    deviceId: Id,
    /** Every key the device has had, oldest first (empty: an unsigned device). */
    keys: Type.Array(BundleDeviceKey, { maxItems: 64 }),
    reportingIntervalSeconds: Type.Integer({ minimum: 1, maximum: 86_400 * 366 }),
    intervalDevice: Type.Optional(Type.Boolean()),
    decommissioned: Type.Optional(Type.Object({ at: Int, reason: Type.String({ maxLength: 1000 }) }, { additionalProperties: false })),
    mark: Type.Optional(Mark),
    prev: Type.Optional(Type.Object({ mark: Mark, before: Int }, { additionalProperties: false })),
    startCursors: Type.Array(Cursor, { maxItems: 4 }),
    coverage: Type.Object(
      { before: Type.Optional(SeqTs), lastIn: Type.Optional(SeqTs), after: Type.Boolean(), between: Int, interval: Type.Boolean() },
      { additionalProperties: false },
    ),
    /** The readings the settlement counted (its consumed set). */
    readings: Type.Array(BundleReading, { maxItems: 1_000_000 }),
    /** Signed readings it did not count that the hash chain needs (each counted reading's predecessor by seq). */
    context: Type.Array(BundleReading, { maxItems: 1_000_000 }),
    /** Readings a regulator voided that it would otherwise have counted (never counted; `voided` leaves). */
    excluded: Type.Optional(Type.Array(BundleReading, { maxItems: 1_000_000 })),
  },
  { additionalProperties: false },
);
export type BundleDevice = Static<typeof BundleDevice>;

export const AuditBundle = Type.Object(
  {
    format: Type.Literal(BUNDLE_FORMAT),
    facility: Type.Object({ id: Id, name: Type.Optional(Type.String({ maxLength: 200 })), owner: Type.Optional(Type.String({ maxLength: 42 })) }),
    window: Type.Object({ start: Int, end: Int }, { additionalProperties: false }),
    methodologyVersion: Type.String({ maxLength: 64 }),
    baselineKgPerHour: Dec,
    factors: Type.Object(
      {
        version: Type.String({ maxLength: 64 }),
        base: Type.String({ maxLength: 64 }),
        gridKgPerKwh: Dec,
        gasKgPerM3: Dec,
        overrides: Type.Array(Type.Union([Type.Literal('grid'), Type.Literal('gas')]), { maxItems: 2 }),
        hash: Hex32,
      },
      { additionalProperties: false },
    ),
    devices: Type.Array(BundleDevice, { maxItems: 100_000 }),
    /** The regulator's voids the settlement applied (`void` leaves): [from, to) in epoch ms. */
    voids: Type.Optional(
      Type.Array(
        Type.Object({ id: Int, deviceId: Id, from: Int, to: Int, reason: Type.String({ maxLength: 1000 }) }, { additionalProperties: false }),
        { maxItems: 10_000 },
      ),
    ),
    /** The settlement as the platform recorded it (the audit compares it with the chain's). */
    settlement: Type.Object(
      {
        id: Type.String({ maxLength: 200 }),
        netGrams: Grams,
        evidenceRoot: Hex32,
        complete: Type.Boolean(),
        txHash: Type.Optional(Type.String({ maxLength: 66 })),
        mintedGrams: Type.Optional(Grams),
        burnedGrams: Type.Optional(Grams),
        deficitGrams: Type.Optional(Grams),
      },
      { additionalProperties: false },
    ),
    /**
     * Where the settlement is on chain and the chain's record of it as the platform read it when it
     * made the bundle (informational: the auditor names the RPC and ledger and reads the chain itself).
     */
    chain: Type.Optional(
      Type.Object({
        chainId: Type.Optional(Int),
        ledger: Type.Optional(Type.String({ maxLength: 42 })),
        settlement: Type.Optional(
          Type.Object(
            {
              found: Type.Boolean(),
              evidenceRoot: Type.Optional(Hex32),
              netGrams: Type.Optional(Grams),
              txHash: Type.Optional(Type.String({ maxLength: 66 })),
              mintedGrams: Type.Optional(Grams),
              burnedGrams: Type.Optional(Grams),
              deficitGrams: Type.Optional(Grams),
            },
            { additionalProperties: false },
          ),
        ),
      }),
    ),
  },
  { additionalProperties: false },
);
export type AuditBundle = Static<typeof AuditBundle>;

/** A stored reading as a bundle reading (the store's bookkeeping fields stay behind). */
export function bundleReading(r: Reading): BundleReading {
  const out: BundleReading = { seq: r.seq, ts: r.ts, metric: r.metric, value: r.value, unit: r.unit, reset: r.reset };
  if (r.sig !== undefined) {
    out.sig = r.sig;
    out.prev = r.prev ?? '';
    if (r.sentValue !== undefined) out.sentValue = r.sentValue;
    if (r.sentUnit !== undefined) out.sentUnit = r.sentUnit;
  }
  return out;
}

/** A bundle reading as the Reading the methodology takes. */
export function toReading(facilityId: string, deviceId: string, r: BundleReading): Reading {
  const out: Reading = { facilityId, deviceId, seq: r.seq, ts: r.ts, metric: r.metric, value: r.value, unit: r.unit, reset: r.reset, receivedAt: 0 };
  if (r.sig !== undefined) out.sig = r.sig;
  if (r.prev !== undefined) out.prev = r.prev;
  if (r.sentValue !== undefined) out.sentValue = r.sentValue;
  if (r.sentUnit !== undefined) out.sentUnit = r.sentUnit;
  return out;
}

export interface BundleSource {
  /** The methodology's input, exactly as the settlement was computed. */
  input: WindowInput;
  /** Keys per device (absent: unsigned device). */
  keys?: Record<string, BundleDeviceKey[]>;
  /** Signed neighbours per device that the chain check needs (see BundleDevice.context). */
  context?: Record<string, Reading[]>;
  settlement: AuditBundle['settlement'];
  facility?: Omit<AuditBundle['facility'], 'id'>;
  methodologyVersion: string;
  chain?: AuditBundle['chain'];
}

/** Builds the bundle of a settlement from what it was computed from (the gateway route's job, and tests'). */
export function createBundle(src: BundleSource): AuditBundle {
  const devices = src.input.devices.map((d: DeviceWindowInput): BundleDevice => {
    const out: BundleDevice = {
      deviceId: d.deviceId,
      keys: (src.keys?.[d.deviceId] ?? []).map((k) => ({ publicKey: k.publicKey, setAt: k.setAt })),
      reportingIntervalSeconds: d.reportingIntervalSeconds,
      startCursors: d.startCursors.map((c) => ({ metric: c.metric, seq: c.seq, ts: c.ts, value: c.value })),
      coverage: { after: d.coverage.after, between: d.coverage.between, interval: d.coverage.interval },
      readings: [...d.readings].sort((a, b) => a.seq - b.seq).map(bundleReading),
      context: [...(src.context?.[d.deviceId] ?? d.chainContext ?? [])].sort((a, b) => a.seq - b.seq).map(bundleReading),
    };
    if (d.coverage.before) out.coverage.before = { seq: d.coverage.before.seq, ts: d.coverage.before.ts };
    if (d.coverage.lastIn) out.coverage.lastIn = { seq: d.coverage.lastIn.seq, ts: d.coverage.lastIn.ts };
    if (d.intervalDevice !== undefined) out.intervalDevice = d.intervalDevice;
    if (d.decommissioned) out.decommissioned = { at: d.decommissioned.at, reason: d.decommissioned.reason };
    if (d.mark) out.mark = { maxSeq: d.mark.maxSeq, late: d.mark.late };
    if (d.prev) out.prev = { mark: { maxSeq: d.prev.mark.maxSeq, late: d.prev.mark.late }, before: d.prev.before };
    if (d.excluded?.length) out.excluded = [...d.excluded].sort((a, b) => a.seq - b.seq).map(bundleReading);
    return out;
  });
  const f = src.input.factors;
  return {
    format: BUNDLE_FORMAT,
    facility: { id: src.input.facilityId, ...src.facility },
    window: { start: src.input.window.start, end: src.input.window.end },
    methodologyVersion: src.methodologyVersion,
    baselineKgPerHour: src.input.baselineKgPerHour,
    factors: { version: f.version, base: f.base, gridKgPerKwh: f.gridKgPerKwh, gasKgPerM3: f.gasKgPerM3, overrides: [...f.overrides], hash: f.hash },
    devices,
    ...(src.input.voids?.length ? { voids: src.input.voids.map((v) => ({ id: v.id, deviceId: v.deviceId, from: v.from, to: v.to, reason: v.reason })) } : {}),
    settlement: { ...src.settlement },
    ...(src.chain ? { chain: src.chain } : {}),
  };
}

/**
 * The chain context of one device's used readings: for each signed used reading, the stored reading
 * just below it by seq (`below`: the store's lookup, e.g. the ingest rules' `DeviceReadings.below`
 * returning full readings) when the settlement did not use it itself. What `BundleSource.context`
 * wants for the device; sorted by seq, no repeats.
 */
export async function chainContext(used: readonly Reading[], below: (seq: number) => Reading | undefined | Promise<Reading | undefined>): Promise<Reading[]> {
  const usedSeqs = new Set(used.map((r) => r.seq));
  const out = new Map<number, Reading>();
  for (const r of used) {
    if (r.sig === undefined || !r.prev) continue;
    const p = await below(r.seq);
    if (p && !usedSeqs.has(p.seq)) out.set(p.seq, p);
  }
  return [...out.values()].sort((a, b) => a.seq - b.seq);
}

/** The methodology's input, rebuilt from a bundle. */
export function windowInputOf(b: AuditBundle): WindowInput {
  return {
    facilityId: b.facility.id,
    window: { start: b.window.start, end: b.window.end },
    baselineKgPerHour: b.baselineKgPerHour,
    methodologyVersion: b.methodologyVersion,
    factors: { ...b.factors, overrides: [...b.factors.overrides] },
    devices: b.devices.map((d) => {
      const out: DeviceWindowInput = {
        deviceId: d.deviceId,
        startCursors: d.startCursors.map((c) => ({ ...c })),
        readings: d.readings.map((r) => toReading(b.facility.id, d.deviceId, r)),
        coverage: { ...d.coverage },
        reportingIntervalSeconds: d.reportingIntervalSeconds,
      };
      if (d.intervalDevice !== undefined) out.intervalDevice = d.intervalDevice;
      if (d.context.length > 0) out.chainContext = d.context.map((r) => toReading(b.facility.id, d.deviceId, r));
      if (d.decommissioned) out.decommissioned = { ...d.decommissioned };
      if (d.mark) out.mark = { ...d.mark };
      if (d.prev) out.prev = { mark: { ...d.prev.mark }, before: d.prev.before };
      if (d.excluded?.length) {
        // A reading left out must lie in a void of its device the bundle names (the evidence commits to both).
        const own = (b.voids ?? []).filter((v) => v.deviceId === d.deviceId);
        for (const r of d.excluded) {
          if (!own.some((v) => v.from <= r.ts && r.ts < v.to)) throw errors.BUNDLE_INVALID(`device ${d.deviceId} reading ${r.seq} is left out but lies in no void of the device`);
        }
        out.excluded = d.excluded.map((r) => toReading(b.facility.id, d.deviceId, r));
      }
      return out;
    }),
    ...(b.voids?.length ? { voids: b.voids.map((v) => ({ ...v })) } : {}),
  };
}

/** Parses and checks a bundle's shape (hostile input): throws BUNDLE_INVALID naming the first problem. */
export function parseBundle(text: string): AuditBundle {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw errors.BUNDLE_INVALID(`not JSON: ${(err as Error).message}`);
  }
  if (!Value.Check(AuditBundle, value)) {
    const first = Value.Errors(AuditBundle, value).First();
    throw errors.BUNDLE_INVALID(`${BUNDLE_FORMAT} expected; ${first ? `${first.path || '/'}: ${first.message}` : 'invalid'}`);
  }
  return value;
}
