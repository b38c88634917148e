import t from 'tap';
import { DEMO_DEFAULTS, SETTINGS, defaultOf, describeConfig, isSet, loadConfig, mqttListeners, readSettings, requireSettings } from '../../domain/config.ts';
import { windowOf, isClosed, nextWindowStart } from '../../domain/window.ts';

t.test('defaults work on one machine', async (t) => {
  const c = loadConfig({});
  t.equal(c.mqttPort, 1883);
  t.equal(c.httpPort, 3000);
  t.equal(c.windowSeconds, 3600);
  t.equal(c.graceSeconds, 300);
  t.equal(c.influxUrl, undefined);
  t.ok(c.dataDir.endsWith('/data'), 'DATA_DIR resolved to an absolute path');
  t.ok(Object.isFrozen(c));
});

t.test('environment wins over demo defaults, demo defaults over the table', async (t) => {
  const c = loadConfig({ WINDOW_SECONDS: '60' }, {}, DEMO_DEFAULTS);
  t.equal(c.windowSeconds, 60);
  t.equal(c.graceSeconds, 5);
  t.equal(loadConfig({}, { httpPort: 0 }).httpPort, 0, 'typed overrides win');
});

t.test('invalid values fail at start with the variable named', async (t) => {
  t.throws(() => loadConfig({ MQTT_PORT: '70000' }), { code: 'CONFIG_INVALID', message: /MQTT_PORT/ });
  t.throws(() => loadConfig({ WINDOW_SECONDS: '-1' }), { code: 'CONFIG_INVALID', message: /WINDOW_SECONDS/ });
  t.throws(() => loadConfig({ WINDOW_SECONDS: '0' }), { code: 'CONFIG_INVALID' });
  t.throws(() => loadConfig({ INFLUX_URL: 'not a url' }), { code: 'CONFIG_INVALID', message: /INFLUX_URL/ });
  t.throws(() => loadConfig({ INFLUX_URL: 'http://127.0.0.1:8086' }), { message: /INFLUX_DATABASE/ });
  t.throws(() => loadConfig({ CHAIN_RPC_URL: 'http://127.0.0.1:8545' }), { message: /CONTRACT_ADDRESS/ });
  t.throws(() => loadConfig({ CHAIN_CONFIRMATIONS: '-1' }), { message: /CHAIN_CONFIRMATIONS/ });
  t.equal(loadConfig({}).chainConfirmations, 0, 'CHAIN_CONFIRMATIONS defaults to 0 (the local chain)');
  t.equal(loadConfig({ CHAIN_START_BLOCK: '1234' }).chainStartBlock, 1234);
  t.throws(() => loadConfig({ ORACLE_PRIVATE_KEY: 'abc' }), { message: /ORACLE_PRIVATE_KEY/ });
});

t.test('ORACLE_CRON is validated with every other setting, before anything starts', async (t) => {
  t.throws(() => loadConfig({ ORACLE_CRON: 'every five seconds' }), { code: 'CONFIG_INVALID', message: /^ORACLE_CRON: not a cron expression .*"every five seconds"/ });
  t.throws(() => loadConfig({ ORACLE_CRON: '* * * * * * *' }), { message: /ORACLE_CRON/ }, 'seven fields');
  t.equal(loadConfig({ ORACLE_CRON: '0 */5 * * * *' }).oracleCron, '0 */5 * * * *');
  t.equal(loadConfig({}, {}, DEMO_DEFAULTS).oracleCron, DEMO_DEFAULTS.oracleCron, 'the demo default is valid');
});

t.test('defaultOf: the table is the one place a default lives', async (t) => {
  const c = loadConfig({});
  for (const [key, s] of Object.entries(SETTINGS)) {
    if (!('default' in s)) continue;
    t.same(defaultOf(key as keyof typeof SETTINGS), c[key as keyof typeof c], `${s.env}`);
  }
  t.equal(defaultOf('windowSeconds'), 3600);
  t.throws(() => defaultOf('mqttUrl'), /MQTT_URL has no default/);
});

