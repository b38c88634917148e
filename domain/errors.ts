/**
 * The error catalogue: every error the platform raises on purpose is declared here once, with a
 * stable code and the HTTP status it maps to. Throw by name: `throw errors.FACILITY_NOT_FOUND(id)`.
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

function define<A extends unknown[]>(code: string, statusCode: number, message: (...args: A) => string) {
  const make = (...args: A) => new DomainError(code, message(...args), statusCode);
  return Object.assign(make, { code, statusCode });
}

export const errors = {
  VALIDATION: define('VALIDATION_FAILED', 400, (what: string) => what),
  UNAUTHENTICATED: define('UNAUTHENTICATED', 401, () => 'missing or invalid API key'),
  FORBIDDEN: define('FORBIDDEN', 403, (why: string) => why),
  NOT_FOUND: define('NOT_FOUND', 404, (what: string) => `${what} not found`),
  FACILITY_NOT_FOUND: define('FACILITY_NOT_FOUND', 404, (id: string) => `facility ${id} not found`),
  DEVICE_NOT_FOUND: define('DEVICE_NOT_FOUND', 404, (id: string) => `device ${id} not found`),
  SETTLEMENT_NOT_FOUND: define('SETTLEMENT_NOT_FOUND', 404, (id: string) => `settlement ${id} not found`),
  CONFLICT: define('CONFLICT', 409, (what: string) => what),
  RATE_LIMITED: define('RATE_LIMITED', 429, () => 'rate limit exceeded'),
  CONFIG_INVALID: define('CONFIG_INVALID', 500, (what: string) => what),
  PORT_IN_USE: define('PORT_IN_USE', 500, (setting: string, host: string, port: number) =>
    `${setting}=${port}: ${host}:${port} is already in use (another carbon-mrv, or another program): stop it, or set ${setting} to a free port (0 picks one)`),
  ALREADY_RUNNING: define('ALREADY_RUNNING', 500, (pid: number, dataDir: string, lockFile: string) =>
    `another carbon-mrv (pid ${pid}) is running on DATA_DIR ${dataDir}: stop it first (Ctrl-C in its terminal, or kill ${pid}), or set DATA_DIR to another directory (if pid ${pid} is not carbon-mrv, delete ${lockFile})`),
  STORE_UNAVAILABLE: define('STORE_UNAVAILABLE', 503, (why: string) => `reading store unavailable: ${why}`),
  CHAIN_UNAVAILABLE: define('CHAIN_UNAVAILABLE', 503, (why: string) => `chain unavailable: ${why}`),
  CHAIN_SIGNER_MISSING: define('CHAIN_SIGNER_MISSING', 503, (what: string) => `${what} needs a chain signer this process does not have (set GATEWAY_PRIVATE_KEY for the gateway)`),
  BUNDLE_INVALID: define('BUNDLE_INVALID', 400, (why: string) => `not an audit bundle: ${why}`),
} as const;

export type ErrorCode = (typeof errors)[keyof typeof errors]['code'];
