/**
 * The TypeScript ledger client (ethers v6): deploys and calls CarbonLedger, decodes its events and
 * custom errors. Times are epoch milliseconds on this side and UNIX seconds on chain; amounts are
 * bigint grams; baselines are decimal kg/h text (mg/h on chain).
 */
import { ethers } from 'ethers';
import { Decimal } from '../../domain/decimal.ts';
import { errors } from '../../domain/errors.ts';
import { loadArtifact } from './artifact.ts';
import { toLedgerError } from './errors.ts';

export interface SettlementInput {
  facilityId: string;
  /** epoch ms, a whole second */
  windowStart: number;
  /** epoch ms, a whole second */
  windowEnd: number;
  netGrams: bigint;
  /** 0x-prefixed 32-byte Merkle root */
  evidenceRoot: string;
}

export interface OnChainSettlement {
  facilityId?: string;
  facilityKey: string;
  windowStart: number;
  windowEnd: number;
  netGrams: bigint;
  mintedGrams: bigint;
  burnedGrams: bigint;
  /** the facility's deficit after this settlement */
  deficitGrams: bigint;
  evidenceRoot: string;
  txHash: string;
  blockNumber: number;
}

export interface SettlementResult {
  facilityId: string;
  windowStart: number;
  /** `skipped`: the window was already settled (by an earlier transaction); nothing changed now. */
  status: 'settled' | 'skipped';
  /** For a skipped entry: the amounts of the earlier settlement (see `original`). */
  mintedGrams: bigint;
  burnedGrams: bigint;
  deficitGrams: bigint;
  /** For a skipped entry: the earlier settlement of that window, read back from the chain. */
  original?: OnChainSettlement;
}

export interface TxInfo {
  txHash: string;
  blockNumber: number;
  gasUsed: bigint;
}

export interface FacilityState {
  registered: boolean;
  owner: string;
  suspended: boolean;
  /** epoch ms */
  nextWindowStart: number;
  /** decimal kg/h text */
  baselineKgPerHour: string;
  /** epoch ms */
  baselineEffectiveFrom: number;
  deficitGrams: bigint;
  mintedGrams: bigint;
  burnedGrams: bigint;
  retiredGrams: bigint;
}

export interface SignedRetirement {
  holder: string;
  amount: bigint;
  beneficiary: string;
  reason: string;
  nonce: bigint;
  /** UNIX seconds */
  deadline: number;
  signature: string;
}

export interface RetirementRecord {
  id: bigint;
  account: string;
  /** ZeroHash when the holder owns no facility */
  facilityKey: string;
  facilityId?: string;
  amountGrams: bigint;
  beneficiary: string;
  reason: string;
  /** epoch ms */
  retiredAt: number;
  txHash?: string;
}

export type LedgerRole = 'admin' | 'regulator' | 'oracle';

export const ROLES: Record<LedgerRole, string> = {
  admin: ethers.ZeroHash,
  regulator: ethers.id('REGULATOR_ROLE'),
  oracle: ethers.id('ORACLE_ROLE'),
};

/**
 * Most entries one settleBatch should carry: a first settlement costs ~35k gas per entry, and a
 * transaction is capped at 2^24 gas since Osaka (EIP-7825). Callers split larger sets.
 */
export const MAX_BATCH = 250;

