/** One pino root logger; components take a child. Secrets are redacted wherever they appear. */
import { pino, type Logger } from 'pino';

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

export function createLogger(level = 'info'): Logger {
  return pino({ level, redact: { paths: REDACT, censor: '[redacted]' }, base: undefined });
}

/** A logger that prints nothing (tests). */
export const silentLogger: Logger = pino({ level: 'silent' });
