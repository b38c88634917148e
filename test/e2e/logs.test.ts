/**
 * The log lines of a whole stack (issue 15 item 8): chain, store, broker, ingest, oracle, gateway and
 * the simulated fleet all running, at debug level, captured as raw JSON text. No line repeats a key
 * (the raw text is checked: JSON.parse would keep the last `component` silently), every part says
 * when it stopped, in reverse start order, and a last line names them all.
 *
 * The logger is plain pino, without domain/logger.ts's guard that keeps the first `component` of a
 * nested child: so a component bound twice (the composition naming a part whose factory names itself
 * again, issue 11) shows here as a repeated key.
 */
import t from 'tap';
import { pino } from 'pino';
import { startStack } from '../../main.ts';
import { eventually } from '../helpers/eventually.ts';
import { jsonLogLines, linesWithDuplicateKeys } from '../helpers/json-lines.ts';
import { e2eConfig, tempDataDir } from './helpers.ts';

t.test('a running stack logs each key once per line and names what it stopped', async (t) => {
  const dataDir = tempDataDir(t);
  let text = '';
  const logger = pino({ level: 'debug', base: undefined }, { write: (s: string) => void (text += s) });
  const config = e2eConfig(dataDir, { simulatedDevices: 3, logLevel: 'debug' });
  const stack = await startStack(config, { logger });
  t.teardown(() => stack.close());
  t.ok(stack.fleet, 'the simulated fleet runs');
  const parsed = () => jsonLogLines(text).map((l) => JSON.parse(l) as { component?: string; msg?: string; settled?: number });

  // Until readings were acknowledged and the oracle settled something: every component has spoken.
  await eventually(
    'readings acknowledged and a window settled',
    () => stack.fleet!.stats().readingsAcked >= 6 && parsed().some((l) => l.component === 'oracle' && l.msg === 'oracle run' && (l.settled ?? 0) > 0),
    { timeoutMs: 180_000, everyMs: 200 },
  );
  const expected = ['fleet', 'oracle-schedule', 'gateway', 'oracle', 'broker', 'ingest', 'store', 'chain'];
  t.same(stack.parts, expected, 'the parts, in the order they stop');
  const summary = await stack.stop();
  t.same(summary, { stopped: expected, failed: [] });

  const lines = jsonLogLines(text);
  t.ok(lines.length > 20, `captured ${lines.length} lines`);
  t.same(linesWithDuplicateKeys(lines), [], 'no line carries a key twice');
  const records = parsed();
  const components = new Set(records.map((r) => r.component).filter(Boolean));
  for (const c of ['chain', 'anvil', 'store', 'ingest', 'broker', 'oracle', 'gateway', 'fleet']) t.ok(components.has(c), `${c} logged under its own name`);

  const stops = records.filter((r) => r.msg === 'stopped').map((r) => r.component);
  t.same(stops, expected, 'one "stopped" line per part, in stop order');
  t.equal(records[records.length - 1].msg, `stopped: ${expected.join(', ')}`, 'the last line names everything that stopped');
});
