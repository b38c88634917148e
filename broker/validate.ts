/**
 * Stateless validation of one MQTT readings payload (SPEC "MQTT interface", DESIGN "Readings").
 * Pure and synchronous: bytes in, normalised readings and rejection rows out. The stateful checks
 * (duplicates, seq order, registers going backwards) happen later in ReadingStore.commit.
 *
 * Order: size <= 64 KiB -> UTF-8 (fatal) -> strict JSON (numbers kept as text) -> shape (object, or
 * array of 1..500) -> per element: exact field set, seq, ts, metric, unit, value, reset, prev and sig
 * (their form only: whether a signature verifies is decided at ingest, see broker/verify-pool.ts).
 * A payload-level failure is one rejection (payload text cut to 4 KiB); a bad element rejects only
 * itself (its own row, payload = that element's source text).
 */
import { Decimal } from '../domain/decimal.ts';
import { JsonNumber, JsonParseError, isJsonObject, parseJsonDocument, truncateUtf8, type JsonObject, type JsonValue } from '../domain/json.ts';
import { MAX_REJECTION_PAYLOAD_BYTES } from '../domain/limits.ts';
import {
  MAX_FUTURE_MS,
  MAX_PAYLOAD_BYTES,
  MAX_READINGS_PER_MESSAGE,
  METRICS,
  isMetric,
  type Reading,
  type RejectReason,
  type Rejection,
} from '../domain/reading.ts';
import { PREV_RE, SIG_RE } from '../domain/signature.ts';

/** Nesting allowed in a payload: array -> object -> (nothing deeper is valid, a little slack for errors). */
const MAX_JSON_DEPTH = 32;

export interface ValidateContext {
  facilityId: string;
  deviceId: string;
  /** Receive time (epoch ms): the readings' receivedAt and the reference for 'future_ts'. */
  now: number;
}

export interface ValidationResult {
  readings: Reading[];
  rejections: Rejection[];
}

const REQUIRED = ['seq', 'ts', 'metric', 'value', 'unit'] as const;
const ALLOWED = new Set<string>([...REQUIRED, 'reset', 'prev', 'sig']);
const SEQ_RE = /^(?:0|[1-9]\d{0,15})$/;
const EPOCH_MS_RE = /^(?:0|[1-9]\d{0,15})$/;
/** RFC 3339 date-time: ISO-8601 extended format with a mandatory zone (Z or +hh:mm). */
const ISO_RE = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;
const ZONELESS_RE = /^\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?$/;

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
const lossy = new TextDecoder('utf-8', { fatal: false });

/** A payload-level rejection (one row; the payload text cut to MAX_REJECTION_PAYLOAD_BYTES). */
function failPayload(bytes: Buffer | Uint8Array, ctx: ValidateContext, reason: RejectReason, detail: string, text?: string): ValidationResult {
  return {
    readings: [],
    rejections: [
      {
        facilityId: ctx.facilityId,
        deviceId: ctx.deviceId,
        receivedAt: ctx.now,
        reason,
        detail,
        payload: truncateUtf8(text ?? lossy.decode(bytes.subarray(0, MAX_REJECTION_PAYLOAD_BYTES + 4)), MAX_REJECTION_PAYLOAD_BYTES),
      },
    ],
  };
}

export function validatePayload(bytes: Buffer | Uint8Array, ctx: ValidateContext): ValidationResult {
  if (bytes.byteLength > MAX_PAYLOAD_BYTES) {
    return failPayload(bytes, ctx, 'payload_too_large', `${bytes.byteLength} bytes > ${MAX_PAYLOAD_BYTES}`);
  }
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return failPayload(bytes, ctx, 'invalid_utf8', 'payload is not valid UTF-8');
  }
  // The common compact single reading is taken apart by one regex; anything else by the parser.
  const fast = fastElement(text);
  let root: JsonValue = fast ?? null;
  let elementTexts: string[] | undefined;
  if (!fast) {
    try {
      ({ value: root, elementTexts } = parseJsonDocument(text, { maxDepth: MAX_JSON_DEPTH }));
    } catch (err) {
      if (err instanceof JsonParseError) return failPayload(bytes, ctx, 'invalid_json', err.message, text);
      throw err;
    }
  }

  let elements: JsonValue[];
  let texts: string[];
  if (Array.isArray(root)) {
    if (root.length === 0) return failPayload(bytes, ctx, 'invalid_shape', 'empty array', text);
    if (root.length > MAX_READINGS_PER_MESSAGE) {
      return failPayload(bytes, ctx, 'too_many_readings', `${root.length} readings > ${MAX_READINGS_PER_MESSAGE}`, text);
    }
    elements = root;
    texts = elementTexts ?? root.map(() => '');
  } else if (isJsonObject(root)) {
    elements = [root];
    texts = [text];
  } else {
    return failPayload(bytes, ctx, 'invalid_shape', 'payload must be a reading object or an array of them', text);
  }

  const out: ValidationResult = { readings: [], rejections: [] };
  for (let i = 0; i < elements.length; i++) {
    const r = validateElement(elements[i], ctx);
    if ('reason' in r) {
      out.rejections.push({
        facilityId: ctx.facilityId,
        deviceId: ctx.deviceId,
        receivedAt: ctx.now,
        reason: r.reason,
        detail: elements.length > 1 ? `element ${i}: ${r.detail}` : r.detail,
        payload: truncateUtf8(texts[i], MAX_REJECTION_PAYLOAD_BYTES),
      });
    } else {
      out.readings.push(r);
    }
  }
  return out;
}

