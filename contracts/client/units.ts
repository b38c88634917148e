/**
 * Conversions between this side of the ledger port (epoch ms, decimal kg/h, facility ids, role
 * names) and the contract's encoding (UNIX seconds, mg/h, bytes32 keys, role hashes).
 */
import { ethers } from 'ethers';
import { Decimal } from '../../domain/decimal.ts';
import { errors } from '../../domain/errors.ts';
import type { LedgerRole } from './port.ts';

/** The contract's role hashes (AccessControl), by the port's role names. */
export const LEDGER_ROLES: Record<LedgerRole, string> = {
  admin: ethers.ZeroHash,
  regulator: ethers.id('REGULATOR_ROLE'),
  oracle: ethers.id('ORACLE_ROLE'),
};

/** The on-chain key of a facility id: keccak256 of its UTF-8 bytes. */
export function facilityKey(facilityId: string): string {
  return ethers.id(facilityId);
}

/** epoch ms (a whole second) -> UNIX seconds. */
export function toSeconds(ms: number, what = 'time'): bigint {
  if (!Number.isSafeInteger(ms) || ms < 0 || ms % 1000 !== 0) throw errors.VALIDATION(`${what} must be a non-negative whole second in ms: ${ms}`);
  return BigInt(ms / 1000);
}

/** Decimal kg/h text -> integer mg/h (at most 6 decimals, non-negative). */
export function kgPerHourToMg(kgPerHour: string): bigint {
  const mg = Decimal.parse(kgPerHour).shift(6);
  if (mg.scale !== 0 || mg.isNegative()) throw errors.VALIDATION(`baseline must be a non-negative kg/h with at most 6 decimals: ${kgPerHour}`);
  return mg.mantissa;
}

/** Integer mg/h -> decimal kg/h text. */
export function mgToKgPerHour(mg: bigint): string {
  return Decimal.of(mg, 6).toString();
}
