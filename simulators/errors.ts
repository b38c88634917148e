/** Errors the simulators raise on purpose, each with a stable code (see domain/errors.ts). */
import { DomainError } from '../domain/errors.ts';

function define<A extends unknown[]>(code: string, message: (...args: A) => string) {
  const make = (...args: A) => new DomainError(code, message(...args), 400);
  return Object.assign(make, { code });
}

export const simErrors = {
  USAGE: define('SIM_USAGE', (what: string) => what),
  BAD_URL: define('SIM_BAD_URL', (url: string, why: string) => `bad broker URL ${JSON.stringify(url)}: ${why}`),
  BROKER_UNREACHABLE: define('SIM_BROKER_UNREACHABLE', (url: string, why: string) => `cannot reach the MQTT broker at ${url}: ${why}`),
  CREDENTIALS_REFUSED: define('SIM_CREDENTIALS_REFUSED', (devices: string[], why: string) =>
    `the broker refused the credentials of ${devices.length === 1 ? 'device' : 'devices'} ${devices.slice(0, 5).join(', ')}${devices.length > 5 ? ` and ${devices.length - 5} more` : ''}: ${why}`),
  NO_CREDENTIALS: define('SIM_NO_CREDENTIALS', (what: string) => what),
  API_FAILED: define('SIM_API_FAILED', (what: string) => what),
  STATE_INVALID: define('SIM_STATE_INVALID', (file: string, why: string) => `state file ${file} is unusable: ${why} (move it away to start afresh)`),
  STATE_LOCKED: define('SIM_STATE_LOCKED', (file: string, lock: string, holder: string) =>
    `state file ${file} is in use by another simulator (${holder}): give this run its own --prefix P (its own devices and state file) or --state FILE, or stop that one first. If no such process runs, delete ${lock}`),
} as const;
