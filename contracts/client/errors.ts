/**
 * Custom errors of the ledger, decoded from whatever ethers throws (estimateGas, call or a mined
 * revert, through any provider). The oracle uses this to recognise WindowAlreadySettled / WindowOutOfOrder.
 */
import { ethers } from 'ethers';
import { DomainError } from '../../domain/errors.ts';
import { loadArtifact } from './artifact.ts';

export interface DecodedLedgerError {
  /** Solidity error name, e.g. `WindowAlreadySettled`, `AccessControlUnauthorizedAccount`, `EnforcedPause`. */
  name: string;
  /** Arguments in declaration order (uint/int as bigint, bytes32/address as 0x strings). */
  args: unknown[];
}

/** A ledger call reverted with a known custom error. `revert` says which; the original is `cause`. */
export class LedgerRevertError extends DomainError {
  readonly revert: DecodedLedgerError;

  constructor(revert: DecodedLedgerError, cause: unknown) {
    super('LEDGER_REVERTED', `ledger reverted: ${revert.name}(${revert.args.map(formatArg).join(', ')})`, 409, revert);
    this.name = 'LedgerRevertError';
    this.revert = revert;
    this.cause = cause;
  }
}

function formatArg(a: unknown): string {
  return typeof a === 'bigint' ? a.toString() : String(a);
}

let iface: ethers.Interface | undefined;
function ledgerInterface(): ethers.Interface {
  iface ??= new ethers.Interface(loadArtifact().abi as ethers.InterfaceAbi);
  return iface;
}

const HEX = /^0x[0-9a-fA-F]*$/;

/** Every 0x… string at a `data` key anywhere in the error (ethers nests the RPC error at various depths). */
function revertDataCandidates(e: unknown): string[] {
  const out: string[] = [];
  const seen = new Set<unknown>();
  const visit = (v: unknown, depth: number): void => {
    if (v === null || typeof v !== 'object' || seen.has(v) || depth > 6) return;
    seen.add(v);
    const rec = v as Record<string, unknown>;
    const data = rec.data;
    if (typeof data === 'string' && HEX.test(data) && data.length >= 10) out.push(data);
    for (const key of ['error', 'info', 'cause', 'data', 'payload']) visit(rec[key], depth + 1);
  };
  visit(e, 0);
  // Some providers only put the data in the message text.
  const message = (e as { message?: unknown } | null)?.message;
  if (typeof message === 'string') {
    for (const m of message.matchAll(/0x[0-9a-fA-F]{8,}/g)) out.push(m[0]);
  }
  return out;
}

/**
 * The ledger custom error (or OpenZeppelin error the ledger raises, or a Solidity `Panic(code)` /
 * `Error(message)`) carried by `e`, or undefined when `e` is not a decodable revert (network
 * failure, timeout, out of gas, ...).
 */
export function decodeLedgerError(e: unknown): DecodedLedgerError | undefined {
  if (e instanceof LedgerRevertError) return e.revert;
  const i = ledgerInterface();
  for (const data of revertDataCandidates(e)) {
    try {
      const parsed = i.parseError(data);
      if (parsed) return { name: parsed.name, args: [...parsed.args] };
    } catch {
      // not ours; try the next candidate
    }
  }
  return undefined;
}

/** Rethrows `e` as a LedgerRevertError when it carries a ledger custom error, else as it is. */
export function toLedgerError(e: unknown): unknown {
  const decoded = decodeLedgerError(e);
  return decoded ? new LedgerRevertError(decoded, e) : e;
}
