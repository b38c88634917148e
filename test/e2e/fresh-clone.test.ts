/**
 * README's two commands on a fresh clone (issue 10 item 18): `git clone` of this repository's HEAD
 * (committed files only: no artifacts/, no data/) into a temp directory, then
 * - install: README's `npm install`, run with `--dry-run` (it resolves the same tree from the lockfile
 *   and prints the same warnings, in seconds and without building better-sqlite3 for a minute), must
 *   print no `npm warn` (EBADENGINE, install scripts not covered by allowScripts); the clone then gets a
 *   symlink to this checkout's node_modules instead of a real install (the shortcut: a full install
 *   is minutes of network and compiling on every run);
 * - start: exactly `npm start`, with a temp DATA_DIR and free ports (port 0, read back from the banner).
 *   The contracts are not compiled in a fresh clone: `prestart` compiles them. Waits (bounded poll)
 *   until /health answers and the dashboard serves, then stops it with Ctrl-C (SIGINT to its process
 *   group) and checks that everything exited cleanly, anvil included.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { eventually } from '../helpers/eventually.ts';
import { tmpDir } from '../helpers/tmp.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The environment of a newcomer's shell: none of tap's loaders or variables. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k === 'NODE_OPTIONS' || k.startsWith('TAP') || k.startsWith('_TAP') || k.startsWith('NYC') || k.startsWith('npm_')) continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

/** Whether any process of the group is still alive. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

t.test('README: npm install && npm start work on a fresh clone', async (t) => {
  const tmp = tmpDir(t, 'mrv-fresh-');
  const clone = path.join(tmp, 'repo');
  const cloned = spawnSync('git', ['clone', '--quiet', '--no-hardlinks', ROOT, clone], { encoding: 'utf8' });
  t.equal(cloned.status, 0, `git clone: ${cloned.stderr}`);
  t.notOk(fs.existsSync(path.join(clone, 'artifacts')), 'a fresh clone has no compiled contracts');

  // README's install command; the commands themselves are read from the README, so it stays true.
  const readme = fs.readFileSync(path.join(clone, 'README.md'), 'utf8');
  const quick = /## Quick start[^\n]*\n```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? '';
  const commands = quick.split('\n').map((l) => l.replace(/#.*$/, '').trim()).filter(Boolean);
  t.same(commands, ['npm install', 'npm start'], "README's quick start is these two commands");

  const install = spawnSync('npm', ['install', '--dry-run'], { cwd: clone, encoding: 'utf8', env: cleanEnv({}), timeout: 180_000 });
  t.equal(install.status, 0, `npm install --dry-run: ${install.stderr.slice(-800)}`);
  const warnings = `${install.stdout}\n${install.stderr}`.split('\n').filter((l) => /^npm warn/i.test(l));
  t.same(warnings, [], 'the install prints no warning (engines, install scripts)');
  fs.symlinkSync(fs.realpathSync(path.join(ROOT, 'node_modules')), path.join(clone, 'node_modules'), 'dir');

  // README's start command, as typed, in its own process group (what Ctrl-C in a terminal signals).
  const dataDir = path.join(tmp, 'data');
  const child: ChildProcess = spawn('npm', ['start'], {
    cwd: clone,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: cleanEnv({ DATA_DIR: dataDir, HTTP_PORT: '0', MQTT_PORT: '0', ANVIL_PORT: '0', LOG_LEVEL: 'warn' }),
  });
  const pgid = child.pid!;
  t.teardown(() => {
    if (groupAlive(pgid)) process.kill(-pgid, 'SIGKILL');
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  let exit: { code: number | null; signal: string | null } | undefined;
  child.on('exit', (code, signal) => (exit = { code, signal }));

  let url = '';
  await eventually(
    'npm start to print its banner',
    () => {
      if (exit) throw new Error(`npm start exited (${exit.code ?? exit.signal}):\n${out.slice(-3000)}`);
      url = /dashboard\s+(http:\/\/[\d.]+:\d+)\//.exec(out)?.[1] ?? '';
      return url !== '';
    },
    { timeoutMs: 240_000, everyMs: 200 },
  );
  t.ok(fs.existsSync(path.join(clone, 'artifacts', 'contracts', 'CreditLedger.sol', 'CreditLedger.json')), 'prestart compiled the contracts');
  t.notMatch(out, /run `npm run compile` first/);

  let health: { status: string } | undefined;
  await eventually('/health to answer', async () => {
    const r = await fetch(`${url}/health`).catch(() => undefined);
    if (r?.status === 200) health = (await r.json()) as { status: string };
    return health !== undefined;
  });
  t.match(health, { status: /^(ok|degraded)$/ }, '/health answers');
  const page = await fetch(`${url}/`);
  t.equal(page.status, 200, 'the dashboard serves');
  t.match(page.headers.get('content-type'), /text\/html/);
  t.match(await page.text(), /<html/i);
  t.ok(fs.existsSync(path.join(dataDir, 'admin-api-key')), 'the admin key was written where the banner says');

  // Ctrl-C: everything stops, exit code 0, no process of the group left behind (anvil included).
  process.kill(-pgid, 'SIGINT');
  await eventually('npm start to exit after Ctrl-C', () => exit !== undefined && !groupAlive(pgid), { timeoutMs: 60_000, everyMs: 100 });
  // npm re-raises the Ctrl-C on itself once its script is gone (the shell shows ^C): code 0 or SIGINT.
  t.ok(exit?.code === 0 || exit?.signal === 'SIGINT', `npm start ended by the Ctrl-C (${JSON.stringify(exit)})`);
  const stopped = out.slice(out.indexOf('SIGINT: stopping'));
  t.notMatch(stopped, /"level":(50|60)|error while (closing|stopping)/, `nothing failed while stopping: ${stopped.slice(0, 1500)}`);
  t.match(out, /stopping/, 'it said it was stopping');
  t.ok(fs.existsSync(path.join(dataDir, 'chain', 'anvil-state.json')), "anvil's state was saved");
});
