/**
 * The chain side of corrections, as one narrow port (kept apart from LedgerPort so it can be wired
 * beside whichever ledger client the platform runs): a regulator's `voidReadings`, the oracle's
 * `settleCorrections`, and the reads the oracle needs to send each correction exactly once (the
 * chain's count of a window's corrections, and its CorrectionSettled events). Times in epoch ms,
 * grams as bigint, failures as catalogue errors (LEDGER_REVERTED with the decoded custom error,
 * CHAIN_UNAVAILABLE). Implemented with ethers v6 against CreditLedger's ABI; writes go through
 * connect.ts `sendCall` like the ledger client's (estimated first, so a refused write never costs the
 * key's nonce counter a nonce, and waited for in bounded slices).
 */
import { ethers } from 'ethers';
import { DomainError, errors } from '../../domain/errors.ts';
import { loadArtifact } from './artifact.ts';
import { sendCall } from './connect.ts';
import { toChainError } from './errors.ts';
import { facilityKey } from './units.ts';

export interface CorrectionEntry {
  facilityId: string;
  /** Epoch ms of the corrected window's start. */
  windowStart: number;
  /** The correction's number for that window (1, 2, ...). */
  seq: number;
  /** The ledger's void number that authorises it. */
  voidId: number;
  deltaGrams: bigint;
  evidenceRoot: string;
  reason: string;
}

export interface CorrectionApplied {
  facilityId: string;
  windowStart: number;
  seq: number;
  voidId: number;
  deltaGrams: bigint;
  mintedGrams: bigint;
  burnedGrams: bigint;
  /** The facility's deficit after it. */
  deficitAfterGrams: bigint;
  evidenceRoot: string;
  reason: string;
  txHash?: string;
}

export interface VoidRecorded {
  /** The ledger's void number. */
  id: number;
  /** The facility's next window start on chain when it was recorded (epoch ms): windows before it may be corrected under it. */
  settledBefore: number;
  txHash: string;
}

export interface CorrectionPort {
  /** Records a void of a device's readings over [from, to) (epoch ms; the ledger keeps seconds, `to` rounded up). REGULATOR_ROLE. */
  voidReadings(facilityId: string, deviceId: string, from: number, to: number, reason: string): Promise<VoidRecorded>;
  /** Applies corrections in order (one already applied is skipped by the ledger). ORACLE_ROLE. */
  settleCorrections(list: CorrectionEntry[]): Promise<{ txHash: string; applied: CorrectionApplied[]; skipped: { facilityId: string; windowStart: number; seq: number }[] }>;
  /** Corrections the chain applied to a window so far and their cumulative delta. */
  correctionCount(facilityId: string, windowStart: number): Promise<{ count: number; cumulativeDeltaGrams: bigint }>;
  /** The facility's CorrectionSettled events, oldest first. */
  correctionsOf(facilityId: string): Promise<CorrectionApplied[]>;
}

export interface CorrectionPortOptions {
  /** The CreditLedger's address. */
  address: string;
  /** A signer (writes) or a provider (reads only). */
  runner: ethers.Signer | ethers.Provider;
  /** First block to read logs from. */
  startBlock?: number;
  /** The runner holds no key (a read-only Ledger's): writes fail with CHAIN_SIGNER_MISSING before reaching the chain. */
  readOnly?: boolean;
}

const seconds = (ms: number, up = false): bigint => {
  if (!Number.isSafeInteger(ms) || ms < 0) throw errors.VALIDATION(`time must be a non-negative epoch ms: ${ms}`);
  return BigInt(up ? Math.ceil(ms / 1000) : Math.floor(ms / 1000));
};

let iface: ethers.Interface | undefined;
const creditInterface = (): ethers.Interface => (iface ??= new ethers.Interface(loadArtifact('CreditLedger').abi as ethers.InterfaceAbi));

/**
 * A chain failure as a catalogue error: CreditLedger's custom errors decoded by name and arguments.
 * A catalogue error (a write's, decoded by sendCall) stays as it is.
 */
export function correctionChainError(e: unknown): unknown {
  if (e instanceof DomainError) return e;
  const data = findRevertData(e);
  if (data) {
    try {
      const parsed = creditInterface().parseError(data);
      if (parsed) return errors.LEDGER_REVERTED(`${parsed.name}(${[...parsed.args].map(String).join(', ')})`);
    } catch {
      // not CreditLedger's: the generic mapping below
    }
  }
  return toChainError(e);
}

