/**
 * Small helpers for tests and benchmarks that start real servers on this machine: a free loopback
 * port, waiting for a TCP listener, and Debian's mosquitto on its own config and port.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { DEFAULT_POLL_TIMEOUT_MS, poll } from './eventually.ts';

/** Path of Debian's mosquitto binary, or undefined when it is not installed. */
export const MOSQUITTO = ['/usr/sbin/mosquitto', '/usr/bin/mosquitto'].find((p) => fs.existsSync(p));

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

/** Whether something accepts TCP connections on 127.0.0.1:port before the (generous) bound passes. */
export async function waitForPort(port: number, tries = 100, delayMs = 50): Promise<boolean> {
  const accepts = () =>
    new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), r(true)));
      s.once('error', () => r(false));
    });
  return poll(accepts, { timeoutMs: Math.max(tries * delayMs, DEFAULT_POLL_TIMEOUT_MS), everyMs: delayMs });
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
  if (!MOSQUITTO) throw new Error('mosquitto binary not found (apt-get install mosquitto)');
  const port = await freePort();
  const conf = path.join(dir, 'mosquitto.conf');
  fs.writeFileSync(conf, [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'persistence false', ...extraConf, ''].join('\n'));
  const proc = spawn(MOSQUITTO, ['-c', conf], { stdio: 'ignore' });
  return { port, url: `mqtt://127.0.0.1:${port}`, proc, up: await waitForPort(port) };
}
