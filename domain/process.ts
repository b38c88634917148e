/** Entry-point plumbing shared by `main.ts` and each component's own `main.ts`. */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Logger } from './logger.ts';

/** Whether the module at `importMetaUrl` is the script node was started with. */
export function isEntryPoint(importMetaUrl: string): boolean {
  return Boolean(process.argv[1]) && importMetaUrl === pathToFileURL(path.resolve(process.argv[1])).href;
}

/** What a shutdown stopped, in order, and what failed to stop. */
export interface StopSummary {
  stopped: string[];
  failed: string[];
  /** The first failure's error. */
  error?: unknown;
}

/** For `close()` methods that reject when a part failed to stop (as a plain chain of awaits would). */
export function throwIfFailed(summary: StopSummary): void {
  if (summary.failed.length > 0) throw summary.error instanceof Error ? summary.error : new Error(`failed to stop: ${summary.failed.join(', ')}`);
}

/**
 * The started parts of a process, stopped in the reverse order they were added (the composition
 * starts chain → store → broker → gateway → oracle → fleet and stops fleet first, chain last).
 * A failing part does not keep the others running. `stop(logger)` logs one line per part as it
 * stops (`component: "fleet", msg: "stopped"`) and a last one naming them all
 * (`stopped: fleet, oracle-schedule, gateway, …`).
 */
export class Parts {
  readonly #parts: { name: string; close: () => unknown }[] = [];
  #stopping?: Promise<StopSummary>;

  /** Registers a started part. */
  add(name: string, close: () => unknown): void {
    this.#parts.unshift({ name, close });
  }

  /** The parts' names in the order they stop. */
  get names(): string[] {
    return this.#parts.map((p) => p.name);
  }

  /** Stops every part once (later calls share the first); never rejects. */
  stop(logger?: Logger): Promise<StopSummary> {
    this.#stopping ??= (async () => {
      const summary: StopSummary = { stopped: [], failed: [] };
      for (const p of [...this.#parts]) {
        const log = logger?.child({ component: p.name });
        try {
          await p.close();
          summary.stopped.push(p.name);
          log?.info('stopped');
        } catch (err) {
          summary.failed.push(p.name);
          if (summary.failed.length === 1) summary.error = err;
          log?.error({ err }, 'error while stopping');
        }
      }
      if (summary.stopped.length + summary.failed.length === 0) return summary;
      logger?.info(
        summary.failed.length ? { failed: summary.failed } : {},
        `stopped: ${summary.stopped.join(', ') || 'nothing'}${summary.failed.length ? `; failed to stop: ${summary.failed.join(', ')}` : ''}`,
      );
      return summary;
    })();
    return this.#stopping;
  }
}

/**
 * On the first SIGINT or SIGTERM: logs `stopping <what>`, calls `onSignal` (e.g. a line for the person
 * at the terminal), then `stop()`, then exits 0 (1 if a part failed to stop or stopping threw).
 * Later signals are ignored while stopping.
 */
export function closeOnSignal(logger: Logger, what: string, stop: () => Promise<StopSummary | void>, onSignal?: (signal: string) => void): void {
  let stopping = false;
  const onceSignal = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, `stopping ${what}`);
    onSignal?.(signal);
    stop().then(
      (summary) => process.exit(summary && summary.failed.length > 0 ? 1 : 0),
      (err: unknown) => {
        logger.error({ err }, `error while stopping ${what}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => onceSignal('SIGINT'));
  process.on('SIGTERM', () => onceSignal('SIGTERM'));
}

/** Runs an entry point's `main`, printing a one-line reason and exiting 1 if it fails to start. */
export function runMain(what: string, main: () => Promise<void>): void {
  main().catch((err: unknown) => {
    process.stderr.write(`${what} failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
