/**
 * The shape of a CLI command (its options, help text and run function) and the wording shared by
 * every command: option lists, the usage text, the exit-2 usage error.
 */
import { redactUrl } from '../../domain/config.ts';
import { chainDefaults, type Default, type Env } from './defaults.ts';

export type Values = Record<string, string | boolean | undefined>;

export interface OptionSpec {
  name: string;
  /** Shown after the option name, e.g. `URL`; absent for flags. */
  value?: string;
  help: string;
  /** For --help: the default and its source, computed from the environment. */
  default?: (env: Env) => string;
}

export interface Command {
  name: string;
  summary: string;
  synopsis: string;
  description: string;
  options: OptionSpec[];
  /** How many positional arguments it takes (as values `_0`, `_1`, …); none when absent. */
  positionals?: number;
  run(values: Values, io: Io): Promise<number>;
}

export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
  env: Env;
}

/** Said in --help; an RPC URL's credentials (user:password@, API-key path segments) are masked as in the start-up log. */
const describeDefault = (d: Default) => (d.value ? `${redactUrl(d.value)} (from ${d.source})` : `none: ${d.source}`);

export const CHAIN_OPTIONS: OptionSpec[] = [
  { name: 'rpc', value: 'URL', help: 'JSON-RPC endpoint of the chain', default: (env) => describeDefault(chainDefaults(env).rpc) },
  { name: 'contract', value: '0x…', help: 'address of the CreditLedger', default: (env) => describeDefault(chainDefaults(env).contract) },
];

export const KEY_OPTIONS: OptionSpec[] = [
  {
    name: 'key-file',
    value: 'FILE',
    help: 'file holding the holder\'s private key (hex; `npm run cli -- keygen` writes one)',
    default: (env) => (env.HOLDER_KEY_FILE ? `${env.HOLDER_KEY_FILE} (from HOLDER_KEY_FILE)` : env.HOLDER_PRIVATE_KEY ? 'none: the key is taken from HOLDER_PRIVATE_KEY' : 'none: HOLDER_KEY_FILE and HOLDER_PRIVATE_KEY unset'),
  },
  { name: 'key', value: '0x…', help: 'the private key itself: other users of this machine see it in `ps`; prefer --key-file or HOLDER_PRIVATE_KEY' },
];

export const HELP_OPTION: OptionSpec = { name: 'help', help: 'show this help and exit (also -h)' };

/** A command's full help (`<command> --help`). */
export function usageOf(c: Command, env: Env): string {
  const width = Math.max(...c.options.map((o) => `--${o.name}${o.value ? ` ${o.value}` : ''}`.length), 10) + 2;
  const lines = c.options.map((o) => {
    const left = `  --${o.name}${o.value ? ` ${o.value}` : ''}`.padEnd(width + 2);
    const pad = ' '.repeat(width + 2);
    const d = o.default ? `\n${pad}default: ${o.default(env)}` : '';
    return `${left}${o.help}${d}`;
  });
  return `usage: npm run cli -- ${c.name} ${c.synopsis}\n\n${c.description}\n\noptions:\n${lines.join('\n')}`;
}

/** Exit 2: the problems, the command's synopsis and where the full help is. */
export function commandUsageError(io: Io, c: Command, problems: string[]): number {
  const usage = `usage: npm run cli -- ${c.name} ${c.synopsis}\n\n\`npm run cli -- ${c.name} --help\` lists every option and where its default comes from.`;
  io.err(`${problems.join('\n')}\n\n${usage}`);
  return 2;
}
