/**
 * Starting Debian's server binaries as child processes on this machine, shared by `npm run start:cluster`
 * and the tests and benchmarks (test/helpers re-export these): a free loopback port, waiting for a TCP
 * listener, and Mosquitto on its own config and port.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

/** Path of Debian's mosquitto binary, or undefined when it is not installed. */
export const MOSQUITTO = ['/usr/sbin/mosquitto', '/usr/bin/mosquitto'].find((p) => fs.existsSync(p));

/** Why Mosquitto cannot be started here, or undefined when it can. */
export function mosquittoMissing(): string | undefined {
  return MOSQUITTO ? undefined : 'mosquitto binary not found (/usr/sbin/mosquitto): install the Debian package "mosquitto"';
}

/** A port that was free on 127.0.0.1 a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves true as soon as `check()` is true, false once `timeoutMs` has passed (checked one last time). */
export async function pollUntil(check: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 50): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Whether something accepts TCP connections on 127.0.0.1:port before the (generous, >= 30 s) bound passes. */
export async function waitForPort(port: number, tries = 100, delayMs = 50): Promise<boolean> {
  const accepts = () =>
    new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), r(true)));
      s.once('error', () => r(false));
    });
  return pollUntil(accepts, Math.max(tries * delayMs, 30_000), delayMs);
}

export interface Mosquitto {
  port: number;
  url: string;
  proc: ChildProcess;
  /** Whether it accepted connections before the wait ran out. */
  up: boolean;
}

/**
 * Starts mosquitto (anonymous, no persistence) on a free port with its config file in `dir`;
 * `extraConf` lines are appended. The caller stops `proc`.
 */
export async function startMosquitto(dir: string, extraConf: string[] = []): Promise<Mosquitto> {
  const why = mosquittoMissing();
  if (!MOSQUITTO || why) throw new Error(why);
  const port = await freePort();
  const conf = path.join(dir, 'mosquitto.conf');
  fs.writeFileSync(conf, [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'persistence false', ...extraConf, ''].join('\n'));
  const proc = spawn(MOSQUITTO, ['-c', conf], { stdio: 'ignore' });
  return { port, url: `mqtt://127.0.0.1:${port}`, proc, up: await waitForPort(port) };
}
