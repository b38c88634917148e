/**
 * The read side of the ledger client (ethers v6 on CreditLedger): state views (facilities, batches,
 * holdings, certificates), and the event logs (settlements, retirements, registrations) scanned in bounded eth_getLogs ranges from the ledger's
 * deployment block. `Ledger` (ledger.ts) adds the writes.
 */
import { ethers } from 'ethers';
import { openCorrectionPort, type CorrectionPort } from './corrections.ts';
import { errors } from '../../domain/errors.ts';
import { loadArtifact } from './artifact.ts';
import { readCall, type SendOptions } from './connect.ts';
import type { BatchView, DeviceKeyRecord, FacilityView, Holding, LedgerRole, OnChainSettlement, RetiredPart, RetirementReceipt, RetirementRecord, SignedRetirement } from './port.ts';
import { bytes32ToPublicKey, deviceIdKey, facilityKey, LEDGER_ROLES, mgToKgPerHour, toSeconds } from './units.ts';

/** Blocks per eth_getLogs request (real providers cap log ranges; 10,000 is accepted by most). */
export const DEFAULT_LOG_RANGE = 10_000;

export interface LedgerOptions extends SendOptions {
  /**
   * How long to wait for a sent transaction to be mined before failing with CHAIN_UNAVAILABLE
   * (default 120 s). A transaction that never mines (e.g. a nonce gap) must not hang the caller.
   */
  confirmTimeoutMs?: number;
  /** The ledger's deployment block (CHAIN_START_BLOCK): no log query starts before it (default 0). */
  startBlock?: number;
  /** Blocks per eth_getLogs request (default 10,000). */
  logRange?: number;
  /**
   * Called after each mined transaction, before the caller hears of it (the local stack saves
   * anvil's state here, so a crash never loses a settlement the oracle recorded as confirmed).
   */
  afterMined?: () => Promise<void>;
}

export class LedgerReader {
  readonly address: string;
  readonly contract: ethers.Contract;
  readonly provider: ethers.Provider;
  protected readonly opts: LedgerOptions;
  /** facility key -> id, learnt from our own calls and FacilityRegistered events. */
  protected readonly ids = new Map<string, string>();
  private windowCache: Promise<number> | undefined;

  protected constructor(address: string, runner: ethers.Signer, opts: LedgerOptions) {
    if (!runner.provider) throw errors.VALIDATION('the ledger signer needs a provider');
    this.opts = opts;
    this.address = ethers.getAddress(address);
    this.provider = runner.provider;
    this.contract = new ethers.Contract(this.address, loadArtifact().abi as ethers.InterfaceAbi, runner);
  }

  /**
   * The ledger's correction side (voids, corrections) on this client's own runner: the same signer, so
   * one nonce counter per key in the process.
   */
  corrections(): CorrectionPort {
    return (this.correctionPort ??= openCorrectionPort({ address: this.address, runner: this.contract.runner as ethers.Signer, startBlock: this.startBlock, readOnly: !this.canSend() }));
  }

  /** Whether this client holds a key to send with (a read-only Ledger does not). */
  protected canSend(): boolean {
    return true;
  }
  private correctionPort: CorrectionPort | undefined;

  /** The block log queries start from (the deployment block when this client deployed the ledger). */
  get startBlock(): number {
    return this.opts.startBlock ?? 0;
  }

  /** The latest block number. */
  blockNumber(): Promise<number> {
    return readCall(() => this.provider.getBlockNumber());
  }

  /** The latest block's timestamp, unix seconds (this machine's clock if the node has no block). */
  async latestBlockTime(): Promise<number> {
    const block = await readCall(() => this.provider.getBlock('latest'));
    return block?.timestamp ?? Math.floor(Date.now() / 1000);
  }

  /** The ledger's EIP-712 domain, read from the chain (ERC-5267 eip712Domain) rather than assumed. */
  async eip712Domain(): Promise<ethers.TypedDataDomain> {
    const d = await readCall<[string, string, string, bigint, string]>(() => this.contract.eip712Domain());
    return { name: d[1], version: d[2], chainId: d[3], verifyingContract: d[4] };
  }

  /** The fixed window length of the ledger, ms (an immutable: read once). */
  async windowMs(): Promise<number> {
    this.windowCache ??= readCall<bigint>(() => this.contract.windowSeconds()).then((s) => Number(s) * 1000);
    try {
      return await this.windowCache;
    } catch (e) {
      this.windowCache = undefined;
      throw e;
    }
  }

