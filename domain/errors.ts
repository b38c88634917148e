/**
 * The error catalogue: every error the platform raises on purpose is declared here once, grouped by
 * area, with a stable code and the HTTP status it maps to. Throw by name
 * (`throw errors.FACILITY_NOT_FOUND(id)`), match by name (`err.code === errors.LEDGER_REVERTED.code`):
 * no code is written as a string literal anywhere else. Codes are part of the API (docs/API.md
 * "Errors"): never rename one.
 */

export class DomainError extends Error {
  readonly code: string;
  readonly statusCode: number;
  readonly details?: unknown;

  constructor(code: string, message: string, statusCode = 400, details?: unknown) {
    super(message);
    this.name = 'DomainError';
    this.code = code;
    this.statusCode = statusCode;
    this.details = details;
  }
}

export interface ErrorDefinition<A extends unknown[], C extends string = string> {
  (...args: A): DomainError;
  readonly code: C;
  readonly statusCode: number;
}

function define<C extends string, A extends unknown[]>(code: C, statusCode: number, message: (...args: A) => string): ErrorDefinition<A, C> {
  const make = (...args: A) => new DomainError(code, message(...args), statusCode);
  return Object.assign(make, { code, statusCode });
}

/** True when `err` is (or carries the code of) the catalogue entry `def`. */
export function isError(err: unknown, def: { readonly code: string }): boolean {
  return (err as { code?: unknown } | null)?.code === def.code;
}

export const errors = {
  // --- requests (gateway): input, authentication, routing
  VALIDATION: define('VALIDATION_FAILED', 400, (what: string) => what),
  BAD_REQUEST: define('BAD_REQUEST', 400, (what: string) => what),
  INVALID_JSON: define('INVALID_JSON', 400, (what: string) => what),
  INVALID_DECIMAL: define('INVALID_DECIMAL', 400, (what: string) => what),
  UNAUTHENTICATED: define('UNAUTHENTICATED', 401, () => 'missing or invalid API key'),
  FORBIDDEN: define('FORBIDDEN', 403, (why: string) => why),
  NOT_FOUND: define('NOT_FOUND', 404, (what: string) => `${what} not found`),
  ROUTE_NOT_FOUND: define('ROUTE_NOT_FOUND', 404, (method: string, url: string) => `no route ${method} ${url.split('?')[0]}`),
  PAYLOAD_TOO_LARGE: define('PAYLOAD_TOO_LARGE', 413, (what: string) => what),
  RATE_LIMITED: define('RATE_LIMITED', 429, () => 'rate limit exceeded'),
  INTERNAL: define('INTERNAL', 500, () => 'internal error'),

  // --- registry: facilities and devices
  FACILITY_NOT_FOUND: define('FACILITY_NOT_FOUND', 404, (id: string) => `facility ${id} not found`),
  DEVICE_NOT_FOUND: define('DEVICE_NOT_FOUND', 404, (id: string) => `device ${id} not found`),
  FACILITY_EXISTS: define('FACILITY_EXISTS', 409, (id: string) => `facility ${id} already exists`),
  DEVICE_EXISTS: define('DEVICE_EXISTS', 409, (id: string) => `device ${id} already exists`),
  /** A correction (owner change, removal) of a facility that has settled windows: suspend it instead. */
  FACILITY_SETTLED: define('FACILITY_SETTLED', 409, (what: string) => what),
  /** Decommissioning is final: any later status change of the device. */
  DEVICE_DECOMMISSIONED: define('DEVICE_DECOMMISSIONED', 409, (id: string) => `device ${id} is decommissioned; that is final`),

  // --- settlements (oracle)
  SETTLEMENT_NOT_FOUND: define('SETTLEMENT_NOT_FOUND', 404, (id: string) => `settlement ${id} not found`),
  PROOF_NOT_FOUND: define('PROOF_NOT_FOUND', 404, (deviceId: string, seq: number) => `reading ${deviceId}/${seq} is not in this settlement's evidence`),
  /** A settlement's recorded evidence disagrees with what it recomputes to, or with the chain's root. */
  EVIDENCE_MISMATCH: define('EVIDENCE_MISMATCH', 409, (what: string) => what),
  /** A settlement computed by another methodology version than this oracle implements. */
  METHODOLOGY_MISMATCH: define('METHODOLOGY_MISMATCH', 409, (what: string) => what),
  ORACLE_CLOSED: define('ORACLE_CLOSED', 503, () => 'oracle is closed'),
  /** A per-window figures request over more windows than one answer computes. */
  WINDOW_RANGE_TOO_LARGE: define('WINDOW_RANGE_TOO_LARGE', 400, (windows: number, max: number, windowSeconds: number) =>
    `from..to spans ${windows} windows of ${windowSeconds} s; at most ${max} per request: narrow the range (ask for the next ones with from = the last windowEnd)`),

  // --- corrections (voids of readings, correction settlements)
  CORRECTION_NOT_FOUND: define('CORRECTION_NOT_FOUND', 404, (id: string) => `correction ${id} not found`),
  /** A void whose range holds none of the device's readings. */
  VOID_EMPTY: define('VOID_EMPTY', 400, (deviceId: string, from: string, to: string) => `device ${deviceId} has no reading with ${from} <= ts < ${to}: nothing to void`),
  /** Another process corrected the same window meanwhile: retry. */
  CORRECTION_RACED: define('CORRECTION_RACED', 409, (what: string) => what),

  // --- chain (contracts client, relay)
  LEDGER_REVERTED: define('LEDGER_REVERTED', 409, (sentence: string) => `ledger reverted: ${sentence}`),
  RETIREMENT_NOT_FOUND: define('RETIREMENT_NOT_FOUND', 404, (id: string) => `no retirement #${id} on the ledger`),
  RELAY_REJECTED: define('RELAY_REJECTED', 422, (why: string) => `retirement rejected: ${why}`),
  RELAY_UNREACHABLE: define('RELAY_UNREACHABLE', 503, (baseUrl: string, why: string) =>
    `cannot reach the gateway at ${baseUrl} (${why}): is it running, and is --relay right?`),
  CHAIN_UNAVAILABLE: define('CHAIN_UNAVAILABLE', 503, (why: string) => `chain unavailable: ${why}`),
  CHAIN_SIGNER_MISSING: define('CHAIN_SIGNER_MISSING', 503, (what: string) => `${what} needs a chain signer this process does not have (set GATEWAY_PRIVATE_KEY for the gateway)`),
  CONTRACTS_NOT_COMPILED: define('CONTRACTS_NOT_COMPILED', 500, (file: string) => `contract artifact ${file} not found: run \`npm run compile\` first`),
  ANVIL_NOT_FOUND: define('ANVIL_NOT_FOUND', 500, (pkg: string) => `anvil binary not found: install the ${pkg} npm package`),

  // --- backends (reading store, InfluxDB, the gateway's optional parts)
  STORE_UNAVAILABLE: define('STORE_UNAVAILABLE', 503, (why: string) => `reading store unavailable: ${why}`),
  BACKEND_UNAVAILABLE: define('BACKEND_UNAVAILABLE', 503, (backend: string) => `${backend} is not available`),
  LINE_PROTOCOL: define('LINE_PROTOCOL', 400, (what: string) => what),
  MQTT_CLIENT_UNSUPPORTED: define('MQTT_CLIENT_UNSUPPORTED', 500, (why: string) => `the installed mqtt.js cannot acknowledge after commit: ${why}`),

  // --- process: configuration and start-up
  CONFIG_INVALID: define('CONFIG_INVALID', 500, (what: string) => what),
  PORT_IN_USE: define('PORT_IN_USE', 500, (setting: string, host: string, port: number) =>
    `${setting}=${port}: ${host}:${port} is already in use (another carbon-mrv, or another program): stop it, or set ${setting} to a free port (0 picks one)`),
  ALREADY_RUNNING: define('ALREADY_RUNNING', 500, (pid: number, dataDir: string, lockFile: string) =>
    `another carbon-mrv (pid ${pid}) is running on DATA_DIR ${dataDir}: stop it first (Ctrl-C in its terminal, or kill ${pid}), or set DATA_DIR to another directory (if pid ${pid} is not carbon-mrv, delete ${lockFile})`),
  SERVER_BINARY_MISSING: define('SERVER_BINARY_MISSING', 500, (why: string) => `npm run start:cluster cannot start: ${why}`),

  // --- audit (npm run audit)
  BUNDLE_INVALID: define('BUNDLE_INVALID', 400, (why: string) => `not an audit bundle: ${why}`),
} as const;

