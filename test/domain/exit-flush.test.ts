/**
 * A process that stops on a signal writes every log line, in order, before it exits. pino's default
 * stdout writer is asynchronous, and at `process.exit` it wrote what was queued while a write already
 * handed to libuv's thread pool could land after it: under load the e2e startup test saw `anvil
 * stopped` after the `stopped: …` summary. Several children at once make the load that exposes it.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');

function run(lines: number, readLateMs: number): Promise<{ exit: { code: number | null; signal: string | null }; out: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(HERE, 'fixtures/log-then-exit.ts')], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, NODE_OPTIONS: '', LINES: String(lines) },
  });
  let out = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.pause();
  setTimeout(() => {
    child.stdout!.on('data', (d: string) => (out += d));
    child.stdout!.resume();
  }, readLateMs);
  return new Promise((resolve) => child.once('close', (code, signal) => resolve({ exit: { code, signal }, out })));
}

function messages(out: string): { msg: string; i?: number }[] {
  return out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg: string; i?: number });
}

t.test('the last lines before a signal stop arrive in the order logged', async (t) => {
  const runs = await Promise.all(Array.from({ length: 8 }, () => run(0, 0)));
  for (const [k, r] of runs.entries()) {
    t.same(r.exit, { code: 0, signal: null }, `child ${k}: exit code 0`);
    t.same(messages(r.out).map((m) => m.msg), ['stopping log-then-exit', 'first', 'second', 'last'], `child ${k}: every line, in order`);
  }
});

t.test('a burst into a pipe that is read late arrives whole and in order', async (t) => {
  const LINES = 3000;
  const r = await run(LINES, 1000);
  t.same(r.exit, { code: 0, signal: null }, 'exit code 0');
  const records = messages(r.out);
  const numbered = records.filter((m) => m.msg === 'line').map((m) => m.i);
  t.equal(numbered.length, LINES, 'every line arrived');
  t.ok(numbered.every((n, k) => n === k), 'in the order logged');
  t.same(records.slice(-3).map((m) => m.msg), ['first', 'second', 'last'], 'the last lines last');
});
