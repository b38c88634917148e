/**
 * The `npm run simulate` CLI: --help as a child process, usage errors (in process) with exit
 * code 2, an unreachable broker with exit code 1, and a run with --credentials and --json whose
 * stdout is one JSON summary while progress and the human summary go to stderr.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { USAGE, main } from '../../simulators/main.ts';
import { poll } from '../helpers/eventually.ts';
import { startBroker } from './helpers.ts';
import { tmpDir } from '../helpers/tmp.ts';

function isJson(b: Buffer): boolean {
  try {
    JSON.parse(b.toString('utf8'));
    return true;
  } catch {
    return false;
  }
}

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * Runs the CLI as a child process. With `stopWhen`, the run has no --duration: the condition is polled
 * (bounded) and the child gets SIGINT (Ctrl-C) once it holds, so what it did never depends on speed.
 */
function run(args: string[], opts: { timeoutMs?: number; stopWhen?: () => boolean } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'simulators/main.ts', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    let exited = false;
    child.on('error', reject);
    child.on('close', (code) => {
      exited = true;
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    const stopWhen = opts.stopWhen;
    if (stopWhen) {
      void poll(() => exited || stopWhen(), { timeoutMs: 60_000 }).then(() => {
        if (!exited) child.kill('SIGINT');
      });
    }
  });
}

async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** Runs main() in this process, capturing what it writes to stdout and stderr. */
async function inProcess(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = { stdout: '', stderr: '' };
  const saved = { out: process.stdout.write, err: process.stderr.write };
  process.stdout.write = ((chunk: string) => ((out.stdout += chunk), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string) => ((out.stderr += chunk), true)) as typeof process.stderr.write;
  try {
    const code = await main([...args, '--log-level', 'silent']);
    return { code, ...out };
  } finally {
    process.stdout.write = saved.out;
    process.stderr.write = saved.err;
  }
}

t.test('--help as a command; usage errors and an unreachable broker', async (t) => {
  const dir = tmpDir(t, 'sim-cli-');
  const help = await run(['--help']);
  t.equal(help.code, 0);
  t.equal(help.stdout, USAGE);
  for (const flag of ['--url', '--devices', '--rate', '--faults', '--seed', '--duration', '--json', '--state', '--credentials', '--api', '--api-key-file', '--api-key', '--prefix']) {
    t.ok(help.stdout.includes(flag), `--help documents ${flag}`);
  }

  const badUrl = await inProcess(['--url', 'http://x:1', '--state', path.join(dir, 's1.json')]);
  t.equal(badUrl.code, 2);
  t.match(badUrl.stderr, /simulate: bad broker URL "http:\/\/x:1": protocol http: is not one of mqtt:/);
  const badFlag = await inProcess(['--devcies', '3']);
  t.equal(badFlag.code, 2);
  t.match(badFlag.stderr, /Unknown option '--devcies'/);
  const badFaults = await inProcess(['--faults', 'drop=7', '--state', path.join(dir, 's2.json')]);
  t.equal(badFaults.code, 2);
  t.match(badFaults.stderr, /--faults: drop is a rate per reading, between 0 and 1/);
  const badRate = await inProcess(['--rate', 'fast', '--state', path.join(dir, 's2.json')]);
  t.equal(badRate.code, 2);
  t.match(badRate.stderr, /--rate must be a number/);
  const apiNoKey = await inProcess(['--api-key', 'k', '--state', path.join(dir, 's2.json')]);
  t.equal(apiNoKey.code, 2);
  t.match(apiNoKey.stderr, /--api-key needs --api URL/);
  const keyFileNoApi = await inProcess(['--api-key-file', 'k', '--state', path.join(dir, 's2.json')]);
  t.equal(keyFileNoApi.code, 2);
  t.match(keyFileNoApi.stderr, /--api-key-file needs --api URL/);
  const unreachable = await inProcess(['--url', `mqtt://127.0.0.1:${await closedPort()}`, '--state', path.join(dir, 's3.json'), '--quiet']);
  t.equal(unreachable.code, 1);
  t.match(unreachable.stderr, /simulate: cannot reach the MQTT broker at mqtt:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/);
  t.equal(unreachable.stdout, '');
});

t.test('a run with --credentials and --json', async (t) => {
  const broker = await startBroker();
  t.teardown(() => broker.close());
  const dir = tmpDir(t, 'sim-cli-');
  const creds = path.join(dir, 'creds.json');
  fs.writeFileSync(
    creds,
    JSON.stringify([
      { facilityId: 'plant-a', deviceId: 'plant-a-main', password: 'x' },
      { facilityId: 'plant-a', deviceId: 'plant-a-pv', password: 'y', kind: 'solar' },
    ]),
  );
  const r = await run([
    '--url', `mqtt://127.0.0.1:${broker.port}`,
    '--credentials', creds,
    '--rate', '10',
    '--faults', 'garbage=0.3',
    '--seed', 'cli',
    '--state', path.join(dir, 'state.json'),
    '--json',
  ], {
    // Ctrl-C once both devices have published and garbage has gone out (the progress line's last
    // print comes with the stop).
    stopWhen: () => {
      const ids = new Set(broker.log.map((m) => m.clientId));
      const garbage = broker.log.some((m) => m.topic.endsWith('/readings') && !isJson(m.payload));
      return ids.size === 2 && broker.log.length > 20 && garbage;
    },
  });
  t.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  t.equal(lines.length, 1, 'stdout is one JSON object');
  const s = JSON.parse(lines[0]);
  t.equal(s.devices, 2);
  t.same(s.facilityIds, ['plant-a']);
  t.ok(s.acked > 10 && s.acked === s.sent, `${s.acked} acked`);
  t.ok(s.faults.garbage > 0);
  t.equal(s.unacked, 0);
  t.same(s.deviceDetails.map((d: { deviceId: string; kind: string }) => [d.deviceId, d.kind]), [['plant-a-main', 'grid'], ['plant-a-pv', 'solar']]);
  t.match(r.stderr, /simulated 2 devices in 1 facilities/);
  t.match(r.stderr, /sent \d+ \| acked \d+/, 'a progress line');
  const got = new Set(broker.log.map((m) => m.clientId));
  t.same([...got].sort(), ['plant-a-main', 'plant-a-pv']);
  t.ok(fs.existsSync(path.join(dir, 'state.json')));
});

t.test('--duration stops the run on its own', async (t) => {
  const broker = await startBroker();
  t.teardown(() => broker.close());
  const dir = tmpDir(t, 'sim-cli-');
  // No count is asserted (how much a second holds depends on the machine): only that it ends by itself.
  const r = await run(['--url', `mqtt://127.0.0.1:${broker.port}`, '--devices', '1', '--rate', '5', '--duration', '1', '--seed', 'dur', '--state', path.join(dir, 'state.json'), '--json', '--quiet']);
  t.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout.trim());
  t.equal(s.unacked, 0, 'what it sent was acknowledged before it stopped');
  t.ok(Date.parse(s.stoppedAt) - Date.parse(s.startedAt) >= 1000, 'it ran for at least the duration');
});
