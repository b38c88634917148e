/**
 * `npm run audit -- <bundle.json> --rpc URL --ledger 0x… [--start-block N] [--json]`: recomputes a
 * settlement from its audit bundle alone, checks every signature and hash chain, compares with the
 * chain, prints a report. Exit 0: everything matches; 1: a mismatch (or the chain was not checked,
 * with --offline); 2: usage, an unreadable bundle or an unreachable chain. Reads no database and calls
 * no gateway.
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { auditBundle, formatReport } from './audit.ts';
import { parseBundle } from './bundle.ts';
import { carbonLedgerView } from './chain.ts';

const USAGE = 'usage: npm run audit -- <bundle.json> --rpc URL --ledger 0x… [--start-block N] [--json]   (or --offline: no chain, exits 1)';

async function main(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { rpc: { type: 'string' }, ledger: { type: 'string' }, 'start-block': { type: 'string' }, offline: { type: 'boolean' }, json: { type: 'boolean' }, help: { type: 'boolean' } },
    });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const { values, positionals } = args;
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (positionals.length !== 1 || (!values.offline && (!values.rpc || !values.ledger))) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  let bundle;
  try {
    bundle = parseBundle(readFileSync(positionals[0], 'utf8'));
  } catch (err) {
    process.stderr.write(`${positionals[0]}: ${(err as Error).message}\n`);
    return 2;
  }
  const startBlock = values['start-block'] === undefined ? 0 : Number(values['start-block']);
  if (!Number.isSafeInteger(startBlock) || startBlock < 0) {
    process.stderr.write(`--start-block must be a block number\n${USAGE}\n`);
    return 2;
  }
  let view;
  try {
    view = values.offline ? undefined : carbonLedgerView({ rpcUrl: values.rpc as string, ledger: values.ledger as string, startBlock });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 2;
  }
  try {
    const started = performance.now();
    const report = await auditBundle(bundle, view);
    const ms = performance.now() - started;
    const readings = bundle.devices.reduce((n, d) => n + d.readings.length + d.context.length, 0);
    process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatReport(report)}\naudited ${readings} readings in ${ms.toFixed(0)} ms (chain reads included)\n`);
    return report.ok ? 0 : 1;
  } catch (err) {
    process.stderr.write(`chain read failed: ${(err as Error).message}\n`);
    return 2;
  } finally {
    view?.close();
  }
}

process.exitCode = await main(process.argv.slice(2));