  async facility(id: string): Promise<FacilityView> {
    const key = facilityKey(id);
    const [f, ids] = await Promise.all([readCall(() => this.contract.facility(key)), readCall<bigint[]>(() => this.contract.batchesOf(key))]);
    const batches = await Promise.all(ids.map((b) => readCall(() => this.contract.batch(b))));
    const sum = (k: 'issued' | 'burned' | 'retired' | 'ownerBalance') => batches.reduce((a: bigint, b) => a + (b[k] as bigint), 0n);
    const pending = f.limitsPending as boolean;
    return {
      registered: f.owner !== ethers.ZeroAddress,
      owner: f.owner,
      suspended: f.suspended,
      nextWindowStart: Number(f.nextWindowStart) * 1000,
      // A scheduled change is what the chain will apply: the registry is compared with it.
      baselineKgPerHour: mgToKgPerHour(pending ? f.pendingBaselineMgPerHour : f.baselineMgPerHour),
      baselineEffectiveFrom: Number(pending ? f.pendingEffectiveFrom : f.limitsEffectiveFrom) * 1000,
      capGramsPerWindow: f.capGramsPerWindow,
      deficitGrams: f.deficit,
      mintedGrams: sum('issued'),
      burnedGrams: sum('burned'),
      retiredGrams: sum('retired'),
      ownerHeldGrams: sum('ownerBalance'),
    };
  }

  /** The facility's batches, oldest vintage first. */
  async batches(facilityId: string): Promise<BatchView[]> {
    const ids = await readCall<bigint[]>(() => this.contract.batchesOf(facilityKey(facilityId)));
    return Promise.all(ids.map((b) => this.batch(b)));
  }

  /** One batch (BatchNotFound revert when it does not exist). */
  async batch(id: bigint): Promise<BatchView> {
    const b = await readCall(() => this.contract.batch(id));
    this.ids.set(b.facility, b.facilityId);
    return {
      id: (b.id as bigint).toString(),
      facilityId: b.facilityId,
      facilityKey: b.facility,
      vintage: Number(b.vintage),
      issuedGrams: b.issued,
      retiredGrams: b.retired,
      burnedGrams: b.burned,
      supplyGrams: b.supply,
      ownerBalanceGrams: b.ownerBalance,
    };
  }

