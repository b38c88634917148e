/** One pino root logger; components take a child. Secrets are redacted wherever they appear. */
import { pino, type DestinationStream, type Logger } from 'pino';

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

/** `destination` defaults to stdout; a CLI that prints results on stdout logs to stderr (`pino.destination(2)`). */
export function createLogger(level = 'info', destination?: DestinationStream): Logger {
  const options = { level, redact: { paths: REDACT, censor: '[redacted]' }, base: undefined };
  return destination ? pino(options, destination) : pino(options);
}

/** A logger that prints nothing (tests). */
export const silentLogger: Logger = pino({ level: 'silent' });
