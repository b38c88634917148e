/**
 * The only module that reads process.env. Each setting is declared once with its description, type,
 * default and validation; `loadConfig()` validates everything at start and returns a frozen object.
 */
import fs from 'node:fs';
import path from 'node:path';
import cron from 'node-cron';
import { errors } from './errors.ts';

type Kind = 'string' | 'port' | 'int' | 'url' | 'bool';

interface Setting {
  env: string;
  description: string;
  kind: Kind;
  default?: string;
  sensitive?: boolean;
  validate?: (v: string) => string | undefined;
}

const HEX_KEY = /^(0x)?[0-9a-fA-F]{64}$/;
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;

export const SETTINGS = {
  mqttPort: { env: 'MQTT_PORT', kind: 'port', default: '1883', description: 'MQTT plain listener port (own broker; see MQTT_PLAIN)' },
  mqttTlsPort: { env: 'MQTT_TLS_PORT', kind: 'port', default: '8883', description: 'MQTT TLS listener port, used when MQTT_TLS_CERT and MQTT_TLS_KEY are set' },
  mqttTlsCert: { env: 'MQTT_TLS_CERT', kind: 'string', description: 'PEM certificate file for the MQTT TLS listener' },
  mqttTlsKey: { env: 'MQTT_TLS_KEY', kind: 'string', description: 'PEM private key file for the MQTT TLS listener', sensitive: true },
  mqttPlain: { env: 'MQTT_PLAIN', kind: 'bool', description: 'open the plain (unencrypted) MQTT listener on MQTT_PORT; default true without TLS, false when MQTT_TLS_CERT and MQTT_TLS_KEY are set (set true to keep both)' },
  mqttHost: { env: 'MQTT_HOST', kind: 'string', default: '127.0.0.1', description: 'address the MQTT listeners bind to' },
  mqttUrl: { env: 'MQTT_URL', kind: 'url', description: 'consume readings from this external broker (shared subscription) instead of running our own' },
  mqttUsername: { env: 'MQTT_USERNAME', kind: 'string', description: 'username for MQTT_URL' },
  mqttPassword: { env: 'MQTT_PASSWORD', kind: 'string', description: 'password for MQTT_URL', sensitive: true },
  mqttClientId: { env: 'MQTT_CLIENT_ID', kind: 'string', default: 'mrv-ingest', description: "client id prefix of this consumer's connections to MQTT_URL (ids PREFIX-0..3, persistent sessions): one per consumer process, kept across restarts; a replacement started with the same prefix resumes its sessions" },
  mqttRegistryPollMs: { env: 'MQTT_REGISTRY_POLL_MS', kind: 'int', default: '2000', description: 'how often the broker re-checks the registry rows of connected devices and closes sessions of suspended/decommissioned devices or facilities and rotated secrets (a gateway in another process changed them); 0 disables' },
  mqttConnectRate: { env: 'MQTT_CONNECT_RATE', kind: 'int', default: '10', description: 'unauthenticated MQTT CONNECT attempts per second per source address (a successful login does not count); over it CONNACK 3' },
  mqttConnectBurst: { env: 'MQTT_CONNECT_BURST', kind: 'int', default: '30', description: 'burst of MQTT_CONNECT_RATE' },
  rejectionRetentionDays: { env: 'REJECTION_RETENTION_DAYS', kind: 'int', default: '30', description: 'days the rejections log keeps a row after its last occurrence; 0 keeps them forever' },
  httpPort: { env: 'HTTP_PORT', kind: 'port', default: '3000', description: 'HTTP gateway port' },
  httpHost: { env: 'HTTP_HOST', kind: 'string', default: '127.0.0.1', description: 'address the gateway binds to' },
  dataDir: { env: 'DATA_DIR', kind: 'string', default: './data', description: 'SQLite file, chain state, admin key' },
  influxUrl: { env: 'INFLUX_URL', kind: 'url', description: 'store readings in InfluxDB at this URL instead of SQLite' },
  readingsStore: {
    env: 'READINGS_STORE',
    kind: 'string',
    description: 'where readings are stored: sqlite (the file under DATA_DIR), influxdb (INFLUX_URL) or postgres (DATABASE_URL); default influxdb with INFLUX_URL, else sqlite',
    validate: (v) => (['sqlite', 'influxdb', 'postgres'].includes(v) ? undefined : `must be sqlite, influxdb or postgres (got ${JSON.stringify(v)})`),
  },
  databaseUrl: { env: 'DATABASE_URL', kind: 'url', description: 'PostgreSQL connection string (postgres://user:password@host:port/db): the registry, API keys, rejections, oracle records, status and lease live there, shared by every process on it; with READINGS_STORE=postgres the readings too' },
  influxToken: { env: 'INFLUX_TOKEN', kind: 'string', description: 'InfluxDB 2.x API token', sensitive: true },
  influxOrg: { env: 'INFLUX_ORG', kind: 'string', description: 'InfluxDB 2.x organisation' },
  influxBucket: { env: 'INFLUX_BUCKET', kind: 'string', description: 'InfluxDB 2.x bucket' },
  influxDatabase: { env: 'INFLUX_DATABASE', kind: 'string', description: 'InfluxDB 1.x database (selects the 1.x API)' },
  influxRetentionPolicy: { env: 'INFLUX_RETENTION_POLICY', kind: 'string', description: 'InfluxDB 1.x retention policy' },
  chainRpcUrl: { env: 'CHAIN_RPC_URL', kind: 'url', description: 'external EVM JSON-RPC endpoint instead of the local chain' },
  oraclePrivateKey: { env: 'ORACLE_PRIVATE_KEY', kind: 'string', sensitive: true, description: 'oracle signer key for CHAIN_RPC_URL', validate: (v) => (HEX_KEY.test(v) ? undefined : 'must be a 32-byte hex key') },
  contractAddress: { env: 'CONTRACT_ADDRESS', kind: 'string', description: 'deployed ledger address on CHAIN_RPC_URL', validate: (v) => (ADDRESS.test(v) ? undefined : 'must be a 0x address') },
  chainConfirmations: { env: 'CHAIN_CONFIRMATIONS', kind: 'int', default: '0', description: 'blocks a settlement must be deep before the oracle counts it as final (0 on the local chain)' },
  chainStartBlock: { env: 'CHAIN_START_BLOCK', kind: 'int', default: '0', description: "the ledger's deployment block on CHAIN_RPC_URL: no log query starts before it" },
  anvilPort: { env: 'ANVIL_PORT', kind: 'port', default: '8545', description: 'port of the local anvil chain' },
  windowSeconds: { env: 'WINDOW_SECONDS', kind: 'int', default: '3600', description: 'settlement window length' },
  graceSeconds: { env: 'GRACE_SECONDS', kind: 'int', default: '300', description: 'wait after a window ends before settling it' },
  oracleCron: {
    env: 'ORACLE_CRON',
    kind: 'string',
    default: '*/10 * * * * *',
    description: 'node-cron schedule of oracle runs (seconds field allowed)',
    validate: (v) => (cron.validate(v) ? undefined : `not a cron expression (5 or 6 fields, e.g. "*/10 * * * * *"): ${JSON.stringify(v)}`),
  },
  gatewayPrivateKey: { env: 'GATEWAY_PRIVATE_KEY', kind: 'string', sensitive: true, description: 'gateway signer on CHAIN_RPC_URL (regulator role for facility writes, gas for relayed retirements); without it the gateway only reads the chain and relayed retirements answer 503 (it never uses the oracle key)', validate: (v) => (HEX_KEY.test(v) ? undefined : 'must be a 32-byte hex key') },
  adminApiKey: { env: 'ADMIN_API_KEY', kind: 'string', sensitive: true, description: 'use this admin API key instead of generating one' },
  simulatedDevices: { env: 'SIMULATED_DEVICES', kind: 'int', default: '6', description: 'size of the demo fleet `npm start` runs; 0 for none' },
  logLevel: { env: 'LOG_LEVEL', kind: 'string', default: 'info', description: 'pino level: trace, debug, info, warn, error, silent' },
  logFormat: { env: 'LOG_FORMAT', kind: 'string', default: 'auto', description: 'log lines as `json` (one object per line) or `pretty` (`HH:MM:SS level component: message key=value`); `auto`: pretty when the output is a terminal, JSON otherwise', validate: (v) => (['auto', 'json', 'pretty'].includes(v) ? undefined : 'must be auto, json or pretty') },
} as const satisfies Record<string, Setting>;

