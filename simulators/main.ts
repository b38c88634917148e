/**
 * `npm run simulate -- --url mqtt://127.0.0.1:1883 --devices N --rate R [--faults ...] [--seed S]
 * [--duration SEC] [--json] [--state FILE] [--credentials FILE | --api URL --api-key KEY]`
 *
 * Progress and logs go to stderr; with --json the final summary is one JSON object on stdout.
 */
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { loadConfig } from '../domain/config.ts';
import { DomainError } from '../domain/errors.ts';
import { createLogger } from '../domain/logger.ts';
import { simErrors } from './errors.ts';
import { startFleet, type Fleet } from './fleet.ts';
import { parseProfiles } from './plan.ts';
import { formatSummary } from './progress.ts';
import { PROFILE_NAMES } from './profiles.ts';
import { rejectedCounter } from './register.ts';
import { DEFAULT_STATE_PATH } from './state.ts';

export const USAGE = `Usage: npm run simulate -- [options]

Simulated meters and emission monitors publishing readings over MQTT (QoS 1).

Connection
  --url URL              broker URL (default mqtt://127.0.0.1:$MQTT_PORT, i.e. 1883)
  --credentials FILE     JSON list of { facilityId, deviceId, password [, kind] }
  --api URL              gateway URL: register facilities and devices there (with --api-key)
  --api-key KEY          admin API key for --api (default $ADMIN_API_KEY)
                         Without either, credentials saved in the state file are used, else
                         devices connect without a password.
Fleet
  --devices N            number of devices (default 4, or all in --credentials)
  --facilities N         facilities to spread them over (default one per 4 devices)
  --profiles LIST        facility profiles, cycled: ${PROFILE_NAMES.join(', ')} (default efficient,heavy,standard)
  --prefix P             id prefix of planned facilities/devices (default sim)
  --owner 0xADDR         owner address of registered facilities (default derived from the seed)
  --rate R               readings per second per device, may be fractional (default 1)
  --seed S               seed: same seed and clock, same readings (default mrv)
  --duration SEC         stop after SEC seconds (default: run until Ctrl-C)
  --window SEC           settlement window, for late readings and baselines (default $WINDOW_SECONDS or 3600)
  --grace SEC            settlement grace (default $GRACE_SECONDS or 300)
  --state FILE           register values, seqs, unacknowledged readings, credentials
                         (default ${DEFAULT_STATE_PATH})
  --faults SPEC          e.g. drop=0.05,duplicate=0.05,reorder=0.02,late=0.02,garbage=0.01,
                         reset=0.001,skew=0.01,badauth=1,spoof=1 (rates per reading; counts
                         for badauth and spoof)
Output
  --json                 print the final summary as one JSON object on stdout
  --quiet                no progress line
  --log-level LEVEL      pino level on stderr (default warn)
  --help                 this text
`;

function num(name: string, v: string | undefined, { integer = false, min = 0 } = {}): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min) {
    throw simErrors.USAGE(`--${name} must be ${integer ? 'a whole number' : 'a number'} >= ${min}, got ${JSON.stringify(v)}`);
  }
  return n;
}

export async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        url: { type: 'string' },
        credentials: { type: 'string' },
        api: { type: 'string' },
        'api-key': { type: 'string' },
        devices: { type: 'string' },
        facilities: { type: 'string' },
        profiles: { type: 'string' },
        prefix: { type: 'string' },
        owner: { type: 'string' },
        rate: { type: 'string' },
        seed: { type: 'string' },
        duration: { type: 'string' },
        window: { type: 'string' },
        grace: { type: 'string' },
        state: { type: 'string' },
        faults: { type: 'string' },
        json: { type: 'boolean' },
        quiet: { type: 'boolean' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    process.stderr.write(`simulate: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }

  let fleet: Fleet;
  try {
    let config: ReturnType<typeof loadConfig> | undefined;
    try {
      config = loadConfig();
    } catch {
      config = undefined; // an unrelated bad setting must not stop the simulator; flags still work
    }
    const log = createLogger(values['log-level'] ?? 'warn', pino.destination({ fd: 2, sync: true }));
    const apiKey = values['api-key'] ?? config?.adminApiKey;
    if (values.api && !apiKey) throw simErrors.USAGE('--api needs --api-key (an admin key) or ADMIN_API_KEY');
    if (values['api-key'] && !values.api) throw simErrors.USAGE('--api-key needs --api URL');
    if (values.api && values.credentials) throw simErrors.USAGE('use either --credentials or --api, not both');
    const api = values.api ? { url: values.api, key: apiKey! } : undefined;
    const devices = num('devices', values.devices, { integer: true, min: 1 });
    const rate = num('rate', values.rate);
    if (rate !== undefined && rate <= 0) throw simErrors.USAGE('--rate must be > 0');
    const duration = num('duration', values.duration);
    if (duration !== undefined && duration <= 0) throw simErrors.USAGE('--duration must be > 0');

    fleet = await startFleet({
      url: values.url ?? `mqtt://127.0.0.1:${config?.mqttPort ?? 1883}`,
      devices,
      rate,
      faults: values.faults,
      seed: values.seed,
      duration,
      statePath: values.state ?? DEFAULT_STATE_PATH,
      credentialsFile: values.credentials,
      api,
      facilities: num('facilities', values.facilities, { integer: true, min: 1 }),
      profiles: values.profiles ? parseProfiles(values.profiles) : undefined,
      prefix: values.prefix,
      owner: values.owner,
      windowSeconds: num('window', values.window, { integer: true, min: 1 }) ?? config?.windowSeconds,
      graceSeconds: num('grace', values.grace, { integer: true }) ?? config?.graceSeconds,
      logger: log,
      progress: values.quiet ? false : process.stderr,
      rejectedCount: api ? rejectedCounter(api) : undefined,
    });
  } catch (err) {
    const usage = err instanceof DomainError && (err.code === 'SIM_USAGE' || err.code === 'SIM_BAD_URL');
    process.stderr.write(`simulate: ${(err as Error).message}\n${usage ? 'Run with --help for the options.\n' : ''}`);
    return usage ? 2 : 1;
  }

  let interrupted = 0;
  const onSignal = () => {
    interrupted++;
    if (interrupted > 1) process.exit(130);
    process.stderr.write('\nstopping (waiting for acknowledgements; Ctrl-C again to quit now)\n');
    void fleet.stop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const summary = await fleet.done;
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  process.stderr.write(`${formatSummary(summary)}\n`);
  if (values.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  return summary.refused > 0 ? 1 : 0;
}

function isEntry(): boolean {
  try {
    return !!process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href;
  } catch {
    return false;
  }
}

if (isEntry()) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      process.stderr.write(`simulate: ${(err as Error).stack ?? err}\n`);
      process.exitCode = 1;
    },
  );
}
