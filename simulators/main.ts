/**
 * `npm run simulate -- --url mqtt://127.0.0.1:1883 --devices N --rate R [--faults ...] [--seed S]
 * [--duration SEC] [--json] [--prefix P] [--state FILE] [--credentials FILE | --api URL]`
 *
 * Progress and logs go to stderr; with --json the final summary is one JSON object on stdout.
 * Beside `npm start` a run has its own ids (`--prefix`, default `cli`) and its own locked state file
 * under DATA_DIR; the admin key comes from the environment or a file, the windows from the stack.
 * Exit 0, 1 on failure or when the platform refused readings no injected fault explains, 2 on usage.
 */
import fs, { realpathSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { defaultOf, loadConfig, redactUrl } from '../domain/config.ts';
import { DomainError } from '../domain/errors.ts';
import { ADMIN_KEY_FILE } from '../gateway/keys.ts';
import { createLogger } from '../domain/logger.ts';
import { simErrors } from './errors.ts';
import { startFleet, type Fleet } from './fleet.ts';
import { parseProfiles } from './plan.ts';
import { formatSummary } from './progress.ts';
import { PROFILE_NAMES } from './profiles.ts';
import { rejectedCounter, rejectionLog, stackSettlement } from './register.ts';
import { defaultStatePath } from './state.ts';

export const USAGE = `Usage: npm run simulate -- [options]

Simulated meters and emission monitors publishing readings over MQTT (QoS 1).

Connection
  --url URL              broker URL (default mqtt://127.0.0.1:$MQTT_PORT, i.e. 1883)
  --credentials FILE     JSON list of { facilityId, deviceId, password [, kind] }
  --api URL              gateway URL: register facilities and devices there with an admin key
                         taken from --api-key-file, else $API_KEY_FILE, else $API_KEY, else
                         $ADMIN_API_KEY, else the key file npm start writes
                         ($DATA_DIR/admin-api-key)
  --api-key-file FILE    file holding the admin API key
  --api-key KEY          the key itself: visible in ps and echoed by npm (a warning says so)
                         Without --credentials or --api, credentials saved in the state file are
                         used, else devices connect without a password.
Fleet
  --devices N            number of devices (default 4, or all in --credentials)
  --facilities N         facilities to spread them over (default one per 4 devices)
  --profiles LIST        facility profiles, cycled: ${PROFILE_NAMES.join(', ')} (default efficient,heavy,standard)
  --prefix P             id prefix of planned facilities and devices {P}-f1, {P}-f1-grid, and of
                         the state file (default cli; npm start's own fleet is sim)
  --owner 0xADDR         owner address of registered facilities (default: with --api, the key
                         kept in $DATA_DIR/keys/{facilityId}.key, made once 0600, so the credits
                         can be retired with npm run cli -- retire --key-file that file)
  --rate R               readings per second per device, may be fractional (default 1)
  --seed S               seed: same seed and clock, same readings (default mrv)
  --duration SEC         stop after SEC seconds (default: run until Ctrl-C)
  --window SEC           settlement window, for late readings and baselines (default: the
                         stack's, from GET /health of --api; else $WINDOW_SECONDS or 3600)
  --grace SEC            settlement grace (default: the stack's; else $GRACE_SECONDS or 300)
  --state FILE           register values, seqs, unacknowledged readings, credentials; one
                         simulator at a time (a lock file beside it)
                         (default $DATA_DIR/simulator-state-{prefix}.json)
  --faults SPEC          e.g. drop=0.05,duplicate=0.05,reorder=0.02,late=0.02,garbage=0.01,
                         reset=0.001,skew=0.01,badauth=1,spoof=1 (rates per reading; counts
                         for badauth and spoof); badsig=RATE needs signing
  --sign                 every device signs its readings with its own Ed25519 key (kept in
                         the state file, registered as its publicKey with --api); the default
  --no-sign              unsigned readings (a device registered with a key then has them
                         refused bad_signature)
Output
  --json                 print the final summary as one JSON object on stdout
                         The summary names the platform's rejections by reason (with --api),
                         expected (an injected fault) or not; exit code 1 when any is unexpected.
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
        'api-key-file': { type: 'string' },
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
        sign: { type: 'boolean' },
        'no-sign': { type: 'boolean' },
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
  if (values.sign && values['no-sign']) {
    process.stderr.write(`simulate: --sign and --no-sign contradict each other\n\n${USAGE}`);
    return 2;
  }

  let fleet: Fleet;
  let keySource: string | undefined;
  try {
    let config: ReturnType<typeof loadConfig> | undefined;
    try {
      config = loadConfig();
    } catch {
      config = undefined; // an unrelated bad setting must not stop the simulator; flags still work
    }
    const log = createLogger(values['log-level'] ?? 'warn', pino.destination({ fd: 2, sync: true }));
    const dataDir = config?.dataDir ?? defaultOf('dataDir');
    if (values['api-key'] && !values.api) throw simErrors.USAGE('--api-key needs --api URL');
    if (values['api-key-file'] && !values.api) throw simErrors.USAGE('--api-key-file needs --api URL');
    if (values.api && values.credentials) throw simErrors.USAGE('use either --credentials or --api, not both');
    let api: { url: string; key: string } | undefined;
    if (values.api) {
      const found = apiKey(values['api-key'], values['api-key-file'], process.env, dataDir);
      if (!found) {
        throw simErrors.USAGE(`--api needs an admin API key: set API_KEY or API_KEY_FILE, or --api-key-file FILE (npm start writes ${shown(path.join(dataDir, ADMIN_KEY_FILE))})`);
      }
      keySource = found.source;
      api = { url: values.api, key: found.key };
    }
    const devices = num('devices', values.devices, { integer: true, min: 1 });
    const rate = num('rate', values.rate);
    if (rate !== undefined && rate <= 0) throw simErrors.USAGE('--rate must be > 0');
    const duration = num('duration', values.duration);
    if (duration !== undefined && duration <= 0) throw simErrors.USAGE('--duration must be > 0');
    const prefix = values.prefix ?? 'cli';

    // windows: the flags, else the stack's (GET /health of --api), else the environment's
    let windowSeconds = num('window', values.window, { integer: true, min: 1 });
    let graceSeconds = num('grace', values.grace, { integer: true });
    let windowSource = 'flags';
    if ((windowSeconds === undefined || graceSeconds === undefined) && api) {
      const stack = await stackSettlement(api);
      if (stack) {
        windowSource = `the gateway at ${redactUrl(api.url)}`;
        windowSeconds ??= stack.windowSeconds;
        graceSeconds ??= stack.graceSeconds;
      }
    }
    if (windowSeconds === undefined || graceSeconds === undefined) {
      if (windowSource === 'flags') windowSource = 'WINDOW_SECONDS/GRACE_SECONDS or their defaults';
      windowSeconds ??= config?.windowSeconds ?? defaultOf('windowSeconds');
      graceSeconds ??= config?.graceSeconds ?? defaultOf('graceSeconds');
    }
    if (!values.quiet) process.stderr.write(`simulate: windows of ${windowSeconds} s settled ${graceSeconds} s after they close (from ${windowSource})\n`);

    fleet = await startFleet({
      url: values.url ?? `mqtt://127.0.0.1:${config?.mqttPort ?? defaultOf('mqttPort')}`,
      devices,
      rate,
      faults: values.faults,
      sign: values['no-sign'] !== true,
      seed: values.seed,
      duration,
      statePath: values.state ?? defaultStatePath(prefix, dataDir),
      credentialsFile: values.credentials,
      api,
      facilities: num('facilities', values.facilities, { integer: true, min: 1 }),
      profiles: values.profiles ? parseProfiles(values.profiles) : undefined,
      prefix,
      owner: values.owner,
      ...(api ? { ownerKeyDir: path.join(dataDir, 'keys') } : {}),
      windowSeconds,
      graceSeconds,
      logger: log,
      progress: values.quiet ? false : process.stderr,
      rejectedCount: api ? rejectedCounter(api) : undefined,
      rejectionLog: api ? rejectionLog(api) : undefined,
    });
  } catch (err) {
    const usage = err instanceof DomainError && (err.code === simErrors.USAGE.code || err.code === simErrors.BAD_URL.code);
    const keyHint = err instanceof DomainError && err.code === simErrors.API_FAILED.code && /refused the API key/.test(err.message) && keySource ? ` (the key came from ${keySource})` : '';
    process.stderr.write(`simulate: ${(err as Error).message}${keyHint}\n${usage ? 'Run with --help for the options.\n' : ''}`);
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
  return summary.refused > 0 || (summary.rejections?.unexpected ?? 0) > 0 ? 1 : 0;
}

