/** The ledger client: what the oracle, the gateway and `npm start` import. */
export { loadArtifact, type Artifact } from './artifact.ts';
export {
  classifyChainError,
  decodeLedgerError,
  describeChainError,
  explainRevert,
  isRevert,
  rawRevert,
  LedgerRevertError,
  toChainError,
  toLedgerError,
  type ChainFailureKind,
  type DecodedLedgerError,
  type RevertContext,
} from './errors.ts';
export { startHardhatChain, startAnvil, anvilBinary, testPrivateKeys, TEST_MNEMONIC, type Chain, type AnvilOptions, type HardhatChainOptions } from './chain.ts';
export { keySigner, resetNonce, rpcProvider, voidSigner, type ProviderOptions } from './connect.ts';
export { accountAddress } from './address.ts';
export { addressOfKey, checksumAddress, isAddress, keccak256, ZERO_ADDRESS } from './crypto.ts';
export { contractAt, holderWallet, probeProvider, type HolderSigner } from './holder.ts';
export { Ledger, DEFAULT_LOG_RANGE, type LedgerOptions } from './ledger.ts';
export { LEDGER_ROLES, facilityKey, kgPerHourToMg, mgToKgPerHour, toSeconds } from './units.ts';
export * from './port.ts';
