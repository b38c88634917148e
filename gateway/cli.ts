/**
 * `npm run cli -- <command>`: what a credit holder (a factory) does from its own machine with its own
 * key. `npm run cli -- --help` lists the commands, `npm run cli -- <command> --help` their options.
 *
 *   keygen   writes a new private key to an owner-only (0600) file and prints the address to
 *            register as the facility's owner;
 *   balance  the credits an address (or a key's address) holds, per batch;
 *   certificate  prints a retirement certificate rebuilt from the chain;
 *   retire   retires credits: without --relay the holder's wallet sends `retire` itself (it pays
 *            gas); with --relay the CLI reads the holder's nonce, signs the ledger's EIP-712 `Retire`
 *            request locally and posts it to the gateway's `POST /v1/retirements` (the gateway pays
 *            gas); the key never leaves this machine. Prints one JSON line.
 *
 * Chain defaults come from the local stack, so on the machine running `npm start` no chain flag is
 * needed: --rpc is CHAIN_RPC_URL or the local anvil (ANVIL_PORT), --contract is CONTRACT_ADDRESS or
 * the address `npm start` remembers in DATA_DIR/chain/deployment.json. Keys are read from a file or
 * the environment; a key given on the command line works but is warned about (`ps` shows it).
 * DATA_DIR, HTTP_PORT, ANVIL_PORT, CHAIN_RPC_URL and CONTRACT_ADDRESS are read through the settings
 * table of `npm start` (domain/config.ts): the same defaults, and a bad value fails (exit 1) with the
 * same message before the command runs.
 * Every chain failure is said through describeChainError (contracts/client/errors.ts).
 * Exit codes: 0 done, 1 failed (the reason on stderr), 2 usage error.
 *
 * This file parses the arguments and routes them; gateway/cli/ holds one file per command
 * (keygen.ts, balance.ts, retire.ts), the holder's chain actions through the contracts client
 * (chain.ts), the defaults from the local stack (defaults.ts) and the command shape and help (command.ts).
 */
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { RETIRE_TYPES } from '../contracts/client/port.ts';
import { balance } from './cli/balance.ts';
import { commandUsageError, usageOf, type Command, type Io } from './cli/command.ts';
import { cliSettings, type Env } from './cli/defaults.ts';
import { errors, isError } from '../domain/errors.ts';
import { keygen } from './cli/keygen.ts';
import { retire } from './cli/retire.ts';
import { certificate } from './cli/certificate.ts';

export { relayRetirement, retireDirect, signRetirement, type RetireRequest, type SignedRetirementJson } from './cli/chain.ts';
export { chainDefaults, dataDirOf, deploymentFileOf, type ChainDefaults } from './cli/defaults.ts';

/** The ledger's typed data, defined once with the contracts client. */
export { RETIRE_TYPES };

const COMMANDS: Command[] = [keygen, balance, retire, certificate];

function topUsage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length)) + 2;
  return [
    'usage: npm run cli -- <command> [options]',
    '',
    'What a credit holder (a facility owner) does with its own key; the key never leaves this machine.',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    '',
    '`npm run cli -- <command> --help` lists a command\'s options and where their defaults come from.',
    'On the machine running `npm start` the chain options default to its local chain (DATA_DIR, ANVIL_PORT).',
  ].join('\n');
}

/** Exit 2: the problems, the command's synopsis (or the command list) and where the full help is. */
function usageError(io: Io, c: Command | undefined, problems: string[]): number {
  if (c) return commandUsageError(io, c, problems);
  io.err(`${problems.join('\n')}\n\n${topUsage()}`);
  return 2;
}

/** parseArgs' messages are long and name no command: say it in one line. */
function argumentProblem(e: unknown, c: Command): string {
  const err = e as { code?: string; message?: string };
  const quoted = /'([^']+)'/.exec(err.message ?? '')?.[1];
  if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return `unknown option '${quoted}' for ${c.name}`;
  if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') return `option ${quoted?.split(' ')[0] ?? ''} of ${c.name} needs a value`.replace(/ +/g, ' ');
  if (err.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') return `unexpected argument '${quoted}' for ${c.name} (quote values with spaces)`;
  return err.message ?? String(e);
}

/**
 * The settings shared with `npm start`, checked before anything (its help shows defaults taken from
 * them) as `npm start` checks them: exit 1 with its message, or undefined when they are good.
 */
function settingsProblem(c: Command, io: Io): number | undefined {
  try {
    cliSettings(io.env);
    return undefined;
  } catch (e) {
    if (!isError(e, errors.CONFIG_INVALID)) throw e;
    io.err(`${c.name} failed: ${(e as Error).message}`);
    return 1;
  }
}

/** Runs the CLI; returns the process exit code. Output goes to the given writers; `env` defaults to process.env. */
export async function runCli(argv: string[], out: (s: string) => void, err: (s: string) => void, env: Env = process.env): Promise<number> {
  const io: Io = { out, err, env };
  const [name, ...rest] = argv;
  if (name === '--help' || name === '-h' || name === 'help') {
    const sub = name === 'help' && rest[0] !== undefined ? COMMANDS.find((c) => c.name === rest[0]) : undefined;
    if (name === 'help' && rest[0] !== undefined && !sub) return usageError(io, undefined, [`unknown command '${rest[0]}'`]);
    if (sub) {
      const bad = settingsProblem(sub, io);
      if (bad !== undefined) return bad;
    }
    out(sub ? usageOf(sub, env) : topUsage());
    return 0;
  }
  if (name === undefined) {
    err(`a command is required\n\n${topUsage()}`);
    return 2;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) return usageError(io, undefined, [name.startsWith('-') ? `unknown option '${name}' (options follow a command)` : `unknown command '${name}'`]);
  const bad = settingsProblem(command, io);
  if (bad !== undefined) return bad;
  let values: Record<string, string | boolean | undefined>;
  try {
    const parsed = parseArgs({
      args: rest,
      options: Object.fromEntries(command.options.map((o) => [o.name, { type: o.value ? 'string' : 'boolean', ...(o.name === 'help' ? { short: 'h' } : {}) }])) as Record<string, { type: 'string' | 'boolean'; short?: string }>,
      strict: true,
      allowPositionals: command.positionals !== undefined,
    });
    values = parsed.values as Record<string, string | boolean | undefined>;
    if (parsed.positionals.length > (command.positionals ?? 0)) throw Object.assign(new Error(`Unexpected argument '${parsed.positionals.at(-1)}'`), { code: 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL' });
    parsed.positionals.forEach((p, i) => (values[`_${i}`] = p));
  } catch (e) {
    // --help anywhere wins over other mistakes.
    if (rest.includes('--help') || rest.includes('-h')) {
      out(usageOf(command, env));
      return 0;
    }
    return usageError(io, command, [argumentProblem(e, command)]);
  }
  if (values.help) {
    out(usageOf(command, env));
    return 0;
  }
  return command.run(values, io);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await runCli(
    process.argv.slice(2),
    (s) => process.stdout.write(s + '\n'),
    (s) => process.stderr.write(s + '\n'),
  );
}
