/** `npm run cli -- certificate <id>`: a retirement certificate, rebuilt from the chain. */
import { describeChainError } from '../../contracts/client/errors.ts';
import { probeProvider } from '../../contracts/client/holder.ts';
import { Ledger } from '../../contracts/client/ledger.ts';
import { redactUrl } from '../../domain/config.ts';
import { buildCertificate } from '../certificate.ts';
import { checkChain } from './chain.ts';
import { CHAIN_OPTIONS, commandUsageError, HELP_OPTION, type Command } from './command.ts';
import { resolveChain } from './defaults.ts';

export const certificate: Command = {
  name: 'certificate',
  summary: 'print a retirement certificate (serial ranges, beneficiary, the settlements behind it)',
  synopsis: '<id> [--rpc URL] [--contract 0x…]',
  description: [
    'Prints the certificate of retirement <id> as one JSON line, read from the chain alone: account, beneficiary, reason,',
    'time, per batch the amount and serial range, and the settlements that minted those serials (evidence roots, transactions).',
    'Exit 0 found, 1 not found or failed, 2 usage.',
  ].join('\n'),
  options: [...CHAIN_OPTIONS, HELP_OPTION],
  positionals: 1,
  async run(values, io) {
    const chain = resolveChain(values, io.env);
    const problems = [...chain.problems];
    const id = values._0;
    if (typeof id !== 'string' || !/^[1-9][0-9]{0,30}$/.test(id)) problems.push('a certificate number is required (a positive integer)');
    if (problems.length) return commandUsageError(io, certificate, problems);
    let provider: Awaited<ReturnType<typeof probeProvider>> | undefined;
    try {
      provider = await probeProvider(chain.rpc!);
      const wrong = await checkChain(provider, chain);
      if (wrong) {
        io.err(`certificate failed: ${wrong}`);
        return 1;
      }
      const ledger = Ledger.readOnlyAt(chain.contract!, provider);
      const cert = await buildCertificate(ledger, BigInt(id as string));
      if (!cert) {
        io.err(`certificate failed: no retirement #${id} on the ledger at ${chain.contract}`);
        return 1;
      }
      io.out(JSON.stringify(cert));
      return 0;
    } catch (e) {
      io.err(`certificate failed: ${describeChainError(e, { rpc: redactUrl(chain.rpc!) })}`);
      return 1;
    } finally {
      provider?.destroy();
    }
  },
};
