/**
 * Two writer OS processes ('a' and 'b') running a writer script (test/helpers/pg-writer.ts,
 * test/helpers/influx-writer.ts: each prints `ready`, commits after a line on stdin, prints its
 * outcomes as one JSON line), for the several-writers tests of the PostgreSQL and InfluxDB stores.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import type { Test } from 'tap';
import type { Outcome } from './pg-writer.ts';

export interface Writers {
  /** Sends both the start signal at once; resolves with their exit codes, a then b. */
  go(): Promise<(number | null)[]>;
  /** The end of both stderr streams. */
  errors(): string;
  /** Each writer's outcomes (empty when it printed none). */
  outcomes(): Record<'a' | 'b', Outcome[]>;
}

/** Spawns both writers (`script` relative to test/helpers/, then `args(role)`) and resolves once both are ready; killed at teardown. */
export async function startWriters(t: Test, script: string, args: (role: 'a' | 'b') => string[]): Promise<Writers> {
  const children = (['a', 'b'] as const).map((role) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, script), ...args(role)], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-4000)));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const ready = new Promise<void>((resolve, reject) => {
      const onData = () => {
        if (out.includes('ready\n')) {
          child.stdout.off('data', onData);
          resolve();
        }
      };
      child.stdout.on('data', onData);
      void exited.then((code) => reject(new Error(`writer ${role} exited (${code}) before ready: ${err}`)));
    });
    t.teardown(() => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    return { role, child, ready, exited, output: () => out, errors: () => err };
  });
  await Promise.all(children.map((c) => c.ready));
  return {
    go() {
      for (const c of children) c.child.stdin.end('go\n');
      return Promise.all(children.map((c) => c.exited));
    },
    errors: () => children.map((c) => c.errors()).join(' '),
    outcomes() {
      const outcomes = { a: [] as Outcome[], b: [] as Outcome[] };
      for (const c of children) {
        const line = c.output().split('\n').find((l) => l.startsWith('['));
        outcomes[c.role] = line ? (JSON.parse(line) as Outcome[]) : [];
      }
      return outcomes;
    },
  };
}
