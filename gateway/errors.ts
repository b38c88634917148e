/**
 * The one function that turns anything thrown into the API's `{ error: { code, message } }` body
 * (codes from the catalogue, domain/errors.ts).
 */
import { DomainError, errors } from '../domain/errors.ts';
import { formatValidation, type AjvError } from './validation.ts';

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
    const code = e.statusCode === 429 ? errors.RATE_LIMITED.code : e.statusCode === 413 ? errors.PAYLOAD_TOO_LARGE.code : errors.BAD_REQUEST.code;
    return { status: e.statusCode, body: { error: { code, message: e.message } }, internal: false };
  }
  const internal = errors.INTERNAL();
  return { status: internal.statusCode, body: { error: { code: internal.code, message: internal.message } }, internal: true };
}
