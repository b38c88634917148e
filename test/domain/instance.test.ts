/**
 * Start-up guards (issue 15 item 8): DATA_DIR's pid lock (held by a live process: refused naming its
 * pid; left by a dead one: replaced) and the port pre-check naming the setting to change. Real
 * processes and real sockets.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { acquireInstanceLock, assertPortsFree, explainListenError, LOCK_FILE, portInUse, processRunning } from '../../domain/instance.ts';
import { createLogger } from '../../domain/logger.ts';
import { tmpDir } from '../helpers/tmp.ts';

function tempDir(t: Test): string {
  return tmpDir(t, 'mrv-lock-');
}

/** The pid of a process that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '0']);
  return r.pid!;
}

function writeLock(dir: string, pid: number): void {
  fs.writeFileSync(path.join(dir, LOCK_FILE), JSON.stringify({ pid, host: os.hostname(), startedAt: new Date().toISOString() }));
}

t.test('the lock holds this pid until released; a second taker is refused with the pid', async (t) => {
  const dir = tempDir(t);
  const lock = acquireInstanceLock(dir);
  const file = path.join(dir, LOCK_FILE);
  t.equal(JSON.parse(fs.readFileSync(file, 'utf8')).pid, process.pid);
  t.throws(() => acquireInstanceLock(dir), { code: 'ALREADY_RUNNING', message: new RegExp(`pid ${process.pid}\\).*DATA_DIR ${dir}`) });
  t.ok(fs.existsSync(file), 'the refused attempt left the lock alone');
  t.same(fs.readdirSync(dir), [LOCK_FILE], 'no temp file left behind');
  lock.release();
  t.notOk(fs.existsSync(file), 'released');
  acquireInstanceLock(dir).release();
});

t.test('a lock held by another live node process is refused, naming that pid', async (t) => {
  const dir = tempDir(t);
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  t.teardown(() => child.kill('SIGKILL'));
  writeLock(dir, child.pid!);
  t.ok(processRunning(child.pid!));
  t.throws(() => acquireInstanceLock(dir), { code: 'ALREADY_RUNNING', message: new RegExp(`pid ${child.pid}\\b.*kill ${child.pid}`) });
});

t.test('a stale lock (its process gone, or its pid now another program) is replaced, with a warning', async (t) => {
  const dir = tempDir(t);
  const dead = deadPid();
  t.notOk(processRunning(dead));
  writeLock(dir, dead);
  const lines: string[] = [];
  const lock = acquireInstanceLock(dir, { logger: createLogger('info', { write: (s: string) => void lines.push(s) }, 'json') });
  t.teardown(() => lock.release());
  t.equal(JSON.parse(fs.readFileSync(path.join(dir, LOCK_FILE), 'utf8')).pid, process.pid);
  t.match(lines.join(''), new RegExp(`stale lock file \\(pid ${dead} is not running\\)`));
  lock.release();

  fs.writeFileSync(path.join(dir, LOCK_FILE), 'garbage');
  acquireInstanceLock(dir).release();

  if (fs.existsSync('/proc/self/cmdline')) {
    const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
    t.teardown(() => sleeper.kill('SIGKILL'));
    writeLock(dir, sleeper.pid!);
    t.notOk(processRunning(sleeper.pid!), 'a live process that is not node is not a carbon-mrv');
    acquireInstanceLock(dir).release();
  }
});

t.test('ports: a taken port is named by its setting; port 0 is skipped; twins are refused', async (t) => {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => void (server.listening && server.close()));
  const port = (server.address() as net.AddressInfo).port;
  t.ok(await portInUse('127.0.0.1', port));
  await t.rejects(
    assertPortsFree([
      { setting: 'HTTP_PORT', host: '127.0.0.1', port: 0 },
      { setting: 'ANVIL_PORT', host: '127.0.0.1', port },
    ]),
    { code: 'PORT_IN_USE', message: new RegExp(`^ANVIL_PORT=${port}: 127\\.0\\.0\\.1:${port} is already in use.*set ANVIL_PORT to a free port`) },
  );
  await t.rejects(
    assertPortsFree([
      { setting: 'HTTP_PORT', host: '127.0.0.1', port: 4000 },
      { setting: 'MQTT_PORT', host: '127.0.0.1', port: 4000 },
    ]),
    { code: 'CONFIG_INVALID', message: /HTTP_PORT and MQTT_PORT are both 4000/ },
  );
  await new Promise<void>((r) => server.close(() => r()));
  await t.resolves(assertPortsFree([{ setting: 'HTTP_PORT', host: '127.0.0.1', port: 0 }]));

  const inUse = Object.assign(new Error('listen EADDRINUSE: address already in use 127.0.0.1:1883'), { code: 'EADDRINUSE' });
  t.match(explainListenError(inUse, { setting: 'MQTT_PORT', host: '127.0.0.1', port: 1883 }), { code: 'PORT_IN_USE', message: /MQTT_PORT/ });
  const anvil = new Error('anvil exited (1) before listening: Error: Address already in use (os error 98)');
  t.match(explainListenError(anvil, { setting: 'ANVIL_PORT', host: '127.0.0.1', port: 8545 }), { code: 'PORT_IN_USE', message: /^ANVIL_PORT=8545/ });
  const other = new Error('something else');
  t.equal(explainListenError(other, { setting: 'ANVIL_PORT', host: '127.0.0.1', port: 8545 }), other);
});