type Settings = typeof SETTINGS;
type ValueOf<S extends Setting> = S['kind'] extends 'port' | 'int' ? number : S['kind'] extends 'bool' ? boolean : string;
export type Config = {
  readonly [K in keyof Settings]: Settings[K] extends { default: string } ? ValueOf<Settings[K]> : ValueOf<Settings[K]> | undefined;
};

function parse(name: string, s: Setting, raw: string): string | number | boolean {
  switch (s.kind) {
    case 'port': {
      const n = Number(raw);
      if (!Number.isInteger(n) || n < 0 || n > 65535) throw errors.CONFIG_INVALID(`${name}: not a port: ${raw}`);
      return n;
    }
    case 'int': {
      const n = Number(raw);
      if (!Number.isSafeInteger(n) || n < 0) throw errors.CONFIG_INVALID(`${name}: not a non-negative integer: ${raw}`);
      return n;
    }
    case 'bool':
      if (!['true', 'false', '1', '0'].includes(raw)) throw errors.CONFIG_INVALID(`${name}: not a boolean: ${raw}`);
      return raw === 'true' || raw === '1';
    case 'url':
      try {
        new URL(raw);
      } catch {
        throw errors.CONFIG_INVALID(`${name}: not a URL: ${raw}`);
      }
      return raw;
    default:
      return raw;
  }
}

