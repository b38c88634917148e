/**
 * What the gateway needs from the rest of the system, as narrow interfaces. The composition root
 * (gateway/main.ts, main.ts) adapts the real modules to these; tests pass real ones or small fakes.
 * A backend left out (`undefined`) makes the routes that need it answer 503 in the SPEC error format.
 */
import type { Registry as PromRegistry } from 'prom-client';
import type { Db } from '../store/sqlite/db.ts';
import type { ReadingStore, FacilityRegistry } from '../store/types.ts';
import type { Logger } from '../domain/logger.ts';
import type { SettlementQuery } from '../store/types.ts';
import type { SettlementAudit } from '../oracle/audit.ts';
import type { SignedRetirement as LedgerSignedRetirement } from '../contracts/client/ledger.ts';

/** Integer grams as they come from the chain or the records (bigint, or integer text/number). */
export type Grams = bigint | string | number;

/** On-chain view of a facility (the Ledger's `facility(id)`). */
export interface ChainFacility {
  registered: boolean;
  owner: string;
  suspended: boolean;
  nextWindowStart?: Grams;
  deficitGrams: Grams;
  mintedGrams: Grams;
  burnedGrams: Grams;
  retiredGrams: Grams;
}

/** One retirement record on-chain. */
export interface ChainRetirement {
  id: Grams;
  account: string;
  facilityId?: string;
  amountGrams: Grams;
  beneficiary: string;
  reason: string;
  /** Block time, epoch ms. */
  retiredAt?: number;
  txHash?: string;
}

/**
 * An EIP-712 signed retirement as it travels over HTTP (integers as decimal text): the holder signed
 * it with their own key, the gateway only relays it and pays the gas.
 */
export interface SignedRetirement {
  holder: string;
  amountGrams: string;
  beneficiary: string;
  reason: string;
  nonce: string;
  /** UNIX seconds. */
  deadline: string;
  signature: string;
}

/** The same request as the contracts client takes it. */
export type RetireWithSigRequest = LedgerSignedRetirement;

/** The part of the contracts client (`Ledger` in contracts/client/ledger.ts) the gateway calls. */
export interface GatewayLedger {
  facility(id: string): Promise<ChainFacility>;
  balanceOf(address: string): Promise<Grams>;
  /** firstWindowStart: epoch ms (a whole second). */
  registerFacility(id: string, owner: string, baselineKgPerHour: string, firstWindowStart: number): Promise<unknown>;
  setFacilitySuspended(id: string, suspended: boolean): Promise<unknown>;
  /** effectiveFrom: epoch ms, a window start. */
  setBaseline?(id: string, baselineKgPerHour: string, effectiveFrom: number): Promise<unknown>;
  /** Corrects the owner of a facility that never settled (the contract refuses it otherwise). */
  setFacilityOwner?(id: string, owner: string): Promise<unknown>;
  /** Removes a facility that never settled (the contract refuses it otherwise). */
  deregisterFacility?(id: string): Promise<unknown>;
  retirements(filter: { account?: string; facilityId?: string }): Promise<ChainRetirement[]>;
  /** Submits a holder-signed retirement (this client's signer pays gas); resolves once mined. */
  retireWithSig(req: RetireWithSigRequest): Promise<{ txHash: string; id?: Grams }>;
  /** The retirement a signed request produced once its nonce is used (by anyone), else undefined. */
  retirementOfRequest?(req: RetireWithSigRequest): Promise<{ txHash: string; id: Grams } | undefined>;
  /** For /health: a block number from the node (either form). */
  blockNumber?(): Promise<number>;
  readonly provider?: { getBlockNumber(): Promise<number> };
}

/** A settlement as the oracle records it (times epoch ms). */
export interface SettlementRecord {
  id: string | number;
  facilityId: string;
  windowStart: number;
  windowEnd: number;
  complete: boolean;
  netGrams: Grams;
  mintedGrams: Grams;
  burnedGrams: Grams;
  deficitGrams: Grams;
  evidenceRoot: string;
  txHash?: string | null;
}

/**
 * The oracle's settlement records as the gateway reads them (oracle/audit.ts `settlementView` on
 * the shared file, or the oracle itself in `npm start`). Local data: no chain and no signer needed.
 */
export interface GatewaySettlements {
  /**
   * Confirmed settlements. With newestFirst: newest window first (then facility id descending), only
   * those after `before` in that order, at most `limit` (the gateway pages; an implementation may
   * ignore these and return more, the gateway sorts and cuts again).
   */
  listSettlements(q: SettlementQuery): Promise<SettlementRecord[]> | SettlementRecord[];
  getSettlement(id: string): Promise<SettlementRecord | undefined> | SettlementRecord | undefined;
  /** Keys `${deviceId}:${seq}` of the given readings that a settlement flagged late. */
  lateReadings?(facilityId: string, keys: { deviceId: string; seq: number }[]): Promise<Set<string>> | Set<string>;
  /** The confirmed settlement that counted a stored reading (late: counted after its own window), or undefined while none has. */
  settlementOfReading?(
    facilityId: string,
    r: { deviceId: string; seq: number; ts: number; arrival?: number },
  ): Promise<{ settlement: SettlementRecord; late: boolean } | undefined> | { settlement: SettlementRecord; late: boolean } | undefined;
  /** Whether the facility settles (`ok`) or the chain refuses it (`blocked`, with the reason; retried with backoff). */
  facilityStatus?(facilityId: string): { settlementStatus: 'ok' | 'blocked'; reason?: string; since?: number; attempts?: number; retryAt?: number };
  /** Forgets a facility removed before it ever settled (throws 409 once one is confirmed). */
  forgetFacility?(facilityId: string, deviceIds: string[]): void;
}

/** The broker's session control: cut a device off at once (rotation, suspension). */
export interface GatewayBroker {
  disconnectDevice(deviceId: string): Promise<unknown> | unknown;
  disconnectFacility(facilityId: string): Promise<unknown> | unknown;
  /** For /health; absent means "reachable" when the broker is in-process. */
  ping?(): Promise<boolean> | boolean;
}

export interface GatewayOptions {
  /** Requests per key (or per IP when unauthenticated) per `rateLimitWindowMs`. Default 300. */
  rateLimitMax?: number;
  rateLimitWindowMs?: number;
  /** How long chain reads (balance) are cached, ms. Default 1000; 0 disables. */
  chainCacheMs?: number;
  /** How long a verified API key stays cached in memory, ms. Default 5000. */
  keyCacheMs?: number;
  /** Window length, to compute a new facility's first window on-chain. Default: WINDOW_SECONDS's (domain/config.ts). */
  windowSeconds?: number;
  /** Settlement grace after a window closes, shown on /health (with the window) for simulators and tools. */
  graceSeconds?: number;
  /** Log requests (pino) — off by default, the bench and tests keep quiet. */
  logRequests?: boolean;
}

export interface GatewayDeps {
  db: Db;
  registry: FacilityRegistry;
  readings?: ReadingStore;
  ledger?: GatewayLedger;
  /** The settlement records (list, get, late flags, facility status); without them those routes answer 503. */
  settlements?: GatewaySettlements;
  /** Verify and proof (oracle/audit.ts, read-only); without it those two routes answer 503. */
  audit?: SettlementAudit;
  broker?: GatewayBroker;
  /** The shared prom-client registry; domain metrics registered on it by others show up on /metrics. */
  metrics?: PromRegistry;
  logger: Logger;
  options?: GatewayOptions;
  /** Clock, for tests. */
  now?: () => number;
}
