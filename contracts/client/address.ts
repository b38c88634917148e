/**
 * Account addresses as the ledger accepts them. An address in one case (all lower or all upper hex)
 * carries no checksum and is normalised to its EIP-55 form; a mixed-case address must carry a valid
 * EIP-55 checksum (a typo in it is then caught here, not after credits went to a wrong account).
 * (Here rather than in domain/: the checksum is keccak-256, which only the chain client imports.)
 */
import { errors } from '../../domain/errors.ts';
import { checksumAddress, ZERO_ADDRESS } from './crypto.ts';

const HEX40 = /^0x[0-9a-fA-F]{40}$/;

/** The EIP-55 form of `value`, or a 400 naming the problem (`field` names the input). */
export function accountAddress(value: unknown, field = 'owner'): string {
  if (typeof value !== 'string' || !HEX40.test(value)) throw errors.VALIDATION(`${field} must be a 0x address (40 hex digits)`);
  const hex = value.slice(2);
  const oneCase = hex === hex.toLowerCase() || hex === hex.toUpperCase();
  const checksummed = checksumAddress(value.toLowerCase());
  if (!oneCase && checksummed !== value) {
    throw errors.VALIDATION(`${field} ${value} has an invalid EIP-55 checksum (mixed case must match it): check the address, or send it in one case`);
  }
  if (checksummed === ZERO_ADDRESS) throw errors.VALIDATION(`${field} must not be the zero address`);
  return checksummed;
}