/**
 * Defaults for `npm start`, the one-machine demo: short windows so credits show within minutes.
 * Only settings the user did not set in the environment take these.
 */
export const DEMO_DEFAULTS: Partial<Record<keyof Settings, string>> = {
  windowSeconds: '30',
  graceSeconds: '5',
  oracleCron: '*/5 * * * * *',
};

/**
 * Reads and validates the configuration; `env` defaults to process.env, `overrides` (already typed
 * values) win over everything, `defaults` (text) replace the table's defaults.
 */
export function loadConfig(
  env: NodeJS.ProcessEnv = process.env,
  overrides: Partial<Record<keyof Settings, unknown>> = {},
  defaults: Partial<Record<keyof Settings, string>> = {},
): Config {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(SETTINGS) as (keyof Settings)[]) {
    out[key] = key in overrides ? overrides[key] : readOne(key, env, defaults[key]);
  }
  if (out.windowSeconds === 0) throw errors.CONFIG_INVALID('WINDOW_SECONDS must be at least 1');
  if (out.mqttConnectRate === 0 || out.mqttConnectBurst === 0) throw errors.CONFIG_INVALID('MQTT_CONNECT_RATE and MQTT_CONNECT_BURST must be at least 1');
  // ORACLE_PRIVATE_KEY is checked where the oracle runs: a standalone gateway needs only its own key.
  if (out.chainRpcUrl && !out.contractAddress) {
    throw errors.CONFIG_INVALID('CHAIN_RPC_URL needs CONTRACT_ADDRESS');
  }
  if (Boolean(out.mqttTlsCert) !== Boolean(out.mqttTlsKey)) {
    // One without the other would silently leave TLS off (and the plain listener on).
    throw errors.CONFIG_INVALID('MQTT_TLS_CERT and MQTT_TLS_KEY must be set together');
  }
  if (out.mqttPlain === false && !out.mqttTlsCert && !out.mqttUrl) {
    throw errors.CONFIG_INVALID('MQTT_PLAIN=false needs MQTT_TLS_CERT and MQTT_TLS_KEY (the broker would have no listener)');
  }
  if (out.databaseUrl !== undefined && !/^postgres(ql)?:$/.test(new URL(String(out.databaseUrl)).protocol)) {
    throw errors.CONFIG_INVALID('DATABASE_URL: must be a postgres:// or postgresql:// URL');
  }
  if (out.readingsStore === 'postgres' && !out.databaseUrl) throw errors.CONFIG_INVALID('READINGS_STORE=postgres needs DATABASE_URL');
  if (out.readingsStore === 'influxdb' && !out.influxUrl) throw errors.CONFIG_INVALID('READINGS_STORE=influxdb needs INFLUX_URL');
  if (out.influxUrl && !out.influxDatabase && !(out.influxOrg && out.influxBucket)) {
    throw errors.CONFIG_INVALID('INFLUX_URL needs INFLUX_DATABASE (1.x API) or INFLUX_ORG and INFLUX_BUCKET (2.x API)');
  }
  out.dataDir = path.resolve(String(out.dataDir));
  return Object.freeze(out) as Config;
}

