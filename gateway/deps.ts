/**
 * What the gateway needs from the rest of the system, as narrow interfaces. The composition root
 * (gateway/main.ts, main.ts) adapts the real modules to these; tests pass real ones or small fakes.
 * A backend left out (`undefined`) makes the routes that need it answer 503 in the SPEC error format.
 */
import type { Registry as PromRegistry } from 'prom-client';
import type { Db } from '../store/sqlite/db.ts';
import type { ApiKeyTable, Awaitable, ReadingStore, FacilityRegistry } from '../store/types.ts';
import type { Logger } from '../domain/logger.ts';
import type { SettlementQuery } from '../store/types.ts';
import type { SettlementAudit } from '../oracle/audit.ts';
import type { LedgerPort } from '../contracts/client/port.ts';
import type { CorrectionRecords } from '../store/types.ts';
import type { Corrector } from '../oracle/corrections.ts';
import type { CorrectionAudit } from '../oracle/correction-audit.ts';
import type { CorrectionPort } from '../contracts/client/corrections.ts';

/** Voids and corrections (gateway/routes/corrections.ts); without them those routes answer 503. */
export interface GatewayCorrections {
  records: CorrectionRecords;
  /** Records the corrections a void calls for (oracle/corrections.ts). */
  corrector: Corrector;
  /** Verify and proof of corrections (read-only). */
  audit: CorrectionAudit;
  /** The ledger on the regulator's key, to record voids there; absent: voids are recorded here only (no chain authorises their corrections yet). */
  port?: Pick<CorrectionPort, 'voidReadings'>;
}

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
  /** What the settlement recorded of its inputs (the oracle's records have it): the per-device chain summary. */
  inputs?: { methodologyVersion?: string; devices: { deviceId: string; consumedCount?: number; chain?: { unbroken: boolean } }[] };
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
  facilityStatus?(facilityId: string): Awaitable<{ settlementStatus: 'ok' | 'blocked'; reason?: string; since?: number; attempts?: number; retryAt?: number }>;
  /** Forgets a facility removed before it ever settled (throws 409 once one is confirmed). */
  forgetFacility?(facilityId: string, deviceIds: string[]): Awaitable<void>;
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
  /** The API key table; default: the one on `db` (SQLite). With DATABASE_URL, PostgreSQL's (store/postgres/keys.ts). */
  apiKeys?: ApiKeyTable;
  registry: FacilityRegistry;
  readings?: ReadingStore;
  ledger?: LedgerPort;
  /** The settlement records (list, get, late flags, facility status); without them those routes answer 503. */
  settlements?: GatewaySettlements;
  /** Verify and proof (oracle/audit.ts, read-only); without it those two routes answer 503. */
  audit?: SettlementAudit;
  /** Voids and corrections; without them those routes answer 503. */
  corrections?: GatewayCorrections;
  broker?: GatewayBroker;
  /** The shared prom-client registry; domain metrics registered on it by others show up on /metrics. */
  metrics?: PromRegistry;
  logger: Logger;
  options?: GatewayOptions;
  /** Clock, for tests. */
  now?: () => number;
}
