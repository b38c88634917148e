/**
 * The ledger client (ethers v6): deploys CreditLedger and implements the ledger port (port.ts) on
 * it. This file is the write side (registry, settlement, retirement, admin); reads and event logs
 * are in reads.ts, reaching the chain and nonce handling in connect.ts, revert decoding in errors.ts.
 */
import { ethers } from 'ethers';
import { errors } from '../../domain/errors.ts';
import { loadArtifact } from './artifact.ts';
import { keySigner, resetNonce, rpcProvider, sendCall, voidSigner } from './connect.ts';
import { toChainError } from './errors.ts';
import {
  MAX_BATCH,
  RETIRE_TYPES,
  type LedgerAdminPort,
  type LedgerPort,
  type LedgerRole,
  type OnChainSettlement,
  type RetirementReceipt,
  type SettleBatchResult,
  type SettlementEntry,
  type SettlementResult,
  type SignedRetirement,
  type TxInfo,
} from './port.ts';
import { LedgerReader, type LedgerOptions } from './reads.ts';
import { facilityKey, kgPerHourToMg, LEDGER_ROLES, publicKeyToBytes32, toSeconds } from './units.ts';

export { DEFAULT_LOG_RANGE, type LedgerOptions } from './reads.ts';

export class Ledger extends LedgerReader implements LedgerPort, LedgerAdminPort {
  readonly signer: ethers.Signer;
  /** Reads only: every send fails with CHAIN_SIGNER_MISSING (503) before reaching the chain. */
  readonly readOnly: boolean;

  private constructor(address: string, signer: ethers.Signer, opts: LedgerOptions = {}, readOnly = false) {
    super(address, signer, opts);
    this.signer = signer;
    this.readOnly = readOnly;
  }

  protected override canSend(): boolean {
    return !this.readOnly;
  }

