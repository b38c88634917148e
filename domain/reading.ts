/**
 * The reading payload, defined once: the MQTT schema (TypeBox, also a JSON schema), the metric table
 * with accepted units and their normalisation, and the stored (normalised) reading type.
 */
import { Type, type Static } from '@sinclair/typebox';

export const ID_PATTERN = '^[A-Za-z0-9_-]{1,64}$';
export const ID_RE = new RegExp(ID_PATTERN);
export { MAX_FUTURE_MS, MAX_PAYLOAD_BYTES, MAX_READINGS_PER_MESSAGE } from './limits.ts';

export type MetricKind = 'register' | 'interval';

export interface MetricSpec {
  kind: MetricKind;
  /** Normalised unit. */
  unit: string;
  /** Accepted unit -> power of ten that converts it to the normalised unit (value * 10^k). */
  units: Record<string, number>;
}

export const METRICS = {
  electricity_import: { kind: 'register', unit: 'kWh', units: { Wh: -3, kWh: 0, MWh: 3 } },
  electricity_export: { kind: 'register', unit: 'kWh', units: { Wh: -3, kWh: 0, MWh: 3 } },
  renewable_generation: { kind: 'register', unit: 'kWh', units: { Wh: -3, kWh: 0, MWh: 3 } },
  natural_gas: { kind: 'register', unit: 'm3', units: { m3: 0 } },
  co2_direct: { kind: 'interval', unit: 'kg', units: { g: -3, kg: 0, t: 3 } },
} as const satisfies Record<string, MetricSpec>;

export type Metric = keyof typeof METRICS;
export const METRIC_NAMES = Object.keys(METRICS) as Metric[];

export function isMetric(name: string): name is Metric {
  return Object.prototype.hasOwnProperty.call(METRICS, name);
}

/** A cumulative register (a meter index: the quantity is the difference of two readings). */
export type RegisterMetric = { [K in Metric]: (typeof METRICS)[K]['kind'] extends 'register' ? K : never }[Metric];

/** The one test of "is this a register metric" (the others are interval metrics: each reading is a quantity). */
export function isRegisterMetric(name: string): name is RegisterMetric {
  return isMetric(name) && METRICS[name].kind === 'register';
}

export const REGISTER_METRICS: readonly RegisterMetric[] = METRIC_NAMES.filter(isRegisterMetric);

/** Device kinds that declare an interval (co2_direct) device, whatever it has sent so far. */
export const INTERVAL_KINDS: readonly string[] = ['cems', 'co2_direct'];
export function isIntervalKind(kind: string): boolean {
  return INTERVAL_KINDS.includes(kind);
}

/** One reading as a device sends it (the JSON schema of the MQTT payload element). */
export const ReadingPayload = Type.Object(
  {
    seq: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: "the device's emission order (dedupe key with deviceId); may arrive out of order" }),
    ts: Type.Union([Type.String({ description: 'ISO-8601 with zone' }), Type.Integer({ description: 'epoch milliseconds' })]),
    metric: Type.Union(METRIC_NAMES.map((m) => Type.Literal(m))),
    value: Type.Number({ description: 'decimal, in `unit`' }),
    unit: Type.String(),
    reset: Type.Optional(Type.Boolean({ description: 'cumulative register was reset' })),
    prev: Type.Optional(
      Type.String({ pattern: '^(?:[0-9a-f]{64})?$', description: "hex SHA-256 of the device's previous canonical line by seq ('' or absent: first reading after its key was set)" }),
    ),
    sig: Type.Optional(
      Type.String({ pattern: '^[A-Za-z0-9+/]{85}[AQgw]==$', description: 'base64 Ed25519 signature over the canonical line (SPEC "Device signatures")' }),
    ),
  },
  { additionalProperties: false },
);
export type ReadingPayload = Static<typeof ReadingPayload>;

/** A reading as stored: normalised unit, exact decimal text, epoch-ms timestamp. */
/** A stored reading's identity: the dedupe key. */
export interface ReadingKey {
  readonly deviceId: string;
  readonly seq: number;
}

/**
 * The text form `deviceId:seq` of a reading key, as a settlement records its late readings
 * (`lateKeys`) and as keys are looked up in a Set. Built here only; read back with parseReadingKey.
 */
export function readingKeyText(k: ReadingKey): string {
  return `${k.deviceId}:${k.seq}`;
}

