/** `npm run cli -- retire`: retire credits from the holder's key, directly or through the gateway's relay. */
import fs from 'node:fs';
import { describeChainError } from '../../contracts/client/errors.ts';
import { holderWallet, probeProvider } from '../../contracts/client/holder.ts';
import { redactUrl } from '../../domain/config.ts';
import { errors, isError } from '../../domain/errors.ts';
import { checkChain, relayRetirement, retireDirect, signRetirement } from './chain.ts';
import { CHAIN_OPTIONS, commandUsageError, HELP_OPTION, KEY_OPTIONS, type Command } from './command.ts';
import { resolveChain, resolveKey } from './defaults.ts';

export const retire: Command = {
  name: 'retire',
  summary: 'retire credits from the holder\'s key, directly or through the gateway\'s relay',
  synopsis: '--batch-ids ID[,ID…] --amounts N[,N…] --beneficiary TEXT [--reason TEXT] [--key-file FILE] [--rpc URL] [--contract 0x…]\n                         [--relay URL (--api-key-file FILE | API_KEY)] [--valid-seconds S]',
  description: [
    'Retires credits (1 credit = 1 g CO2e) of one or several batches held by the key\'s address, for a beneficiary;',
    'prints one JSON line with the certificate number (`npm run cli -- balance` lists the batches the address holds).',
    'Without --relay the holder\'s own transaction retires (its address needs ether for gas). With --relay the',
    'request is signed here (EIP-712) and the gateway submits it and pays the gas: the key never leaves this machine.',
    'The key comes from --key-file, else HOLDER_KEY_FILE, else HOLDER_PRIVATE_KEY. Exit 0 done, 1 refused or failed, 2 usage.',
  ].join('\n'),
  options: [
    { name: 'batch-ids', value: 'ID[,ID…]', help: 'token ids of the batches to retire from (GET /v1/batches, or `balance`); required' },
    { name: 'amounts', value: 'N[,N…]', help: 'grams to retire from each batch, in the same order (positive integers); required' },
    { name: 'beneficiary', value: 'TEXT', help: 'on whose behalf the credits are retired; required' },
    { name: 'reason', value: 'TEXT', help: 'why (e.g. "scope 2 2026")', default: () => 'empty' },
    ...KEY_OPTIONS,
    ...CHAIN_OPTIONS,
    { name: 'relay', value: 'URL', help: 'gateway to relay through, e.g. http://127.0.0.1:3000 (it pays the gas)', default: () => 'none: retire with the holder\'s own transaction' },
    {
      name: 'api-key-file',
      value: 'FILE',
      help: 'file holding the API key for --relay (the facility\'s key, or an admin key)',
      default: (env) => (env.API_KEY_FILE ? `${env.API_KEY_FILE} (from API_KEY_FILE)` : env.API_KEY ? 'none: the key is taken from API_KEY' : 'none: API_KEY_FILE and API_KEY unset'),
    },
    { name: 'api-key', value: 'KEY', help: 'the API key itself: visible in `ps`; prefer --api-key-file or API_KEY' },
    { name: 'valid-seconds', value: 'S', help: 'how long a relayed signature stays valid', default: () => '3600' },
    HELP_OPTION,
  ],
  async run(values, io) {
    const { key, problem: keyProblem } = resolveKey(values, io);
    const chain = resolveChain(values, io.env);
    const problems = [...chain.problems];
    if (keyProblem) problems.push(keyProblem);
    else if (!key) problems.push('a key is required: --key-file FILE (npm run cli -- keygen writes one), HOLDER_KEY_FILE or HOLDER_PRIVATE_KEY');
    const ids = typeof values['batch-ids'] === 'string' ? values['batch-ids'].split(',').map((x) => x.trim()) : [];
    const amounts = typeof values.amounts === 'string' ? values.amounts.split(',').map((x) => x.trim()) : [];
    if (ids.length === 0 || !ids.every((x) => /^[1-9][0-9]{0,77}$/.test(x))) problems.push('--batch-ids must list token ids (positive integers, comma-separated)');
    if (amounts.length === 0 || !amounts.every((x) => /^[1-9][0-9]{0,19}$/.test(x))) problems.push('--amounts must list positive integer grams, comma-separated');
    else if (ids.length !== amounts.length) problems.push(`--amounts needs one amount per batch id (${ids.length} ids, ${amounts.length} amounts)`);
    else if (ids.length > 32) problems.push('a retirement takes at most 32 batches');
    if (typeof values.beneficiary !== 'string' || !values.beneficiary) problems.push('--beneficiary is required');
    const validSeconds = String(values['valid-seconds'] ?? '3600');
    if (!/^[1-9][0-9]{0,8}$/.test(validSeconds)) problems.push('--valid-seconds must be a positive integer');
    let apiKey: string | undefined;
    if (typeof values.relay === 'string') {
      if (typeof values['api-key'] === 'string') {
        io.err('warning: --api-key puts the API key on the command line, where other users see it (`ps`, shell history); prefer --api-key-file FILE or API_KEY');
        apiKey = values['api-key'];
      } else {
        const file = typeof values['api-key-file'] === 'string' ? values['api-key-file'] : io.env.API_KEY_FILE;
        if (file) {
          try {
            apiKey = fs.readFileSync(file, 'utf8').trim();
          } catch {
            problems.push(`API key file ${file} cannot be read`);
          }
        } else apiKey = io.env.API_KEY;
        if (!apiKey && !problems.some((p) => p.startsWith('API key file'))) problems.push('--relay needs --api-key (or --api-key-file FILE, or API_KEY)');
      }
      try {
        new URL(values.relay);
      } catch {
        problems.push(`--relay must be a URL (got ${values.relay})`);
      }
    }
    if (problems.length) return commandUsageError(io, retire, problems);

    const signer = holderWallet(key!);
    const req = { batchIds: ids.map((x) => BigInt(x)), amounts: amounts.map((x) => BigInt(x)), beneficiary: values.beneficiary as string, reason: typeof values.reason === 'string' ? values.reason : '' };
    const ctx = { you: signer.address, action: 'retire', rpc: redactUrl(chain.rpc!) };
    let provider: Awaited<ReturnType<typeof probeProvider>> | undefined;
    try {
      provider = await probeProvider(chain.rpc!);
      const wallet = signer.connect(provider);
      const wrong = await checkChain(provider, chain);
      if (wrong) {
        io.err(`retire failed: ${wrong}`);
        return 1;
      }
      const result =
        typeof values.relay === 'string'
          ? await relayRetirement(values.relay, apiKey!, await signRetirement(wallet, chain.contract!, req, Number(validSeconds)))
          : await retireDirect(wallet, chain.contract!, req);
      io.out(JSON.stringify({ ok: true, holder: wallet.address, batchIds: ids, amounts, amountGrams: req.amounts.reduce((a, b) => a + b, 0n).toString(), via: typeof values.relay === 'string' ? 'relay' : 'direct', ...result }));
      return 0;
    } catch (e) {
      // The gateway's own answers (and its absence) are said as they are; the chain's through the decoder.
      const relayFailure = (e as { status?: number }).status !== undefined || isError(e, errors.RELAY_UNREACHABLE);
      io.err(`retire failed: ${relayFailure ? (e as Error).message : describeChainError(e, ctx)}`);
      return 1;
    } finally {
      provider?.destroy();
    }
  },
};
