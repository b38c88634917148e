/**
 * Tests that need an external program (anvil, Mosquitto, influxd, Chromium...) say so in one way: on a
 * machine without it they skip with the reason; under CI (CI set, and not "false"/"0") they fail,
 * since a CI machine must have everything and a silent skip would hide a lost test.
 */
import fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import t from 'tap';
import { anvilBinary } from '../../contracts/client/chain.ts';
import { influxdMissing } from './influxd.ts';
import { MOSQUITTO } from './servers.ts';

export const CHROMIUM = '/usr/bin/chromium';

export const underCI = !!process.env.CI && !['false', '0'].includes(process.env.CI.toLowerCase());

/** Why each program is unusable here, or undefined when it is installed. */
export const missing = {
  anvil: (): string | undefined => (anvilBinary() ? undefined : 'anvil binary not found (npm package @foundry-rs/anvil)'),
  mosquitto: (): string | undefined =>
    MOSQUITTO ? undefined : 'mosquitto binary not found (/usr/sbin/mosquitto): install the Debian package mosquitto to run this test',
  chromium: (): string | undefined => (fs.existsSync(CHROMIUM) ? undefined : `${CHROMIUM} not installed: the browser tests need Debian's chromium package`),
  influxd: (): string | undefined => influxdMissing(),
  /** util-linux `script`, to run a command on a pseudo-terminal. */
  script: (): string | undefined =>
    spawnSync('script', ['--version']).status === 0 ? undefined : '`script` (util-linux) is not installed: no pseudo-terminal to run on',
};

/** The part of a tap test the gate uses. */
export interface Gate {
  fail(message: string): unknown;
  plan(n: number, comment?: string): unknown;
}

/**
 * Inside a test, or at the top of a file with tap's `t`: true when the program is there (`why` is
 * undefined). Otherwise ends `t` as skipped with the reason (`t.plan(0, why)`), or fails it under CI,
 * and returns false: the caller returns (or puts its tests in the `true` branch).
 */
export function requireBinary(gate: Gate, why: string | undefined): boolean {
  if (why === undefined) return true;
  if (underCI) gate.fail(`CI is set and ${why}`);
  else gate.plan(0, why);
  return false;
}

/**
 * The `skip` option of a test that needs a program: false when it is there; otherwise the reason
 * (the test is skipped), and under CI the file's top-level test fails as well.
 */
export function skipUnless(why: string | undefined): string | false {
  if (why === undefined) return false;
  if (underCI) t.fail(`CI is set and ${why}`);
  return why;
}
