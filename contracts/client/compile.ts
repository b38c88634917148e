/**
 * `prestart`: compiles the contracts before `npm start` (and the standalone gateway and oracle), so a
 * fresh clone starts right after `npm install`. Hardhat compiles incrementally (nothing to do takes
 * about two seconds) and offline (hardhat.config.cjs). Without dev dependencies (`npm ci --omit=dev`,
 * no Hardhat) it only checks that compiled artifacts are there, and says what to do when they are not.
 */
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { loadArtifact } from './artifact.ts';

const require = createRequire(import.meta.url);
const ROOT = path.resolve(import.meta.dirname, '..', '..');

function hardhatCli(): string | undefined {
  try {
    return require.resolve('hardhat/internal/cli/bootstrap.js');
  } catch {
    return undefined;
  }
}

const cli = hardhatCli();
if (!cli) {
  try {
    loadArtifact();
  } catch (e) {
    process.stderr.write(`${(e as Error).message} (Hardhat is a dev dependency: install with dev dependencies, or copy artifacts/ in)\n`);
    process.exit(1);
  }
} else {
  const r = spawnSync(process.execPath, [cli, 'compile', '--quiet'], { cwd: ROOT, stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
