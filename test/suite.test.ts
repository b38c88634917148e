/**
 * The test runner's file set: `tap` runs the `*.test.ts` files under test/ and nothing else, also when
 * given a directory (`npx tap test/audit`), which tap expands to every .ts file unless `.taprc`
 * excludes them. A helper or fixture picked up as a test file is a "test" with no tests that runs its
 * module's top level on its own.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const tapBin = path.join(root, 'node_modules', '.bin', 'tap');

/** `tap list ARGS` in the project root, outside this run's tap environment. */
async function listed(...args: string[]): Promise<string[]> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(TAP|_TAPJS|NODE_OPTIONS$)/.test(k)));
  try {
    const { stdout } = await promisify(execFile)(tapBin, ['list', ...args], { cwd: root, env, timeout: 120_000 });
    return stdout.split('\n').filter((l) => l !== '').sort();
  } catch (err) {
    // An empty list is exit code 1 with this sentence.
    if (/No files found/.test(String((err as { stderr?: string }).stderr))) return [];
    throw err;
  }
}

function tsFiles(dir: string): string[] {
  return readdirSync(path.join(root, dir), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => path.relative(root, path.join(e.parentPath, e.name)).split(path.sep).join('/'))
    .sort();
}

t.test('tap lists exactly the *.test.ts files, with or without a directory argument', async (t) => {
  const tests = tsFiles('test').filter((f) => f.endsWith('.test.ts') && !f.includes('/fixtures/'));
  t.ok(tests.includes('test/suite.test.ts'), 'this file is one of them');
  t.same(await listed(), tests, 'npx tap');
  t.same(await listed('test'), tests, 'npx tap test');
  t.same(await listed('test/audit'), tests.filter((f) => f.startsWith('test/audit/')), 'npx tap test/audit');
  t.same(await listed('test/helpers'), [], 'npx tap test/helpers: no test files there');
});