/** A path as short as it can be said from the current directory. */
function shown(p: string): string {
  const rel = path.relative(process.cwd(), p);
  return rel && !rel.startsWith('..') ? rel : p;
}

/**
 * The admin key for --api and where it came from: --api-key (with a warning: ps and npm show it),
 * --api-key-file, $API_KEY_FILE, $API_KEY, $ADMIN_API_KEY, or the key file `npm start` writes under
 * DATA_DIR (the names `npm run cli` reads too).
 */
export function apiKey(flag: string | undefined, file: string | undefined, env: NodeJS.ProcessEnv, dataDir: string): { key: string; source: string } | undefined {
  if (flag !== undefined) {
    process.stderr.write('simulate: warning: --api-key puts the key on the command line, where ps and npm show it; use API_KEY, API_KEY_FILE or --api-key-file FILE\n');
    if (!flag.trim()) throw simErrors.USAGE('--api-key is empty');
    return { key: flag.trim(), source: '--api-key' };
  }
  if (file !== undefined) return { key: readKeyFile(file, '--api-key-file'), source: file };
  if (env.API_KEY_FILE) return { key: readKeyFile(env.API_KEY_FILE, 'API_KEY_FILE'), source: `${env.API_KEY_FILE} (API_KEY_FILE)` };
  if (env.API_KEY?.trim()) return { key: env.API_KEY.trim(), source: 'API_KEY' };
  if (env.ADMIN_API_KEY?.trim()) return { key: env.ADMIN_API_KEY.trim(), source: 'ADMIN_API_KEY' };
  const stackFile = path.join(dataDir, ADMIN_KEY_FILE);
  if (fs.existsSync(stackFile)) return { key: readKeyFile(stackFile, 'the admin key file'), source: shown(stackFile) };
  return undefined;
}

function readKeyFile(file: string, what: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw simErrors.USAGE(`${what}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const key = text.trim();
  if (!key || /\s/.test(key)) throw simErrors.USAGE(`${what}: ${file} must hold one API key on one line`);
  try {
    if (process.platform !== 'win32' && (fs.statSync(file).mode & 0o077) !== 0) {
      process.stderr.write(`simulate: warning: ${file} is readable by other users (chmod 600 ${file})\n`);
    }
  } catch {
    /* read above; a race is not worth failing for */
  }
  return key;
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