/** One setting from `env` (unset or empty: `fallback`, else the table's default), validated and typed. */
function readOne(key: keyof Settings, env: NodeJS.ProcessEnv, fallback?: string): unknown {
  const s: Setting = SETTINGS[key];
  const raw = env[s.env];
  const text = raw === undefined || raw === '' ? (fallback ?? s.default) : raw;
  if (text === undefined) return undefined;
  const problem = s.validate?.(text);
  if (problem) throw errors.CONFIG_INVALID(`${s.env}: ${problem}`);
  return parse(s.env, s, text);
}

/**
 * Some settings only, for a program that needs a few of them (the holder's CLI): each read, defaulted
 * and validated exactly as `loadConfig` does (same defaults, same CONFIG_INVALID messages; DATA_DIR
 * resolved), without the checks across settings that concern the processes of the platform.
 */
export function readSettings<K extends keyof Settings>(keys: readonly K[], env: NodeJS.ProcessEnv = process.env): Pick<Config, K> {
  const out: Record<string, unknown> = {};
  for (const key of keys) out[key] = readOne(key, env);
  if ('dataDir' in out) out.dataDir = path.resolve(String(out.dataDir));
  return Object.freeze(out) as Pick<Config, K>;
}

/** Whether the environment sets this setting (an empty value counts as unset, as in `loadConfig`). */
export function isSet(key: keyof Settings, env: NodeJS.ProcessEnv = process.env): boolean {
  const raw = env[SETTINGS[key].env];
  return raw !== undefined && raw !== '';
}

/**
 * The table's default of one setting, typed as the configuration holds it: the one place a default
 * lives (code that runs without a loaded configuration, e.g. a factory's optional argument, takes it here).
 */
export function defaultOf<K extends keyof Settings>(key: K): NonNullable<Config[K]> {
  const s: Setting = SETTINGS[key];
  if (s.default === undefined) throw new Error(`${s.env} has no default`);
  const v = parse(s.env, s, s.default);
  return (key === 'dataDir' ? path.resolve(String(v)) : v) as NonNullable<Config[K]>;
}

/** The processes that load a configuration, for `requireSettings`. */
export type EntryPoint = 'stack' | 'broker' | 'gateway' | 'oracle';

/**
 * What an entry point needs beyond the table's own checks (which `loadConfig` made), checked before it
 * starts anything: `npm start` on CHAIN_RPC_URL needs ORACLE_PRIVATE_KEY, `start:oracle` needs the
 * external chain, a process running our broker with TLS needs readable MQTT_TLS_CERT/KEY files.
 * Throws CONFIG_INVALID naming the settings.
 */