/** The key readingKeyText printed (device ids match ID_PATTERN, so they hold no ':'). */
export function parseReadingKey(text: string): ReadingKey {
  const at = text.lastIndexOf(':');
  const deviceId = text.slice(0, at);
  const seq = Number(text.slice(at + 1));
  if (at < 0 || !ID_RE.test(deviceId) || !Number.isSafeInteger(seq) || seq < 0 || String(seq) !== text.slice(at + 1)) {
    throw new TypeError(`not a reading key: ${JSON.stringify(text.slice(0, 80))}`);
  }
  return { deviceId, seq };
}

export interface Reading {
  facilityId: string;
  deviceId: string;
  seq: number;
  ts: number;
  metric: Metric;
  /** Canonical decimal text in the metric's normalised unit (see Decimal.toString). */
  value: string;
  unit: string;
  reset: boolean;
  /** When the platform accepted it (epoch ms). */
  receivedAt: number;
  /**
   * Set by the store: the device's arrival number of a reading stored below the device's highest
   * stored seq ("late" arrival, 1, 2, ...); absent for one stored in order (see store/types.ts VisibilityMark).
   */
  arrival?: number;
  /** Device signature (base64, 64 bytes) when the reading carried `sig`; the four fields below come with it. */
  sig?: string;
  /** The `prev` the device signed over: 64 lowercase hex, or '' (first reading after the key was set). */
  prev?: string;
  /** The value's JSON number text exactly as sent (what the signature covers), when it differs from `value`. */
  sentValue?: string;
  /** The unit exactly as sent, when it differs from the normalised `unit`. */
  sentUnit?: string;
}

/** What the HTTP API returns for a reading. */
export const ReadingView = Type.Object({
  deviceId: Type.String(),
  seq: Type.Integer(),
  ts: Type.String({ format: 'date-time' }),
  metric: Type.String(),
  value: Type.String({ description: 'exact decimal in the normalised unit' }),
  unit: Type.String(),
  reset: Type.Optional(Type.Boolean()),
  late: Type.Optional(Type.Boolean()),
  voided: Type.Optional(Type.Boolean({ description: 'a regulator voided it: kept, never counted by a settlement computed since' })),
});
export type ReadingView = Static<typeof ReadingView>;

/** Reasons a reading is rejected: stable codes, kept in the rejections log and counted in metrics. */
export const REJECT_REASONS = [
  'invalid_utf8',
  'invalid_json',
  'payload_too_large',
  'too_many_readings',
  'invalid_shape',
  'invalid_seq',
  'invalid_ts',
  'future_ts',
  'unknown_metric',
  'unknown_unit',
  'invalid_value',
  'register_backwards',
  /** ts before that of a stored lower seq, or after that of a stored higher seq, of the device. */
  'ts_out_of_order',
  /** An increase (or interval mass) above 1.2 x the device's capacity over the time since its previous reading. */
  'implausible',
  /** No longer produced (any arrival order is accepted); kept because older rejection rows carry it. */
  'seq_not_increasing',
  'duplicate_conflict',
  'rate_limited',
  /** MQTT: publish/will to a topic that is not the device's own, or a topic too long or too deep. */
  'invalid_topic',
  /** External broker (MQTT_URL): the topic's device is not in our registry. */
  'unknown_device',
  /** External broker: the device is suspended or decommissioned (our broker refuses it at CONNECT). */
  'device_not_active',
  /** External broker: the device's facility is suspended (our broker refuses it at CONNECT). */
  'facility_not_active',
  /**
   * A device with a public key sent no `sig`, or one that does not verify over the canonical line
   * (SPEC "Device signatures"); also a malformed `sig` or `prev` field.
   */
  'bad_signature',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

export interface Rejection {
  facilityId: string;
  deviceId: string;
  receivedAt: number;
  reason: RejectReason;
  /** Human detail, e.g. which field. */
  detail?: string;
  /** The offending payload text (truncated to a few KiB) or element. */
  payload: string;
  /** How many rejections this row stands for (same device, reason and minute; the first is the sample). Default 1. */
  count?: number;
  /** When the last of them was received (epoch ms), when count > 1. */
  lastReceivedAt?: number;
}

/** Topic helpers. */
export function readingsTopic(facilityId: string, deviceId: string): string {
  return `facilities/${facilityId}/devices/${deviceId}/readings`;
}
export function statusTopic(facilityId: string, deviceId: string): string {
  return `facilities/${facilityId}/devices/${deviceId}/status`;
}