  /**
   * The batches `account` holds: those of the facilities it owns, and every batch a transfer ever
   * sent it (TransferSingle / TransferBatch logs, by the indexed `to`), with a non-zero balance.
   */
  async holdings(account: string): Promise<Holding[]> {
    const who = ethers.getAddress(account);
    const keys = await readCall<string[]>(() => this.contract.facilitiesOf(who));
    const ids = new Set<bigint>();
    for (const key of keys) for (const b of await readCall<bigint[]>(() => this.contract.batchesOf(key))) ids.add(b);
    const [singles, batches] = await Promise.all([this.logs(this.contract.filters.TransferSingle(null, null, who)), this.logs(this.contract.filters.TransferBatch(null, null, who))]);
    for (const log of singles) {
      const p = this.parseLog(log);
      if (p) ids.add(p.args.id as bigint);
    }
    for (const log of batches) {
      const p = this.parseLog(log);
      if (p) for (const id of p.args.ids as bigint[]) ids.add(id);
    }
    const list = [...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    if (list.length === 0) return [];
    const balances = await readCall<bigint[]>(() => this.contract.balanceOfBatch(list.map(() => who), list));
    const out: Holding[] = [];
    for (let i = 0; i < list.length; i++) {
      if (balances[i] === 0n) continue;
      out.push({ batch: await this.batch(list[i]), balanceGrams: balances[i] });
    }
    return out;
  }

  /** What an account holds over every batch, grams (the sum of its holdings). */
  async heldBy(account: string): Promise<bigint> {
    return (await this.holdings(account)).reduce((a, h) => a + h.balanceGrams, 0n);
  }

  /** ERC-1155 balance of one batch. */
  balanceOf(address: string, batchId: bigint): Promise<bigint> {
    return readCall(() => this.contract.balanceOf(address, batchId));
  }

  totalSupply(): Promise<bigint> {
    return readCall(() => this.contract.totalSupply());
  }

  hasRole(role: LedgerRole, account: string): Promise<boolean> {
    return readCall(() => this.contract.hasRole(LEDGER_ROLES[role], account));
  }

  paused(): Promise<boolean> {
    return readCall(() => this.contract.paused());
  }

  /** The holder's next retirement-request nonce. */
  nonces(holder: string): Promise<bigint> {
    return readCall<bigint>(() => this.contract.nonces(holder));
  }

  /**
   * WindowSettled events, oldest first, from `fromBlock` (default the ledger's start block) to the
   * latest block, in bounded eth_getLogs ranges, by the indexed facility topic when one is given.
   */
  async settlements(filter: { facilityId?: string; fromBlock?: number; windowStart?: number } = {}): Promise<OnChainSettlement[]> {
    const key = filter.facilityId === undefined ? null : facilityKey(filter.facilityId);
    if (filter.windowStart !== undefined) toSeconds(filter.windowStart, 'windowStart');
    // Only the facility is an indexed topic (an extra topic would cost every settlement 119 gas);
    // the window is filtered here.
    const logs = await this.logs(this.contract.filters.WindowSettled(key), filter.fromBlock);
    const windowMs = await this.windowMs();
    const out: OnChainSettlement[] = [];
    const burns = await this.burnsOf(logs);
    for (const log of logs) {
      const parsed = this.parseLog(log);
      if (!parsed) continue;
      const s = this.toSettlement(parsed, log, windowMs, burns);
      if (filter.windowStart === undefined || s.windowStart === filter.windowStart) out.push(s);
    }
    if (out.some((s) => s.facilityId === undefined)) await this.loadIds();
    for (const s of out) s.facilityId ??= this.ids.get(s.facilityKey);
    return out;
  }

  /**
   * The settlement of one facility window, or undefined when that window is not settled. Scans the
   * facility's WindowSettled logs newest range first (recent windows are found in one request) down
   * to the start block.
   */
  async settlementAt(facilityId: string, windowStart: number): Promise<OnChainSettlement | undefined> {
    toSeconds(windowStart, 'windowStart');
    const ev = this.contract.filters.WindowSettled(facilityKey(facilityId));
    const range = this.range();
    const start = this.startBlock;
    const windowMs = await this.windowMs();
    let to = await this.blockNumber();
    while (to >= start) {
      const from = Math.max(start, to - range + 1);
      const logs = await readCall(() => this.contract.queryFilter(ev, from, to));
      for (let i = logs.length - 1; i >= 0; i--) {
        const parsed = this.parseLog(logs[i]);
        if (!parsed || Number(parsed.args.windowStart) * 1000 !== windowStart) continue;
        const s = this.toSettlement(parsed, logs[i], windowMs, await this.burnsOf([logs[i]]));
        s.facilityId ??= facilityId;
        return s;
      }
      to = from - 1;
    }
    return undefined;
  }

  /**
   * The retirement a signed request produced, once its nonce has been used, whoever submitted it (this
   * relay, or a third party who sent the same request first): the holder's CreditsRetired event whose
   * transaction called `retireWithSig` on this ledger with the request's holder, nonce and content.
   * Undefined while the nonce is unused, or when it was used by another request of the holder (or
   * through a contract that wraps the call, which this lookup does not trace).
   */
  async retirementOfRequest(req: SignedRetirement): Promise<RetirementReceipt | undefined> {
    if ((await this.nonces(req.holder)) <= req.nonce) return undefined;
    const logs = await this.logs(this.contract.filters.CreditsRetired(null, req.holder));
    for (const log of [...logs].reverse()) {
      const parsed = this.parseLog(log);
      const tx = parsed ? await readCall(() => this.provider.getTransaction(log.transactionHash)) : null;
      if (!parsed || !tx?.to || ethers.getAddress(tx.to) !== this.address) continue;
      let call: ethers.TransactionDescription | null = null;
      try {
        call = this.contract.interface.parseTransaction({ data: tx.data, value: tx.value });
      } catch {
        continue;
      }
      if (call?.name !== 'retireWithSig') continue;
      const [holder, batchIds, amounts, beneficiary, reason, nonce, deadline] = call.args as unknown as [string, bigint[], bigint[], string, string, bigint, bigint];
      if (
        ethers.getAddress(holder) === ethers.getAddress(req.holder) &&
        nonce === req.nonce &&
        sameList([...batchIds], req.batchIds) &&
        sameList([...amounts], req.amounts) &&
        beneficiary === req.beneficiary &&
        reason === req.reason &&
        deadline === BigInt(req.deadline)
      ) {
        return { id: parsed.args.id as bigint, txHash: log.transactionHash };
      }
    }
    return undefined;
  }

  /** The device's current key on chain (64 lowercase hex), undefined when none. */
  async deviceKey(deviceId: string): Promise<string | undefined> {
    const word = await readCall<string>(() => this.contract.deviceKey(deviceIdKey(deviceId)));
    return bytes32ToPublicKey(word) ?? undefined;
  }

  /**
   * DeviceKeySet events, oldest first, of one device (by its indexed topic) or of all, from the start
   * block in bounded eth_getLogs ranges.
   */
  async deviceKeys(deviceId?: string): Promise<DeviceKeyRecord[]> {
    const logs = await this.logs(this.contract.filters.DeviceKeySet(deviceId === undefined ? null : deviceIdKey(deviceId)));
    const out: DeviceKeyRecord[] = [];
    for (const log of logs) {
      const parsed = this.parseLog(log);
      if (parsed?.name !== 'DeviceKeySet') continue;
      const a = parsed.args;
      out.push({
        deviceId: a.deviceId,
        deviceKey: a.device,
        publicKey: bytes32ToPublicKey(a.publicKey),
        previousKey: bytes32ToPublicKey(a.previousKey),
        txHash: log.transactionHash,
        blockNumber: log.blockNumber,
      });
    }
    return out;
  }

  /** Retirement certificates, oldest first, optionally of one account or one facility (any of its parts). */
  async retirements(filter: { account?: string; facilityId?: string } = {}): Promise<RetirementRecord[]> {
    let ids: bigint[];
    const txs = new Map<bigint, string>();
    if (filter.facilityId !== undefined) {
      // BatchRetired is indexed by batch: the facility's batches name its certificates.
      const batchIds = await readCall<bigint[]>(() => this.contract.batchesOf(facilityKey(filter.facilityId!)));
      const set = new Set<bigint>();
      for (const b of batchIds) {
        for (const log of await this.logs(this.contract.filters.BatchRetired(null, b))) {
          const p = this.parseLog(log);
          if (!p) continue;
          set.add(p.args.id as bigint);
          txs.set(p.args.id as bigint, log.transactionHash);
        }
      }
      ids = [...set];
    } else {
      const logs = await this.logs(this.contract.filters.CreditsRetired(null, filter.account ?? null));
      ids = [];
      for (const log of logs) {
        const p = this.parseLog(log);
        if (!p) continue;
        ids.push(p.args.id as bigint);
        txs.set(p.args.id as bigint, log.transactionHash);
      }
    }
    ids.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const out: RetirementRecord[] = [];
    for (const id of ids) {
      const r = await this.retirementView(id);
      if (!r) continue;
      if (filter.account !== undefined && ethers.getAddress(r.account) !== ethers.getAddress(filter.account)) continue;
      r.txHash = txs.get(id);
      out.push(r);
    }
    return out;
  }

  /** One certificate (with the transaction that created it), undefined when none has that id. */
  async retirement(id: bigint): Promise<RetirementRecord | undefined> {
    const r = await this.retirementView(id);
    if (!r) return undefined;
    const logs = await this.logs(this.contract.filters.CreditsRetired(id));
    if (logs.length > 0) r.txHash = logs[logs.length - 1].transactionHash;
    return r;
  }

  private async retirementView(id: bigint): Promise<RetirementRecord | undefined> {
    if (id < 1n || id > (await readCall<bigint>(() => this.contract.retirementCount()))) return undefined;
    const r = await readCall(() => this.contract.retirement(id));
    const parts: RetiredPart[] = [];
    for (const p of r.parts) {
      const b = await this.batch(p.batchId as bigint);
      const amount = BigInt(p.amount);
      const first = BigInt(p.firstSerial);
      parts.push({ batchId: b.id, facilityId: b.facilityId, vintage: b.vintage, amountGrams: amount, firstSerial: first, lastSerial: first + amount - 1n });
    }
    return {
      id: r.id,
      account: r.account,
      facilityIds: [...new Set(parts.map((p) => p.facilityId))],
      parts,
      amountGrams: r.amount,
      beneficiary: r.beneficiary,
      reason: r.reason,
      retiredAt: Number(r.retiredAt) * 1000,
    };
  }

  // ----- internals shared with the write side

  protected range(): number {
    const r = this.opts.logRange ?? DEFAULT_LOG_RANGE;
    if (!Number.isSafeInteger(r) || r < 1) throw errors.VALIDATION(`logRange must be a positive integer: ${r}`);
    return r;
  }

  /** Logs of `ev` from `fromBlock` (default the start block) to the latest block, `logRange` blocks per request. */
  protected async logs(ev: ethers.ContractEventName, fromBlock?: number): Promise<(ethers.EventLog | ethers.Log)[]> {
    const range = this.range();
    const head = await this.blockNumber();
    const out: (ethers.EventLog | ethers.Log)[] = [];
    for (let from = Math.max(fromBlock ?? this.startBlock, this.startBlock); from <= head; from += range) {
      const to = Math.min(head, from + range - 1);
      out.push(...(await readCall(() => this.contract.queryFilter(ev, from, to))));
    }
    return out;
  }

  /**
   * Parsed once per log object: burnedBefore() walks a transaction's earlier logs for each of its
   * settlements, and ethers' parseLog hashes event signatures on every call (a batch of 100 entries
   * parsed its receipt's logs ~100 times over: most of the batched settle bench's wall time).
   */
  private readonly parsed = new WeakMap<ethers.Log, ethers.LogDescription | null>();

  protected parseLog(log: ethers.Log): ethers.LogDescription | undefined {
    const cached = this.parsed.get(log);
    if (cached !== undefined) return cached ?? undefined;
    let out: ethers.LogDescription | null = null;
    if (ethers.getAddress(log.address) === this.address) {
      try {
        out = this.contract.interface.parseLog(log);
      } catch {
        out = null;
      }
    }
    this.parsed.set(log, out);
    return out ?? undefined;
  }

  /**
   * CreditsBurned of the transactions of these WindowSettled logs, by transaction hash (read from the
   * receipts: a settlement's burns are the CreditsBurned of its facility's batches just before it).
   */
  protected async burnsOf(logs: ethers.Log[]): Promise<Map<string, ethers.Log[]>> {
    const out = new Map<string, ethers.Log[]>();
    // Only a negative net burns: other transactions need no receipt.
    const needed = new Set<string>();
    for (const log of logs) {
      const p = this.parseLog(log);
      if (p?.name === 'WindowSettled' && (p.args.netGrams as bigint) < 0n) needed.add(log.transactionHash);
    }
    for (const hash of needed) {
      const receipt = await readCall(() => this.provider.getTransactionReceipt(hash));
      out.set(hash, receipt ? [...receipt.logs] : []);
    }
    return out;
  }

  /** A WindowSettled log as a settlement; `txLogs` holds the logs of transactions that burned. */
  protected toSettlement(parsed: ethers.LogDescription, log: ethers.Log, windowMs: number, txLogs: Map<string, readonly ethers.Log[]>): OnChainSettlement {
    const a = parsed.args;
    const start = Number(a.windowStart) * 1000;
    return {
      facilityId: this.ids.get(a.facility),
      facilityKey: a.facility,
      windowStart: start,
      windowEnd: start + windowMs,
      netGrams: a.netGrams,
      mintedGrams: a.minted,
      firstSerial: a.firstSerial,
      burnedGrams: this.burnedBefore(a.facility, log, txLogs.get(log.transactionHash) ?? []),
      deficitGrams: a.deficitAfter,
      evidenceRoot: a.evidenceRoot,
      txHash: log.transactionHash,
      blockNumber: log.blockNumber,
    };
  }

  /**
   * Grams burned by the settlement `log` of `facility`: the CreditsBurned of the facility's batches
   * between the facility's previous WindowSettled in the transaction (if any) and this one.
   */
  protected burnedBefore(facility: string, log: ethers.Log, txLogs: readonly ethers.Log[]): bigint {
    const prefix = BigInt(facility) >> 32n;
    let burned = 0n;
    for (const l of txLogs) {
      if (l.index >= log.index) break;
      const p = this.parseLog(l);
      if (p?.name === 'WindowSettled' && p.args.facility === facility) burned = 0n;
      else if (p?.name === 'CreditsBurned' && (p.args.batchId as bigint) >> 32n === prefix) burned += p.args.amount as bigint;
    }
    return burned;
  }

  /** Learns key -> id from FacilityRegistered events (the chain is the source of truth). */
  private async loadIds(): Promise<void> {
    const logs = await this.logs(this.contract.filters.FacilityRegistered());
    for (const log of logs) {
      const parsed = this.parseLog(log);
      if (parsed) this.ids.set(parsed.args.facility, parsed.args.facilityId);
    }
  }
}

function sameList(a: bigint[], b: bigint[]): boolean {
  return a.length === b.length && a.every((x, i) => x === BigInt(b[i]));
}
