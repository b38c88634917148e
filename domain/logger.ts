/** One pino root logger; components take a child. Secrets are redacted wherever they appear. */
import { pino, type DestinationStream, type Logger } from 'pino';
import { redactUrl } from './config.ts';

export type { Logger };

const REDACT = [
  'password',
  'secret',
  'key',
  'token',
  'privateKey',
  '*.password',
  '*.secret',
  '*.key',
  '*.token',
  '*.privateKey',
  'req.headers.authorization',
];

/** A string that may be a URL carrying credentials (cheap test before parsing). */
const URL_WITH_PARTS = /:\/\/[^\s]*[@?/]/;

function scrub(v: unknown): unknown {
  return typeof v === 'string' && URL_WITH_PARTS.test(v) ? redactUrl(v) : v;
}

/**
 * Credentials embedded in URLs (`user:password@`, `?token=`, key-like path segments) are redacted in
 * every logged field and one level below (e.g. `{ config: { CHAIN_RPC_URL } }`), whatever its name.
 */
function redactUrls(obj: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(obj)) {
    let w: unknown = scrub(v);
    if (w === v && v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Error)) {
      let inner: Record<string, unknown> | undefined;
      for (const [ik, iv] of Object.entries(v as Record<string, unknown>)) {
        const s = scrub(iv);
        if (s !== iv) (inner ??= { ...(v as Record<string, unknown>) })[ik] = s;
      }
      if (inner) w = inner;
    }
    if (w !== v) (out ??= { ...obj })[k] = w;
  }
  return out ?? obj;
}

/** `destination` defaults to stdout; a CLI that prints results on stdout logs to stderr (`pino.destination(2)`). */
export function createLogger(level = 'info', destination?: DestinationStream): Logger {
  const options = { level, redact: { paths: REDACT, censor: '[redacted]' }, base: undefined, formatters: { log: redactUrls } };
  return destination ? pino(options, destination) : pino(options);
}

/** A logger that prints nothing (tests). */
export const silentLogger: Logger = pino({ level: 'silent' });
