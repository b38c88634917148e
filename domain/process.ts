/** Entry-point plumbing shared by `main.ts` and each component's own `main.ts`. */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Logger } from './logger.ts';

/** Whether the module at `importMetaUrl` is the script node was started with. */
export function isEntryPoint(importMetaUrl: string): boolean {
  return Boolean(process.argv[1]) && importMetaUrl === pathToFileURL(path.resolve(process.argv[1])).href;
}

/**
 * On the first SIGINT or SIGTERM: `onSignal` (e.g. a line for the person at the terminal), then
 * `close()`, then exit 0 (1 if closing failed). Later signals are ignored while closing.
 */
export function closeOnSignal(logger: Logger, what: string, close: () => Promise<unknown>, onSignal?: (signal: string) => void): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, `stopping ${what}`);
    onSignal?.(signal);
    close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, `error while stopping ${what}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

/** Runs an entry point's `main`, printing a one-line reason and exiting 1 if it fails to start. */
export function runMain(what: string, main: () => Promise<void>): void {
  main().catch((err: unknown) => {
    process.stderr.write(`${what} failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
