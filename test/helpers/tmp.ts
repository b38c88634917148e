/**
 * Temporary directories for tests, the one way: a fresh directory under the OS temp dir that is
 * removed when the test ends (or when the function given one returns), whatever happened.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** The part of a tap test these helpers use. */
export interface Teardown {
  teardown(fn: () => unknown): void;
}

/** A fresh empty directory; the caller removes it (with `removeDir`). For helpers that own a lifecycle. */
export function makeTmpDir(prefix = 'mrv-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

/** A fresh empty directory, removed when `t` ends. */
export function tmpDir(t: Teardown, prefix = 'mrv-test-'): string {
  const dir = makeTmpDir(prefix);
  t.teardown(() => removeDir(dir));
  return dir;
}

/** Runs `fn` in a fresh directory and removes it afterwards (for helpers without a test at hand). */
export async function withTmpDir<R>(prefix: string, fn: (dir: string) => R | Promise<R>): Promise<R> {
  const dir = makeTmpDir(prefix);
  try {
    return await fn(dir);
  } finally {
    removeDir(dir);
  }
}