/** The simulators' own errors (command line, state file, fleet registration); all 400. */
export const simErrors = {
  USAGE: define('SIM_USAGE', 400, (what: string) => what),
  BAD_URL: define('SIM_BAD_URL', 400, (url: string, why: string) => `bad broker URL ${JSON.stringify(url)}: ${why}`),
  BROKER_UNREACHABLE: define('SIM_BROKER_UNREACHABLE', 400, (url: string, why: string) => `cannot reach the MQTT broker at ${url}: ${why}`),
  CREDENTIALS_REFUSED: define('SIM_CREDENTIALS_REFUSED', 400, (devices: string[], why: string) =>
    `the broker refused the credentials of ${devices.length === 1 ? 'device' : 'devices'} ${devices.slice(0, 5).join(', ')}${devices.length > 5 ? ` and ${devices.length - 5} more` : ''}: ${why}`),
  NO_CREDENTIALS: define('SIM_NO_CREDENTIALS', 400, (what: string) => what),
  API_FAILED: define('SIM_API_FAILED', 400, (what: string) => what),
  STATE_INVALID: define('SIM_STATE_INVALID', 400, (file: string, why: string) => `state file ${file} is unusable: ${why} (move it away to start afresh)`),
  STATE_LOCKED: define('SIM_STATE_LOCKED', 400, (file: string, lock: string, holder: string) =>
    `state file ${file} is in use by another simulator (${holder}): give this run its own --prefix P (its own devices and state file) or --state FILE, or stop that one first. If no such process runs, delete ${lock}`),
} as const;

export type ErrorCode = (typeof errors)[keyof typeof errors]['code'] | (typeof simErrors)[keyof typeof simErrors]['code'];

/** Every declared entry, for the uniqueness check and the docs table. */
export const catalogue: ReadonlyArray<{ readonly code: string; readonly statusCode: number }> = [...Object.values(errors), ...Object.values(simErrors)];