/** A JSON number literal, exactly the JSON grammar (no leading zeros, no '+', no bare '.5'). */
const NUM = '-?(?:0|[1-9]\\d*)(?:\\.\\d+)?(?:[eE][+-]?\\d+)?';
/**
 * The common payload, one reading with the SPEC's key order and no whitespace, e.g.
 * `{"seq":1,"ts":"2026-11-22T06:00:00.000Z","metric":"electricity_import","value":81234.5,"unit":"kWh"}`,
 * optionally followed by `"reset"`, then `"prev"` and `"sig"` (a signed reading, in that order).
 * Strings are limited to characters that need no escaping and cannot be control characters, so a
 * match is valid JSON whose values are exactly the captured texts; anything else takes the full parser.
 */
const FAST_RE = new RegExp(
  `^\\{"seq":(${NUM}),"ts":(?:(${NUM})|"([0-9A-Za-z:.+-]{0,64})"),"metric":"([a-z0-9_]{1,64})","value":(${NUM}),"unit":"([A-Za-z0-9]{1,16})"(?:,"reset":(true|false))?(?:,"prev":"([0-9a-f]{64}|)")?(?:,"sig":"([A-Za-z0-9+/]{85}[AQgw]==)")?\\}$`,
);

/** The reading object of a payload in the common form, as the full parser would build it; else undefined. */
export function fastElement(text: string): JsonObject | undefined {
  if (text.length > 512 || text.charCodeAt(0) !== 0x7b) return undefined;
  const m = FAST_RE.exec(text);
  if (!m) return undefined;
  const el: JsonObject = {
    seq: new JsonNumber(m[1]),
    ts: m[2] !== undefined ? new JsonNumber(m[2]) : m[3],
    metric: m[4],
    value: new JsonNumber(m[5]),
    unit: m[6],
  };
  if (m[7] !== undefined) el.reset = m[7] === 'true';
  if (m[8] !== undefined) el.prev = m[8];
  if (m[9] !== undefined) el.sig = m[9];
  return el;
}

type ElementResult = Reading | { reason: RejectReason; detail: string };