export function requireSettings(config: Config, entry: EntryPoint): void {
  if (entry === 'oracle' && (!config.chainRpcUrl || !config.oraclePrivateKey || !config.contractAddress)) {
    throw errors.CONFIG_INVALID('start:oracle needs CHAIN_RPC_URL, ORACLE_PRIVATE_KEY and CONTRACT_ADDRESS (`npm start` runs a local chain instead)');
  }
  if (entry === 'stack' && config.chainRpcUrl && !config.oraclePrivateKey) {
    throw errors.CONFIG_INVALID('CHAIN_RPC_URL needs ORACLE_PRIVATE_KEY (the oracle signs settlements) and CONTRACT_ADDRESS');
  }
  if ((entry === 'stack' || entry === 'broker') && !config.mqttUrl) {
    const tls = mqttListeners(config).tls;
    for (const [setting, file] of tls ? ([['MQTT_TLS_CERT', tls.certFile], ['MQTT_TLS_KEY', tls.keyFile]] as const) : []) {
      try {
        fs.accessSync(file, fs.constants.R_OK);
      } catch (err) {
        throw errors.CONFIG_INVALID(`${setting}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
      }
    }
  }
}

/** The broker limits and ingest settings of the configuration (broker/main.ts and `npm start` pass them on). */
export function ingestSettings(config: Config): {
  limits: { registryPollMs: number; connectRatePerSecond: number; connectBurst: number };
  rejectionRetentionMs: number;
} {
  return {
    limits: { registryPollMs: config.mqttRegistryPollMs, connectRatePerSecond: config.mqttConnectRate, connectBurst: config.mqttConnectBurst },
    rejectionRetentionMs: config.rejectionRetentionDays * 86_400_000,
  };
}

/**
 * Which MQTT listeners our broker opens: TLS when a certificate and key are configured; the plain TCP
 * listener unless TLS is configured, or when MQTT_PLAIN says so explicitly. So configuring TLS closes
 * the unencrypted port unless the operator keeps it on purpose (MQTT_PLAIN=true).
 */
export function mqttListeners(config: Config): { plain: boolean; tls?: { certFile: string; keyFile: string; port: number } } {
  const tls = config.mqttTlsCert && config.mqttTlsKey ? { certFile: config.mqttTlsCert, keyFile: config.mqttTlsKey, port: config.mqttTlsPort } : undefined;
  return { plain: config.mqttPlain ?? !tls, ...(tls ? { tls } : {}) };
}

/** Query parameters whose value is a credential (`?token=`, `?apiKey=`, `?access_token=`, `?sig=` ...). */
const SECRET_PARAM = /token|key|secret|pass|auth|sig|credential/i;
/** A path segment that looks like an API key (Infura's `/v3/<key>`, Alchemy's `/v2/<key>`): long, letters and digits. */
const KEY_SEGMENT = /^(?=[^/]*[0-9])(?=[^/]*[A-Za-z])[A-Za-z0-9_-]{20,}$/;
const REDACTED = 'REDACTED';

/**
 * A URL with the credentials it embeds replaced by REDACTED: `user:password@`, credential-like query
 * parameters and key-like path segments. Text that is not a URL is returned unchanged.
 */
export function redactUrl(text: string): string {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return text;
  }
  let changed = false;
  if (u.username || u.password) {
    u.username = REDACTED;
    u.password = '';
    changed = true;
  }
  for (const k of [...u.searchParams.keys()]) {
    if (SECRET_PARAM.test(k)) {
      u.searchParams.set(k, REDACTED);
      changed = true;
    }
  }
  const segments = u.pathname.split('/');
  if (segments.some((seg) => KEY_SEGMENT.test(seg))) {
    u.pathname = segments.map((seg) => (KEY_SEGMENT.test(seg) ? REDACTED : seg)).join('/');
    changed = true;
  }
  return changed ? u.toString() : text;
}

/**
 * The configuration with sensitive values masked, for logs and the startup banner: sensitive settings
 * show `[set]`, URLs lose the credentials they embed (see redactUrl).
 */
export function describeConfig(config: Config): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, s] of Object.entries(SETTINGS) as [keyof Settings, Setting][]) {
    const v = config[key];
    out[s.env] = s.sensitive && v !== undefined ? '[set]' : typeof v === 'string' && (s.kind === 'url' || v.includes('://')) ? redactUrl(v) : v;
  }
  return out;
}
