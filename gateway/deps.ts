/**
 * What the gateway needs from the rest of the system, as narrow interfaces. The composition root
 * (gateway/main.ts, main.ts) adapts the real modules to these; tests pass real ones or small fakes.
 * A backend left out (`undefined`) makes the routes that need it answer 503 in the SPEC error format.
 */
import type { Registry as PromRegistry } from 'prom-client';
import type { Db } from '../store/db.ts';
import type { ReadingStore, Registry } from '../store/types.ts';
import type { Logger } from '../domain/logger.ts';
import type { SettlementQuery } from '../oracle/records.ts';
import type { LedgerPort } from '../contracts/client/port.ts';

/** Integer grams as they come from the records (bigint, or integer text/number). */
export type Grams = bigint | string | number;

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

export interface VerifyResult {
  match: boolean;
  /** null when the chain has no settlement for this window. */
  onChain: Record<string, unknown> | null;
  recomputed: Record<string, unknown>;
  /** What the oracle recorded when it settled (optional). */
  recorded?: Record<string, unknown>;
}

export interface ProofResult {
  root: string;
  /** The leaf's values (for StandardMerkleTree.verify) or its hash, as the oracle builds it. */
  leaf: unknown;
  proof: string[];
  leafEncoding?: string[];
}

/** The oracle's records and audit functions. */
export interface GatewayOracle {
  /**
   * Confirmed settlements. With newestFirst: newest window first (then facility id descending), only
   * those after `before` in that order, at most `limit` (the gateway pages; an implementation may
   * ignore these and return more, the gateway sorts and cuts again).
   */
  listSettlements(q: SettlementQuery): Promise<SettlementRecord[]> | SettlementRecord[];
  getSettlement(id: string): Promise<SettlementRecord | undefined> | SettlementRecord | undefined;
  verify(id: string): Promise<VerifyResult>;
  /** Rejects or resolves undefined when the reading is not in the settlement's evidence. */
  proof(id: string, deviceId: string, seq: number): Promise<ProofResult | undefined>;
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
  /** Window length, to compute a new facility's first window on-chain. Default 3600 s. */
  windowSeconds?: number;
  /** Settlement grace after a window closes, shown on /health (with the window) for simulators and tools. */
  graceSeconds?: number;
  /** Log requests (pino) — off by default, the bench and tests keep quiet. */
  logRequests?: boolean;
}

export interface GatewayDeps {
  db: Db;
  registry: Registry;
  readings?: ReadingStore;
  /** The chain (the ledger port); absent: the chain routes answer 503. */
  ledger?: LedgerPort;
  oracle?: GatewayOracle;
  broker?: GatewayBroker;
  /** The shared prom-client registry; domain metrics registered on it by others show up on /metrics. */
  metrics?: PromRegistry;
  logger: Logger;
  options?: GatewayOptions;
  /** Clock, for tests. */
  now?: () => number;
}
