/**
 * An entry point (`main.ts`, what `npm start` runs, or a component's own `main.ts`) as a child process:
 * `node --import tsx <script>` in its own process group, with a clean environment (none of tap's
 * variables, none of the settings the tests choose), killed with its group at teardown.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import { eventually } from '../helpers/eventually.ts';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface Run {
  child: ChildProcess;
  /** stdout and stderr so far, interleaved. */
  out(): string;
  exit(): { code: number | null; signal: string | null } | undefined;
}

export function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Starts `script` on free ports (HTTP, MQTT and anvil on 0) with JSON log lines; `extra` settings win. */
export function startMain(t: Test, extra: Record<string, string>, script = 'main.ts'): Run {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k === 'NODE_OPTIONS' || k.startsWith('TAP') || k.startsWith('_TAP') || k.startsWith('NYC') || k.startsWith('npm_') || /^(LOG_|MQTT_|HTTP_|ANVIL_|DATA_DIR|ORACLE_|CHAIN_)/.test(k)) continue;
    env[k] = v;
  }
  const child = spawn(process.execPath, ['--import', 'tsx', script], {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...env, HTTP_PORT: '0', MQTT_PORT: '0', ANVIL_PORT: '0', LOG_FORMAT: 'json', ...extra },
  });
  const pgid = child.pid!;
  t.teardown(() => {
    if (groupAlive(pgid)) process.kill(-pgid, 'SIGKILL');
  });
  let out = '';
  let exit: { code: number | null; signal: string | null } | undefined;
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  child.on('exit', (code, signal) => (exit = { code, signal }));
  return { child, out: () => out, exit: () => exit };
}

/** Waits for `npm start`'s banner and returns the gateway's URL from it; fails if the process exits first. */
export async function waitForBanner(run: Run): Promise<{ httpUrl: string; banner: string }> {
  let m: RegExpExecArray | null = null;
  await eventually(
    'npm start to print its banner',
    () => {
      if (run.exit()) throw new Error(`main.ts exited (${JSON.stringify(run.exit())}):\n${run.out().slice(-3000)}`);
      m = /carbon-mrv is running\n\s+dashboard\s+(http:\/\/127\.0\.0\.1:\d+)\//.exec(run.out());
      return m !== null;
    },
    { timeoutMs: 180_000, everyMs: 200 },
  );
  return { httpUrl: m![1], banner: run.out().slice(m!.index) };
}
