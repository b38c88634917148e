/**
 * `npm start` as a process (issue 15 item 8): a second start on the same DATA_DIR, or on a port the
 * first one holds, fails fast with a message naming the running instance's pid or the setting to
 * change, exit code non-zero, while the first keeps serving; Ctrl-C on the first logs each part as it
 * stops and a last line naming them all, exits 0 and leaves no lock and no process behind. On a
 * terminal (a pseudo-terminal from util-linux `script`) the log lines are readable, piped they are JSON.
 * Runs `node --import tsx main.ts` (what `npm start` runs, without npm in between) on free ports.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import t, { type Test } from 'tap';
import { LOCK_FILE } from '../../domain/instance.ts';
import { eventually } from '../helpers/eventually.ts';
import { jsonLogLines, linesWithDuplicateKeys } from '../helpers/json-lines.ts';
import { tempDataDir } from './helpers.ts';
import { groupAlive, ROOT, startMain } from './process.ts';
import { missing, requireBinary } from '../helpers/require.ts';

async function failsToStart(t: Test, extra: Record<string, string>, expect: RegExp, what: string): Promise<string> {
  const run = startMain(t, extra);
  await eventually(`${what}: the second start to give up`, () => run.exit() !== undefined, { timeoutMs: 90_000, everyMs: 100 });
  t.not(run.exit()!.code, 0, `${what}: exit code non-zero (${JSON.stringify(run.exit())})`);
  t.match(run.out(), expect, `${what}: the message says what to do`);
  t.notMatch(run.out(), /carbon-mrv is running/, `${what}: nothing started`);
  return run.out();
}

t.test('a second npm start fails fast and names the instance or the port setting; the first keeps running', async (t) => {
  const dataDir = tempDataDir(t);
  const first = startMain(t, { DATA_DIR: dataDir, SIMULATED_DEVICES: '1', LOG_LEVEL: 'info' });
  let banner: RegExpExecArray | null = null;
  await eventually(
    'the first instance to print its banner',
    () => {
      if (first.exit()) throw new Error(`the first instance exited (${JSON.stringify(first.exit())}):\n${first.out().slice(-3000)}`);
      banner = /dashboard\s+http:\/\/127\.0\.0\.1:(\d+)\/[\s\S]*MQTT\s+mqtt:\/\/127\.0\.0\.1:(\d+)[\s\S]*chain\s+http:\/\/127\.0\.0\.1:(\d+)/.exec(first.out());
      return banner !== null;
    },
    { timeoutMs: 180_000, everyMs: 200 },
  );
  const [, httpPort, mqttPort, anvilPort] = banner!;
  const pid = first.child.pid!;
  const lockFile = path.join(dataDir, LOCK_FILE);
  t.equal(JSON.parse(fs.readFileSync(lockFile, 'utf8')).pid, pid, 'DATA_DIR holds a lock naming the running pid');

  // Same DATA_DIR (ports free: 0): the lock names the running instance. Pretty lines, forced.
  const sameDir = await failsToStart(t, { DATA_DIR: dataDir, LOG_FORMAT: 'pretty' }, new RegExp(`another carbon-mrv \\(pid ${pid}\\) is running on DATA_DIR ${dataDir}`), 'same DATA_DIR');
  t.match(sameDir, /^\d\d:\d\d:\d\d info {2}starting carbon-mrv /m, 'LOG_FORMAT=pretty prints readable lines');
  t.notMatch(sameDir, /\{"level"/, 'and no JSON');

  // Another DATA_DIR, one of the first instance's ports: the setting is named.
  const other = tempDataDir(t);
  for (const [setting, port] of [
    ['HTTP_PORT', httpPort],
    ['MQTT_PORT', mqttPort],
    ['ANVIL_PORT', anvilPort],
  ]) {
    await failsToStart(t, { DATA_DIR: other, [setting]: port }, new RegExp(`${setting}=${port}: 127\\.0\\.0\\.1:${port} is already in use.*set ${setting} to a free port`), setting);
  }
  t.notOk(fs.existsSync(path.join(other, LOCK_FILE)), 'a refused start leaves no lock behind');

  // The first one is untouched.
  t.equal(first.exit(), undefined, 'the first instance is still running');
  const health = await fetch(`http://127.0.0.1:${httpPort}/health`);
  t.equal(health.status, 200, 'and still answers');
  t.equal(JSON.parse(fs.readFileSync(lockFile, 'utf8')).pid, pid, 'its lock is intact');

  // Ctrl-C: each part logged as it stops, a last line naming them all, exit 0, nothing left.
  process.kill(pid, 'SIGINT');
  await eventually('the first instance to exit after SIGINT', () => first.exit() !== undefined && !groupAlive(pid), { timeoutMs: 60_000, everyMs: 100 });
  t.same(first.exit(), { code: 0, signal: null }, 'exit code 0');
  const parts = ['fleet', 'oracle-schedule', 'gateway', 'oracle', 'broker', 'ingest', 'store', 'chain'];
  t.match(first.out(), `SIGINT: stopping ${parts.join(', ')}...`, 'the terminal is told what will stop');
  const lines = jsonLogLines(first.out());
  t.same(linesWithDuplicateKeys(lines), [], 'no log line of the run carries a key twice');
  const records = lines.map((l) => JSON.parse(l) as { component?: string; msg: string });
  t.same(records.filter((r) => r.msg === 'stopped').map((r) => r.component), parts, 'each part logged as it stopped, in order');
  t.equal(records[records.length - 1].msg, `stopped: ${parts.join(', ')}`, 'the last line names everything that stopped');
  t.notOk(fs.existsSync(lockFile), 'the lock is released');
});

t.test('the broker service alone logs each part as it stops on SIGTERM', async (t) => {
  const run = startMain(t, { DATA_DIR: tempDataDir(t), LOG_LEVEL: 'info' }, 'broker/main.ts');
  await eventually('the broker to listen', () => {
    if (run.exit()) throw new Error(`broker/main.ts exited (${JSON.stringify(run.exit())}):\n${run.out().slice(-3000)}`);
    return /"event":"listening"/.test(run.out());
  }, { timeoutMs: 60_000, everyMs: 100 });
  process.kill(run.child.pid!, 'SIGTERM');
  await eventually('broker/main.ts to exit', () => run.exit() !== undefined, { timeoutMs: 60_000, everyMs: 100 });
  t.same(run.exit(), { code: 0, signal: null }, 'exit code 0');
  const lines = jsonLogLines(run.out());
  t.same(linesWithDuplicateKeys(lines), [], 'no line carries a key twice');
  const records = lines.map((l) => JSON.parse(l) as { component?: string; msg: string });
  t.same(records.filter((r) => r.msg === 'stopped').map((r) => r.component), ['broker', 'ingest', 'store'], 'each part logged as it stopped');
  t.equal(records[records.length - 1].msg, 'stopped: broker, ingest, store', 'the last line names them all');
});

t.test('on a terminal (LOG_FORMAT unset) the lines are readable, not JSON', async (t) => {
  // util-linux `script` runs the command on a pseudo-terminal.
  if (!requireBinary(t, missing.script())) return;
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const port = (server.address() as net.AddressInfo).port;
  // A start that stops at the port check, after its first log line: quick, and nothing to clean up.
  const run = startMain(t, { DATA_DIR: tempDataDir(t), HTTP_PORT: String(port), LOG_FORMAT: '' });
  await eventually('the plain run to give up', () => run.exit() !== undefined, { timeoutMs: 90_000, everyMs: 100 });
  t.match(run.out(), /^\{"level":30,.*"msg":"starting carbon-mrv"\}$/m, 'piped: JSON');
  const tty = spawn('script', ['-qefc', `${process.execPath} --import tsx main.ts`, '/dev/null'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_OPTIONS: '', DATA_DIR: tempDataDir(t), HTTP_PORT: String(port), MQTT_PORT: '0', ANVIL_PORT: '0', LOG_FORMAT: '', LOG_LEVEL: 'info', NO_COLOR: '1' },
  });
  t.teardown(() => tty.kill('SIGKILL'));
  let out = '';
  let code: number | null | undefined;
  tty.stdout!.on('data', (d) => (out += d));
  tty.stderr!.on('data', (d) => (out += d));
  tty.on('exit', (c) => (code = c));
  await eventually('the terminal run to give up', () => code !== undefined, { timeoutMs: 90_000, everyMs: 100 });
  t.not(code, 0, 'it failed (the port is taken)');
  t.match(out, /^\d\d:\d\d:\d\d info {2}starting carbon-mrv config=/m, 'a readable line');
  t.notMatch(out, /\{"level"/, 'no JSON on the terminal');
  t.match(out, new RegExp(`HTTP_PORT=${port}: .* is already in use`), 'and says why');
});

t.test('a bad ORACLE_CRON stops npm start before anything starts, naming the setting', async (t) => {
  // A port held here: a start that got as far as its port checks would complain about HTTP_PORT instead.
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const port = (server.address() as net.AddressInfo).port;
  const dataDir = path.join(tempDataDir(t), 'not-yet');
  const run = startMain(t, { DATA_DIR: dataDir, HTTP_PORT: String(port), ORACLE_CRON: 'every five seconds', LOG_LEVEL: 'info' });
  await eventually('npm start to give up', () => run.exit() !== undefined, { timeoutMs: 90_000, everyMs: 100 });
  t.not(run.exit()!.code, 0, `exit code non-zero (${JSON.stringify(run.exit())})`);
  t.match(run.out(), /carbon-mrv failed to start: .*ORACLE_CRON: not a cron expression .*"every five seconds"/, 'the message names the variable and its value');
  t.notMatch(run.out(), /HTTP_PORT|starting carbon-mrv/, 'nothing was started, no port checked');
  t.notOk(fs.existsSync(dataDir), 'DATA_DIR was not even created');
});
