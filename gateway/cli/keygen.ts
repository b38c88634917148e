/** `npm run cli -- keygen`: a new private key in an owner-only file, and what to do with its address. */
import path from 'node:path';
import { createKeyFile, KeyFileError } from '../../contracts/client/keyfile.ts';
import { HELP_OPTION, type Command } from './command.ts';
import { cliSettings } from './defaults.ts';

export const keygen: Command = {
  name: 'keygen',
  summary: 'write a new private key to an owner-only file and print the address to register',
  synopsis: '[--out FILE] [--json]',
  description: [
    'Makes a new private key, writes it to FILE readable by you only (0600), never overwriting an existing',
    'file, and prints its address: register the facility with that address as its owner; its credits are',
    'minted to it and only this key can retire them. Keep the file secret and backed up: it cannot be recovered.',
  ].join('\n'),
  options: [
    { name: 'out', value: 'FILE', help: 'where to write the key (refused if it exists)', default: () => './facility.key' },
    { name: 'json', help: 'print one JSON line { address, keyFile } instead of the instructions' },
    HELP_OPTION,
  ],
  async run(values, io) {
    const file = path.resolve(typeof values.out === 'string' ? values.out : './facility.key');
    let made: { address: string };
    try {
      made = createKeyFile(file);
    } catch (e) {
      io.err(
        e instanceof KeyFileError && e.reason === 'exists'
          ? `keygen refused: ${file} already exists; it may hold the only copy of a key. Choose another --out FILE`
          : `keygen failed: ${(e as Error).message}`,
      );
      return 1;
    }
    if (values.json) {
      io.out(JSON.stringify({ address: made.address, keyFile: file }));
      return 0;
    }
    io.out(keygenInstructions(made.address, file, `http://127.0.0.1:${cliSettings(io.env).httpPort}`));
    return 0;
  },
};

/** What to do next with a new key: register its address, then see and retire the facility's credits. */
function keygenInstructions(address: string, file: string, api: string): string {
  const rel = path.relative(process.cwd(), file) || file;
  return [
    `Wrote a new private key to ${file} (owner-only, 0600).`,
    'Keep it secret and backed up: whoever holds it can retire the facility\'s credits, and it cannot be recovered.',
    '',
    `Facility owner address: ${address}`,
    '',
    'Register the facility with this owner (admin API key):',
    `  curl -s -H "Authorization: Bearer $KEY" -H 'content-type: application/json' ${api}/v1/facilities \\`,
    `    -d '{"id":"plant-7","name":"Plant 7","owner":"${address}","baselineKgPerHour":"3600"}'`,
    'Once windows are settled, see and retire its credits:',
    `  npm run cli -- balance --key-file ${rel}`,
    `  API_KEY=… npm run cli -- retire --key-file ${rel} --relay ${api} --amount-grams 1000 --beneficiary "…"`,
    '(--relay: the gateway pays the gas; without it this address needs ether of its own.)',
  ].join('\n');
}
