/** Loads compiled contracts (ABI + bytecode) from hardhat's artifacts/ folder. */
import fs from 'node:fs';
import path from 'node:path';
import { errors } from '../../domain/errors.ts';

export interface Artifact {
  contractName: string;
  abi: readonly unknown[];
  bytecode: string;
}

/** Repository root: contracts/client/ is two levels below it. */
const ROOT = path.resolve(import.meta.dirname, '..', '..');

const cache = new Map<string, Artifact>();

/**
 * The artifact of a contract compiled by `npm run compile`; `name` defaults to the ledger. `source` is
 * the path under contracts/ (defaults to `<name>.sol`). Throws a DomainError telling to compile when absent.
 */
export function loadArtifact(name = 'CreditLedger', source = `${name}.sol`): Artifact {
  const hit = cache.get(`${source}:${name}`);
  if (hit) return hit;
  const file = path.join(ROOT, 'artifacts', 'contracts', source, `${name}.json`);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    throw errors.CONTRACTS_NOT_COMPILED(path.relative(ROOT, file));
  }
  const json = JSON.parse(text) as Artifact;
  const artifact: Artifact = { contractName: json.contractName, abi: json.abi, bytecode: json.bytecode };
  cache.set(`${source}:${name}`, artifact);
  return artifact;
}
