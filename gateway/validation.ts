/**
 * One formatter for every schema validation failure: ajv's errors (run with `verbose`, so each one
 * carries its schema and the value given) become a sentence that names the field, what was given
 * and what is allowed, e.g. `status must be one of "active", "suspended" (got "disabled")`.
 */
import { ID_PATTERN } from '../domain/reading.ts';

/** The part of an ajv ErrorObject we read (verbose adds schema, parentSchema and data). */
export interface AjvError {
  keyword: string;
  instancePath: string;
  schemaPath: string;
  params: Record<string, unknown>;
  message?: string;
  schema?: unknown;
  parentSchema?: Record<string, unknown>;
  data?: unknown;
}

type Schema = Record<string, unknown>;

/** Human descriptions of the patterns the API uses (anything else is shown as the pattern). */
const PATTERNS: Record<string, string> = {
  [ID_PATTERN]: 'an id of 1 to 64 letters, digits, "_" or "-"',
  '^[0-9]+(\\.[0-9]+)?$': 'a decimal number such as "3600.5"',
  '^0x[0-9a-fA-F]{40}$': 'an EVM address (0x followed by 40 hex digits)',
  '^-?[0-9]+$': 'an integer as text',
  '^[A-Za-z0-9_:.-]{1,200}$': 'an id of 1 to 200 letters, digits, "_", ":", "." or "-"',
  '^[1-9][0-9]{0,30}$': 'a positive integer as text (at most 31 digits)',
  '^[0-9]{1,78}$': 'a non-negative integer as text',
  '^[0-9]{1,12}$': 'UNIX seconds as text',
  '^0x[0-9a-fA-F]{130}$': 'a 65-byte signature (0x followed by 130 hex digits)',
  '^([0-9]{1,15}|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9]{2}:?[0-9]{2}))$':
    'a time: epoch milliseconds or ISO-8601 with a zone such as "2026-12-01T10:00:00Z"',
};

const DECIMAL_PATTERN = '^[0-9]+(\\.[0-9]+)?$';

function shown(v: unknown): string {
  if (v === undefined) return 'nothing';
  let text: string;
  try {
    text = JSON.stringify(v) ?? String(v);
  } catch {
    text = String(v);
  }
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function range(s: Schema, unit: string): string {
  const min = s.minimum ?? s.minLength;
  const max = s.maximum ?? s.maxLength;
  if (min !== undefined && max !== undefined) return ` from ${min} to ${max}${unit}`;
  if (min !== undefined) return ` of at least ${min}${unit}`;
  if (max !== undefined) return ` of at most ${max}${unit}`;
  return '';
}

/** What a schema accepts, as a noun phrase ("an integer from 1 to 1000", "one of "a", "b""). */
export function describeSchema(s: unknown): string {
  if (!s || typeof s !== 'object') return 'a valid value';
  const x = s as Schema;
  if ('const' in x) return shown(x.const);
  if (Array.isArray(x.enum)) return `one of ${x.enum.map(shown).join(', ')}`;
  const branches = (x.anyOf ?? x.oneOf) as Schema[] | undefined;
  if (Array.isArray(branches)) {
    if (branches.every((b) => 'const' in b)) return `one of ${branches.map((b) => shown(b.const)).join(', ')}`;
    // A decimal given as text or as a JSON number: one idea, one phrase.
    if (branches.length === 2 && branches.some((b) => b.pattern === DECIMAL_PATTERN) && branches.some((b) => b.type === 'number')) {
      return PATTERNS[DECIMAL_PATTERN];
    }
    return branches.map(describeSchema).join(' or ');
  }
  switch (x.type) {
    case 'string':
      if (typeof x.pattern === 'string') return PATTERNS[x.pattern] ?? `text matching ${x.pattern}`;
      if (x.format === 'date-time') return 'an ISO-8601 date-time';
      return `text${range(x, ' characters')}`;
    case 'integer':
      return `an integer${range(x, '')}`;
    case 'number':
      return x.minimum === 0 && x.maximum === undefined ? 'a non-negative number' : `a number${range(x, '')}`;
    case 'boolean':
      return 'true or false';
    case 'object':
      return 'an object';
    case 'array':
      return 'a list';
    case 'null':
      return 'null';
    default:
      return 'a valid value';
  }
}

function fieldName(e: AjvError, context: string | undefined): string {
  const path = e.instancePath.replace(/^\//, '').replaceAll('/', '.');
  const where = context === 'querystring' ? 'query parameter ' : context === 'params' ? 'path parameter ' : context === 'headers' ? 'header ' : '';
  if (!path) return context === 'querystring' ? 'the query string' : context === 'params' ? 'the path' : `the ${context ?? 'request'}`;
  return `${where}${path}`;
}

function propertyNames(s: Schema | undefined): string[] {
  return s && s.properties && typeof s.properties === 'object' ? Object.keys(s.properties) : [];
}

/**
 * The sentence for a failed validation. ajv stops at the first failure (allErrors off) but a union
 * (anyOf) reports one error per branch and then its own: the outermost union that holds the first
 * error describes the field as a whole.
 */
export function formatValidation(list: AjvError[], context?: string): string {
  if (!Array.isArray(list) || list.length === 0) return 'invalid request';
  const first = list[0];
  const union = list
    .filter((e) => (e.keyword === 'anyOf' || e.keyword === 'oneOf') && first.schemaPath.startsWith(e.schemaPath.replace(/\/(anyOf|oneOf)$/, '')))
    .sort((a, b) => a.schemaPath.length - b.schemaPath.length)[0];
  const e = union ?? first;
  const field = fieldName(e, context);
  const got = ` (got ${shown(e.data)})`;
  const parent = e.parentSchema;
  switch (e.keyword) {
    case 'anyOf':
    case 'oneOf': {
      const branches = Array.isArray(e.schema) ? (e.schema as Schema[]) : [];
      return `${field} must be ${describeSchema({ anyOf: branches })}${got}`;
    }
    case 'const':
      return `${field} must be ${shown(e.params.allowedValue ?? e.schema)}${got}`;
    case 'enum':
      return `${field} must be one of ${((e.params.allowedValues as unknown[]) ?? []).map(shown).join(', ')}${got}`;
    case 'required': {
      const missing = String(e.params.missingProperty);
      const at = e.instancePath ? `${field}.${missing}` : context === 'querystring' ? `query parameter ${missing}` : missing;
      return `${at} is required${parent?.properties ? ` (${describeSchema((parent.properties as Record<string, unknown>)[missing])})` : ''}`;
    }
    case 'additionalProperties': {
      const allowed = propertyNames(parent);
      const name = String(e.params.additionalProperty);
      return `${field} has an unknown property ${shown(name)}${allowed.length ? ` (allowed: ${allowed.join(', ')})` : ''}`;
    }
    case 'minProperties':
      return `${field} must not be empty: give at least one of ${propertyNames(parent).join(', ')}`;
    case 'type':
      return `${field} must be ${parent ? describeSchema(parent) : `of type ${String(e.params.type)}`}${got}`;
    case 'pattern':
    case 'format':
      return `${field} must be ${parent ? describeSchema(parent) : e.message}${got}`;
    case 'minimum':
    case 'exclusiveMinimum':
    case 'maximum':
    case 'exclusiveMaximum':
    case 'minLength':
    case 'maxLength':
      return `${field} must be ${parent ? describeSchema(parent) : e.message}${got}`;
    default:
      return `${field} ${e.message ?? 'is invalid'}${got}`;
  }
}
