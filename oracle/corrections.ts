/**
 * Corrections (SPEC "Methodology", corrections; docs/METHODOLOGY.md "Corrections"): after a regulator
 * voids readings, every settled window whose evidence used them is recomputed without them, by the
 * same methodology and the same cursors rule, and gets a correction settlement: append-only, numbered
 * per window (seq 1, 2, ...), referencing the original, with its own evidence root (the window's
 * leaves under the voids, plus `void` and `correction` leaves) and delta = new net - previous net.
 *
 * The cursors rule carries through: a window recomputed without a voided register reading ends on
 * another cursor, so the next window starts there and is recomputed too, until a window ends where it
 * ended before; the device cursors of the last settled window move with it, so the next settlement
 * starts from the corrected cursor (nothing dropped, nothing counted twice).
 *
 * `plan` records correction intents (idempotent: a window whose recomputation equals its effective
 * record, the original or its latest correction, is left alone, so voiding twice corrects once; so is
 * one whose net, completeness and end cursors stay the same, where only a coverage fact moved).
 * `send` puts the intents on chain through a CorrectionPort exactly once: the chain's count of a
 * window's corrections is the truth; one it already has is confirmed from its event, never sent again.
 */
import { errors, isError } from '../domain/errors.ts';
import type { Logger } from '../domain/logger.ts';
import { parseReadingKey } from '../domain/reading.ts';
import type { CorrectionApplied, CorrectionEntry, CorrectionPort } from '../contracts/client/corrections.ts';
import {
  correctionId,
  type Correction,
  type CorrectionRecords,
  type CorrectionRef,
  type NewCorrection,
  type ReadingStore,
  type RecordedInputs,
  type RecordedVoid,
  type Settlement,
  type SettlementReader,
} from '../store/types.ts';
import type { RegisterCursor } from './methodology.ts';
import { evaluate, recordedInputs, recordedVoid, recordedWindowInputs } from './inputs.ts';
import { voidAt } from './voids.ts';

/** Longest reason a correction carries on chain (the ledger's MAX_TEXT_LENGTH, bytes). */
export const MAX_REASON_BYTES = 256;

export interface CorrectorDeps {
  readings: ReadingStore;
  records: Pick<SettlementReader, 'listSettlements'>;
  corrections: CorrectionRecords;
}

export interface Corrector {
  /** Records the corrections the facility's voids call for; returns the new ones (none when up to date). */
  plan(facilityId: string): Promise<Correction[]>;
}

const sameCursors = (a: RegisterCursor[], b: RegisterCursor[]): boolean => JSON.stringify(a) === JSON.stringify(b);

/** The reason text of a correction: its voids' reasons, cut to what the ledger takes. */
function reasonOf(voids: RecordedVoid[]): string {
  let text = [...new Set(voids.map((v) => v.reason))].join('; ');
  while (Buffer.byteLength(text, 'utf8') > MAX_REASON_BYTES) text = text.slice(0, -1);
  return text || 'readings voided';
}

/** Whether a window after every void may still have used a voided reading (a late one, a coverage fact, a cursor). */
function mayUseVoided(inputs: RecordedInputs, voids: RecordedVoid[]): boolean {
  const devices = new Set(voids.map((v) => v.deviceId));
  const mine = (deviceId: string) => voids.filter((v) => v.deviceId === deviceId);
  if (inputs.lateKeys.some((k) => devices.has(parseReadingKey(k).deviceId))) return true;
  return inputs.devices.some((d) => {
    if (!devices.has(d.deviceId)) return false;
    const own = mine(d.deviceId);
    if (d.coverage.before && voidAt(own, d.coverage.before.ts)) return true;
    return d.startCursors.some((c) => voidAt(own, c.ts)) || d.endCursors.some((c) => voidAt(own, c.ts));
  });
}

