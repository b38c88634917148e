/**
 * The log output (issue 15 item 8): one `component` per line however loggers are nested, readable
 * lines for a terminal, LOG_FORMAT to force either, and the raw-text duplicate-key check the other
 * log tests rely on.
 */
import t from 'tap';
import { loadConfig } from '../../domain/config.ts';
import { chooseFormat, createLogger, prettyLine } from '../../domain/logger.ts';
import { duplicateKeys } from '../helpers/json-lines.ts';

function capture(format?: string) {
  const lines: string[] = [];
  const log = createLogger('debug', { write: (s: string) => void lines.push(s) }, format);
  return { log, lines };
}

t.test('duplicateKeys finds repeated keys in the raw text, at any depth, and nothing else', async (t) => {
  t.same(duplicateKeys('{"a":1,"component":"x","component":"y"}'), ['component']);
  t.same(duplicateKeys('{"a":{"b":1,"b":2},"c":[{"d":1},{"d":2}]}'), ['b'], 'equal keys in sibling objects are fine');
  t.same(duplicateKeys('{"msg":"a \\"component\\":1, \\"component\\":2","s":"{\\"k\\":1,\\"k\\":2}"}'), [], 'keys inside string values are not keys');
  t.same(duplicateKeys('{"k":"v","v":"k"}'), []);
});

t.test('a component child of a component child prints one component key: the first name', async (t) => {
  const { log, lines } = capture('json');
  const chain = log.child({ component: 'chain' });
  chain.child({ component: 'anvil' }).info({ port: 1 }, 'anvil started');
  chain.child({ reqId: 7 }).child({ component: 'again' }).warn('deeper');
  log.child({ component: 'oracle' }).info('alone');
  log.child({ component: 'main' }).error({ err: new Error('x'), component: 'fleet' }, 'named again in the call');
  log.info({ component: 'fleet' }, 'named once, in the call');
  t.equal(lines.length, 5);
  for (const line of lines) t.same(duplicateKeys(line), [], line);
  t.match(JSON.parse(lines[0]), { component: 'chain', port: 1, msg: 'anvil started' });
  t.match(JSON.parse(lines[1]), { component: 'chain', reqId: 7, msg: 'deeper' });
  t.match(JSON.parse(lines[2]), { component: 'oracle' });
  t.match(JSON.parse(lines[3]), { component: 'main', err: { message: 'x' } });
  t.match(JSON.parse(lines[4]), { component: 'fleet' });
});

t.test('pretty: HH:MM:SS level component: message key=value, errors with their stack', async (t) => {
  const time = new Date(2026, 11, 1, 9, 5, 7).getTime(); // local time, as the terminal shows it
  t.equal(
    prettyLine(JSON.stringify({ level: 30, time, component: 'broker', port: 1883, host: '127.0.0.1', msg: 'MQTT broker listening' })),
    '09:05:07 info  broker: MQTT broker listening port=1883 host=127.0.0.1\n',
  );
  t.equal(prettyLine(JSON.stringify({ level: 40, time, msg: 'no key', file: '/tmp/a b', list: ['x'], n: null })), '09:05:07 warn  no key file="/tmp/a b" list=["x"] n=null\n');
  const err = prettyLine(JSON.stringify({ level: 50, time, component: 'oracle', err: { type: 'Error', message: 'boom', stack: 'Error: boom\n    at x (y.ts:1:1)' }, msg: 'run failed' }));
  t.equal(err.split('\n')[0], '09:05:07 error oracle: run failed err=boom');
  t.match(err, /\n {4}Error: boom\n {8}at x \(y\.ts:1:1\)\n$/, 'the stack follows, indented');
  t.equal(prettyLine('not json'), 'not json\n', 'a line that is not JSON passes through');
  t.match(prettyLine(JSON.stringify({ level: 30, time, msg: 'c' }), { color: true }), /\x1b\[32minfo \x1b\[0m/, 'colour only when asked');
});

t.test('LOG_FORMAT: auto is pretty on a terminal, JSON otherwise; json and pretty force it', async (t) => {
  t.equal(chooseFormat('auto', true), 'pretty');
  t.equal(chooseFormat('auto', false), 'json');
  t.equal(chooseFormat('json', true), 'json');
  t.equal(chooseFormat('pretty', false), 'pretty');
  t.equal(loadConfig({}).logFormat, 'auto');
  t.equal(loadConfig({ LOG_FORMAT: 'pretty' }).logFormat, 'pretty');
  t.throws(() => loadConfig({ LOG_FORMAT: 'xml' }), /LOG_FORMAT: must be auto, json or pretty/);

  const pretty = capture('pretty');
  pretty.log.child({ component: 'gateway' }).child({ component: 'x' }).info({ url: 'http://h:1' }, 'listening');
  t.match(pretty.lines[0], /^\d\d:\d\d:\d\d info {2}gateway: listening url=http:\/\/h:1\n$/, 'forced pretty on a non-terminal stream');
  const auto = capture();
  auto.log.info('plain');
  t.match(JSON.parse(auto.lines[0]), { level: 30, msg: 'plain' }, 'a stream that is not a terminal gets JSON');
});

t.test('pretty lines are still redacted', async (t) => {
  const { log, lines } = capture('pretty');
  log.info({ password: 'hunter2', url: 'mqtt://u:hunter3@b:1883' }, 'x');
  t.notMatch(lines.join(''), /hunter[23]/);
});