t.test('readSettings: some settings, read, defaulted and refused exactly as loadConfig does', async (t) => {
  const keys = ['dataDir', 'httpPort', 'anvilPort', 'chainRpcUrl', 'contractAddress'] as const;
  const env = { DATA_DIR: 'rel/dir', HTTP_PORT: '', ANVIL_PORT: '9545' };
  const c = loadConfig(env);
  t.same(readSettings(keys, env), Object.fromEntries(keys.map((k) => [k, c[k]])), 'same values, defaults (an empty value is unset) and resolved DATA_DIR');
  for (const bad of [{ HTTP_PORT: '80a' }, { ANVIL_PORT: '70000' }, { CHAIN_RPC_URL: 'nope', CONTRACT_ADDRESS: '0x' + '12'.repeat(20) }, { CONTRACT_ADDRESS: '0x12' }]) {
    let expected: unknown;
    try {
      loadConfig(bad);
    } catch (e) {
      expected = e;
    }
    t.throws(() => readSettings(keys, bad), { code: 'CONFIG_INVALID', message: (expected as Error).message }, `${Object.keys(bad).join(', ')}: ${(expected as Error).message}`);
  }
  t.same(readSettings(['chainRpcUrl'], { CHAIN_RPC_URL: 'http://x.example' }), { chainRpcUrl: 'http://x.example' }, 'no checks across settings (CONTRACT_ADDRESS may come from a flag)');
  t.equal(isSet('httpPort', { HTTP_PORT: '' }), false);
  t.equal(isSet('httpPort', { HTTP_PORT: '1' }), true);
});

t.test('requireSettings: what an entry point needs beyond the table', async (t) => {
  const external = { CHAIN_RPC_URL: 'http://127.0.0.1:8545', CONTRACT_ADDRESS: '0x' + '12'.repeat(20) };
  t.throws(() => requireSettings(loadConfig(external), 'stack'), { code: 'CONFIG_INVALID', message: /ORACLE_PRIVATE_KEY/ });
  t.throws(() => requireSettings(loadConfig({}), 'oracle'), { message: /start:oracle needs CHAIN_RPC_URL, ORACLE_PRIVATE_KEY and CONTRACT_ADDRESS/ });
  t.doesNotThrow(() => requireSettings(loadConfig(external), 'gateway'), 'a gateway needs no oracle key');
  t.doesNotThrow(() => requireSettings(loadConfig({}), 'stack'));
  const tls = { MQTT_TLS_CERT: '/nonexistent/cert.pem', MQTT_TLS_KEY: '/nonexistent/key.pem' };
  t.throws(() => requireSettings(loadConfig(tls), 'broker'), { message: /^MQTT_TLS_CERT: cannot read \/nonexistent\/cert\.pem \(ENOENT\)/ });
  t.doesNotThrow(() => requireSettings(loadConfig({ ...tls, MQTT_URL: 'mqtt://127.0.0.1:1883' }), 'broker'), 'not read behind an external broker');
});

t.test('MQTT listeners: configuring TLS closes the plain port unless MQTT_PLAIN=true', async (t) => {
  const tls = { MQTT_TLS_CERT: '/etc/mrv/cert.pem', MQTT_TLS_KEY: '/etc/mrv/key.pem' };
  t.same(mqttListeners(loadConfig({})), { plain: true }, 'no TLS: plain only (the one-machine default)');
  t.same(mqttListeners(loadConfig(tls)), { plain: false, tls: { certFile: tls.MQTT_TLS_CERT, keyFile: tls.MQTT_TLS_KEY, port: 8883 } }, 'TLS: TLS only');
  t.equal(mqttListeners(loadConfig({ ...tls, MQTT_PLAIN: 'true' })).plain, true, 'MQTT_PLAIN=true keeps the plain port beside TLS');
  t.equal(mqttListeners(loadConfig({ ...tls, MQTT_PLAIN: 'false' })).plain, false);
  t.equal(mqttListeners(loadConfig({ MQTT_PLAIN: 'true' })).plain, true);
  t.throws(() => loadConfig({ MQTT_PLAIN: 'false' }), { code: 'CONFIG_INVALID', message: /MQTT_PLAIN/ }, 'no listener at all is refused');
  t.equal(loadConfig({ MQTT_PLAIN: 'false', MQTT_URL: 'mqtt://broker:1883' }).mqttPlain, false, 'irrelevant behind an external broker');
  t.throws(() => loadConfig({ MQTT_PLAIN: 'maybe' }), { code: 'CONFIG_INVALID', message: /MQTT_PLAIN/ });
  t.throws(() => loadConfig({ MQTT_TLS_CERT: tls.MQTT_TLS_CERT }), { message: /MQTT_TLS_CERT and MQTT_TLS_KEY/ }, 'a certificate without its key is refused (TLS would be off)');
  t.throws(() => loadConfig({ MQTT_TLS_KEY: tls.MQTT_TLS_KEY }), { message: /MQTT_TLS_CERT and MQTT_TLS_KEY/ });
});

