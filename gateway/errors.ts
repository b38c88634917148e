/**
 * Gateway errors beyond the shared catalogue (domain/errors.ts), declared the same way, and the one
 * function that turns anything thrown into the SPEC's `{ error: { code, message } }` body.
 */
import { DomainError, errors } from '../domain/errors.ts';
import { formatValidation, type AjvError } from './validation.ts';

export const gatewayErrors = {
  BACKEND_UNAVAILABLE: (backend: string) => new DomainError('BACKEND_UNAVAILABLE', `${backend} is not available`, 503),
  ROUTE_NOT_FOUND: (method: string, url: string) => new DomainError('ROUTE_NOT_FOUND', `no route ${method} ${url.split('?')[0]}`, 404),
  RELAY_REJECTED: (why: string) => new DomainError('RELAY_REJECTED', `retirement rejected: ${why}`, 422),
  PROOF_NOT_FOUND: (deviceId: string, seq: number) =>
    new DomainError('PROOF_NOT_FOUND', `reading ${deviceId}/${seq} is not in this settlement's evidence`, 404),
} as const;

/**
 * A chain failure as the catalogue says it (503 CHAIN_UNAVAILABLE for an unreachable node, 409
 * LEDGER_REVERTED for a decoded revert): the contracts client's one classifier.
 */
export { toChainError as asChainError } from '../contracts/client/errors.ts';

export interface ErrorBody {
  error: { code: string; message: string };
}

interface FastifyLikeError {
  code?: string;
  statusCode?: number;
  message: string;
  validation?: unknown;
  validationContext?: string;
}

/** Maps an error to status + SPEC body. Unknown errors become a 500 with a generic message. */
export function toErrorResponse(err: unknown): { status: number; body: ErrorBody; internal: boolean } {
  if (err instanceof DomainError) {
    // Declared errors are expected outcomes (a 503 for a missing backend too): no stack in the logs.
    return { status: err.statusCode, body: { error: { code: err.code, message: err.message } }, internal: false };
  }
  const e = err as FastifyLikeError;
  if (e && e.validation) {
    // Schema failures: one sentence naming the field, what was given and what is allowed.
    const message = Array.isArray(e.validation) ? formatValidation(e.validation as AjvError[], e.validationContext) : e.message;
    return { status: 400, body: { error: { code: errors.VALIDATION.code, message } }, internal: false };
  }
  if (e && typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    // fastify's own client errors (bad JSON, body too large, unsupported media type...).
    const code = e.statusCode === 429 ? errors.RATE_LIMITED.code : e.statusCode === 413 ? 'PAYLOAD_TOO_LARGE' : 'BAD_REQUEST';
    return { status: e.statusCode, body: { error: { code, message: e.message } }, internal: false };
  }
  return { status: 500, body: { error: { code: 'INTERNAL', message: 'internal error' } }, internal: true };
}
