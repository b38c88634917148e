/**
 * `npm run simulate` as a child process beside a running stack with its own simulated fleet (as
 * `npm start` runs it): runs with other prefixes get their own devices and state files and collide
 * with nothing; a second process on a state file another live simulator holds is refused with a
 * message naming it, a stale lock is taken over; the summary names the platform's rejections by
 * reason, expected or not, and exits 1 on unexpected ones; the admin key comes from the
 * environment, a key file or DATA_DIR's admin-api-key, with a warning when given on the command
 * line; the windows come from the stack.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { eventually } from '../helpers/eventually.ts';
import { loadConfig } from '../../domain/config.ts';
import { silentLogger } from '../../domain/logger.ts';
import { startStack, type Stack } from '../../main.ts';
import type { FleetSummary } from '../../simulators/progress.ts';
import { loadState } from '../../simulators/state.ts';
import { tmpDir } from '../helpers/tmp.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const WINDOW_SECONDS = 7;
const GRACE_SECONDS = 3;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The environment of a child: no keys or settings inherited from whoever runs the tests. */
function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(API_KEY|API_KEY_FILE|ADMIN_API_KEY|DATA_DIR|WINDOW_SECONDS|GRACE_SECONDS|MQTT_PORT)$/.test(k)) continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

function spawnSim(args: string[], env: Record<string, string>): { child: ChildProcess; done: Promise<Run> } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'simulators/main.ts', ...args], { cwd: ROOT, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  const done = new Promise<Run>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
  return { child, done };
}

const sim = (args: string[], env: Record<string, string>) => spawnSim(args, env).done;

function summaryOf(t: Test, r: Run): FleetSummary {
  const lines = r.stdout.trim().split('\n');
  t.equal(lines.length, 1, 'stdout is one JSON summary');
  return JSON.parse(lines[0]) as FleetSummary;
}

async function rejections(stack: Stack, key: string, facilityId: string): Promise<{ reason: string; deviceId: string }[]> {
  const res = await fetch(`${stack.httpUrl}/v1/facilities/${facilityId}/rejections?limit=1000`, { headers: { authorization: `Bearer ${key}` } });
  if (res.status !== 200) throw new Error(`rejections of ${facilityId}: ${res.status}`);
  return ((await res.json()) as { items: { reason: string; deviceId: string }[] }).items;
}

