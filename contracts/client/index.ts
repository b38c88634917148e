/** The ledger client: what the oracle, the gateway and `npm start` import. */
export { loadArtifact, type Artifact } from './artifact.ts';
export { decodeLedgerError, describeChainError, explainRevert, rawRevert, LedgerRevertError, toLedgerError, type DecodedLedgerError, type RevertContext } from './errors.ts';
export { startHardhatChain, startAnvil, anvilBinary, testPrivateKeys, TEST_MNEMONIC, type Chain, type AnvilOptions, type HardhatChainOptions } from './chain.ts';
export {
  Ledger,
  ROLES,
  MAX_BATCH,
  facilityKey,
  kgPerHourToMg,
  toSeconds,
  type SettlementInput,
  type SettlementResult,
  type OnChainSettlement,
  type TxInfo,
  type FacilityState,
  type SignedRetirement,
  type RetirementRecord,
  type LedgerRole,
  type LedgerOptions,
} from './ledger.ts';