function findRevertData(e: unknown, depth = 0): string | undefined {
  if (!e || typeof e !== 'object' || depth > 5) return undefined;
  const r = e as Record<string, unknown>;
  if (typeof r.data === 'string' && /^0x[0-9a-fA-F]{8,}$/.test(r.data)) return r.data;
  for (const k of ['error', 'info', 'cause', 'data', 'payload']) {
    const d = findRevertData(r[k], depth + 1);
    if (d) return d;
  }
  return undefined;
}

/** The CorrectionPort on a deployed CreditLedger. */
export function openCorrectionPort(opts: CorrectionPortOptions): CorrectionPort {
  const contract = new ethers.Contract(opts.address, creditInterface(), opts.runner);
  const provider = 'provider' in opts.runner && opts.runner.provider ? opts.runner.provider : (opts.runner as ethers.Provider);

  async function call<T>(f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      throw correctionChainError(e);
    }
  }

  function applied(facilityId: string, args: ethers.Result, txHash?: string): CorrectionApplied {
    return {
      facilityId,
      windowStart: Number(args.windowStart) * 1000,
      seq: Number(args.seq),
      voidId: Number(args.voidId),
      deltaGrams: BigInt(args.deltaGrams),
      mintedGrams: BigInt(args.minted),
      burnedGrams: BigInt(args.burned),
      deficitAfterGrams: BigInt(args.deficitAfter),
      evidenceRoot: String(args.evidenceRoot).toLowerCase(),
      reason: String(args.reason),
      ...(txHash ? { txHash } : {}),
    };
  }

  return {
    voidReadings: (facilityId, deviceId, from, to, reason) =>
      call(async () => {
        if (opts.readOnly) throw errors.CHAIN_SIGNER_MISSING('recording a void on chain');
        const receipt = await sendCall(contract, 'voidReadings', [facilityKey(facilityId), deviceId, seconds(from), seconds(to, true), reason]);
        for (const log of receipt.logs) {
          const parsed = creditInterface().parseLog(log);
          if (parsed?.name === 'ReadingsVoided') {
            return { id: Number(parsed.args.id), settledBefore: Number(parsed.args.settledBefore) * 1000, txHash: receipt.hash };
          }
        }
        throw errors.LEDGER_REVERTED('voidReadings emitted no ReadingsVoided event');
      }),

    settleCorrections: (list) =>
      call(async () => {
        if (opts.readOnly) throw errors.CHAIN_SIGNER_MISSING('sending corrections');
        const ids = new Map(list.map((c) => [facilityKey(c.facilityId), c.facilityId]));
        const inputs = list.map((c) => ({
          facility: facilityKey(c.facilityId),
          windowStart: seconds(c.windowStart),
          seq: c.seq,
          voidId: BigInt(c.voidId),
          deltaGrams: c.deltaGrams,
          evidenceRoot: c.evidenceRoot,
          reason: c.reason,
        }));
        const receipt = await sendCall(contract, 'settleCorrections', [inputs]);
        const out = { txHash: receipt.hash, applied: [] as CorrectionApplied[], skipped: [] as { facilityId: string; windowStart: number; seq: number }[] };
        for (const log of receipt.logs) {
          const parsed = creditInterface().parseLog(log);
          if (!parsed) continue;
          const facilityId = ids.get(String(parsed.args.facility).toLowerCase()) ?? ids.get(String(parsed.args.facility));
          if (facilityId === undefined) continue;
          if (parsed.name === 'CorrectionSettled') out.applied.push(applied(facilityId, parsed.args, receipt.hash));
          if (parsed.name === 'CorrectionSkipped') out.skipped.push({ facilityId, windowStart: Number(parsed.args.windowStart) * 1000, seq: Number(parsed.args.seq) });
        }
        return out;
      }),

    correctionCount: (facilityId, windowStart) =>
      call(async () => {
        const [count, cumulative] = (await contract.corrections(facilityKey(facilityId), seconds(windowStart))) as [bigint, bigint];
        return { count: Number(count), cumulativeDeltaGrams: BigInt(cumulative) };
      }),

    correctionsOf: (facilityId) =>
      call(async () => {
        const logs = await provider.getLogs({
          address: opts.address,
          topics: [creditInterface().getEvent('CorrectionSettled')!.topicHash, facilityKey(facilityId)],
          fromBlock: opts.startBlock ?? 0,
          toBlock: 'latest',
        });
        return logs.map((log) => applied(facilityId, creditInterface().parseLog(log)!.args, log.transactionHash));
      }),
  };
}