function validateElement(el: JsonValue, ctx: ValidateContext): ElementResult {
  if (!isJsonObject(el)) return { reason: 'invalid_shape', detail: 'reading must be an object' };
  for (const k of Object.keys(el)) {
    if (!ALLOWED.has(k)) return { reason: 'invalid_shape', detail: `unknown field ${JSON.stringify(k).slice(0, 70)}` };
  }
  for (const k of REQUIRED) {
    if (!(k in el)) return { reason: 'invalid_shape', detail: `missing field ${k}` };
  }

  const seq = parseSeq(el.seq);
  if (seq === undefined) return { reason: 'invalid_seq', detail: 'seq must be a non-negative safe integer' };

  const ts = parseTs(el.ts);
  if (typeof ts === 'string') return { reason: 'invalid_ts', detail: ts };
  if (ts > ctx.now + MAX_FUTURE_MS) return { reason: 'future_ts', detail: `ts is ${ts - ctx.now} ms in the future` };

  const metric = el.metric;
  if (typeof metric !== 'string' || !isMetric(metric)) {
    return { reason: 'unknown_metric', detail: `unknown metric ${JSON.stringify(metric).slice(0, 70)}` };
  }
  const spec = METRICS[metric];
  const unit = el.unit;
  const units: Record<string, number> = spec.units;
  if (typeof unit !== 'string' || !Object.prototype.hasOwnProperty.call(units, unit)) {
    return { reason: 'unknown_unit', detail: `unit of ${metric} must be one of ${Object.keys(units).join(', ')}` };
  }

  const raw = el.value;
  if (!(raw instanceof JsonNumber)) return { reason: 'invalid_value', detail: 'value must be a JSON number' };
  // Already in the normalised unit and plain: canonical by trimming (what Decimal would print).
  let canonical = units[unit] === 0 ? canonicalPlain(raw.text) : undefined;
  if (canonical === undefined) {
    let value: Decimal;
    try {
      value = Decimal.parse(raw.text).shift(units[unit]);
    } catch {
      return { reason: 'invalid_value', detail: 'value out of range' };
    }
    if (value.isNegative()) return { reason: 'invalid_value', detail: `${metric} cannot be negative` };
    canonical = value.toString();
  }

  let reset = false;
  if ('reset' in el) {
    if (typeof el.reset !== 'boolean') return { reason: 'invalid_shape', detail: 'reset must be a boolean' };
    reset = el.reset;
  }

  const reading: Reading = {
    facilityId: ctx.facilityId,
    deviceId: ctx.deviceId,
    seq,
    ts,
    metric,
    value: canonical,
    unit: spec.unit,
    reset,
    receivedAt: ctx.now,
  };
  // Signature fields: their form here; whether the signature verifies is decided at ingest.
  if ('sig' in el) {
    if (typeof el.sig !== 'string' || !SIG_RE.test(el.sig)) return { reason: 'bad_signature', detail: 'sig must be the base64 of a 64-byte Ed25519 signature' };
    let prev = '';
    if ('prev' in el) {
      if (typeof el.prev !== 'string' || !PREV_RE.test(el.prev)) return { reason: 'bad_signature', detail: "prev must be 64 lowercase hex digits or ''" };
      prev = el.prev;
    }
    reading.sig = el.sig;
    reading.prev = prev;
    if (raw.text !== canonical) reading.sentValue = raw.text;
    if (unit !== spec.unit) reading.sentUnit = unit;
  } else if ('prev' in el) {
    return { reason: 'bad_signature', detail: 'prev without sig' };
  }
  return reading;
}

/** Non-negative, no exponent, at most the 60 digits Decimal.parse accepts. */
const PLAIN_RE = /^(?:0|[1-9]\d*)(?:\.\d+)?$/;

/**
 * Canonical text of a plain non-negative JSON number (the integer part has no leading zeros by the
 * JSON grammar; trailing fraction zeros go), exactly Decimal.parse(text).toString(); else undefined.
 */
export function canonicalPlain(text: string): string | undefined {
  if (text.length > 61 || !PLAIN_RE.test(text)) return undefined;
  const dot = text.indexOf('.');
  if (dot < 0) return text;
  let end = text.length;
  while (text.charCodeAt(end - 1) === 0x30) end--;
  if (end === dot + 1) end = dot;
  return text.slice(0, end);
}

function parseSeq(v: JsonValue): number | undefined {
  if (!(v instanceof JsonNumber) || !SEQ_RE.test(v.text)) return undefined;
  const n = Number(v.text);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Epoch ms, or a string explaining why the ts is invalid. */
export function parseTs(v: JsonValue): number | string {
  if (v instanceof JsonNumber) {
    if (!EPOCH_MS_RE.test(v.text)) return 'epoch ts must be a non-negative integer of milliseconds';
    const n = Number(v.text);
    return Number.isSafeInteger(n) ? n : 'epoch ts out of range';
  }
  if (typeof v !== 'string') return 'ts must be an ISO-8601 string with zone or epoch milliseconds';
  const m = ISO_RE.exec(v);
  if (!m) {
    return ZONELESS_RE.test(v) ? 'ts has no zone (add Z or an offset)' : 'ts is not ISO-8601 date-time with zone';
  }
  const [, y, mo, d, h, mi, s, frac = '', z, sign, oh, om] = m;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const hour = Number(h);
  const minute = Number(mi);
  const second = Number(s);
  if (month < 1 || month > 12 || day < 1 || day > daysIn(year, month) || hour > 23 || minute > 59 || second > 59) {
    return 'ts has an out-of-range field';
  }
  let offsetMin = 0;
  if (!z) {
    const ohn = Number(oh);
    const omn = Number(om);
    if (ohn > 23 || omn > 59) return 'ts has an out-of-range zone offset';
    offsetMin = (sign === '-' ? -1 : 1) * (ohn * 60 + omn);
  }
  const ms = Number(frac.padEnd(3, '0').slice(0, 3));
  const utc = new Date(0);
  utc.setUTCFullYear(year, month - 1, day); // setUTCFullYear keeps years 0..99 literal
  utc.setUTCHours(hour, minute, second, ms);
  const t = utc.getTime() - offsetMin * 60_000;
  if (t < 0) return 'ts before 1970-01-01';
  return t;
}

function daysIn(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}