/** Confirmed settlements of a facility with windowEnd > from, oldest first, page by page. */
async function* settlementsAfter(records: CorrectorDeps['records'], facilityId: string, from: number): AsyncGenerator<Settlement> {
  // The window holding `from` starts at or before it: the newest one starting there is where to begin.
  const first = (await records.listSettlements({ facilityId, to: from + 1, newestFirst: true, limit: 1 }))[0];
  let start = first ? first.windowStart : from;
  for (;;) {
    const page = await records.listSettlements({ facilityId, from: start, limit: 1000 });
    for (const s of page) if (s.windowEnd > from) yield s;
    if (page.length < 1000) return;
    start = page[page.length - 1].windowStart + 1;
  }
}

export function buildCorrector(deps: CorrectorDeps): Corrector {
  const { readings, records, corrections } = deps;
  let queue: Promise<unknown> = Promise.resolve();

  async function plan(facilityId: string): Promise<Correction[]> {
    const voids = (await corrections.voidsOfFacility(facilityId)).map(recordedVoid);
    if (voids.length === 0) return [];
    const minFrom = Math.min(...voids.map((v) => v.from));
    const maxTo = Math.max(...voids.map((v) => v.to));
    /** Devices whose recomputed end cursors differ from the effective record's: the next window starts there. */
    const carry = new Map<string, RegisterCursor[]>();
    /** The voids behind the carried cursors (a window corrected only because its start moved names them). */
    let carried = new Set<number>();
    const out: NewCorrection[] = [];
    const cursorMoves = new Map<string, { deviceId: string; windowEnd: number; cursors: RegisterCursor[] }>();
    for await (const s of settlementsAfter(records, facilityId, minFrom)) {
      const last = await corrections.latest(s.id);
      const eff = last
        ? { inputs: last.inputs, net: last.netGrams, root: last.evidenceRoot, seq: last.seq }
        : { inputs: s.inputs, net: s.netGrams, root: s.evidenceRoot, seq: 0 };
      const moved = eff.inputs.devices.some((d) => carry.has(d.deviceId));
      if (!moved && s.windowStart >= maxTo && !mayUseVoided(eff.inputs, voids)) continue;
      const devices = eff.inputs.devices.map((d) => (carry.has(d.deviceId) ? { ...d, startCursors: carry.get(d.deviceId) as RegisterCursor[] } : d));
      const ids = new Set(devices.map((d) => d.deviceId));
      const row = { facilityId, windowStart: s.windowStart, windowEnd: s.windowEnd, inputs: { ...eff.inputs, devices } };
      const input = await recordedWindowInputs(readings, row, voids.filter((v) => ids.has(v.deviceId)));
      const first = evaluate(input);
      if (first.evidence.root.toLowerCase() === eff.root.toLowerCase()) {
        // Nothing this window used is void, and it starts where it did: it stands, and so do its end cursors.
        for (const d of devices) carry.delete(d.deviceId);
        if (carry.size === 0) carried = new Set();
        continue;
      }
      const outcome = first.result;
      const endsAsBefore = outcome.devices.every((d) => {
        const was = eff.inputs.devices.find((x) => x.deviceId === d.deviceId);
        return was !== undefined && sameCursors(was.endCursors, d.endCursors);
      });
      if (outcome.netGrams === BigInt(eff.net) && outcome.complete === (last ? last.complete : s.complete) && endsAsBefore) {
        // Only a coverage fact moved (e.g. the reading after the window is void) and nothing it settles
        // or hands on changed: there is nothing to correct.
        for (const d of devices) carry.delete(d.deviceId);
        if (carry.size === 0) carried = new Set();
        continue;
      }
      const causes = [...(input.voids ?? []), ...voids.filter((v) => carried.has(v.id))].filter((v, i, all) => all.findIndex((x) => x.id === v.id) === i);
      const ref: CorrectionRef = { settlementId: s.id, originalRoot: s.evidenceRoot, seq: eff.seq + 1, prevNetGrams: eff.net, reason: reasonOf(causes) };
      input.correction = ref;
      const { result, evidence } = evaluate(input);
      out.push({
        id: correctionId(s.id, ref.seq),
        settlementId: s.id,
        seq: ref.seq,
        facilityId,
        windowStart: s.windowStart,
        windowEnd: s.windowEnd,
        voidIds: causes.map((v) => v.id).sort((a, b) => a - b),
        reason: ref.reason,
        complete: result.complete,
        prevNetGrams: eff.net,
        netGrams: result.netGrams.toString(),
        deltaGrams: (result.netGrams - BigInt(eff.net)).toString(),
        actualKg: result.actualKg,
        evidenceRoot: evidence.root,
        inputs: recordedInputs(result, input.devices),
      });
      for (const d of result.devices) {
        const before = eff.inputs.devices.find((x) => x.deviceId === d.deviceId);
        if (before && sameCursors(before.endCursors, d.endCursors)) carry.delete(d.deviceId);
        else carry.set(d.deviceId, d.endCursors);
        cursorMoves.set(d.deviceId, { deviceId: d.deviceId, windowEnd: s.windowEnd, cursors: d.endCursors });
      }
      for (const v of causes) carried.add(v.id);
    }
    if (out.length === 0) return [];
    await corrections.insertCorrections(out, [...cursorMoves.values()]);
    return Promise.all(out.map(async (c) => (await corrections.getCorrection(c.id)) as Correction));
  }

  return {
    // One plan at a time in this process (the store refuses a seq that is not the next across processes).
    plan(facilityId) {
      const run = queue.then(() => plan(facilityId));
      queue = run.catch(() => undefined);
      return run;
    },
  };
}

