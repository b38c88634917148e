/**
 * When the oracle runs: node-cron (seconds field allowed) calls the settler's runOnce, never two at
 * once, and once at start. Scheduling only decides when; what a run does is settle.ts.
 */
import cron from 'node-cron';
import { errors } from '../domain/errors.ts';
import type { Logger } from '../domain/logger.ts';

/** Throws CONFIG_INVALID unless `expression` is a cron expression node-cron accepts (check it before starting anything). */
export function validateCron(expression: string): void {
  if (!cron.validate(expression)) throw errors.CONFIG_INVALID(`ORACLE_CRON is not a valid cron expression: ${expression}`);
}

export interface ScheduleOptions {
  cronExpression: string;
  /** One run; a failure is logged, the schedule goes on. */
  run(): Promise<unknown>;
  /** Whether a run is still in progress (the tick is then skipped). */
  busy(): boolean;
  logger: Logger;
  /** For the log line only. */
  windowMs: number;
  graceMs: number;
}

/** Schedules `run` and runs it once at once; `stop()` ends the schedule (a run in progress finishes). */
export function schedule(opts: ScheduleOptions): { stop(): void } {
  const { cronExpression, logger } = opts;
  validateCron(cronExpression);
  const tick = () => {
    if (opts.busy()) {
      logger.debug('oracle run still in progress; tick skipped');
      return;
    }
    opts.run().catch((e: unknown) => logger.error({ err: e }, 'oracle run failed'));
  };
  const task = cron.schedule(cronExpression, tick, { name: 'oracle', noOverlap: true });
  logger.info({ cron: cronExpression, windowSeconds: opts.windowMs / 1000, graceSeconds: opts.graceMs / 1000 }, 'oracle scheduled');
  tick();
  return {
    stop: () => void task.destroy(),
  };
}
