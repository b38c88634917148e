/**
 * InfluxDB line protocol encoding, and InfluxQL literal quoting, written so that no input string can
 * add a tag, a field, a point or a query clause.
 *
 * Line protocol (`measurement,tag=v field=v time`):
 * - measurement: `,` and space are backslash-escaped;
 * - tag keys, tag values, field keys: `,`, `=` and space are backslash-escaped;
 * - string field values: in double quotes with `\` and `"` backslash-escaped;
 * - refused (LineProtocolError), never written: CR and LF anywhere (they end a line; there is no escape
 *   for them in keys or tags, and although 1.x accepts them inside quoted strings we do not rely on
 *   it), and a backslash in a measurement, key or tag value: influxd 1.6 stores `\\` in a tag as two
 *   backslashes and rejects a tag ending in one, so no escaping of it round-trips (checked against the
 *   real server in test/store/influx-line.test.ts);
 * - empty keys and tag values are refused (the parser rejects them).
 * With the escape character itself never taken from data, every `,`, `=`, space and `"` that comes
 * from data is escaped and cannot act as a separator.
 */
import { DomainError, errors } from '../../domain/errors.ts';

export class LineProtocolError extends DomainError {
  constructor(message: string) {
    super(errors.LINE_PROTOCOL.code, message, 400);
  }
}

/** A field value: bigint is an integer field (`1i`), number a float, string a string, boolean a bool. */
export type FieldValue = bigint | number | string | boolean;

const NEWLINE = /[\r\n]/;

function refuseNewline(s: string, what: string): void {
  if (NEWLINE.test(s)) throw new LineProtocolError(`${what} contains a line break`);
}

function refuseKeyChars(s: string, what: string): void {
  if (s.length === 0) throw new LineProtocolError(`empty ${what}`);
  refuseNewline(s, what);
  if (s.includes('\\')) throw new LineProtocolError(`${what} contains a backslash`);
}

export function escapeMeasurement(s: string): string {
  refuseKeyChars(s, 'measurement');
  return s.replace(/[, ]/g, (c) => '\\' + c);
}

/** Tag key, tag value or field key. */
export function escapeKey(s: string, what = 'tag'): string {
  refuseKeyChars(s, what);
  return s.replace(/[,= ]/g, (c) => '\\' + c);
}

export function quoteStringField(s: string): string {
  refuseNewline(s, 'string field');
  return '"' + s.replace(/[\\"]/g, (c) => '\\' + c) + '"';
}

function fieldText(key: string, v: FieldValue): string {
  switch (typeof v) {
    case 'bigint':
      if (v < -(2n ** 63n) || v >= 2n ** 63n) throw new LineProtocolError(`integer field ${key} out of range`);
      return `${v}i`;
    case 'number':
      if (!Number.isFinite(v)) throw new LineProtocolError(`float field ${key} is not finite`);
      return String(v);
    case 'boolean':
      return v ? 'true' : 'false';
    default:
      return quoteStringField(v);
  }
}

/**
 * One line. Tags are written sorted by key (what InfluxDB recommends); a tag with an undefined value is
 * left out. `time` is in nanoseconds.
 */
export function encodeLine(
  measurement: string,
  tags: Record<string, string>,
  fields: Record<string, FieldValue>,
  time: bigint,
): string {
  let line = escapeMeasurement(measurement);
  for (const k of Object.keys(tags).sort()) {
    line += ',' + escapeKey(k, 'tag key') + '=' + escapeKey(tags[k], `tag ${k}`);
  }
  const parts: string[] = [];
  for (const [k, v] of Object.entries(fields)) parts.push(escapeKey(k, 'field key') + '=' + fieldText(k, v));
  if (parts.length === 0) throw new LineProtocolError('a point needs at least one field');
  return `${line} ${parts.join(',')} ${time}`;
}

// ---------------------------------------------------------------------------------------------
// InfluxQL

/** A single-quoted InfluxQL string literal. */
export function influxqlString(s: string): string {
  refuseNewline(s, 'InfluxQL string');
  return "'" + s.replace(/[\\']/g, (c) => '\\' + c) + "'";
}

/** A double-quoted InfluxQL identifier. */
export function influxqlIdent(s: string): string {
  refuseNewline(s, 'InfluxQL identifier');
  return '"' + s.replace(/[\\"]/g, (c) => '\\' + c) + '"';
}

/** An integer literal for InfluxQL (nanosecond time bounds, seq bounds): refuses anything else. */
export function influxqlInt(n: bigint | number): string {
  if (typeof n === 'number' && !Number.isSafeInteger(n)) throw new LineProtocolError(`not a safe integer: ${n}`);
  return String(n);
}
