/**
 * The few Ethereum primitives code outside the chain client needs (contracts/client/ is the only
 * importer of ethers): keccak-256 for the evidence tree, address checks and EIP-55 checksums, the
 * address of a private key. Re-exported from ethers as they are, so results are byte-identical.
 */
export {
  /** keccak-256 of bytes (a Uint8Array/Buffer or 0x hex), as 0x hex. */
  keccak256,
  /** Whether a value is a 20-byte address (a mixed-case one must carry a valid EIP-55 checksum). */
  isAddress,
  /** The EIP-55 checksummed form of an address; throws when it is not one. */
  getAddress as checksumAddress,
  /** The address of a private key (0x and 64 hex digits). */
  computeAddress as addressOfKey,
  /** 0x0000…0000. */
  ZeroAddress as ZERO_ADDRESS,
} from 'ethers';