t.test('sensitive settings are masked when described', async (t) => {
  const key = '0x' + '11'.repeat(32);
  const c = loadConfig({ CHAIN_RPC_URL: 'http://127.0.0.1:8545', ORACLE_PRIVATE_KEY: key, CONTRACT_ADDRESS: '0x' + '22'.repeat(20), ADMIN_API_KEY: 'k' });
  const d = describeConfig(c);
  t.equal(d.ORACLE_PRIVATE_KEY, '[set]');
  t.equal(d.ADMIN_API_KEY, '[set]');
  t.notMatch(JSON.stringify(d), key.slice(2));
});

t.test('windows are aligned to the UTC epoch; a reading at windowEnd is in the next one', async (t) => {
  const w = windowOf(25_000, 10_000);
  t.same(w, { start: 20_000, end: 30_000 });
  t.same(windowOf(30_000, 10_000), { start: 30_000, end: 40_000 });
  t.same(windowOf(29_999, 10_000), { start: 20_000, end: 30_000 });
  t.equal(isClosed(w, 34_999, 5_000), false);
  t.equal(isClosed(w, 35_000, 5_000), true);
  t.equal(nextWindowStart(20_001, 10_000), 30_000);
  t.equal(nextWindowStart(20_000, 10_000), 20_000);
});

t.test('URLs are logged without the credentials they embed (issue 10 item 15)', async (t) => {
  const c = loadConfig({
    CHAIN_RPC_URL: 'https://rpcuser:rpcpass@mainnet.infura.io/v3/9aa3d95b3bc440fa88ea12eaa4456161?apikey=sekrit1&chain=1',
    ORACLE_PRIVATE_KEY: '0x' + '11'.repeat(32),
    CONTRACT_ADDRESS: '0x' + '22'.repeat(20),
    MQTT_URL: 'mqtts://mqttuser:mqttpass@broker.example:8883',
    INFLUX_URL: 'http://influx.example:8086/?token=influxsecret&db=mrv',
    INFLUX_DATABASE: 'mrv',
  });
  const d = describeConfig(c);
  const text = JSON.stringify(d);
  for (const secret of ['rpcuser', 'rpcpass', '9aa3d95b3bc440fa88ea12eaa4456161', 'sekrit1', 'mqttuser', 'mqttpass', 'influxsecret']) {
    t.notOk(text.includes(secret), `${secret} is not in the description`);
  }
  t.match(d.CHAIN_RPC_URL, /^https:\/\/REDACTED@mainnet\.infura\.io\/v3\/REDACTED\?apikey=REDACTED&chain=1$/, 'host, path shape and harmless params stay');
  t.equal(d.MQTT_URL, 'mqtts://REDACTED@broker.example:8883');
  t.match(d.INFLUX_URL, /token=REDACTED/);
  t.match(d.INFLUX_URL, /db=mrv/);
  const plain = loadConfig({ INFLUX_URL: 'http://127.0.0.1:8086', INFLUX_DATABASE: 'mrv' });
  t.equal(describeConfig(plain).INFLUX_URL, 'http://127.0.0.1:8086', 'a URL without credentials is unchanged');
});

t.test('the logger redacts credentials in URL-valued fields, whatever their name', async (t) => {
  const { createLogger } = await import('../../domain/logger.ts');
  const lines: string[] = [];
  const log = createLogger('info', { write: (s: string) => void lines.push(s) });
  log.info({ url: 'mqtt://ingest:hunter2@broker:1883', nested: { rpc: 'https://x.example/v2/abcdefghij0123456789xyz' }, plain: 'http://127.0.0.1:8545' }, 'hello');
  log.child({ component: 'c' }).warn({ endpoint: 'http://h/?access_token=tok123' }, 'child');
  const text = lines.join('');
  for (const secret of ['hunter2', 'abcdefghij0123456789xyz', 'tok123']) t.notOk(text.includes(secret), `${secret} redacted`);
  t.match(text, /mqtt:\/\/REDACTED@broker:1883/);
  t.match(text, /http:\/\/127\.0\.0\.1:8545/, 'a URL without credentials is logged as it is');
});

t.test('redactUrl: database URLs and odd input', async (t) => {
  const { redactUrl } = await import('../../domain/config.ts');
  const pg = redactUrl('postgres://mrv:s3cret@db.internal:5432/mrv?sslmode=require&password=other');
  t.notOk(pg.includes('s3cret') || pg.includes('other'), pg);
  t.match(pg, /^postgres:\/\/REDACTED@db\.internal:5432\/mrv\?sslmode=require&password=REDACTED$/);
  t.equal(redactUrl('not a url'), 'not a url');
  t.equal(redactUrl('http://127.0.0.1:8086/write?db=mrv'), 'http://127.0.0.1:8086/write?db=mrv', 'nothing to redact: unchanged text');
});
