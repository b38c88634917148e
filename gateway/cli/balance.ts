/** `npm run cli -- balance`: the credits an address (or a key's address) holds. */
import { addressOfKey, checksumAddress, isAddress } from '../../contracts/client/crypto.ts';
import { describeChainError } from '../../contracts/client/errors.ts';
import { probeProvider } from '../../contracts/client/holder.ts';
import { Ledger } from '../../contracts/client/ledger.ts';
import { vintagePrefix } from '../../contracts/client/port.ts';
import { redactUrl } from '../../domain/config.ts';
import { gramsToTonnes } from '../../domain/decimal.ts';
import { checkChain } from './chain.ts';
import { CHAIN_OPTIONS, commandUsageError, HELP_OPTION, KEY_OPTIONS, type Command } from './command.ts';
import { resolveChain, resolveKey } from './defaults.ts';

export const balance: Command = {
  name: 'balance',
  summary: 'show the credits an address holds',
  synopsis: '[--address 0x… | --key-file FILE] [--rpc URL] [--contract 0x…]',
  description:
    'Prints one JSON line: the address, its balance in grams and tonnes CO2e, and per batch (token id, facility, vintage) what it holds. The address is --address, else the key\'s (as for retire).',
  options: [
    { name: 'address', value: '0x…', help: 'the holder\'s address', default: () => 'the address of the key (--key-file, HOLDER_KEY_FILE, HOLDER_PRIVATE_KEY)' },
    ...KEY_OPTIONS,
    ...CHAIN_OPTIONS,
    HELP_OPTION,
  ],
  async run(values, io) {
    const chain = resolveChain(values, io.env);
    const problems = [...chain.problems];
    let address: string | undefined;
    if (typeof values.address === 'string') {
      if (isAddress(values.address)) address = checksumAddress(values.address);
      else problems.push('--address must be an address');
    } else {
      const { key, problem } = resolveKey(values, io);
      if (problem) problems.push(problem);
      else if (!key) problems.push('--address or a key (--key-file FILE, HOLDER_KEY_FILE, HOLDER_PRIVATE_KEY) is required');
      else address = addressOfKey(key);
    }
    if (problems.length) return commandUsageError(io, balance, problems);
    let provider: Awaited<ReturnType<typeof probeProvider>> | undefined;
    try {
      provider = await probeProvider(chain.rpc!);
      const wrong = await checkChain(provider, chain);
      if (wrong) {
        io.err(`balance failed: ${wrong}`);
        return 1;
      }
      const holdings = await Ledger.readOnlyAt(chain.contract!, provider).holdings(address!);
      const grams = holdings.reduce((a, h) => a + h.balanceGrams, 0n);
      const batches = holdings.map((h) => ({ batchId: h.batch.id, facilityId: h.batch.facilityId, vintage: vintagePrefix(h.batch.vintage), balanceGrams: h.balanceGrams.toString() }));
      io.out(JSON.stringify({ address, balanceGrams: grams.toString(), balanceTonnes: gramsToTonnes(grams), batches }));
      return 0;
    } catch (e) {
      io.err(`balance failed: ${describeChainError(e, { rpc: redactUrl(chain.rpc!) })}`);
      return 1;
    } finally {
      provider?.destroy();
    }
  },
};
