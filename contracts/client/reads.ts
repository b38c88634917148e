/**
 * The read side of the ledger client (ethers v6 on CarbonLedger): state views, and the event logs
 * (settlements, retirements, registrations) scanned in bounded eth_getLogs ranges from the ledger's
 * deployment block. `Ledger` (ledger.ts) adds the writes.
 */
import { ethers } from 'ethers';
import { errors } from '../../domain/errors.ts';
import { loadArtifact } from './artifact.ts';
import { readCall, type SendOptions } from './connect.ts';
import type { DeviceKeyRecord, FacilityView, LedgerRole, OnChainSettlement, RetirementReceipt, RetirementRecord, SignedRetirement } from './port.ts';
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

  protected constructor(address: string, runner: ethers.Signer, opts: LedgerOptions) {
    if (!runner.provider) throw errors.VALIDATION('the ledger signer needs a provider');
    this.opts = opts;
    this.address = ethers.getAddress(address);
    this.provider = runner.provider;
    this.contract = new ethers.Contract(this.address, loadArtifact().abi as ethers.InterfaceAbi, runner);
  }

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

  async facility(id: string): Promise<FacilityView> {
    const f = await readCall(() => this.contract.facility(facilityKey(id)));
    return {
      registered: f.owner !== ethers.ZeroAddress,
      owner: f.owner,
      suspended: f.suspended,
      nextWindowStart: Number(f.nextWindowStart) * 1000,
      baselineKgPerHour: mgToKgPerHour(f.baselineMgPerHour),
      baselineEffectiveFrom: Number(f.baselineEffectiveFrom) * 1000,
      deficitGrams: f.deficit,
      mintedGrams: f.minted,
      burnedGrams: f.burned,
      retiredGrams: f.retired,
    };
  }

  balanceOf(address: string): Promise<bigint> {
    return readCall(() => this.contract.balanceOf(address));
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
    const out: OnChainSettlement[] = [];
    for (const log of logs) {
      const parsed = this.parseLog(log);
      if (!parsed) continue;
      const s = this.toSettlement(parsed, log);
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
    let to = await this.blockNumber();
    while (to >= start) {
      const from = Math.max(start, to - range + 1);
      const logs = await readCall(() => this.contract.queryFilter(ev, from, to));
      for (let i = logs.length - 1; i >= 0; i--) {
        const parsed = this.parseLog(logs[i]);
        if (!parsed) continue;
        const s = this.toSettlement(parsed, logs[i]);
        if (s.windowStart === windowStart) {
          s.facilityId ??= facilityId;
          return s;
        }
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
    const logs = await this.logs(this.contract.filters.CreditsRetired(null, req.holder, null));
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
      const [holder, amount, beneficiary, reason, nonce, deadline] = call.args as unknown as [string, bigint, string, string, bigint, bigint];
      if (
        ethers.getAddress(holder) === ethers.getAddress(req.holder) &&
        nonce === req.nonce &&
        amount === req.amount &&
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

  /** Retirement records, oldest first, optionally of one account or one facility. */
  async retirements(filter: { account?: string; facilityId?: string } = {}): Promise<RetirementRecord[]> {
    const ev = this.contract.filters.CreditsRetired(null, filter.account ?? null, filter.facilityId === undefined ? null : facilityKey(filter.facilityId));
    const logs = await this.logs(ev);
    const records = await Promise.all(
      logs.map(async (log) => {
        const parsed = this.parseLog(log);
        if (!parsed) return undefined;
        const r = await readCall(() => this.contract.retirement(parsed.args.id));
        const rec: RetirementRecord = {
          id: r.id,
          account: r.account,
          facilityKey: r.facility,
          amountGrams: r.amount,
          beneficiary: r.beneficiary,
          reason: r.reason,
          retiredAt: Number(r.retiredAt) * 1000,
          txHash: log.transactionHash,
        };
        return rec;
      }),
    );
    const out = records.filter((r): r is RetirementRecord => r !== undefined);
    if (out.some((r) => r.facilityKey !== ethers.ZeroHash && !this.ids.has(r.facilityKey))) await this.loadIds();
    for (const r of out) r.facilityId = this.ids.get(r.facilityKey);
    return out;
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

  protected parseLog(log: ethers.Log): ethers.LogDescription | undefined {
    if (ethers.getAddress(log.address) !== this.address) return undefined;
    try {
      return this.contract.interface.parseLog(log) ?? undefined;
    } catch {
      return undefined;
    }
  }

  protected toSettlement(parsed: ethers.LogDescription, log: ethers.Log): OnChainSettlement {
    const a = parsed.args;
    return {
      facilityId: this.ids.get(a.facility),
      facilityKey: a.facility,
      windowStart: Number(a.windowStart) * 1000,
      windowEnd: Number(a.windowEnd) * 1000,
      netGrams: a.netGrams,
      mintedGrams: a.minted,
      burnedGrams: a.burned,
      deficitGrams: a.deficitAfter,
      evidenceRoot: a.evidenceRoot,
      txHash: log.transactionHash,
      blockNumber: log.blockNumber,
    };
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
