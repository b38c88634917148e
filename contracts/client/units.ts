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

/** The on-chain key of a device id: keccak256 of its UTF-8 bytes. */
export function deviceIdKey(deviceId: string): string {
  return ethers.id(deviceId);
}

/** A device's Ed25519 public key (64 hex, with or without 0x) -> bytes32 (all zeros revokes). */
export function publicKeyToBytes32(publicKeyHex: string): string {
  const hex = publicKeyHex.startsWith('0x') ? publicKeyHex.slice(2) : publicKeyHex;
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw errors.VALIDATION(`a device public key is 32 bytes as 64 hex digits: ${publicKeyHex.slice(0, 80)}`);
  return `0x${hex.toLowerCase()}`;
}

/** bytes32 from the ledger -> 64 lowercase hex, or null for zero (no key). */
export function bytes32ToPublicKey(word: string): string | null {
  const hex = word.toLowerCase().replace(/^0x/, '');
  return /^0+$/.test(hex) ? null : hex;
}