/** EIP-712 types of a retirement request (CarbonLedger.sol RETIRE_TYPEHASH). */
export const RETIRE_TYPES = {
  Retire: [
    { name: 'holder', type: 'address' },
    { name: 'amount', type: 'uint256' },
    { name: 'beneficiary', type: 'string' },
    { name: 'reason', type: 'string' },
    { name: 'nonce', type: 'uint256' },
    { name: 'deadline', type: 'uint256' },
  ],
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

/** Blocks per eth_getLogs request (real providers cap log ranges; 10,000 is accepted by most). */
export const DEFAULT_LOG_RANGE = 10_000;

export interface LedgerOptions {
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

/** A signer that counts nonces locally (ethers NonceManager) and can forget its count. */
function resettable(runner: unknown): { reset(): void } | undefined {
  const r = runner as { reset?: unknown } | null;
  return r && typeof r.reset === 'function' ? (r as { reset(): void }) : undefined;
}

export class Ledger {
  readonly address: string;
  readonly contract: ethers.Contract;
  readonly signer: ethers.Signer;
  readonly provider: ethers.Provider;
  readonly #ids = new Map<string, string>();
  readonly #opts: LedgerOptions;
  /** Reads only: every send fails with CHAIN_SIGNER_MISSING (503) before reaching the chain. */
  readonly readOnly: boolean;

  private constructor(address: string, signer: ethers.Signer, opts: LedgerOptions = {}, readOnly = false) {
    this.#opts = opts;
    this.readOnly = readOnly;
    if (!signer.provider) throw errors.VALIDATION('the ledger signer needs a provider');
    this.address = ethers.getAddress(address);
    this.signer = signer;
    this.provider = signer.provider;
    this.contract = new ethers.Contract(this.address, loadArtifact().abi as ethers.InterfaceAbi, signer);
  }

  /** Deploys a new ledger; every role defaults to the deployer. */
  static async deploy(signer: ethers.Signer, opts: { admin?: string; regulator?: string; oracle?: string } & LedgerOptions = {}): Promise<Ledger> {
    const { abi, bytecode } = loadArtifact();
    const me = await signer.getAddress();
    const factory = new ethers.ContractFactory(abi as ethers.InterfaceAbi, bytecode, signer);
    try {
      const c = await factory.deploy(opts.admin ?? me, opts.regulator ?? me, opts.oracle ?? me);
      await c.waitForDeployment();
      const receipt = await c.deploymentTransaction()?.wait();
      return new Ledger(await c.getAddress(), signer, { confirmTimeoutMs: opts.confirmTimeoutMs, startBlock: opts.startBlock ?? receipt?.blockNumber, logRange: opts.logRange, afterMined: opts.afterMined });
    } catch (e) {
      throw toLedgerError(e);
    }
  }

  /** A client for an existing ledger, sending as `signer`. */
  static attach(address: string, signer: ethers.Signer, opts: LedgerOptions = {}): Ledger {
    return new Ledger(address, signer, opts);
  }

  /**
   * A client that reads the ledger but holds no key: a process without its own signing key (the
   * standalone gateway without GATEWAY_PRIVATE_KEY) must never borrow another process's key.
   */
  static readOnlyAt(address: string, provider: ethers.Provider, opts: LedgerOptions = {}): Ledger {
    return new Ledger(address, new ethers.VoidSigner(ethers.ZeroAddress, provider), opts, true);
  }

  /** The same ledger, sending as another signer. */
  connect(signer: ethers.Signer): Ledger {
    return new Ledger(this.address, signer, this.#opts);
  }

  /** The block log queries start from (the deployment block when this client deployed the ledger). */
  get startBlock(): number {
    return this.#opts.startBlock ?? 0;
  }

  /**
   * Forgets the signer's local nonce count (ethers NonceManager), so the next send asks the chain.
   * For a chain that went backwards (a reorganisation, a restored state): its nonces went back too.
   */
  resetNonce(): void {
    resettable(this.signer)?.reset();
  }

  /** The latest block number. */
  blockNumber(): Promise<number> {
    return this.#call(() => this.provider.getBlockNumber());
  }

  // ----- registry (REGULATOR_ROLE)

  async registerFacility(id: string, owner: string, baselineKgPerHour: string, firstWindowStart: number): Promise<TxInfo> {
    const mg = kgPerHourToMg(baselineKgPerHour);
    const start = toSeconds(firstWindowStart, 'firstWindowStart');
    this.#ids.set(facilityKey(id), id);
    return this.#send(this.contract, 'registerFacility', [id, owner, mg, start]);
  }

  setFacilitySuspended(id: string, suspended: boolean): Promise<TxInfo> {
    return this.#send(this.contract, 'setFacilitySuspended', [facilityKey(id), suspended]);
  }

  async setBaseline(id: string, baselineKgPerHour: string, effectiveFrom: number): Promise<TxInfo> {
    const mg = kgPerHourToMg(baselineKgPerHour);
    return this.#send(this.contract, 'setBaseline', [facilityKey(id), mg, toSeconds(effectiveFrom, 'effectiveFrom')]);
  }

  /** Corrects the owner of a facility that never settled (reverts FacilityHasSettlements otherwise). */
  setFacilityOwner(id: string, owner: string): Promise<TxInfo> {
    return this.#send(this.contract, 'setFacilityOwner', [facilityKey(id), owner]);
  }

  /** Removes a facility that never settled (reverts FacilityHasSettlements otherwise). */
  deregisterFacility(id: string): Promise<TxInfo> {
    return this.#send(this.contract, 'deregisterFacility', [facilityKey(id)]);
  }

  async facility(id: string): Promise<FacilityState> {
    const f = await this.#call(() => this.contract.facility(facilityKey(id)));
    return {
      registered: f.owner !== ethers.ZeroAddress,
      owner: f.owner,
      suspended: f.suspended,
      nextWindowStart: Number(f.nextWindowStart) * 1000,
      baselineKgPerHour: Decimal.of(f.baselineMgPerHour, 6).toString(),
      baselineEffectiveFrom: Number(f.baselineEffectiveFrom) * 1000,
      deficitGrams: f.deficit,
      mintedGrams: f.minted,
      burnedGrams: f.burned,
      retiredGrams: f.retired,
    };
  }

  // ----- token

  balanceOf(address: string): Promise<bigint> {
    return this.#call(() => this.contract.balanceOf(address));
  }

  totalSupply(): Promise<bigint> {
    return this.#call(() => this.contract.totalSupply());
  }

  /** ERC-20 transfer from `holder` (refused while either party's facility is suspended, or paused). */
  transfer(holder: ethers.Signer, to: string, amount: bigint): Promise<TxInfo> {
    return this.#send(this.contract.connect(holder) as ethers.Contract, 'transfer', [to, amount]);
  }

  // ----- settlement (ORACLE_ROLE)

  /**
   * Settles the inputs in one transaction. Already-settled windows are skipped on chain and reported
   * as `skipped` (with the earlier settlement in `original`); a gap, an unknown facility or an empty
   * window reverts the whole batch with a LedgerRevertError (see decodeLedgerError).
   */
  async settleBatch(inputs: SettlementInput[]): Promise<{ txHash: string; gasUsed: bigint; blockNumber: number; results: SettlementResult[] }> {
    if (inputs.length === 0) throw errors.VALIDATION('settleBatch needs at least one input');
    if (inputs.length > MAX_BATCH) throw errors.VALIDATION(`settleBatch takes at most ${MAX_BATCH} inputs, got ${inputs.length}`);
    const encoded = inputs.map((s) => {
      this.#ids.set(facilityKey(s.facilityId), s.facilityId);
      return {
        facility: facilityKey(s.facilityId),
        windowStart: toSeconds(s.windowStart, 'windowStart'),
        windowEnd: toSeconds(s.windowEnd, 'windowEnd'),
        netGrams: s.netGrams,
        evidenceRoot: ethers.zeroPadValue(s.evidenceRoot, 32),
      };
    });
    const receipt = await this.#sendReceipt(this.contract, 'settleBatch', [encoded]);
    const settled = new Map<string, OnChainSettlement>();
    const skipped = new Set<string>();
    for (const log of receipt.logs) {
      const parsed = this.#parseLog(log);
      if (parsed?.name === 'WindowSettled') {
        const s = this.#toSettlement(parsed, log);
        settled.set(`${s.facilityKey}:${s.windowStart}`, s);
      } else if (parsed?.name === 'SettlementSkipped') {
        skipped.add(`${parsed.args.facility}:${Number(parsed.args.windowStart) * 1000}`);
      }
    }
    const results: SettlementResult[] = [];
    for (const s of inputs) {
      const id = `${facilityKey(s.facilityId)}:${s.windowStart}`;
      const mine = settled.get(id);
      if (mine) {
        results.push({ facilityId: s.facilityId, windowStart: s.windowStart, status: 'settled', mintedGrams: mine.mintedGrams, burnedGrams: mine.burnedGrams, deficitGrams: mine.deficitGrams });
        continue;
      }
      if (!skipped.has(id)) throw errors.CHAIN_UNAVAILABLE(`settleBatch receipt ${receipt.hash} has no event for ${s.facilityId} at ${s.windowStart}`);
      const original = await this.settlementAt(s.facilityId, s.windowStart);
      results.push({
        facilityId: s.facilityId,
        windowStart: s.windowStart,
        status: 'skipped',
        mintedGrams: original?.mintedGrams ?? 0n,
        burnedGrams: original?.burnedGrams ?? 0n,
        deficitGrams: original?.deficitGrams ?? 0n,
        original,
      });
    }
    return { txHash: receipt.hash, gasUsed: receipt.gasUsed, blockNumber: receipt.blockNumber, results };
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
    const logs = await this.#logs(this.contract.filters.WindowSettled(key), filter.fromBlock);
    const out: OnChainSettlement[] = [];
    for (const log of logs) {
      const parsed = this.#parseLog(log);
      if (!parsed) continue;
      const s = this.#toSettlement(parsed, log);
      if (filter.windowStart === undefined || s.windowStart === filter.windowStart) out.push(s);
    }
    await this.#resolveIds(out);
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
    const range = this.#range();
    const start = this.startBlock;
    let to = await this.blockNumber();
    while (to >= start) {
      const from = Math.max(start, to - range + 1);
      const logs = await this.#call(() => this.contract.queryFilter(ev, from, to));
      for (let i = logs.length - 1; i >= 0; i--) {
        const parsed = this.#parseLog(logs[i]);
        if (!parsed) continue;
        const s = this.#toSettlement(parsed, logs[i]);
        if (s.windowStart === windowStart) {
          s.facilityId ??= facilityId;
          return s;
        }
      }
      to = from - 1;
    }
    return undefined;
  }

  // ----- retirement

  /** Retires `amount` grams of `holder`'s credits; returns the new record id. */
  async retire(holder: ethers.Signer, amount: bigint, beneficiary: string, reason: string): Promise<{ id: bigint; txHash: string }> {
    const c = this.contract.connect(holder) as ethers.Contract;
    const receipt = await this.#sendReceipt(c, 'retire', [amount, beneficiary, reason]);
    return { id: this.#retiredId(receipt), txHash: receipt.hash };
  }

  /** The holder signs an EIP-712 retirement request (nonce read from the chain) that anyone may relay. */
  async signRetirement(holder: ethers.Signer, amount: bigint, beneficiary: string, reason: string, deadline: number): Promise<SignedRetirement> {
    const address = await holder.getAddress();
    const [nonce, network] = await Promise.all([this.#call<bigint>(() => this.contract.nonces(address)), this.provider.getNetwork()]);
    const domain = { name: 'CarbonLedger', version: '1', chainId: network.chainId, verifyingContract: this.address };
    const value = { holder: address, amount, beneficiary, reason, nonce, deadline };
    const signature = await holder.signTypedData(domain, RETIRE_TYPES, value);
    return { holder: address, amount, beneficiary, reason, nonce, deadline, signature };
  }

  /** Relays a signed retirement request (this client's signer pays the gas). */
  async retireWithSig(req: SignedRetirement): Promise<{ id: bigint; txHash: string }> {
    const receipt = await this.#sendReceipt(this.contract, 'retireWithSig', [req.holder, req.amount, req.beneficiary, req.reason, req.nonce, req.deadline, req.signature]);
    return { id: this.#retiredId(receipt), txHash: receipt.hash };
  }

  /**
   * The retirement a signed request produced, once its nonce has been used, whoever submitted it (this
   * relay, or a third party who sent the same request first): the holder's CreditsRetired event whose
   * transaction called `retireWithSig` on this ledger with the request's holder, nonce and content.
   * Undefined while the nonce is unused, or when it was used by another request of the holder (or
   * through a contract that wraps the call, which this lookup does not trace).
   */
  async retirementOfRequest(req: SignedRetirement): Promise<{ id: bigint; txHash: string } | undefined> {
    const used = await this.#call<bigint>(() => this.contract.nonces(req.holder));
    if (used <= req.nonce) return undefined;
    const logs = await this.#logs(this.contract.filters.CreditsRetired(null, req.holder, null));
    for (const log of [...logs].reverse()) {
      const parsed = this.#parseLog(log);
      const tx = parsed ? await this.#call(() => this.provider.getTransaction(log.transactionHash)) : null;
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

  /** Retirement records, oldest first, optionally of one account or one facility. */
  async retirements(filter: { account?: string; facilityId?: string } = {}): Promise<RetirementRecord[]> {
    const ev = this.contract.filters.CreditsRetired(null, filter.account ?? null, filter.facilityId === undefined ? null : facilityKey(filter.facilityId));
    const logs = await this.#logs(ev);
    const records = await Promise.all(
      logs.map(async (log) => {
        const parsed = this.#parseLog(log);
        if (!parsed) return undefined;
        const r = await this.#call(() => this.contract.retirement(parsed.args.id));
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
    if (out.some((r) => r.facilityKey !== ethers.ZeroHash && !this.#ids.has(r.facilityKey))) await this.#loadIds();
    for (const r of out) r.facilityId = this.#ids.get(r.facilityKey);
    return out;
  }

  // ----- admin

  grantRole(role: LedgerRole, account: string): Promise<TxInfo> {
    return this.#send(this.contract, 'grantRole', [ROLES[role], account]);
  }

  revokeRole(role: LedgerRole, account: string): Promise<TxInfo> {
    return this.#send(this.contract, 'revokeRole', [ROLES[role], account]);
  }

  hasRole(role: LedgerRole, account: string): Promise<boolean> {
    return this.#call(() => this.contract.hasRole(ROLES[role], account));
  }

  pause(): Promise<TxInfo> {
    return this.#send(this.contract, 'pause', []);
  }

  unpause(): Promise<TxInfo> {
    return this.#send(this.contract, 'unpause', []);
  }

  paused(): Promise<boolean> {
    return this.#call(() => this.contract.paused());
  }

  // ----- internals

  #range(): number {
    const r = this.#opts.logRange ?? DEFAULT_LOG_RANGE;
    if (!Number.isSafeInteger(r) || r < 1) throw errors.VALIDATION(`logRange must be a positive integer: ${r}`);
    return r;
  }

  /** Logs of `ev` from `fromBlock` (default the start block) to the latest block, `logRange` blocks per request. */
  async #logs(ev: ethers.ContractEventName, fromBlock?: number): Promise<(ethers.EventLog | ethers.Log)[]> {
    const range = this.#range();
    const head = await this.blockNumber();
    const out: (ethers.EventLog | ethers.Log)[] = [];
    for (let from = Math.max(fromBlock ?? this.startBlock, this.startBlock); from <= head; from += range) {
      const to = Math.min(head, from + range - 1);
      out.push(...(await this.#call(() => this.contract.queryFilter(ev, from, to))));
    }
    return out;
  }

  async #call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw toLedgerError(e);
    }
  }

  /**
   * Estimates first, then sends with that gas limit (+20%). A revert thus surfaces before the signer
   * sends anything, so a nonce-managing signer (ethers NonceManager) never counts a nonce for a
   * transaction that was not sent, and the caller gets the decoded custom error.
   */
  async #sendReceipt(contract: ethers.Contract, method: string, args: unknown[]): Promise<ethers.ContractTransactionReceipt> {
    if (this.readOnly && contract.runner === this.signer) throw errors.CHAIN_SIGNER_MISSING(method);
    let sending = false;
    try {
      const fn = contract.getFunction(method);
      const gas = await fn.estimateGas(...args);
      sending = true;
      const tx = (await fn.send(...args, { gasLimit: (gas * 12n) / 10n })) as ethers.ContractTransactionResponse;
      const timeout = this.#opts.confirmTimeoutMs ?? 120_000;
      const receipt = await waitMined(tx, timeout);
      if (!receipt) throw errors.CHAIN_UNAVAILABLE(`no receipt for ${tx.hash}`);
      if (this.#opts.afterMined) {
        sending = false; // mined: the nonce is used, whatever happens to the hook
        await this.#opts.afterMined();
      }
      return receipt;
    } catch (e) {
      // A nonce-counting signer counted a nonce for this send whatever happened to it (refused by the
      // node, lost on the way, never mined): forget the count, so the next send asks the chain for
      // its pending nonce instead of leaving a gap that stalls every later transaction.
      if (sending) resettable(contract.runner)?.reset();
      throw toLedgerError(e);
    }
  }

  async #send(contract: ethers.Contract, method: string, args: unknown[]): Promise<TxInfo> {
    const r = await this.#sendReceipt(contract, method, args);
    return { txHash: r.hash, blockNumber: r.blockNumber, gasUsed: r.gasUsed };
  }

  #parseLog(log: ethers.Log): ethers.LogDescription | undefined {
    if (ethers.getAddress(log.address) !== this.address) return undefined;
    try {
      return this.contract.interface.parseLog(log) ?? undefined;
    } catch {
      return undefined;
    }
  }

  #toSettlement(parsed: ethers.LogDescription, log: ethers.Log): OnChainSettlement {
    const a = parsed.args;
    return {
      facilityId: this.#ids.get(a.facility),
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

  #retiredId(receipt: ethers.TransactionReceipt): bigint {
    for (const log of receipt.logs) {
      const parsed = this.#parseLog(log);
      if (parsed?.name === 'CreditsRetired') return parsed.args.id;
    }
    throw errors.CHAIN_UNAVAILABLE(`retirement receipt ${receipt.hash} has no CreditsRetired event`);
  }

  /** Learns key -> id from FacilityRegistered events (the chain is the source of truth). */
  async #loadIds(): Promise<void> {
    const logs = await this.#logs(this.contract.filters.FacilityRegistered());
    for (const log of logs) {
      const parsed = this.#parseLog(log);
      if (parsed) this.#ids.set(parsed.args.facility, parsed.args.facilityId);
    }
  }

  async #resolveIds(items: OnChainSettlement[]): Promise<void> {
    if (items.some((s) => s.facilityId === undefined)) await this.#loadIds();
    for (const s of items) s.facilityId ??= this.#ids.get(s.facilityKey);
  }
}

/**
 * tx.wait(1) in slices until `timeoutMs`. ethers checks for the receipt once, then waits for a NEW
 * block: on an automining chain (anvil, Hardhat) a transaction mined between that check and the start
 * of its block polling is followed by no block at all, and a single wait would hang to its timeout
 * (seen on a loaded machine). Each slice checks the receipt again.
 */
async function waitMined(tx: ethers.ContractTransactionResponse, timeoutMs: number): Promise<ethers.ContractTransactionReceipt | null> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const slice = Math.max(1, Math.min(2_000, deadline - Date.now()));
    try {
      return await tx.wait(1, slice);
    } catch (e) {
      if (!ethers.isError(e, 'TIMEOUT')) throw e;
      if (Date.now() >= deadline) throw errors.CHAIN_UNAVAILABLE(`transaction ${tx.hash} not mined within ${timeoutMs} ms`);
    }
  }
}