t.test('beside a running stack and its fleet', async (t) => {
  const dataDir = tmpDir(t, 'sim-stack-');
  // as `npm start` runs it: no ADMIN_API_KEY, so the key is generated into DATA_DIR/admin-api-key,
  // and a simulated fleet of its own (prefix sim, DATA_DIR/simulator-state.json)
  const config = loadConfig({}, {
    dataDir,
    httpPort: 0,
    mqttPort: 0,
    anvilPort: 0,
    windowSeconds: WINDOW_SECONDS,
    graceSeconds: GRACE_SECONDS,
    oracleCron: '*/5 * * * * *',
    simulatedDevices: 2,
    logLevel: 'silent',
  });
  const stack = await startStack(config, { logger: silentLogger });
  t.teardown(() => stack.close());
  t.ok(stack.fleet, "the stack runs its own fleet");
  const stackFleet = stack.fleet!;
  const key = fs.readFileSync(path.join(dataDir, 'admin-api-key'), 'utf8').trim();
  const common = ['--url', stack.mqttUrl, '--api', stack.httpUrl, '--devices', '2', '--rate', '5'];
  const env = { DATA_DIR: dataDir };

  await t.test('two runs with other prefixes beside it collide with nothing', async (t) => {
    const ackedBefore = stackFleet.stats().readingsAcked;
    const [a, b] = await Promise.all([
      sim([...common, '--duration', '3', '--seed', 'a', '--json'], env), // default prefix: cli
      sim([...common, '--duration', '3', '--seed', 'b', '--prefix', 'other', '--faults', 'garbage=1', '--json'], env),
    ]);
    t.equal(a.code, 0, a.stderr);
    t.equal(b.code, 0, b.stderr);
    const sa = summaryOf(t, a);
    const sb = summaryOf(t, b);
    t.same(sa.facilityIds, ['cli-f1']);
    t.same(sb.facilityIds, ['other-f1']);
    t.ok(sa.readingsAcked > 0 && sb.readingsAcked > 0, 'both published');
    t.equal(sa.statePath, path.join(dataDir, 'simulator-state-cli.json'), 'state file named by the prefix, under DATA_DIR');
    t.equal(sb.statePath, path.join(dataDir, 'simulator-state-other.json'));
    t.same(sa.rejections, { total: 0, byReason: [], unexpected: 0, truncated: false }, 'nothing of run a refused');
    t.ok(sb.rejections && sb.rejections.total > 0 && sb.rejections.unexpected === 0, 'run b: only the garbage it injected refused');
    t.ok(sb.rejections!.byReason.every((r) => r.fault === 'garbage' && r.count === r.expected), 'each reason expected from the garbage fault');
    t.match(b.stderr, /rejected by the platform: \d+: \d+ \w+ \(expected: fault garbage\)/);
    for (const r of [a, b]) {
      t.match(r.stderr, new RegExp(`windows of ${WINDOW_SECONDS} s settled ${GRACE_SECONDS} s after they close \\(from the gateway at`), 'windows from the stack');
      t.notMatch(r.stderr, /--api-key puts the key/, 'no key on the command line');
    }
    const facility = (await (await fetch(`${stack.httpUrl}/v1/facilities/cli-f1`, { headers: { authorization: `Bearer ${key}` } })).json()) as { name: string };
    t.match(facility.name, /^Simulated \w+ facility 1 \(cli\)$/, 'the prefix in the name tells the runs apart on the dashboard');
    t.equal(sa.windowSeconds, WINDOW_SECONDS);
    t.equal(sa.graceSeconds, GRACE_SECONDS);

    // the stack's fleet went on untouched: its state file, its devices, nothing of it refused
    await eventually('the stack fleet publishing', () => stackFleet.stats().readingsAcked > ackedBefore + 2);
    t.equal(stackFleet.stats().refused, 0, "the stack's devices were not cut off");
    const stackState = loadState(path.join(dataDir, 'simulator-state.json'))!;
    t.ok(Object.keys(stackState.devices).length > 0 && Object.keys(stackState.devices).every((id) => id.startsWith('sim-f')), "the stack's state file holds only its devices");
    for (const f of stackFleet.facilities) t.same(await rejections(stack, key, f.facilityId), [], `${f.facilityId}: nothing refused`);
  });

  await t.test('a second process on a state file a live simulator holds is refused; a stale lock is taken over', async (t) => {
    const lockFile = path.join(dataDir, 'simulator-state-lockt.json.lock');
    const holder = spawnSim([...common, '--prefix', 'lockt', '--quiet'], env); // runs until SIGINT
    t.teardown(() => holder.child.kill('SIGKILL'));
    await eventually('the first run holding its lock', () => fs.existsSync(lockFile) && fs.readFileSync(lockFile, 'utf8').includes(`"pid":${holder.child.pid}`), { timeoutMs: 60_000 });

    const second = await sim([...common, '--prefix', 'lockt', '--duration', '1'], env);
    t.equal(second.code, 1);
    t.match(second.stderr, new RegExp(`simulate: state file .*simulator-state-lockt\\.json is in use by another simulator \\(pid ${holder.child.pid} on this host, simulators/main\\.ts`));
    t.match(second.stderr, /give this run its own --prefix P .* or --state FILE, or stop that one first/);
    t.equal(second.stdout, '');

    // --prefix sim is the stack's own fleet's state file, held by this (the stack's) process
    const stackPrefix = await sim([...common, '--prefix', 'sim', '--duration', '1'], env);
    t.equal(stackPrefix.code, 1);
    t.match(stackPrefix.stderr, new RegExp(`simulator-state\\.json is in use by another simulator \\(pid ${process.pid} on this host`));

    holder.child.kill('SIGINT');
    const held = await holder.done;
    t.equal(held.code, 0, held.stderr);
    t.notOk(fs.existsSync(lockFile), 'the lock goes when its simulator stops');

    // a lock left by a process that is gone
    const gone = spawn(process.execPath, ['-e', '0']);
    await new Promise((resolve) => gone.on('close', resolve));
    fs.writeFileSync(lockFile, JSON.stringify({ pid: gone.pid, host: os.hostname(), since: new Date().toISOString(), nonce: 'old' }));
    const after = await sim([...common, '--prefix', 'lockt', '--duration', '1'], env);
    t.equal(after.code, 0, after.stderr);
    t.match(after.stderr, /took over a stale state lock/);
    t.notOk(fs.existsSync(lockFile));
  });

  await t.test('the summary names unexpected rejections and the exit code says so', async (t) => {
    const first = await sim([...common, '--prefix', 'dup', '--devices', '1', '--duration', '4', '--seed', 'one', '--quiet'], env);
    t.equal(first.code, 0, first.stderr);
    // the same devices from a fresh state file: their seqs start again at 1 with other content
    const again = await sim(
      [...common, '--prefix', 'dup', '--devices', '1', '--duration', '1', '--seed', 'two', '--faults', 'garbage=1', '--state', path.join(dataDir, 'fresh.json'), '--json'],
      env,
    );
    t.equal(again.code, 1, 'unexpected rejections: exit 1');
    const s = summaryOf(t, again);
    const dup = s.rejections!.byReason.find((r) => r.reason === 'duplicate_conflict');
    t.ok(dup && dup.count > 0 && dup.unexpected === dup.count && dup.expected === 0, 'duplicate_conflict counted as unexpected');
    t.ok(s.rejections!.byReason.some((r) => r.fault === 'garbage' && r.expected > 0), 'the garbage it injected counted as expected');
    t.equal(s.rejections!.unexpected, s.rejections!.byReason.reduce((n, r) => n + r.unexpected, 0));
    t.match(again.stderr, new RegExp(`rejected by the platform: ${s.rejections!.total}: .*${dup!.count} duplicate_conflict \\(unexpected\\)`));
    t.match(again.stderr, /\d+ \w+ \((?:expected|\d+ expected)[^)]*fault garbage/);
    t.match(again.stderr, /rejections no injected fault explains: see GET \/v1\/facilities\/\{id\}\/rejections/);
    // the platform's own log agrees
    const logged = (await rejections(stack, key, 'dup-f1')).filter((r) => r.reason === 'duplicate_conflict');
    t.ok(logged.length > 0);
  });

  await t.test('the admin key from the environment or a file; on the command line with a warning', async (t) => {
    const empty = tmpDir(t, 'sim-nokey-'); // a DATA_DIR without admin-api-key
    const envOnly = { DATA_DIR: empty };
    const one = ['--url', stack.mqttUrl, '--api', stack.httpUrl, '--devices', '1', '--rate', '2', '--duration', '1', '--prefix', 'keys', '--quiet'];

    const none = await sim(one, envOnly);
    t.equal(none.code, 2);
    t.match(none.stderr, /simulate: --api needs an admin API key: set API_KEY or API_KEY_FILE, or --api-key-file FILE \(npm start writes .*admin-api-key\)/);

    const fromEnv = await sim(one, { ...envOnly, API_KEY: key });
    t.equal(fromEnv.code, 0, fromEnv.stderr);
    t.notMatch(fromEnv.stderr, /warning/);

    const fromAdminEnv = await sim(one, { ...envOnly, ADMIN_API_KEY: key });
    t.equal(fromAdminEnv.code, 0, fromAdminEnv.stderr);

    const keyFile = path.join(empty, 'my-key');
    fs.writeFileSync(keyFile, `${key}\n`, { mode: 0o600 });
    const fromFile = await sim([...one, '--api-key-file', keyFile], envOnly);
    t.equal(fromFile.code, 0, fromFile.stderr);
    t.notMatch(fromFile.stderr, /warning/);
    const fromFileEnv = await sim(one, { ...envOnly, API_KEY_FILE: keyFile });
    t.equal(fromFileEnv.code, 0, fromFileEnv.stderr);

    fs.chmodSync(keyFile, 0o644);
    const openFile = await sim([...one, '--api-key-file', keyFile], envOnly);
    t.equal(openFile.code, 0, openFile.stderr);
    t.match(openFile.stderr, /warning: .*my-key is readable by other users \(chmod 600/);

    const onCommandLine = await sim([...one, '--api-key', key], envOnly);
    t.equal(onCommandLine.code, 0, onCommandLine.stderr);
    t.match(onCommandLine.stderr, /simulate: warning: --api-key puts the key on the command line, where ps and npm show it; use API_KEY, API_KEY_FILE or --api-key-file FILE/);

    const wrong = await sim(one, { ...envOnly, API_KEY: 'mrv_not-the-key-0123456789' });
    t.equal(wrong.code, 1);
    t.match(wrong.stderr, /the gateway refused the API key: 401 .*\(the key came from API_KEY\)/);

    const missingFile = await sim([...one, '--api-key-file', path.join(empty, 'nope')], envOnly);
    t.equal(missingFile.code, 2);
    t.match(missingFile.stderr, /--api-key-file: cannot read .*nope: ENOENT/);
  });
});