  /** Deploys a new ledger with the fixed window length `windowSeconds`; every role defaults to the deployer. */
  static async deploy(signer: ethers.Signer, opts: { windowSeconds: number; admin?: string; regulator?: string; oracle?: string } & LedgerOptions): Promise<Ledger> {
    const { abi, bytecode } = loadArtifact();
    const me = await signer.getAddress();
    const factory = new ethers.ContractFactory(abi as ethers.InterfaceAbi, bytecode, signer);
    try {
      const c = await factory.deploy(opts.admin ?? me, opts.regulator ?? me, opts.oracle ?? me, opts.windowSeconds);
      await c.waitForDeployment();
      const receipt = await c.deploymentTransaction()?.wait();
      return new Ledger(await c.getAddress(), signer, { confirmTimeoutMs: opts.confirmTimeoutMs, startBlock: opts.startBlock ?? receipt?.blockNumber, logRange: opts.logRange, afterMined: opts.afterMined });
    } catch (e) {
      throw toChainError(e);
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
    return new Ledger(address, voidSigner(provider), opts, true);
  }

  /**
   * A client for the ledger at `address` over JSON-RPC at `rpcUrl`, signing with `privateKey`
   * (nonces counted locally), or read-only without one. `close()` stops the provider.
   */
  static open(opts: { rpcUrl: string; address: string; privateKey?: string } & LedgerOptions): { ledger: Ledger; close(): void } {
    const { rpcUrl, address, privateKey, ...rest } = opts;
    const provider = rpcProvider(rpcUrl);
    const ledger = privateKey ? Ledger.attach(address, keySigner(privateKey, provider), rest) : Ledger.readOnlyAt(address, provider, rest);
    return { ledger, close: () => provider.destroy() };
  }

  /** The same ledger, sending as another signer. */
  connect(signer: ethers.Signer): Ledger {
    return new Ledger(this.address, signer, this.opts);
  }

  /**
   * Forgets the signer's local nonce count (ethers NonceManager), so the next send asks the chain.
   * For a chain that went backwards (a reorganisation, a restored state): its nonces went back too.
   */
  resetNonce(): void {
    resetNonce(this.signer);
  }

  // ----- registry (REGULATOR_ROLE)

  async registerFacility(id: string, owner: string, baselineKgPerHour: string, firstWindowStart: number): Promise<TxInfo> {
    const mg = kgPerHourToMg(baselineKgPerHour);
    const start = toSeconds(firstWindowStart, 'firstWindowStart');
    this.ids.set(facilityKey(id), id);
    return this.send('registerFacility', [id, owner, mg, start]);
  }

  setFacilitySuspended(id: string, suspended: boolean): Promise<TxInfo> {
    return this.send('setFacilitySuspended', [facilityKey(id), suspended]);
  }

  async setBaseline(id: string, baselineKgPerHour: string, effectiveFrom: number): Promise<TxInfo> {
    const mg = kgPerHourToMg(baselineKgPerHour);
    return this.send('setBaseline', [facilityKey(id), mg, toSeconds(effectiveFrom, 'effectiveFrom')]);
  }

  setFacilityOwner(id: string, owner: string): Promise<TxInfo> {
    return this.send('setFacilityOwner', [facilityKey(id), owner]);
  }

  deregisterFacility(id: string): Promise<TxInfo> {
    return this.send('deregisterFacility', [facilityKey(id)]);
  }

  /** Records (or rotates) a device's public key (REGULATOR_ROLE); the current key again is a no-op on chain. */
  async setDeviceKey(deviceId: string, publicKeyHex: string): Promise<TxInfo> {
    return this.send('setDeviceKey', [deviceId, publicKeyToBytes32(publicKeyHex)]);
  }

  /** Schedules an export allowance (g/h, added to the baseline in the cap) from `effectiveFrom` (epoch ms). */
  setExportAllowance(id: string, gramsPerHour: bigint, effectiveFrom: number): Promise<TxInfo> {
    return this.send('setExportAllowance', [facilityKey(id), gramsPerHour, toSeconds(effectiveFrom, 'effectiveFrom')]);
  }

  // ----- token

  /** ERC-1155 transfer of `amount` of batch `batchId` from `holder` (refused while suspended, frozen or paused). */
  async transfer(holder: ethers.Signer, to: string, batchId: bigint, amount: bigint): Promise<TxInfo> {
    return txInfo(await this.receipt('safeTransferFrom', [await holder.getAddress(), to, batchId, amount, '0x'], holder));
  }

  // ----- settlement (ORACLE_ROLE)

  /**
   * Settles the entries in one transaction. Already-settled windows are skipped on chain and reported
   * as `skipped` (with the earlier settlement in `original`); a gap, an unknown facility or an empty
   * window reverts the whole batch with a LedgerRevertError (see decodeLedgerError).
   */
  async settleBatch(inputs: SettlementEntry[]): Promise<SettleBatchResult> {
    if (inputs.length === 0) throw errors.VALIDATION('settleBatch needs at least one input');
    if (inputs.length > MAX_BATCH) throw errors.VALIDATION(`settleBatch takes at most ${MAX_BATCH} inputs, got ${inputs.length}`);
    const windowMs = await this.windowMs();
    const encoded = inputs.map((s) => {
      this.ids.set(facilityKey(s.facilityId), s.facilityId);
      // The ledger's windows have one fixed length: a window of another length is a configuration error.
      if (s.windowEnd - s.windowStart !== windowMs) {
        throw errors.CONFIG_INVALID(`the ledger's windows are ${windowMs / 1000} s, but ${s.facilityId}'s window at ${s.windowStart} is ${(s.windowEnd - s.windowStart) / 1000} s (WINDOW_SECONDS must match the deployed ledger)`);
      }
      return {
        facility: facilityKey(s.facilityId),
        windowStart: toSeconds(s.windowStart, 'windowStart'),
        netGrams: s.netGrams,
        evidenceRoot: ethers.zeroPadValue(s.evidenceRoot, 32),
      };
    });
    const receipt = await this.receipt('settleBatch', [encoded]);
    const settled = new Map<string, OnChainSettlement>();
    const skipped = new Set<string>();
    const txLogs = new Map([[receipt.hash, receipt.logs as readonly ethers.Log[]]]);
    for (const log of receipt.logs) {
      const parsed = this.parseLog(log);
      if (parsed?.name === 'WindowSettled') {
        const s = this.toSettlement(parsed, log, windowMs, txLogs);
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
    return { ...txInfo(receipt), results };
  }

  // ----- retirement

  /** Retires grams of batches (`amounts[i]` of `batchIds[i]`) with the holder's own transaction. */
  async retire(holder: ethers.Signer, batchIds: bigint[], amounts: bigint[], beneficiary: string, reason: string): Promise<RetirementReceipt> {
    const receipt = await this.receipt('retire', [batchIds, amounts, beneficiary, reason], holder);
    return { id: this.retiredId(receipt), txHash: receipt.hash };
  }

  /**
   * The holder signs an EIP-712 retirement request over batch ids and amounts that anyone may relay:
   * its nonce and the ledger's domain read from the chain, `deadline` in unix seconds.
   */
  async signRetirement(holder: ethers.Signer, batchIds: bigint[], amounts: bigint[], beneficiary: string, reason: string, deadline: number): Promise<SignedRetirement> {
    const address = await holder.getAddress();
    const [nonce, domain] = await Promise.all([this.nonces(address), this.eip712Domain()]);
    const value = { holder: address, batchIds, amounts, beneficiary, reason, nonce, deadline };
    const signature = await holder.signTypedData(domain, RETIRE_TYPES, value);
    return { holder: address, batchIds, amounts, beneficiary, reason, nonce, deadline, signature };
  }

  /** Relays a signed retirement request (this client's signer pays the gas). */
  async retireWithSig(req: SignedRetirement): Promise<RetirementReceipt> {
    const receipt = await this.receipt('retireWithSig', [req.holder, req.batchIds, req.amounts, req.beneficiary, req.reason, req.nonce, req.deadline, req.signature]);
    return { id: this.retiredId(receipt), txHash: receipt.hash };
  }

  // ----- admin (DEFAULT_ADMIN_ROLE)

  grantRole(role: LedgerRole, account: string): Promise<TxInfo> {
    return this.send('grantRole', [LEDGER_ROLES[role], account]);
  }

  revokeRole(role: LedgerRole, account: string): Promise<TxInfo> {
    return this.send('revokeRole', [LEDGER_ROLES[role], account]);
  }

  pause(): Promise<TxInfo> {
    return this.send('pause', []);
  }

  unpause(): Promise<TxInfo> {
    return this.send('unpause', []);
  }

  // ----- internals

  /** Sends `method` as `from` (default this client's signer) and waits for its receipt. */
  private async receipt(method: string, args: unknown[], from?: ethers.Signer): Promise<ethers.ContractTransactionReceipt> {
    if (this.readOnly && !from) throw errors.CHAIN_SIGNER_MISSING(method);
    const contract = from ? (this.contract.connect(from) as ethers.Contract) : this.contract;
    return sendCall(contract, method, args, this.opts);
  }

  private async send(method: string, args: unknown[]): Promise<TxInfo> {
    return txInfo(await this.receipt(method, args));
  }

  private retiredId(receipt: ethers.TransactionReceipt): bigint {
    for (const log of receipt.logs) {
      const parsed = this.parseLog(log);
      if (parsed?.name === 'CreditsRetired') return parsed.args.id;
    }
    throw errors.CHAIN_UNAVAILABLE(`retirement receipt ${receipt.hash} has no CreditsRetired event`);
  }
}

function txInfo(r: ethers.ContractTransactionReceipt): TxInfo {
  return { txHash: r.hash, blockNumber: r.blockNumber, gasUsed: r.gasUsed };
}