export interface SendReport {
  sent: number;
  /** Already on chain: confirmed from the chain's record, not sent again. */
  confirmedFromChain: number;
  /** Waiting: no void recorded on chain authorises them yet. */
  waiting: string[];
  /** Refused by the ledger (retried next run), with its reason. */
  refused: { id: string; reason: string }[];
}

export interface CorrectionSenderDeps {
  port: CorrectionPort;
  corrections: CorrectionRecords;
  logger: Logger;
}

const amountsOf = (a: CorrectionApplied) => ({ txHash: a.txHash ?? null, mintedGrams: a.mintedGrams, burnedGrams: a.burnedGrams, deficitGrams: a.deficitAfterGrams });

/**
 * Sends the recorded correction intents, oldest window and seq first. For each, the chain's count of
 * the window's corrections decides: at or above its seq, the chain has it (confirmed from its
 * CorrectionSettled event); otherwise it goes out with a chain void of the facility that authorises it
 * (one covering the window and recorded after it settled).
 */
export function buildCorrectionSender(deps: CorrectionSenderDeps): { send(windowMs: number): Promise<SendReport> } {
  const { port, corrections, logger } = deps;
  return {
    async send(windowMs) {
      const report: SendReport = { sent: 0, confirmedFromChain: 0, waiting: [], refused: [] };
      const pending = await corrections.listCorrections({ state: 'intent' });
      const entries: { c: Correction; entry: CorrectionEntry }[] = [];
      const countOf = new Map<string, number>();
      for (const c of pending) {
        const key = `${c.facilityId}:${c.windowStart}`;
        let count = countOf.get(key);
        if (count === undefined) {
          count = (await port.correctionCount(c.facilityId, c.windowStart)).count;
          countOf.set(key, count);
        }
        if (c.seq <= count) {
          const on = (await port.correctionsOf(c.facilityId)).find((a) => a.windowStart === c.windowStart && a.seq === c.seq);
          if (on) {
            if (on.evidenceRoot.toLowerCase() !== c.evidenceRoot.toLowerCase()) logger.warn({ correction: c.id, chainRoot: on.evidenceRoot }, 'chain holds another correction under this number');
            await corrections.confirmCorrection(c.id, amountsOf(on));
            report.confirmedFromChain++;
          }
          continue;
        }
        const voids = await corrections.voidsOfFacility(c.facilityId);
        const authorising = (ids: number[] | undefined) =>
          voids.find(
            (v) =>
              (ids === undefined || ids.includes(v.id)) &&
              v.chainVoidId !== undefined &&
              v.settledBefore !== undefined &&
              c.windowStart + windowMs > v.from &&
              c.windowStart < v.settledBefore,
          );
        const v = authorising(c.voidIds) ?? authorising(undefined);
        if (!v) {
          report.waiting.push(c.id);
          continue;
        }
        entries.push({
          c,
          entry: { facilityId: c.facilityId, windowStart: c.windowStart, seq: c.seq, voidId: v.chainVoidId as number, deltaGrams: BigInt(c.deltaGrams), evidenceRoot: c.evidenceRoot, reason: c.reason },
        });
        countOf.set(key, count + 1);
      }
      if (entries.length === 0) return report;
      const record = async (applied: CorrectionApplied[], list: typeof entries) => {
        for (const { c } of list) {
          const a = applied.find((x) => x.facilityId === c.facilityId && x.windowStart === c.windowStart && x.seq === c.seq);
          if (a) {
            await corrections.confirmCorrection(c.id, amountsOf(a));
            report.sent++;
          }
        }
      };
      try {
        await record((await port.settleCorrections(entries.map((e) => e.entry))).applied, entries);
      } catch (err) {
        if (!isError(err, errors.LEDGER_REVERTED) || entries.length === 1) throw err;
        // One entry the ledger refuses must not hold back the others: one by one, and a window's later
        // corrections wait behind its refused one (they would be out of order).
        const refused = new Set<string>();
        for (const e of entries) {
          const key = `${e.c.facilityId}:${e.c.windowStart}`;
          if (refused.has(key)) continue;
          try {
            await record((await port.settleCorrections([e.entry])).applied, [e]);
          } catch (one) {
            if (!isError(one, errors.LEDGER_REVERTED)) throw one;
            refused.add(key);
            report.refused.push({ id: e.c.id, reason: (one as Error).message });
          }
        }
      }
      logger.info({ sent: report.sent, confirmedFromChain: report.confirmedFromChain, waiting: report.waiting.length, refused: report.refused }, 'corrections sent');
      return report;
    },
  };
}

export interface CorrectionRunDeps {
  corrector: Corrector;
  corrections: CorrectionRecords;
  records: Pick<SettlementReader, 'listSettlements'>;
  /** The ledger's correction side on the oracle's key; absent: corrections are planned, not sent. */
  sender?: ReturnType<typeof buildCorrectionSender>;
  logger: Logger;
  windowMs: number;
}

/**
 * What the oracle does after each settlement run: plans the corrections of every facility whose voids
 * or settled windows changed since it last looked (a window settled while a void was being recorded
 * is caught here), then sends what is pending. Failures are logged and retried next run; they never
 * stop settlement.
 */
export function buildCorrectionRun(deps: CorrectionRunDeps): { run(): Promise<void> } {
  const seen = new Map<string, string>();
  return {
    async run() {
      for (const { facilityId, voids } of await deps.corrections.voidedFacilities()) {
        const newest = (await deps.records.listSettlements({ facilityId, newestFirst: true, limit: 1 }))[0];
        const state = `${voids}:${newest?.windowStart ?? ''}`;
        if (seen.get(facilityId) === state) continue;
        try {
          const made = await deps.corrector.plan(facilityId);
          if (made.length) deps.logger.info({ facilityId, corrections: made.map((c) => c.id) }, 'corrections recorded');
          seen.set(facilityId, state);
        } catch (err) {
          deps.logger.warn({ err, facilityId }, 'corrections not planned; retried next run');
        }
      }
      if (!deps.sender) return;
      try {
        const r = await deps.sender.send(deps.windowMs);
        if (r.waiting.length) deps.logger.warn({ waiting: r.waiting }, 'corrections wait for a void on chain that authorises them');
      } catch (err) {
        deps.logger.warn({ err }, 'corrections not sent; retried next run');
      }
    },
  };
}
